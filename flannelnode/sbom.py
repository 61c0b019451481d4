"""build/sbom.cdx.json: a CycloneDX 1.6 SBOM of one build, made with cyclonedx-python-lib.

Components: flanneld per arch (version, sha256, where it was downloaded, credentials redacted),
our node files per arch (the payload manifest), each RPM and each node image. Dependencies say
what is inside what: an RPM holds its arch's flanneld and node files, an image its arch's. The
metadata component is the build itself (flannel-node <version-release>).

Reproducible: the timestamp is SOURCE_DATE_EPOCH, the serial number is derived from the
contents, and the library sorts components.
"""

from __future__ import annotations

import datetime
import hashlib
import uuid

from cyclonedx.model import (
    ExternalReference,
    ExternalReferenceType,
    HashAlgorithm,
    HashType,
    Property,
    XsUri,
)
from cyclonedx.model.bom import Bom
from cyclonedx.model.component import Component, ComponentType
from cyclonedx.model.contact import OrganizationalEntity
from cyclonedx.model.license import DisjunctiveLicense
from cyclonedx.output import make_outputter
from cyclonedx.schema import OutputFormat, SchemaVersion
from packageurl import PackageURL

from .arch import ARCHES
from .inventory import Flanneld, Image, Inventory, Payload, Rpm

SCHEMA = SchemaVersion.V1_6
FILE = "sbom.cdx.json"
PROPERTY = "flannelnode:{}"  # CycloneDX property names are namespaced by the producer
FLANNEL_MODULE = ("github.com/flannel-io", "flannel")  # a Go module: scanners match its purl


def _sha256(digest: str) -> list[HashType]:
    return [HashType(alg=HashAlgorithm.SHA_256, content=digest)] if digest else []


def _props(**values: str | None) -> list[Property]:
    return [Property(name=PROPERTY.format(k), value=v) for k, v in values.items() if v]


def _flanneld(f: Flanneld) -> Component:
    refs = []
    if f.source.startswith(("http://", "https://")):
        refs.append(ExternalReference(type=ExternalReferenceType.DISTRIBUTION, url=XsUri(f.source)))
    return Component(
        type=ComponentType.APPLICATION,
        name="flanneld",
        version=f.version,
        bom_ref=f"flanneld@{f.arch}",
        supplier=OrganizationalEntity(name="flannel-io"),
        licenses=[DisjunctiveLicense(id="Apache-2.0")],
        hashes=_sha256(f.sha256),
        purl=PackageURL("golang", *FLANNEL_MODULE, f.version, qualifiers={"arch": f.arch}),
        external_references=refs,
        properties=_props(
            arch=f.arch,
            asset=f.asset,
            asset_sha256=f.asset_sha256,
            pinned_sha256=f.pinned,
            source=None if refs else f.source,  # a local file or the cache, not a URL
        ),
    )


def _node_files(p: Payload, flanneld_path: str) -> list[Component]:
    return [
        Component(
            type=ComponentType.FILE,
            name=f.path,
            bom_ref=f"file@{p.arch}:{f.path}",
            hashes=_sha256(f.sha256),
            properties=_props(arch=p.arch, mode=f.mode, size=str(f.size)),
        )
        for f in p.files
        if f.path != flanneld_path
    ]


def _rpm(r: Rpm) -> Component:
    version, _, release = r.nvr.partition("-")
    rpm_arch = ARCHES[r.arch].rpm
    return Component(
        type=ComponentType.APPLICATION,
        name="flannel-node",
        version=r.nvr,
        bom_ref=f"rpm@{r.arch}",
        hashes=_sha256(r.sha256),
        purl=PackageURL("rpm", "flannelnode", "flannel-node", r.nvr, qualifiers={"arch": rpm_arch}),
        properties=_props(
            arch=r.arch,
            file=r.file,
            version=version,
            release=release,
            signed_sha256=r.signed_sha256,  # the copy build/repo publishes (signature added)
            payload_digest=r.input_digest,
        ),
    )


def _image(i: Image) -> Component:
    if i.target == "docker" and i.image:
        name, _, tag = i.image.rpartition(":")
        namespace, _, short = name.rpartition("/")
        return Component(
            type=ComponentType.CONTAINER,
            name=name,
            version=tag,
            bom_ref=f"image@{i.target}-{i.arch}",
            hashes=_sha256((i.image_id or "").removeprefix("sha256:")),
            purl=PackageURL("docker", namespace or None, short, tag),
            properties=_props(arch=i.arch, image_id=i.image_id, target=i.target),
        )
    if i.target == "qemu" and i.path:
        return Component(
            type=ComponentType.FILE,
            name=i.path.rsplit("/", 1)[-1],
            bom_ref=f"image@{i.target}-{i.arch}",
            hashes=_sha256(i.sha256 or ""),
            properties=_props(arch=i.arch, format="qcow2", target=i.target),
        )
    return Component(
        type=ComponentType.PLATFORM,
        name=f"flannelnode node image ({i.target})",
        bom_ref=f"image@{i.target}-{i.arch}",
        properties=_props(arch=i.arch, image=i.image, target=i.target),
    )


def build(inv: Inventory) -> Bom:
    bom = Bom()
    bom.metadata.timestamp = datetime.datetime.fromtimestamp(inv.created, datetime.UTC)
    root = Component(
        type=ComponentType.APPLICATION,
        name="flannel-node",
        version=inv.release,
        bom_ref="flannel-node",
        description=f"flannel {inv.flannel_version} node artifacts built by flannelnode",
        properties=_props(
            commit=inv.source.commit if inv.source else None,
            dirty="true" if inv.source and inv.source.dirty else None,
        ),
    )
    bom.metadata.component = root
    for name, version in sorted(inv.tools.items()):
        bom.metadata.tools.components.add(
            Component(type=ComponentType.APPLICATION, name=name, version=version)
        )

    per_arch: dict[str, list[Component]] = {}  # what an RPM or image of that arch holds
    for f in inv.flanneld:
        per_arch.setdefault(f.arch, []).append(_flanneld(f))
    for p in inv.payloads:
        per_arch.setdefault(p.arch, []).extend(_node_files(p, f"{p.prefix}/bin/flanneld"))
    for components in per_arch.values():
        bom.components.update(components)
    artifacts = [(r.arch, _rpm(r)) for r in inv.rpms] + [(i.arch, _image(i)) for i in inv.images]
    for arch, artifact in artifacts:
        bom.components.add(artifact)
        bom.register_dependency(artifact, per_arch.get(arch, []))
    bom.register_dependency(root, [c for _, c in artifacts] or list(bom.components))
    return bom


def render(inv: Inventory) -> str:
    bom = build(inv)
    # the same contents, the same serial number: a digest of the document with a zero one
    bom.serial_number = uuid.UUID(int=0)
    text = make_outputter(bom, OutputFormat.JSON, SCHEMA).output_as_string(indent=2)
    bom.serial_number = uuid.UUID(bytes=hashlib.sha256(text.encode()).digest()[:16], version=5)
    return make_outputter(bom, OutputFormat.JSON, SCHEMA).output_as_string(indent=2) + "\n"
