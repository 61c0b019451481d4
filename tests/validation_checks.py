"""What images/validate.sh checks, in its order: shared by its own tests and the image builds."""

from __future__ import annotations

FLANNELD = "/opt/kubernetes/bin/flanneld"


def check_names(payload_files: list[str], flanneld: str = FLANNELD) -> list[str]:
    """One check per payload file, then the binary, the units and what a golden image must lack."""
    return [
        *(f"file:{p}" for p in payload_files),
        f"elf:{flanneld}",
        "unit:flanneld.service",
        "unit:docker.service",
        "docker-dropin",
        "no-private-key",
        "machine-id",
        "ssh-host-keys",
        "cloud-init-state",
        "authorized-keys",
    ]
