"""Read docker-archive tars, oci-archive tars and OCI layout directories."""

from __future__ import annotations

import gc
import hashlib
import io
import json
import logging
import os
import re
import stat
import tarfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal, Protocol

import zstandard

from hyperlane.errors import ImageInvalid, UsageError
from hyperlane.images.config import ConfigBlob, parse_config
from hyperlane.images.digests import BlobRegion, DigestWorker
from hyperlane.images.duplicates import find_duplicates
from hyperlane.images.efficiency import compute_dive_efficiency
from hyperlane.images.junk import find_junk
from hyperlane.images.largest import find_largest_files
from hyperlane.images.layers import (
    GZIP_MAGIC,
    ZSTD_MAGIC,
    LayerRead,
    LayerStream,
    read_layer,
)
from hyperlane.images.metadata import find_metadata_changes
from hyperlane.images.model import ImageAnalysis, LayerAnalysis
from hyperlane.images.platforms import (
    DEFAULT_PLATFORM,
    Platform,
    parse_platform,
    platform_of,
)
from hyperlane.images.pull import (
    DEFAULT_PULL_BANDWIDTH_BITS_PER_SECOND,
    check_bandwidth,
    estimate_pull,
)
from hyperlane.images.stacking import (
    FileSystemStack,
    PathEscapesRoot,
    normalize_member_path,
)

logger = logging.getLogger(__name__)

