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
        suffix = {"gzip": "+gzip", "zstd": "+zstd"}.get(compression or "", "")
        layer_descriptors.append(
            _descriptor("application/vnd.oci.image.layer.v1.tar" + suffix, blob)
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


@dataclass(frozen=True)
class Owned:
    """An Entry with an explicit permission mode and owner."""

    entry: Entry
    mode: int
    uid: int = 0
    gid: int = 0


@dataclass(frozen=True)
class SparseFile:
    """A GNU sparse file in PAX format 1.0: its apparent size and data chunks."""

    name: str
    apparent_size: int
    # (offset, data) of each chunk that is not a hole, in offset order.
    chunks: tuple[tuple[int, bytes], ...]


def owned(entry: Entry, mode: int, uid: int = 0, gid: int = 0) -> Owned:
    return Owned(entry, mode, uid, gid)


def _sparse_member(sparse: SparseFile) -> tuple[tarfile.TarInfo, bytes]:
    """Return the header and stored data (sparse map, then chunks) of SPARSE.

    In format 1.0 the data starts with the map as decimal lines: the chunk count,
    then the offset and length of each chunk, padded to a 512-byte block.
    """
    lines = [str(len(sparse.chunks))]
    for offset, data in sparse.chunks:
        lines += [str(offset), str(len(data))]
    sparse_map = ("\n".join(lines) + "\n").encode()
    sparse_map += b"\0" * (-len(sparse_map) % tarfile.BLOCKSIZE)
    stored = sparse_map + b"".join(data for _, data in sparse.chunks)
    directory, _, base = sparse.name.rpartition("/")
    info = tarfile.TarInfo(f"{directory}/GNUSparseFile.0/{base}".lstrip("/"))
    info.size = len(stored)
    info.mode = 0o644
    info.pax_headers = {
        "GNU.sparse.major": "1",
        "GNU.sparse.minor": "0",
        "GNU.sparse.name": sparse.name,
        "GNU.sparse.realsize": str(sparse.apparent_size),
    }
    return info, stored


def detailed_layer_tar(members: Sequence[Entry | Owned | SparseFile]) -> bytes:
    """Return a PAX layer tar of MEMBERS that may set modes, owners and sparse maps.

    A plain Entry gets the modes that layer_tar gives it and uid and gid 0.
    """
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for member in members:
            if isinstance(member, SparseFile):
                info, stored = _sparse_member(member)
                archive.addfile(info, io.BytesIO(stored))
                continue
            entry = member.entry if isinstance(member, Owned) else member
            info = tarfile.TarInfo(entry.name)
            info.type = entry.type
            info.linkname = entry.linkname
            info.mode = 0o755 if entry.type == tarfile.DIRTYPE else 0o644
            if isinstance(member, Owned):
                info.mode, info.uid, info.gid = member.mode, member.uid, member.gid
            info.size = len(entry.data) if entry.type == tarfile.REGTYPE else 0
            archive.addfile(info, io.BytesIO(entry.data) if info.size else None)
    return buffer.getvalue()


def detailed_archive(
    path: Path,
    layers: Sequence[Sequence[Entry | Owned | SparseFile]],
    env: Sequence[str] | None = None,
) -> Path:
    """Write a docker-archive of detailed_layer_tar LAYERS, with ENV in its config."""
    tars = [detailed_layer_tar(members) for members in layers]
    config = None
    if env is not None:
        config = image_config(tars, {"config": {"Env": list(env)}})
    return write_tar(path, docker_archive_members(tars, config=config))


def _tar_number(value: int) -> bytes:
    """Encode VALUE for a 12-byte tar header field: octal, or base-256 if large."""
    if value < 8**11:
        return b"%011o\0" % value
    return b"\x80" + value.to_bytes(11, "big")


def gnu_sparse_layer(
    name: str,
    apparent_bytes: int,
    chunks: Sequence[tuple[int, bytes]],
    after: Sequence[Entry] = (),
) -> bytes:
    """Return a layer tar whose first member is an old-GNU sparse file (type "S").

    CHUNKS are (offset, data) pairs, at most 4, so that the header contains the
    whole sparse map. GNU tar reads each chunk from whole 512-byte blocks, so every
    chunk but the last must be a multiple of 512 bytes, as GNU tar writes them. The
    apparent size is stored in base-256 when it does not fit in 11 octal digits.
    The members AFTER follow it.
    """
    assert len(chunks) <= 4
    assert all(len(data) % tarfile.BLOCKSIZE == 0 for _, data in chunks[:-1])
    stored = b"".join(data for _, data in chunks)
    info = tarfile.TarInfo(name)
    info.type = tarfile.GNUTYPE_SPARSE
    info.size = len(stored)
    info.mode = 0o644
    header = bytearray(info.tobuf(tarfile.GNU_FORMAT, "utf-8", "surrogateescape"))
    assert len(header) == tarfile.BLOCKSIZE
    # The old GNU header keeps 4 (offset, length) pairs at byte 386, then the
    # "extended" flag at 482 and the apparent size at 483.
    position = 386
    for offset, data in chunks:
        header[position : position + 12] = _tar_number(offset)
        header[position + 12 : position + 24] = _tar_number(len(data))
        position += 24
    header[482] = 0
    header[483:495] = _tar_number(apparent_bytes)
    header[148:156] = b" " * 8
    checksum = sum(header)
    header[148:156] = b"%06o\0 " % checksum
    padding = b"\0" * (-len(stored) % tarfile.BLOCKSIZE)
    return bytes(header) + stored + padding + layer_tar(after)


def zstd_frames(data: bytes, frame_count: int) -> bytes:
    """Return DATA compressed as FRAME_COUNT zstd frames written one after another."""
    step = -(-len(data) // frame_count)
    compressor = zstandard.ZstdCompressor()
    parts = [data[start : start + step] for start in range(0, len(data), step)]
    return b"".join(compressor.compress(part) for part in parts)


def gzip_members(data: bytes, member_count: int) -> bytes:
    """Return DATA compressed as MEMBER_COUNT gzip members written one after another."""
    step = -(-len(data) // member_count)
    parts = [data[start : start + step] for start in range(0, len(data), step)]
    return b"".join(gzip.compress(part) for part in parts)


def docker25_archive_members(
    layers: Sequence[bytes],
    compression: str | None = None,
    repo_tags: Sequence[str] = ("example.test/app:25",),
) -> dict[str, bytes]:
    """Return the members of a `docker save` archive as Docker 25 and later write it.

    It is an OCI layout (oci-layout, index.json, blobs/sha256/...) plus a
    manifest.json whose Config and Layers point into blobs/sha256.
    """
    members, descriptor = oci_members(layers, compression)
    members["oci-layout"] = b'{"imageLayoutVersion":"1.0.0"}'
    members["index.json"] = oci_index([descriptor])
    manifest = oci_manifest_of(members)
    entry = {
        "Config": "blobs/sha256/" + manifest["config"]["digest"][7:],
        "RepoTags": list(repo_tags),
        "Layers": ["blobs/sha256/" + d["digest"][7:] for d in manifest["layers"]],
    }
    members["manifest.json"] = json.dumps([entry]).encode()
    return members


def oci_manifest_of(members: dict[str, bytes]) -> dict[str, Any]:
    """Return the manifest that the first descriptor of index.json names."""
    index = json.loads(members["index.json"])
    digest = index["manifests"][0]["digest"]
    manifest: dict[str, Any] = json.loads(members["blobs/sha256/" + digest[7:]])
    return manifest


def set_oci_manifest(members: dict[str, bytes], manifest: dict[str, Any]) -> None:
    """Store MANIFEST as a blob and point the first descriptor of index.json to it."""
    blob = json.dumps(manifest).encode()
    members["blobs/sha256/" + sha256(blob)[7:]] = blob
    index = json.loads(members["index.json"])
    index["manifests"][0]["digest"] = sha256(blob)
    index["manifests"][0]["size"] = len(blob)
    members["index.json"] = json.dumps(index).encode()


def platform_index_members(
    images: Sequence[tuple[dict[str, str], bytes]],
) -> dict[str, bytes]:
    """Return an OCI layout whose index.json lists one image per (platform, layer).

    Each image's config states the platform's os, architecture and variant.
    """
    members: dict[str, bytes] = {"oci-layout": b'{"imageLayoutVersion":"1.0.0"}'}
    descriptors = []
    for platform, layer in images:
        config = image_config([layer], dict(platform))
        image_members, descriptor = oci_members([layer], config=config)
        descriptor["platform"] = dict(platform)
        members.update(image_members)
        descriptors.append(descriptor)
    members["index.json"] = oci_index(descriptors)
    return members
