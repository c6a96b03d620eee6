"""Read docker-archive tars, oci-archive tars and OCI layout directories."""

from __future__ import annotations

import hashlib
import json
import logging
import re
import tarfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal, Protocol

import zstandard

from hyperlane.errors import ImageInvalid, UsageError
from hyperlane.images.config import parse_config
from hyperlane.images.layers import LayerStream, read_layer
from hyperlane.images.model import ImageAnalysis, LayerAnalysis
from hyperlane.images.stacking import (
    FileSystemStack,
    PathEscapesRoot,
    normalize_member_path,
)

logger = logging.getLogger(__name__)

ARCHIVE_KINDS = ("docker-archive", "oci-archive", "oci")
DEFAULT_PLATFORM = "linux/amd64"
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


class _TarStore:
    """Members of a tar archive on disk, read in place by seeking."""

    def __init__(self, archive: tarfile.TarFile, label: str) -> None:
        self.label = label
        self._archive = archive
        self._members: dict[str, tarfile.TarInfo] = {}
        for member in archive.getmembers():
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
        reader = self._archive.extractfile(self._members[path])
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
class _ImagePlan:
    """The blobs of one image as its manifest lists them."""

    reference: str | None
    config_path: str
    # "sha256:..." when the layout names blobs by digest, else None.
    config_digest: str | None
    # Path, digest and size of each layer, bottom first. Digest and size may be None.
    layers: list[tuple[str, str | None, int | None]]


def detect_layout(path: Path) -> str:
    """Return the archive kind of PATH by reading its content.

    Raises ImageInvalid when PATH is neither an OCI layout directory nor a tar with
    a manifest.json or an oci-layout and index.json.
    """
    if path.is_dir():
        if (path / "oci-layout").is_file():
            return "oci"
        raise ImageInvalid(
            f"directory {str(path)!r} has no oci-layout file, so it is not an OCI "
            "layout; pass an OCI layout directory or an image archive tar"
        )
    try:
        with _open_tar(path) as archive:
            names = _member_names(archive)
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


def _member_names(archive: tarfile.TarFile) -> set[str]:
    """Return the normalised names of ARCHIVE's members, skipping unsafe ones."""
    names = set()
    for name in archive.getnames():
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


def _read_json(store: _BlobStore, path: str, digest: str | None = None) -> Any:
    """Read and parse the JSON file at PATH, checking its sha256 digest if known."""
    with store.open(path) as reader:
        data = reader.read()
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


def _docker_plan(store: _BlobStore) -> _ImagePlan:
    manifest = _read_json(store, "manifest.json")
    if not isinstance(manifest, list) or not manifest:
        raise ImageInvalid(
            f"manifest.json in {store.label!r} is {manifest!r:.60}, expected a "
            "non-empty list of images; export the image again"
        )
    # NOTE: an archive of several images yields its first entry, whatever platform.
    entry = manifest[0]
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
    layers: list[tuple[str, str | None, int | None]] = []
    for layer_path in layer_paths:
        normalized = _reference_path(store, layer_path, "layer")
        layers.append((normalized, _digest_of_path(normalized), None))

    tags = entry.get("RepoTags") or []
    reference = None
    if isinstance(tags, list) and tags and isinstance(tags[0], str):
        reference = tags[0]
    return _ImagePlan(reference, config_path, config_digest, layers)


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


def _platform_of(descriptor: dict[str, Any]) -> str | None:
    platform = descriptor.get("platform")
    if not isinstance(platform, dict):
        return None
    text = f"{platform.get('os')}/{platform.get('architecture')}"
    if platform.get("variant"):
        text += f"/{platform['variant']}"
    return text


def _choose_descriptor(
    store: _BlobStore, descriptors: list[Any], platform: str | None
) -> dict[str, Any]:
    """Return the descriptor for PLATFORM, else linux/amd64, else the first one."""
    candidates = [d for d in descriptors if isinstance(d, dict)]
    if not candidates:
        raise ImageInvalid(
            f"an index in {store.label!r} lists no manifest; export the image again"
        )
    platforms = [_platform_of(d) for d in candidates]
    if all(p is None for p in platforms):
        return candidates[0]
    requested = platform or DEFAULT_PLATFORM
    for descriptor, text in zip(candidates, platforms, strict=True):
        if text is not None and (text == requested or text.startswith(requested + "/")):
            return descriptor
    if platform is not None:
        raise ImageInvalid(
            f"{store.label!r} has no image for platform {platform!r}; it has "
            f"{sorted(p for p in platforms if p)!r}"
        )
    for descriptor, text in zip(candidates, platforms, strict=True):
        if text is None or not text.startswith("unknown/"):
            return descriptor
    return candidates[0]


