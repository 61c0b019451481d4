"""validation: the check that ends every image build (images/validate.sh), seen from the builder.

The builder side has two jobs: write the check list validate.sh reads (derived from the payload
manifest, uploaded with the payload and passed by the templates, base64, in FLANNELNODE_CHECKS),
and read validate.sh's result lines back out of Packer's output, for the image's record. Packer
fails the build when validate.sh exits non-zero; the lines say which checks failed and why.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .errors import FlannelnodeError

LIST = "validate.list"  # the check list's name in the upload directory (the templates read it)
# what provision.sh enables (its step 3); flanneld's Wants= pulls in flannel-seed-etcd.service
UNITS = ("flanneld.service", "docker.service")
_OK = re.compile(r"(?:^|\s)validate: ok (\S+)$")
_FAIL = re.compile(r"(?:^|\s)validate: FAIL (\S+?): (.*)$")
_SUMMARY = re.compile(r"(?:^|\s)validate: (\d+) passed, (\d+) failed$")


class ValidationError(FlannelnodeError):
    """The image failed its validation, or its build ran none (exit 1)."""


def check_list(manifest: dict[str, Any]) -> str:
    """validate.sh's check list for the image of this payload manifest."""
    lines = []
    for entry in manifest["files"]:
        path = entry["path"]
        if any(c.isspace() for c in path):
            raise ValidationError(
                f"payload path {path!r} holds whitespace; validate.sh cannot check it"
            )
        lines.append(f"file {path} {entry['mode']} {entry['owner']} {entry['sha256']}")
    lines.append(f"elf {manifest['prefix']}/bin/flanneld")
    lines += [f"unit {u}" for u in UNITS]
    return "\n".join(lines) + "\n"


@dataclass
class Collector:
    """Passes Packer's output lines on and keeps validate.sh's result lines from among them."""

    on_line: Callable[[str], None]
    checks: list[dict[str, Any]] = field(default_factory=list)
    summary: tuple[int, int] | None = None

    def feed(self, line: str) -> None:
        text = line.rstrip()
        if m := _OK.search(text):
            self.checks.append({"check": m[1], "ok": True})
        elif m := _FAIL.search(text):
            self.checks.append({"check": m[1], "ok": False, "why": m[2]})
        elif m := _SUMMARY.search(text):
            self.summary = (int(m[1]), int(m[2]))
        self.on_line(line)

    @property
    def failed(self) -> list[str]:
        return [c["check"] for c in self.checks if not c["ok"]]

    def result(self) -> dict[str, Any]:
        """The record of a passed validation: {passed, failed, checks}; raises when it did not
        run to its end (a template without the step, or output lost)."""
        passed = len(self.checks) - len(self.failed)
        if self.summary != (passed, len(self.failed)) or not self.checks:
            raise ValidationError(
                "the image build ran no complete validation (no `validate: N passed, M failed` "
                f"line matching {len(self.checks)} check lines): every template must end with "
                "the images/validate.sh provisioner; the image is not recorded"
            )
        if self.failed:
            raise ValidationError(self.failure())
        return {"passed": passed, "failed": [], "checks": self.checks}

    def failure(self) -> str:
        lines = [f"{c['check']}: {c['why']}" for c in self.checks if not c["ok"]]
        return f"image validation failed ({len(lines)} of {len(self.checks)} checks): " + "; ".join(
            lines
        )
