"""build/provenance/<artifact>.intoto.json: an in-toto Statement v1 with a SLSA v1 provenance
predicate for each RPM, the qcow2 and the node container image.

Each names its subject by sha256 (an RPM: the build/rpm package and the signed copy build/repo
publishes) and the build's inputs: this checkout's git commit, release.lock and the pin of each
flanneld asset (with the redacted URL it came from), the payload (its tarball's sha256, its input
digest), the image's base, the templates; the tool versions are the builder's version map.
The statements are not signed (SLSA Build L1: provenance that exists and is complete).

A small typed writer, not the in-toto project's Python bindings (in-toto-attestation): those are
generated protobuf code that would make protobuf a runtime dependency, at the 3.20 series the
test dependencies pin for etcd3; their provenance predicate is an unchecked protobuf Struct (JSON
numbers come back as floats); and the package has had no release since 2023. The tests parse
every statement with those bindings, strictly, as an independent reader.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import atomic
from .inventory import Image, Inventory, Rpm

DIR = "provenance"
SUFFIX = ".intoto.json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://slsa.dev/provenance/v1"
# URIs of our own: what the parameters mean is this module's (and the README's) business
BUILDER_ID = "urn:flannelnode:builder:build.py"
BUILD_TYPE = "urn:flannelnode:buildtype:{}:v1"
RPM_TOOLS = ("flannelnode", "python", "rpmbuild", "createrepo_c")
IMAGE_TOOLS = ("flannelnode", "python", "packer", "docker", "qemu")


@dataclass(frozen=True)
class ResourceDescriptor:
    name: str | None = None
    uri: str | None = None
    digest: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.name:
            out["name"] = self.name
        if self.uri:
            out["uri"] = self.uri
        if self.digest:
            out["digest"] = dict(self.digest)
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        if not out:
            raise ValueError("a resource descriptor needs a name, URI or digest")
        return out


@dataclass(frozen=True)
class Provenance:
    build_type: str
    external_parameters: dict[str, Any]
    internal_parameters: dict[str, Any]
    resolved_dependencies: list[ResourceDescriptor]
    builder_version: dict[str, str]
    finished_on: str | None = None  # RFC 3339, UTC

    def to_json(self) -> dict[str, Any]:
        run_details: dict[str, Any] = {
            "builder": {"id": BUILDER_ID, "version": dict(sorted(self.builder_version.items()))}
        }
        if self.finished_on:
            run_details["metadata"] = {"finishedOn": self.finished_on}
        return {
            "buildDefinition": {
                "buildType": self.build_type,
                "externalParameters": self.external_parameters,
                "internalParameters": self.internal_parameters,
                "resolvedDependencies": [d.to_json() for d in self.resolved_dependencies],
            },
            "runDetails": run_details,
        }


@dataclass(frozen=True)
class Statement:
    subject: list[ResourceDescriptor]
    predicate: Provenance

    def to_json(self) -> dict[str, Any]:
        if not self.subject or not all(s.name and s.digest for s in self.subject):
            raise ValueError("every subject of a statement needs a name and a digest")
        return {
            "_type": STATEMENT_TYPE,
            "subject": [s.to_json() for s in self.subject],
            "predicateType": PREDICATE_TYPE,
            "predicate": self.predicate.to_json(),
        }


def _inputs(inv: Inventory, arch: str) -> list[ResourceDescriptor]:
    """What every artifact of an arch was made from: source, trust root, flanneld, payload."""
    deps = []
    if inv.source:
        deps.append(
            ResourceDescriptor(
                name="flannelnode",
                digest={"gitCommit": inv.source.commit},
                annotations={"dirty": True} if inv.source.dirty else {},
            )
        )
    if inv.lock_sha256:
        deps.append(ResourceDescriptor(name=inv.lock_path, digest={"sha256": inv.lock_sha256}))
    flanneld = inv.flanneld_for(arch)
    if flanneld:
        url = flanneld.source if flanneld.source.startswith(("http://", "https://")) else None
        deps.append(
            ResourceDescriptor(
                name=flanneld.asset,
                uri=url,
                digest={"sha256": flanneld.asset_sha256},
                annotations={
                    "flannelVersion": flanneld.version,
                    "pinnedSha256": flanneld.pinned or "",
                    "flanneldSha256": flanneld.sha256,
                },
            )
        )
    payload = inv.payload(arch)
    if payload:
        deps.append(
            ResourceDescriptor(
                name=f"payload/{arch}/flannelnode-payload.tar",
                digest={"sha256": payload.tarball_sha256},
                annotations={"payloadDigest": payload.input_digest},
            )
        )
    return deps


def _tools(inv: Inventory, names: tuple[str, ...]) -> dict[str, str]:
    return {n: inv.tools[n] for n in names if n in inv.tools}


def _rpm(inv: Inventory, r: Rpm) -> Statement:
    subject = [ResourceDescriptor(name=f"rpm/{r.file}", digest={"sha256": r.sha256})]
    if r.signed_sha256:
        subject.append(
            ResourceDescriptor(name=f"repo/Packages/{r.file}", digest={"sha256": r.signed_sha256})
        )
    return Statement(
        subject,
        Provenance(
            build_type=BUILD_TYPE.format("rpm"),
            external_parameters={
                "flannelVersion": inv.flannel_version,
                "arch": r.arch,
                "versionRelease": r.nvr,
                "sourceDateEpoch": r.source_date_epoch or "",
            },
            internal_parameters={"specSha256": r.spec_sha256, "payloadDigest": r.input_digest},
            resolved_dependencies=_inputs(inv, r.arch),
            builder_version=_tools(inv, RPM_TOOLS),
        ),
    )


def _image_subject(i: Image) -> ResourceDescriptor | None:
    if i.target == "docker" and i.image and i.image_id:
        return ResourceDescriptor(
            name=i.image, digest={"sha256": i.image_id.removeprefix("sha256:")}
        )
    if i.target == "qemu" and i.path and i.sha256:
        return ResourceDescriptor(
            name=f"images/qemu/{Path(i.path).name}", digest={"sha256": i.sha256}
        )
    return None  # an AMI: AWS holds it, and no digest of it is known here


def _image(inv: Inventory, i: Image, subject: ResourceDescriptor) -> Statement:
    parts = i.parts
    deps = _inputs(inv, i.arch)
    base = parts.get("base", "")
    if base.startswith("sha256:"):
        name = "base image" if i.target == "docker" else "base qcow2"
        deps.append(
            ResourceDescriptor(
                name=f"{name} ({parts.get('variant', '')})",
                digest={"sha256": base.removeprefix("sha256:")},
            )
        )
    return Statement(
        [subject],
        Provenance(
            build_type=BUILD_TYPE.format("image"),
            external_parameters={
                "flannelVersion": inv.flannel_version,
                "arch": i.arch,
                "target": i.target,
                "variant": parts.get("variant", ""),
                "tag": parts.get("tag", ""),
            },
            internal_parameters={
                "inputDigest": i.inputs,
                **{k: v for k, v in sorted(parts.items()) if k not in ("base", "payload")},
            },
            resolved_dependencies=deps,
            builder_version=_tools(inv, IMAGE_TOOLS),
            finished_on=i.built_at,
        ),
    )


def _file_name(subject: ResourceDescriptor) -> str:
    name = subject.name or ""
    if ":" in name:  # a docker reference, repository/name:tag
        return name.replace("/", "-").replace(":", "-") + SUFFIX
    return name.rsplit("/", 1)[-1] + SUFFIX


def statements(inv: Inventory) -> dict[str, Statement]:
    """File name -> statement, for every RPM and image with a known digest."""
    out = {}
    for r in inv.rpms:
        out[f"{r.file}{SUFFIX}"] = _rpm(inv, r)
    for i in inv.images:
        subject = _image_subject(i)
        if subject is not None:
            out[_file_name(subject)] = _image(inv, i, subject)
    return out


def write(inv: Inventory, directory: Path) -> dict[str, str]:
    """Replace directory with one file per statement; returns file name -> text."""
    texts = {
        name: json.dumps(s.to_json(), indent=2, sort_keys=True) + "\n"
        for name, s in statements(inv).items()
    }
    with atomic.staged_dir(directory) as tmp:
        for name, text in texts.items():
            (tmp / name).write_text(text)
    return texts