def _reference_of(descriptor: dict[str, Any]) -> str | None:
    annotations = descriptor.get("annotations")
    if not isinstance(annotations, dict):
        return None
    for key in ("io.containerd.image.name", "org.opencontainers.image.ref.name"):
        value = annotations.get(key)
        if isinstance(value, str) and value:
            return value
    return None


def _oci_plan(store: _BlobStore, platform: str | None) -> _ImagePlan:
    document = _read_object(store, "index.json")
    path = "index.json"
    reference: str | None = None
    # Nested indexes are bounded, so a cyclic index cannot loop forever.
    for _ in range(8):
        descriptors = document.get("manifests")
        if not isinstance(descriptors, list):
            raise ImageInvalid(
                f"index {path!r} in {store.label!r} has no manifests list; export "
                "the image again"
            )
        descriptor = _choose_descriptor(store, descriptors, platform)
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

    layers: list[tuple[str, str | None, int | None]] = []
    for descriptor in layer_descriptors:
        layer_path, layer_digest = _blob_path(store, descriptor, "layer")
        size = descriptor.get("size")
        layers.append(
            (layer_path, layer_digest, size if isinstance(size, int) else None)
        )
    return _ImagePlan(reference, config_path, config_digest, layers)


def _layer_figures(
    streams: list[LayerStream], visible_ids: set[int], history: list[str | None]
) -> list[LayerAnalysis]:
    """Build each layer's figures once the whole stack is known."""
    layers = []
    for index, stream in enumerate(streams):
        counts = stream.counts
        hidden = sum(
            inode.content_bytes
            for inode in counts.inodes
            if inode.regular and id(inode) not in visible_ids
        )
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
                hidden_bytes=hidden,
                entries=counts.entries,
                tar_bytes=stream.tar_bytes,
            )
        )
    return layers


def _analyze_plan(
    store: _BlobStore, plan: _ImagePlan, archive_bytes: int
) -> ImageAnalysis:
    with store.open(plan.config_path) as reader:
        config_data = reader.read()
    _check_digest(store, plan.config_path, config_data, plan.config_digest)
    where = f"config {plan.config_path!r} in {store.label!r}"
    config = parse_config(_parse_json(config_data, where), where)
    diff_ids = config.diff_ids
    if len(diff_ids) != len(plan.layers):
        raise ImageInvalid(
            f"config of {store.label!r} lists {len(diff_ids)} diff_ids but the "
            f"manifest lists {len(plan.layers)} layers; export the image again"
        )
    history = config.layer_history

    stack = FileSystemStack()
    streams = []
    for index, (path, digest, size) in enumerate(plan.layers):
        with store.open(path) as reader:
            stream = read_layer(reader, stack, path, store.label, keep_entries=True)
        _check_layer(store, path, stream.blob_digest, digest, "blob digest")
        _check_layer(store, path, stream.diff_id, diff_ids[index], "diff_id")
        if size is not None and size != stream.blob_bytes:
            raise ImageInvalid(
                f"layer {path!r} in {store.label!r} has {stream.blob_bytes} bytes, "
                f"the manifest says {size}; export the image again"
            )
        streams.append(stream)

    files_total, visible_ids = stack.visible_inodes()
    layers = _layer_figures(streams, visible_ids, history)
    # NOTE: the analyses that compare layers read these two lists.
    layer_entries = [stream.entries for stream in streams]
    visible_files = stack.visible_files()
    del layer_entries, visible_files

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
        archive_bytes=archive_bytes,
        config_bytes=len(config_data),
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
            f"{str(path)!r} is a directory, not a {kind} tar; pass oci:{path} for an "
            "OCI layout directory, or the bare path"
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
    path: Path, kind: str | None = None, platform: str | None = None
) -> ImageAnalysis:
    """Analyze the image in an archive, reading each layer blob once.

    KIND is "docker-archive", "oci-archive" or "oci", detected from the content when
    None. PLATFORM ("os/architecture[/variant]") selects an image from an OCI index,
    which otherwise yields linux/amd64 or its first image.

    Raises UsageError for an unknown KIND or a missing PATH and ImageInvalid for an
    archive that is truncated, corrupt, unsafe or inconsistent with its digests.
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
        kind = detect_layout(path)
    logger.debug("analyzing %s as %s", path, kind)
    try:
        with _open_store(path, kind) as store:
            if kind == "docker-archive":
                plan = _docker_plan(store)
            else:
                plan = _oci_plan(store, platform)
            return _analyze_plan(store, plan, _archive_bytes(path))
    except _READ_ERRORS as error:
        raise ImageInvalid(
            f"{str(path)!r} cannot be read: {error}; the archive is truncated or "
            "corrupt, export the image again"
        ) from error
