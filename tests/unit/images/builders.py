"""Hand-built layer tars and image layouts for the image analysis tests."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zstandard


@dataclass(frozen=True)
class Entry:
    """One tar member: a file, directory, symlink or hard link."""

    name: str
    type: bytes = tarfile.REGTYPE
    data: bytes = b""
    linkname: str = ""


def file(name: str, data: bytes) -> Entry:
    return Entry(name, tarfile.REGTYPE, data)


def directory(name: str) -> Entry:
    return Entry(name, tarfile.DIRTYPE)


def symlink(name: str, target: str) -> Entry:
    return Entry(name, tarfile.SYMTYPE, linkname=target)


def hardlink(name: str, target: str) -> Entry:
    return Entry(name, tarfile.LNKTYPE, linkname=target)


def layer_tar(
    entries: Sequence[Entry],
    tar_format: int = tarfile.PAX_FORMAT,
    global_headers: dict[str, str] | None = None,
) -> bytes:
    """Return an uncompressed layer tar of ENTRIES in their order."""
    buffer = io.BytesIO()
    with tarfile.open(
        fileobj=buffer,
        mode="w",
        format=tar_format,
        pax_headers=global_headers,
        errors="surrogateescape",
    ) as archive:
        for entry in entries:
            info = tarfile.TarInfo(entry.name)
            info.type = entry.type
            info.linkname = entry.linkname
            info.mode = 0o755 if entry.type == tarfile.DIRTYPE else 0o644
            info.size = len(entry.data) if entry.type == tarfile.REGTYPE else 0
            archive.addfile(info, io.BytesIO(entry.data) if info.size else None)
    return buffer.getvalue()


def compress(data: bytes, compression: str | None) -> bytes:
    if compression == "gzip":
        return gzip.compress(data)
    if compression == "zstd":
        return zstandard.ZstdCompressor().compress(data)
    return data


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def image_config(layers: Sequence[bytes], extra: dict[str, Any] | None = None) -> bytes:
    """Return a config blob whose diff_ids match the uncompressed LAYERS."""
    config: dict[str, Any] = {
        "architecture": "amd64",
        "os": "linux",
        "created": "2026-01-02T03:04:05Z",
        "config": {"Env": ["PATH=/bin"]},
        "rootfs": {"type": "layers", "diff_ids": [sha256(layer) for layer in layers]},
        "history": [{"created_by": f"step {i}"} for i in range(len(layers))],
    }
    config.update(extra or {})
    return json.dumps(config).encode()


def write_tar(path: Path, members: dict[str, bytes]) -> Path:
    """Write an uncompressed tar of MEMBERS (name to content) to PATH."""
    with tarfile.open(path, "w") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def docker_archive_members(
    layers: Sequence[bytes],
    compression: str | None = None,
    config: bytes | None = None,
    repo_tags: Sequence[str] = ("example.test/app:1",),
) -> dict[str, bytes]:
    """Return the members of a legacy docker-archive of LAYERS."""
    config = config or image_config(layers)
    config_name = sha256(config).removeprefix("sha256:") + ".json"
    members = {config_name: config}
    layer_names = []
    for index, layer in enumerate(layers):
        name = f"{index:064x}/layer.tar"
        members[name] = compress(layer, compression)
        layer_names.append(name)
    manifest = [
        {"Config": config_name, "RepoTags": list(repo_tags), "Layers": layer_names}
    ]
    members["manifest.json"] = json.dumps(manifest).encode()
    return members


def docker_archive(
    path: Path, layers: Sequence[bytes], compression: str | None = None
) -> Path:
    return write_tar(path, docker_archive_members(layers, compression))


def _descriptor(media_type: str, data: bytes, **extra: Any) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": sha256(data), "size": len(data), **extra}


def oci_members(
    layers: Sequence[bytes],
    compression: str | None = None,
    config: bytes | None = None,
) -> tuple[dict[str, bytes], dict[str, Any]]:
    """Return the blobs of an OCI image of LAYERS and the manifest's descriptor."""
    config = config or image_config(layers)
    members = {"blobs/sha256/" + sha256(config)[7:]: config}
    layer_descriptors = []
    for layer in layers:
        blob = compress(layer, compression)
        members["blobs/sha256/" + sha256(blob)[7:]] = blob
        layer_descriptors.append(
            _descriptor("application/vnd.oci.image.layer.v1.tar", blob)
        )
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": _descriptor("application/vnd.oci.image.config.v1+json", config),
            "layers": layer_descriptors,
        }
    ).encode()
    members["blobs/sha256/" + sha256(manifest)[7:]] = manifest
    descriptor = _descriptor(
        "application/vnd.oci.image.manifest.v1+json",
        manifest,
        annotations={"org.opencontainers.image.ref.name": "example.test/app:1"},
    )
    return members, descriptor


def oci_index(descriptors: Sequence[dict[str, Any]]) -> bytes:
    return json.dumps({"schemaVersion": 2, "manifests": list(descriptors)}).encode()


def oci_archive_members(
    layers: Sequence[bytes], compression: str | None = None
) -> dict[str, bytes]:
    members, descriptor = oci_members(layers, compression)
    members["oci-layout"] = b'{"imageLayoutVersion":"1.0.0"}'
    members["index.json"] = oci_index([descriptor])
    return members


def write_directory(root: Path, members: dict[str, bytes]) -> Path:
    for name, data in members.items():
        target = root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    return root
