"""Read one layer blob as a stream: detect its compression, hash it, apply its tar."""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile
import zlib
from dataclasses import dataclass
from typing import Protocol

import zstandard

from hyperlane.errors import ImageInvalid
from hyperlane.images.entries import LayerEntry, content_sha256, make_entry
from hyperlane.images.stacking import (
    FileSystemStack,
    LayerCounts,
    PathEscapesRoot,
    normalize_member_path,
)

GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_CHUNK_BYTES = 1 << 20


class Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


class _HashingReader(io.RawIOBase):
    """A raw stream that hashes and counts every byte that passes through it."""

    def __init__(self, source: Readable) -> None:
        self._source = source
        self.digest = hashlib.sha256()
        self.bytes_read = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self._source.read(len(buffer))
        size = len(data)
        buffer[:size] = data
        self.digest.update(data)
        self.bytes_read += size
        return size


@dataclass(frozen=True)
class LayerStream:
    """Digests and lengths of one layer blob, read once."""

    # "sha256:..." of the blob as stored, compressed or not.
    blob_digest: str
    blob_bytes: int
    # "sha256:..." of the uncompressed tar.
    diff_id: str
    tar_bytes: int
    counts: LayerCounts
    # One record per tar member, in archive order; empty unless records were kept.
    entries: list[LayerEntry]


def _drain(reader: Readable) -> None:
    while reader.read(_CHUNK_BYTES):
        pass


def _decompressed(blob: io.BufferedReader[_HashingReader]) -> Readable:
    """Return a reader of BLOB's uncompressed bytes, chosen by its magic number."""
    magic = blob.peek(len(ZSTD_MAGIC))[: len(ZSTD_MAGIC)]
    if magic.startswith(GZIP_MAGIC):
        return gzip.GzipFile(fileobj=blob, mode="rb")
    if magic == ZSTD_MAGIC:
        decompressor = zstandard.ZstdDecompressor()
        return decompressor.stream_reader(blob, read_across_frames=True)
    return blob


def read_layer(
    source: Readable,
    stack: FileSystemStack,
    blob_name: str,
    archive: str,
    keep_entries: bool = False,
) -> LayerStream:
    """Apply the layer tar read from SOURCE to STACK as its next layer.

    With KEEP_ENTRIES, every member also gets a LayerEntry, and the content of each
    regular file that is not sparse is hashed as it streams past.

    Raises ImageInvalid naming ARCHIVE and BLOB_NAME when the blob is not a readable
    (gzip, zstd or plain) tar, a member escapes the root or a hard link dangles.
    """
    counts = stack.begin_layer()
    layer_index = len(stack.layers) - 1
    entries: list[LayerEntry] = []
    blob_hasher = _HashingReader(source)
    blob = io.BufferedReader(blob_hasher, _CHUNK_BYTES)
    try:
        uncompressed = _decompressed(blob)
        tar_hasher = _HashingReader(uncompressed)
        tar_stream = io.BufferedReader(tar_hasher, _CHUNK_BYTES)
        with tarfile.open(
            fileobj=tar_stream,
            mode="r|",
            bufsize=_CHUNK_BYTES,
            errors="surrogateescape",
        ) as layer_tar:
            for member in layer_tar:
                if not keep_entries:
                    stack.apply(member)
                    continue
                path = normalize_member_path(member.name)
                digest = None
                if member.isreg() and not member.issparse():
                    digest = content_sha256(layer_tar.extractfile(member))
                entry = make_entry(layer_index, path, member, digest)
                stack.apply(member, entry)
                if path:
                    entries.append(entry)
        # Zero blocks after the end-of-archive marker belong to the diff_id too.
        _drain(tar_stream)
        _drain(blob)
    except PathEscapesRoot as error:
        raise ImageInvalid(
            f"layer {blob_name!r} in {archive!r} has a path outside the root: "
            f"{error.args[0]!r}; the archive is unsafe to unpack, rebuild the image"
        ) from error
    except LookupError as error:
        raise ImageInvalid(
            f"layer {blob_name!r} in {archive!r} has a hard link to a missing file "
            f"{error.args[0]!r}; rebuild or export the image again"
        ) from error
    except (
        tarfile.TarError,
        OSError,
        EOFError,
        zlib.error,
        zstandard.ZstdError,
    ) as error:
        raise ImageInvalid(
            f"layer {blob_name!r} in {archive!r} cannot be read: {error}; the archive "
            "is truncated or corrupt, export the image again"
        ) from error
    return LayerStream(
        blob_digest="sha256:" + blob_hasher.digest.hexdigest(),
        blob_bytes=blob_hasher.bytes_read,
        diff_id="sha256:" + tar_hasher.digest.hexdigest(),
        tar_bytes=tar_hasher.bytes_read,
        counts=counts,
        entries=entries,
    )