ARCHIVE_KINDS = ("docker-archive", "oci-archive", "oci")
_INDEX_MEDIA_TYPES = {
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
}
_BLOB_PATH = re.compile(r"blobs/(?P<algorithm>[a-z0-9]+)/(?P<hex>[a-f0-9]+)")
_CONFIG_FILE = re.compile(r"(?P<hex>[a-f0-9]{64})\.json")
_READ_ERRORS = (tarfile.TarError, OSError, EOFError, zlib.error, zstandard.ZstdError)
# Magic numbers of the compressions that tarfile's "r:*" mode tries, and of zstd,
# which the Python 3.11 tarfile module cannot read.
_COMPRESSION_MAGIC = (
    (b"\x1f\x8b", "gz"),
    (b"BZh", "bz2"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
)
_READ_MODES: dict[str, Literal["r:", "r:gz", "r:bz2", "r:xz"]] = {
    "": "r:",
    "gz": "r:gz",
    "bz2": "r:bz2",
    "xz": "r:xz",
}
# The members that the manifest of each archive kind is read from.
_TOP_DOCUMENT = {
    "docker-archive": "manifest.json",
    "oci-archive": "index.json",
    "oci": "index.json",
}


class _BlobStore(Protocol):
    """Files of an image layout, addressed by their normalised relative path."""

    label: str

    def contains(self, path: str) -> bool: ...

    def open(self, path: str) -> IO[bytes]: ...


class _MemberData(io.RawIOBase):
    """The data of a regular member of an uncompressed tar, read in place.

    Each read goes from the file into the caller's buffer with os.preadv, where
    tarfile's reader copies every read once more.
    """

    def __init__(self, descriptor: int, offset: int, size: int) -> None:
        super().__init__()
        self._descriptor = descriptor
        self._position = offset
        self._end = offset + size
        # Where the member's data lies in the archive file.
        self.region = BlobRegion(descriptor, offset, size)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        """Read into BUFFER up to the member's end, raising tarfile.ReadError when
        the file ends first, as tarfile's reader does."""
        remaining = self._end - self._position
        if remaining <= 0:
            return 0
        view = memoryview(buffer)
        if len(view) > remaining:
            view = view[:remaining]
        count = os.preadv(self._descriptor, [view], self._position)
        if count == 0:
            raise tarfile.ReadError("unexpected end of data")
        self._position += count
        return count


class _TarStore:
    """Members of a tar archive on disk, read in place by seeking."""

    def __init__(self, archive: tarfile.TarFile, label: str) -> None:
        self.label = label
        self._archive = archive
        # The file descriptor of an uncompressed archive, whose regular members are
        # read by offset, else None.
        self._descriptor: int | None = None
        if isinstance(archive.fileobj, io.BufferedReader):
            self._descriptor = archive.fileobj.fileno()
        self._members: dict[str, tarfile.TarInfo] = {}
        for member in _read_members(archive, label):
            if member.isdir():
                continue
            try:
                self._members[normalize_member_path(member.name)] = member
            except PathEscapesRoot:
                # Only paths that a manifest names are read, and those are checked.
                logger.debug("skipping member %s outside the root", member.name)

    def contains(self, path: str) -> bool:
        return path in self._members

    def open(self, path: str) -> IO[bytes]:
        if path not in self._members:
            raise _missing_member(self.label, path)
        member = self._members[path]
        if self._descriptor is not None and member.isreg() and not member.issparse():
            raw = _MemberData(self._descriptor, member.offset_data, member.size)
            return io.BufferedReader(raw)
        reader = self._archive.extractfile(member)
        if reader is None:
            raise ImageInvalid(
                f"member {path!r} of {self.label!r} is not a file; export the image "
                "again"
            )
        return reader


class _DirectoryStore:
    """Files under an OCI layout directory."""

    def __init__(self, root: Path) -> None:
        self.label = str(root)
        self._root = root

    def contains(self, path: str) -> bool:
        return (self._root / path).is_file()

    def open(self, path: str) -> IO[bytes]:
        if not self.contains(path):
            raise _missing_member(self.label, path)
        return (self._root / path).open("rb")


def _missing_member(label: str, path: str) -> ImageInvalid:
    return ImageInvalid(
        f"{path!r} is missing from {label!r}; the archive is truncated or incomplete, "
        "export the image again"
    )


@dataclass(frozen=True)
class _LayerBlob:
    """A layer blob as the manifest lists it."""

    path: str
    # "sha256:..." when the layout names the blob by digest, else None.
    digest: str | None
    # Size and media type from the OCI descriptor, None in a manifest.json.
    size_bytes: int | None
    media_type: str | None


@dataclass(frozen=True)
class _ImagePlan:
    """The blobs of one image as its manifest lists them."""

    reference: str | None
    config_path: str
    # "sha256:..." when the layout names blobs by digest, else None.
    config_digest: str | None
    # Bottom layer first.
    layers: list[_LayerBlob]
    # The requested platform when no index descriptor matched it, else None. The
    # config's os and architecture must then match it.
    unchecked_platform: Platform | None


def _check_file_type(path: Path) -> None:
    """Raise ImageInvalid unless PATH is a regular file or a directory.

    Reading a FIFO or a device would block or never end.
    """
    mode = path.stat().st_mode
    if not stat.S_ISREG(mode) and not stat.S_ISDIR(mode):
        raise ImageInvalid(
            f"{str(path)!r} is neither a regular file nor a directory; pass an image "
            "archive file or an OCI layout directory"
        )


def detect_layout(path: Path) -> str:
    """Return the archive kind of PATH by reading its content.

    Raises ImageInvalid when PATH is neither an OCI layout directory nor a tar with
    a manifest.json or an oci-layout and index.json.
    """
    _check_file_type(path)
    if path.is_dir():
        if (path / "oci-layout").is_file():
            return "oci"
        raise ImageInvalid(
            f"directory {str(path)!r} has no oci-layout file, so it is not an OCI "
            "layout; pass an OCI layout directory or an image archive tar"
        )
    try:
        with _open_tar(path) as archive:
            names = _member_names(_read_members(archive, str(path)))
    except _READ_ERRORS as error:
        raise _not_a_tar(path, error) from error
    if "manifest.json" in names:
        return "docker-archive"
    if "oci-layout" in names and "index.json" in names:
        return "oci-archive"
    raise ImageInvalid(
        f"tar {str(path)!r} has neither manifest.json nor oci-layout and index.json; "
        "pass an archive from `docker save` or `podman save`"
    )


def _open_tar(path: Path) -> tarfile.TarFile:
    """Open the tar at PATH, raising ImageInvalid with a one-line reason if it fails."""
    try:
        return tarfile.open(path, "r:*")
    except _READ_ERRORS as error:
        raise _not_a_tar(path, error) from error


def _read_members(archive: tarfile.TarFile, label: str) -> list[tarfile.TarInfo]:
    """Return the members of ARCHIVE, raising ImageInvalid when it is cut short.

    tarfile ends the member list without an error at a header that is cut off or
    invalid. So the block after the last member must be the first zero block of the
    end-of-archive marker, which docker save, podman save and tarfile all write.
    """
    members: list[tarfile.TarInfo] = []
    try:
        while (member := archive.next()) is not None:
            members.append(member)
        archive.fileobj.seek(archive.offset)
        block = archive.fileobj.read(tarfile.BLOCKSIZE)
    except _READ_ERRORS as error:
        if not members:
            raise
        # tarfile raises "unexpected end of data" when a member's data is cut off.
        raise ImageInvalid(
            f"{label!r} is truncated or corrupt: it ends inside member "
            f"{members[-1].name!r} ({error}); export the image again"
        ) from error
    if block == tarfile.NUL * tarfile.BLOCKSIZE:
        return members
    after = f"after member {members[-1].name!r}" if members else "at its start"
    if len(block) < tarfile.BLOCKSIZE:
        raise ImageInvalid(
            f"{label!r} is truncated: it ends {after} without the tar "
            "end-of-archive marker; export the image again"
        )
    raise ImageInvalid(
        f"{label!r} has an invalid tar header at byte {archive.offset}, {after}; "
        "the archive is corrupt, export the image again"
    )


def _member_names(members: list[tarfile.TarInfo]) -> set[str]:
    """Return the normalised names of MEMBERS, skipping unsafe ones."""
    names = set()
    for name in (member.name for member in members):
        try:
            names.add(normalize_member_path(name))
        except PathEscapesRoot:
            # Only paths that a manifest names are read, and those are checked.
            logger.debug("skipping member %s outside the root", name)
    return names


def _not_a_tar(path: Path, error: BaseException) -> ImageInvalid:
    return ImageInvalid(
        f"{str(path)!r} is not a tar archive (or is empty/truncated): "
        f"{_tar_failure_reason(path, error)}; pass an image archive written by "
        "docker save or podman save"
    )


def _tar_failure_reason(path: Path, error: BaseException) -> str:
    """Return a one-line reason why tarfile could not read PATH.

    The "r:*" mode of tarfile raises one line per compression it tried, so for a
    multi-line error this retries the single mode that the magic number selects.
    """
    if "\n" not in str(error):
        return str(error)
    try:
        with path.open("rb") as reader:
            head = reader.read(8)
    except OSError as read_error:
        return str(read_error)
    if not head:
        return "the file is empty (0 bytes)"
    compression = next(
        (name for magic, name in _COMPRESSION_MAGIC if head.startswith(magic)), ""
    )
    if compression == "zstd":
        return "it is zstd-compressed, which is not supported; decompress it first"
    try:
        tarfile.open(path, _READ_MODES[compression]).close()
    except _READ_ERRORS as retry_error:
        prefix = f"{compression}-compressed, " if compression else ""
        return f"{prefix}{retry_error}"
    return str(error).splitlines()[0]


def _reference_path(store: _BlobStore, path: object, role: str) -> str:
    """Return a manifest's member PATH normalised, checked to exist in STORE."""
    if not isinstance(path, str) or not path:
        raise ImageInvalid(
            f"{role} path {path!r} in {store.label!r} is not a file name; export "
            "the image again"
        )
    try:
        normalized = normalize_member_path(path)
    except PathEscapesRoot as error:
        raise ImageInvalid(
            f"{role} path {path!r} in {store.label!r} is outside the archive root; "
            "the archive is unsafe, export the image again"
        ) from error
    if not store.contains(normalized):
        raise ImageInvalid(
            f"{role} {path!r} is missing from {store.label!r}; the archive is "
            "truncated or incomplete, export the image again"
        )
    return normalized


def _digest_of_path(path: str) -> str | None:
    match = _BLOB_PATH.fullmatch(path)
    if match is None:
        return None
    return f"{match['algorithm']}:{match['hex']}"


def _read_bytes(store: _BlobStore, path: str) -> bytes:
    """Return the content of the file at PATH, raising ImageInvalid naming it."""
    try:
        with store.open(path) as reader:
            return reader.read()
    except _READ_ERRORS as error:
        raise ImageInvalid(
            f"{path!r} in {store.label!r} cannot be read: {error}; the archive is "
            "truncated or corrupt, export the image again"
        ) from error


def _read_json(store: _BlobStore, path: str, digest: str | None = None) -> Any:
    """Read and parse the JSON file at PATH, checking its sha256 digest if known."""
    data = _read_bytes(store, path)
    _check_digest(store, path, data, digest)
    return _parse_json(data, f"{path!r} in {store.label!r}")


def _parse_json(data: bytes, where: str) -> Any:
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as error:
        # ValueError covers invalid JSON and invalid UTF-8, RecursionError deep nesting.
        raise ImageInvalid(
            f"{where} is not valid JSON: {error}; export the image again"
        ) from error


def _read_object(
    store: _BlobStore, path: str, digest: str | None = None
) -> dict[str, Any]:
    """Read the JSON object at PATH, raising ImageInvalid for any other document."""
    document = _read_json(store, path, digest)
    if not isinstance(document, dict):
        raise ImageInvalid(
            f"{path!r} in {store.label!r} is a JSON {type(document).__name__}, "
            "expected an object; export the image again"
        )
    return document


def _check_digest(
    store: _BlobStore, path: str, data: bytes, digest: str | None
) -> None:
    if digest is None or not digest.startswith("sha256:"):
        # NOTE: only sha256 digests are verified; other algorithms pass unchecked.
        return
    actual = "sha256:" + hashlib.sha256(data).hexdigest()
    if actual != digest:
        raise ImageInvalid(
            f"{path!r} in {store.label!r} has digest {actual!r}, expected "
            f"{digest!r}; the archive is corrupt, export the image again"
        )


def _docker_plan(store: _BlobStore, platform: Platform | None) -> _ImagePlan:
    manifest = _read_json(store, "manifest.json")
    if not isinstance(manifest, list) or not manifest:
        raise ImageInvalid(
            f"manifest.json in {store.label!r} is {manifest!r:.60}, expected a "
            "non-empty list of images; export the image again"
        )
    # NOTE: an archive of several images yields its first entry, whatever platform.
    entry = manifest[0]
    if len(manifest) > 1:
        tags = [
            ", ".join(item.get("RepoTags") or []) or str(item.get("Config"))
            for item in manifest
            if isinstance(item, dict)
        ]
        logger.warning(
            "%s contains %d images; analysing the first (%s) and not %s. Save one "
            "image per archive to analyse another",
            store.label,
            len(manifest),
            tags[0] if tags else "?",
            "; ".join(tags[1:]) or "the others",
        )
    if not isinstance(entry, dict):
        raise ImageInvalid(
            f"manifest.json in {store.label!r} has entry {entry!r:.60}, expected an "
            "object with Config and Layers; export the image again"
        )
    for key in ("Config", "Layers"):
        if key not in entry:
            raise ImageInvalid(
                f"manifest.json in {store.label!r} has no {key} key in its first "
                "entry; export the image again"
            )

    config_path = _reference_path(store, entry["Config"], "config")
    config_digest = _digest_of_path(config_path)
    config_match = _CONFIG_FILE.fullmatch(config_path)
    if config_match is not None:
        config_digest = "sha256:" + config_match["hex"]

    layer_paths = entry["Layers"]
    if not isinstance(layer_paths, list):
        raise ImageInvalid(
            f"manifest.json in {store.label!r} has Layers {layer_paths!r:.60}, "
            "expected a list of paths; export the image again"
        )
    layers = []
    for layer_path in layer_paths:
        normalized = _reference_path(store, layer_path, "layer")
        layers.append(_LayerBlob(normalized, _digest_of_path(normalized), None, None))

    tags = entry.get("RepoTags") or []
    reference = None
    if isinstance(tags, list) and tags and isinstance(tags[0], str):
        reference = tags[0]
    return _ImagePlan(reference, config_path, config_digest, layers, platform)


def _blob_path(store: _BlobStore, descriptor: object, role: str) -> tuple[str, str]:
    """Return the path and digest of the blob that DESCRIPTOR names."""
    digest = descriptor.get("digest") if isinstance(descriptor, dict) else None
    if not isinstance(digest, str) or ":" not in digest:
        raise ImageInvalid(
            f"{role} descriptor {descriptor!r} in {store.label!r} has no valid "
            "digest; export the image again"
        )
    algorithm, _, hex_digest = digest.partition(":")
    return _reference_path(store, f"blobs/{algorithm}/{hex_digest}", role), digest


def _descriptor_platform(descriptor: dict[str, Any]) -> Platform | None:
    fields = descriptor.get("platform")
    return platform_of(fields) if isinstance(fields, dict) else None


def _choose_descriptor(
    store: _BlobStore, path: str, descriptors: list[Any], platform: Platform | None
) -> tuple[dict[str, Any], bool]:
    """Return the descriptor for PLATFORM and whether its platform field matched.

    Without PLATFORM this is linux/amd64, else the first descriptor that is not an
    attestation ("unknown/unknown"). An index whose descriptors have no platform
    field yields its first descriptor. Raises UsageError when PLATFORM is given
    and no descriptor matches it.
    """
    candidates = [d for d in descriptors if isinstance(d, dict)]
    if not candidates:
        raise ImageInvalid(
            f"index {path!r} in {store.label!r} lists no manifest; export the image "
            "again"
        )
    platforms = [_descriptor_platform(d) for d in candidates]
    if all(p is None for p in platforms):
        return candidates[0], False
    target = platform or parse_platform(DEFAULT_PLATFORM)
    for descriptor, candidate in zip(candidates, platforms, strict=True):
        if candidate == target:
            return descriptor, True
    if platform is not None:
        available = sorted(
            {p.text for p in platforms if p is not None and p.os != "unknown"}
        )
        raise UsageError(
            f"{store.label!r} has no image for platform {platform.text!r}; pass one "
            f"of the platforms it has: {', '.join(available) or 'none'}"
        )
    for descriptor, candidate in zip(candidates, platforms, strict=True):
        if candidate is None or candidate.os != "unknown":
            return descriptor, False
    return candidates[0], False


def _reference_of(descriptor: dict[str, Any]) -> str | None:
    annotations = descriptor.get("annotations")
    if not isinstance(annotations, dict):
        return None
    for key in ("io.containerd.image.name", "org.opencontainers.image.ref.name"):
        value = annotations.get(key)
        if isinstance(value, str) and value:
            return value
    return None


def _oci_plan(store: _BlobStore, platform: Platform | None) -> _ImagePlan:
    document = _read_object(store, "index.json")
    if document.get("manifests") is None and store.contains("manifest.json"):
        # docker save IMAGE@DIGEST in the first Docker 25.0 releases writes
        # "manifests": null next to a correct manifest.json.
        logger.warning(
            "index.json in %s lists no manifests; reading manifest.json instead",
            store.label,
        )
        return _docker_plan(store, platform)
    path = "index.json"
    reference: str | None = None
    unchecked_platform = platform
    # Nested indexes are bounded, so a cyclic index cannot loop forever.
    for _ in range(8):
        descriptors = document.get("manifests")
        if not isinstance(descriptors, list):
            raise ImageInvalid(
                f"index {path!r} in {store.label!r} has no manifests list; export "
                "the image again"
            )
        descriptor, matched = _choose_descriptor(store, path, descriptors, platform)
        if matched:
            unchecked_platform = None
        reference = reference or _reference_of(descriptor)
        path, digest = _blob_path(store, descriptor, "manifest")
        document = _read_object(store, path, digest)
        media_type = descriptor.get("mediaType") or document.get("mediaType")
        if media_type not in _INDEX_MEDIA_TYPES:
            break
    else:
        raise ImageInvalid(
            f"indexes in {store.label!r} nest more than 8 deep; export the image again"
        )

    for key in ("config", "layers"):
        if key not in document:
            raise ImageInvalid(
                f"manifest {path!r} in {store.label!r} has no {key} key; export the "
                "image again"
            )
    config_path, config_digest = _blob_path(store, document["config"], "config")
    layer_descriptors = document["layers"]
    if not isinstance(layer_descriptors, list):
        raise ImageInvalid(
            f"manifest {path!r} in {store.label!r} has layers "
            f"{layer_descriptors!r:.60}, expected a list of descriptors; export the "
            "image again"
        )
    if not layer_descriptors and store.contains("manifest.json"):
        # docker save in the Docker 25.0 release candidates writes an OCI manifest
        # without layers next to a manifest.json that lists them.
        logger.warning(
            "manifest %s in %s lists no layers; reading manifest.json instead",
            path,
            store.label,
        )
        return _docker_plan(store, platform)

    layers = []
    for descriptor in layer_descriptors:
        layer_path, layer_digest = _blob_path(store, descriptor, "layer")
        size = descriptor.get("size")
        media_type = descriptor.get("mediaType")
        layers.append(
            _LayerBlob(
                layer_path,
                layer_digest,
                size if isinstance(size, int) else None,
                media_type if isinstance(media_type, str) else None,
            )
        )
    return _ImagePlan(reference, config_path, config_digest, layers, unchecked_platform)


def _hidden_bytes(reads: list[LayerRead], visible_ids: set[int]) -> list[int]:
    """Return each layer's regular-file bytes that the final file system hides."""
    return [
        sum(
            inode.content_bytes
            for inode in read.counts.inodes
            if inode.regular and id(inode) not in visible_ids
        )
        for read in reads
    ]


def _layer_figures(
    streams: list[LayerStream], hidden: list[int], history: list[str | None]
) -> list[LayerAnalysis]:
    """Build each layer's figures once the whole stack is known."""
    layers = []
    for index, stream in enumerate(streams):
        counts = stream.counts
        layers.append(
            LayerAnalysis(
                index=index,
                diff_id=stream.diff_id,
                created_by=history[index] if index < len(history) else None,
                size_bytes=counts.content_bytes,
                regular_file_bytes=counts.regular_file_bytes,
                files_added=counts.files_added,
                files_modified=counts.files_modified,
                files_removed=counts.files_removed,
                hidden_bytes=hidden[index],
                entries=counts.entries,
                tar_bytes=stream.tar_bytes,
            )
        )
    return layers


def _read_config(store: _BlobStore, plan: _ImagePlan) -> tuple[bytes, ConfigBlob]:
    """Read, check and parse the config blob of PLAN.

    Raises ImageInvalid for a config that is invalid or whose diff_ids do not match
    the manifest's layers, and UsageError when its platform is not the one
    requested.
    """
    config_data = _read_bytes(store, plan.config_path)
    _check_digest(store, plan.config_path, config_data, plan.config_digest)
    where = f"config {plan.config_path!r} in {store.label!r}"
    document = _parse_json(config_data, where)
    config = parse_config(document, where)
    if len(config.diff_ids) != len(plan.layers):
        raise ImageInvalid(
            f"config of {store.label!r} lists {len(config.diff_ids)} diff_ids but "
            f"the manifest lists {len(plan.layers)} layers; export the image again"
        )
    requested = plan.unchecked_platform
    if requested is not None:
        _check_config_platform(store, document, requested)
    return config_data, config


def _check_config_platform(
    store: _BlobStore, document: dict[str, Any], requested: Platform
) -> None:
    """Raise UsageError if the config's os and architecture are not REQUESTED's.

    The variant is compared only when the config states one, because the config's
    variant field is optional.
    """
    actual = platform_of(document)
    if actual is None:
        logger.debug("config in %s names no platform to check", store.label)
        return
    same_machine = (actual.os, actual.architecture) == (
        requested.os,
        requested.architecture,
    )
    same_variant = "variant" not in document or actual.variant == requested.variant
    if same_machine and same_variant:
        return
    raise UsageError(
        f"{store.label!r} contains an image for {actual.text}, not for platform "
        f"{requested.text!r}; pass platform {actual.text} or an archive of the "
        f"{requested.text} image"
    )


def _region_of(reader: IO[bytes]) -> BlobRegion | None:
    """Return where the bytes of READER lie in an open file, None if they do not.

    That is a member read in place from an uncompressed archive, or a regular file
    of an OCI layout, read from its start.
    """
    if not isinstance(reader, io.BufferedReader):
        return None
    raw = reader.raw
    if isinstance(raw, _MemberData):
        return raw.region
    if isinstance(raw, io.FileIO) and reader.tell() == 0:
        status = os.fstat(raw.fileno())
        if stat.S_ISREG(status.st_mode):
            return BlobRegion(raw.fileno(), 0, status.st_size)
    return None


def _stack_layers(
    store: _BlobStore, plan: _ImagePlan, diff_ids: list[str], digests: DigestWorker
) -> tuple[FileSystemStack, list[LayerRead]]:
    """Apply each layer of PLAN to a new stack.

    The digests of plain blobs in files are computed by DIGESTS while the next
    layers are read, and _finish_layers checks them.
    """
    stack = FileSystemStack()
    reads: list[LayerRead] = []
    for blob in plan.layers:
        try:
            with store.open(blob.path) as reader:
                _check_media_type(store, blob, reader)
                read = read_layer(
                    reader,
                    stack,
                    blob.path,
                    store.label,
                    keep_entries=True,
                    region=_region_of(reader),
                    digests=digests,
                )
        except (ImageInvalid, *_READ_ERRORS):
            # A lower layer whose digest does not match is reported first, as it
            # was when each layer was checked before the next one was read.
            _finish_layers(store, plan, diff_ids, reads)
            raise
        reads.append(read)
    return stack, reads


def _finish_layers(
    store: _BlobStore, plan: _ImagePlan, diff_ids: list[str], reads: list[LayerRead]
) -> list[LayerStream]:
    """Wait for the digests of READS and check them and their sizes, layer by layer.

    READS may be fewer than the layers of PLAN, bottom layer first.
    """
    streams = []
    for blob, diff_id, read in zip(plan.layers, diff_ids, reads, strict=False):
        stream = read.finish()
        _check_layer(store, blob.path, stream.blob_digest, blob.digest, "blob digest")
        _check_layer(store, blob.path, stream.diff_id, diff_id, "diff_id")
        if blob.size_bytes is not None and blob.size_bytes != stream.blob_bytes:
            raise ImageInvalid(
                f"layer {blob.path!r} in {store.label!r} has {stream.blob_bytes} "
                f"bytes, the manifest says {blob.size_bytes}; export the image again"
            )
        streams.append(stream)
    return streams


def _media_type_compression(media_type: str) -> str | None:
    """Return the compression that a layer media type names, None if it names none."""
    if media_type.endswith(("+gzip", ".tar.gzip")):
        return "gzip"
    if media_type.endswith("+zstd"):
        return "zstd"
    if media_type.endswith(".tar"):
        return "no compression"
    return None


def _content_compression(head: bytes) -> str:
    if head.startswith(GZIP_MAGIC):
        return "gzip"
    if head.startswith(ZSTD_MAGIC):
        return "zstd"
    return "no compression"


def _check_media_type(store: _BlobStore, blob: _LayerBlob, reader: IO[bytes]) -> None:
    """Log a warning when BLOB's media type names another compression than its own.

    read_layer picks the decompressor by the magic number, and the digests prove
    the content, so a wrong media type does not change the figures. Raises
    ImageInvalid for an encrypted layer, which cannot be read without its key.
    """
    if blob.media_type is None:
        return
    if "+encrypted" in blob.media_type:
        raise ImageInvalid(
            f"layer {blob.path!r} in {store.label!r} is encrypted (media type "
            f"{blob.media_type!r}); decrypt the image first, for example with "
            "skopeo copy --decryption-key"
        )
    expected = _media_type_compression(blob.media_type)
    if expected is None or not isinstance(reader, io.BufferedReader):
        return
    actual = _content_compression(reader.peek(len(ZSTD_MAGIC))[: len(ZSTD_MAGIC)])
    if actual != expected:
        logger.warning(
            "layer %s in %s has media type %s, which names %s, but its content has "
            "%s; reading it by its content",
            blob.path,
            store.label,
            blob.media_type,
            expected,
            actual,
        )


def _sparse_paths(streams: list[LayerStream]) -> list[str]:
    """Return the paths of the sparse regular files in any layer, sorted, each once."""
    return sorted(
        {entry.path for stream in streams for entry in stream.entries if entry.sparse}
    )


def _analyze_plan(
    store: _BlobStore,
    plan: _ImagePlan,
    archive_bytes: int,
    pull_bandwidth_bits_per_second: float = DEFAULT_PULL_BANDWIDTH_BITS_PER_SECOND,
) -> ImageAnalysis:
    config_data, config = _read_config(store, plan)
    history = config.layer_history
    with DigestWorker() as digests:
        stack, reads = _stack_layers(store, plan, config.diff_ids, digests)

        files_total, visible_ids = stack.visible_inodes()
        hidden = _hidden_bytes(reads, visible_ids)
        # NOTE: the analyses that compare layers read these two lists.
        layer_entries = [read.entries for read in reads]
        visible_files = stack.visible_files()
        # The tree and the inodes are freed before the analyses build their own
        # trees. On the tree archive of bench/image_vs_dive.py, that lowered the
        # peak RSS from 115 MB to 103 MB.
        del stack, visible_ids
        for read in reads:
            read.counts.inodes.clear()

        # The analyses run while the digest thread may still hash the last blobs.
        # Their results are returned only after every digest has matched.
        dive = compute_dive_efficiency(layer_entries)
        duplicates = find_duplicates(layer_entries, visible_files)
        metadata_changes = find_metadata_changes(layer_entries)
        junk = find_junk(layer_entries, visible_files, config.settings.env)
        largest_files = find_largest_files(visible_files)
        del layer_entries, visible_files
        streams = _finish_layers(store, plan, config.diff_ids, reads)

    layers = _layer_figures(streams, hidden, history)
    pull = estimate_pull(streams, pull_bandwidth_bits_per_second)
    regular_total = sum(layer.regular_file_bytes for layer in layers)
    hidden_total = sum(layer.hidden_bytes for layer in layers)
    image_id = plan.config_digest or "sha256:" + hashlib.sha256(config_data).hexdigest()
    return ImageAnalysis(
        reference=plan.reference,
        image_id=image_id,
        os=config.os,
        architecture=config.architecture,
        created=config.created,
        config=config.settings,
        layers=layers,
        total_size_bytes=sum(layer.size_bytes for layer in layers),
        visible_bytes=regular_total - hidden_total,
        hidden_bytes=hidden_total,
        hidden_percent=hidden_total * 100 / regular_total if regular_total else 0.0,
        files_total=files_total,
        sparse_files=_sparse_paths(streams),
        archive_bytes=archive_bytes,
        config_bytes=len(config_data),
        dive=dive,
        duplicates=duplicates,
        metadata_changes=metadata_changes,
        junk=junk,
        largest_files=largest_files,
        pull=pull,
    )


def _check_layer(
    store: _BlobStore, path: str, actual: str, expected: object, role: str
) -> None:
    if expected is None or actual == expected:
        return
    if isinstance(expected, str) and not expected.startswith("sha256:"):
        return
    raise ImageInvalid(
        f"layer {path!r} in {store.label!r} has {role} {actual!r}, expected "
        f"{expected!r}; the archive is corrupt, export the image again"
    )


@contextmanager
def _open_store(path: Path, kind: str) -> Iterator[_BlobStore]:
    """Open PATH as KIND and check that it has the document that KIND starts from."""
    if kind == "oci":
        if not path.is_dir():
            raise ImageInvalid(
                f"{str(path)!r} is a file, not an OCI layout directory; pass "
                f"oci-archive:{path} or docker-archive:{path} for an archive, or the "
                "bare path"
            )
        store: _BlobStore = _DirectoryStore(path)
        _check_kind(store, path, kind)
        yield store
        return
    if path.is_dir():
        raise ImageInvalid(
            f"{str(path)!r} is a directory, not {_article(kind)} {kind} tar; pass "
            f"oci:{path} for an OCI layout directory, or the bare path"
        )
    with _open_tar(path) as archive:
        # Only reading the member list counts as opening, so that errors in the
        # caller's block keep their own message.
        try:
            store = _TarStore(archive, str(path))
        except _READ_ERRORS as error:
            raise _not_a_tar(path, error) from error
        _check_kind(store, path, kind)
        yield store


def _check_kind(store: _BlobStore, path: Path, kind: str) -> None:
    """Raise ImageInvalid naming the likely kind if STORE lacks KIND's document."""
    expected = _TOP_DOCUMENT[kind]
    if store.contains(expected):
        return
    if kind == "oci":
        raise ImageInvalid(
            f"directory {str(path)!r} is not an OCI layout: it has no {expected}; "
            "pass an OCI layout directory written by skopeo or podman"
        )
    other_kind = "oci-archive" if kind == "docker-archive" else "docker-archive"
    other = _TOP_DOCUMENT[other_kind]
    if store.contains(other):
        found = (
            f"but has {other}, so it looks like {_article(other_kind)} {other_kind}; "
            f"pass {other_kind}:{path} or the bare path"
        )
    else:
        found = (
            f"and no {other} either; pass an image archive written by docker save "
            "or podman save"
        )
    raise ImageInvalid(
        f"{str(path)!r} is not {_article(kind)} {kind}: it has no {expected} {found}"
    )


def _article(kind: str) -> str:
    return "an" if kind.startswith("o") else "a"


def _archive_bytes(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def analyze_archive(
    path: Path,
    kind: str | None = None,
    platform: str | None = None,
    pull_bandwidth_bits_per_second: float = DEFAULT_PULL_BANDWIDTH_BITS_PER_SECOND,
) -> ImageAnalysis:
    """Analyze the image in an archive, reading each layer blob once.

    KIND is "docker-archive", "oci-archive" or "oci", detected from the content when
    None. PLATFORM ("os/architecture[/variant]") selects an image from an OCI index,
    which otherwise yields linux/amd64 or its first image, and must match the config
    of an image that no index lists.
    PULL_BANDWIDTH_BITS_PER_SECOND is the download rate of the pull estimate.

    Raises UsageError for an unknown KIND, a missing PATH or a PLATFORM that is
    invalid or not in the archive, and ImageInvalid for an archive that is
    truncated, corrupt, unsafe or inconsistent with its digests.
    """
    check_bandwidth(pull_bandwidth_bits_per_second)
    requested = parse_platform(platform) if platform is not None else None
    kind = _resolve_kind(path, kind)
    logger.debug("analyzing %s as %s", path, kind)
    try:
        with _open_store(path, kind) as store, _cyclic_gc_paused():
            plan = _plan(store, kind, requested)
            return _analyze_plan(
                store, plan, _archive_bytes(path), pull_bandwidth_bits_per_second
            )
    except _READ_ERRORS as error:
        raise _unreadable(path, error) from error


@contextmanager
def _cyclic_gc_paused() -> Iterator[None]:
    """Disable the cyclic garbage collector inside the block, if it was enabled.

    The analysis keeps one record per tar member and builds trees of them, so each
    full collection walks every one of those objects. Reference counting frees its
    garbage: after a successful analysis of the archives of bench/image_vs_dive.py,
    gc.collect() found no unreachable objects. The cycles of an exception's
    traceback wait for the next collection after the block. On the 60 661-member
    tree archive, pausing the collector saved 0.3 s of 2.8 s CPU time.
    """
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def stack_archive(
    path: Path, kind: str | None = None, platform: str | None = None
) -> FileSystemStack:
    """Stack the layers of the image in an archive and return its file system.

    The stack's visible_files() lists the final files with the record of each.
    KIND and PLATFORM, and the errors raised, are those of analyze_archive.
    """
    requested = parse_platform(platform) if platform is not None else None
    kind = _resolve_kind(path, kind)
    try:
        with _open_store(path, kind) as store:
            plan = _plan(store, kind, requested)
            _, config = _read_config(store, plan)
            with DigestWorker() as digests:
                stack, reads = _stack_layers(store, plan, config.diff_ids, digests)
                _finish_layers(store, plan, config.diff_ids, reads)
            return stack
    except _READ_ERRORS as error:
        raise _unreadable(path, error) from error


def _resolve_kind(path: Path, kind: str | None) -> str:
    """Return KIND, or the kind that PATH's content shows when KIND is None.

    Raises UsageError for an unknown KIND or a missing PATH.
    """
    if kind is not None and kind not in ARCHIVE_KINDS:
        raise UsageError(
            f"archive kind {kind!r} is not supported; use one of {ARCHIVE_KINDS!r}"
        )
    if not path.exists():
        noun = "directory" if kind == "oci" else "file"
        raise UsageError(
            f"{noun} {str(path)!r} not found; pass an existing archive or directory"
        )
    if kind is None:
        return detect_layout(path)
    _check_file_type(path)
    return kind


def _plan(store: _BlobStore, kind: str, platform: Platform | None) -> _ImagePlan:
    if kind == "docker-archive":
        return _docker_plan(store, platform)
    return _oci_plan(store, platform)


def _unreadable(path: Path, error: BaseException) -> ImageInvalid:
    return ImageInvalid(
        f"{str(path)!r} cannot be read: {error}; the archive is truncated or "
        "corrupt, export the image again"
    )
