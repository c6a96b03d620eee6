"""Read one layer blob as a stream: detect its compression, hash it, apply its tar.

A blob larger than one read is read, hashed and decompressed by a second thread,
while the calling thread parses the tar, hashes file contents (XXH3-128) and
applies the members. zlib and hashlib release the GIL on large buffers, so the two
halves run on two cores. An uncompressed blob that lies in place in a file is
instead read by the calling thread itself, while a DigestWorker hashes it (see
hyperlane.images.digests). Plain tar headers are parsed here, and every other header
(PAX, GNU long names and sparse files, base-256 numbers, invalid checksums, the end
of the archive) by tarfile's own ``TarInfo.fromtarfile``, so members come out as
tarfile's stream mode returns them.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import queue
import struct
import tarfile
import threading
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field

# tarfile's type stubs do not declare the header errors that fromtarfile raises.
from tarfile import (  # type: ignore[attr-defined]
    EmptyHeaderError,
    EOFHeaderError,
    InvalidHeaderError,
    SubsequentHeaderError,
    TruncatedHeaderError,
)
from typing import TYPE_CHECKING, Protocol

import xxhash
import zstandard

from hyperlane.errors import ImageInvalid
from hyperlane.images.digests import (
    SWITCH_INTERVAL,
    BlobRegion,
    DigestWorker,
    PendingDigest,
)
from hyperlane.images.entries import LayerEntry, make_entry
from hyperlane.images.stacking import (
    FileSystemStack,
    LayerCounts,
    PathEscapesRoot,
    normalize_member_path,
)

if TYPE_CHECKING:
    from hashlib import _Hash

GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
# Bytes per read of the blob. A blob that fits in one read is handled without a
# thread, whose start and hand-over cost more than the work.
_READ_BYTES = 1 << 20
# Maximum uncompressed bytes per chunk handed to the tar parser.
_CHUNK_BYTES = 2 << 20
# Chunks that the reading thread may be ahead of the parser, which bounds memory to
# about _QUEUE_CHUNKS * _CHUNK_BYTES.
_QUEUE_CHUNKS = 4
_PUT_TIMEOUT_SECONDS = 0.1
# Bytes per read of a plain (uncompressed) blob, which is read into reused buffers.
_PLAIN_READ_BYTES = 1 << 20
# Header flags of a gzip member (RFC 1952).
_FHCRC = 0x02
_FEXTRA = 0x04
_FNAME = 0x08
_FCOMMENT = 0x10
_TRUNCATED_GZIP = "Compressed file ended before the end-of-stream marker was reached"
_ENCODING = "utf-8"
_ERRORS = "surrogateescape"
_BLOCK = tarfile.BLOCKSIZE
# Type flags whose headers _parse_plain_header reads. All others go to tarfile.
_PLAIN_TYPES = frozenset(
    (
        tarfile.REGTYPE,
        tarfile.AREGTYPE,
        tarfile.LNKTYPE,
        tarfile.SYMTYPE,
        tarfile.CHRTYPE,
        tarfile.BLKTYPE,
        tarfile.DIRTYPE,
        tarfile.FIFOTYPE,
        tarfile.CONTTYPE,
    )
)
# The plain types that tarfile.TarInfo.isreg() accepts, whose data blocks follow
# the header.
_DATA_TYPES = frozenset((tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.CONTTYPE))
# Every type that TarInfo.isreg() accepts, GNU sparse files included.
_REGULAR_TYPES = frozenset(tarfile.REGULAR_TYPES)


class Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


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


@dataclass(frozen=True)
class LayerRead:
    """A layer applied to the stack, whose blob digest may still be computing."""

    blob_bytes: int
    tar_bytes: int
    counts: LayerCounts
    entries: list[LayerEntry]
    # The blob digest and diff_id when they are known, else None.
    digests: tuple[str, str] | None
    # The digest thread's work for a plain blob read in place, else None. A plain
    # blob is its own tar, so its blob digest is its diff_id.
    pending: PendingDigest | None = None

    def finish(self) -> LayerStream:
        """Wait for the blob's digest and return the layer's complete figures.

        Raises ImageInvalid when the digest thread could not read the blob.
        """
        if self.digests is not None:
            blob_digest, diff_id = self.digests
        else:
            assert self.pending is not None
            blob_digest = diff_id = self.pending.wait()
        return LayerStream(
            blob_digest=blob_digest,
            blob_bytes=self.blob_bytes,
            diff_id=diff_id,
            tar_bytes=self.tar_bytes,
            counts=self.counts,
            entries=self.entries,
        )


# Reading and decompressing the blob.


@dataclass
class _BlobReader:
    """A reader of SOURCE that hashes and counts every byte of the blob as stored."""

    source: Readable
    digest: _Hash = field(default_factory=hashlib.sha256)
    bytes_read: int = 0

    def read(self) -> bytes:
        data = self.source.read(_READ_BYTES)
        self.digest.update(data)
        self.bytes_read += len(data)
        return data

    def read_into(self, buffer: memoryview) -> memoryview:
        """Fill BUFFER from the source and return the part filled, empty at the end.

        Sources without readinto are read with read and copied.
        """
        readinto = getattr(self.source, "readinto", None)
        if readinto is None:
            data = self.source.read(len(buffer))
            count = len(data)
            buffer[:count] = data
        else:
            count = readinto(buffer) or 0
        filled = buffer[:count]
        self.digest.update(filled)
        self.bytes_read += count
        return filled


def _read_head(blob: _BlobReader) -> bytes:
    """Return the first read of BLOB, extended until it can hold a zstd magic."""
    head = blob.read()
    while 0 < len(head) < len(ZSTD_MAGIC):
        more = blob.read()
        if not more:
            break
        head += more
    return head


class _CompressedInput:
    """The bytes of BLOB after the ones already read, with bytes put back in front."""

    def __init__(self, first: bytes, blob: _BlobReader) -> None:
        self._buffer = first
        self._blob = blob

    def read(self, size: int) -> bytes:
        """Return the next SIZE bytes, fewer only at the end of the blob."""
        while len(self._buffer) < size:
            more = self._blob.read()
            if not more:
                break
            self._buffer += more
        data = self._buffer[:size]
        self._buffer = self._buffer[size:]
        return data

    def read_exact(self, size: int) -> bytes:
        data = self.read(size)
        if len(data) < size:
            raise EOFError(_TRUNCATED_GZIP)
        return data

    def chunk(self) -> bytes:
        """Return the bytes put back, else the next read, or b"" at the end."""
        data = self._buffer or self._blob.read()
        self._buffer = b""
        return data

    def put_back(self, data: bytes) -> None:
        self._buffer = data + self._buffer


def _skip_gzip_header(source: _CompressedInput) -> bool:
    """Read past the header of the next gzip member, or return False at the end.

    The checks and messages are those of the gzip module of Python 3.11.
    """
    magic = source.read(2)
    if not magic:
        return False
    if magic != GZIP_MAGIC:
        raise gzip.BadGzipFile(f"Not a gzipped file ({magic!r})")
    method, flags = source.read_exact(8)[:2]
    if method != 8:
        raise gzip.BadGzipFile("Unknown compression method")
    if flags & _FEXTRA:
        (extra_bytes,) = struct.unpack("<H", source.read_exact(2))
        source.read_exact(extra_bytes)
    for flag in (_FNAME, _FCOMMENT):
        if flags & flag:
            # A zero-terminated string. The gzip module also stops at the end.
            while (byte := source.read(1)) and byte != b"\0":
                pass
    if flags & _FHCRC:
        source.read_exact(2)
    return True


def _skip_zero_padding(source: _CompressedInput) -> None:
    """Skip zero bytes after a member, which GNU gzip and the gzip module allow."""
    while data := source.chunk():
        data = data.lstrip(b"\0")
        if data:
            source.put_back(data)
            return


@dataclass(frozen=True)
class _GzipTrailer:
    """The CRC-32 and length mod 2**32 that end a gzip member, as stored."""

    crc: int
    size: int


def _gunzip(first: bytes, blob: _BlobReader) -> Iterator[bytes | _GzipTrailer]:
    """Yield the uncompressed bytes of the gzip stream that starts with FIRST, and
    the trailer after each member's bytes.

    Like the gzip module, this reads every member of a multi-member stream and skips
    zero bytes between and after members. _check_gzip_trailers checks the CRC-32
    and length, in the parsing thread, which has time to spare while this one
    decompresses.
    """
    source = _CompressedInput(first, blob)
    while _skip_gzip_header(source):
        decompressor = zlib.decompressobj(-zlib.MAX_WBITS)
        while not decompressor.eof:
            data = source.chunk()
            if not data:
                raise EOFError(_TRUNCATED_GZIP)
            chunk = decompressor.decompress(data, _CHUNK_BYTES)
            source.put_back(decompressor.unconsumed_tail or decompressor.unused_data)
            if chunk:
                yield chunk
        yield _GzipTrailer(*struct.unpack("<II", source.read_exact(8)))
        _skip_zero_padding(source)


def _check_gzip_trailers(
    items: Iterator[bytes | memoryview | _GzipTrailer],
) -> Iterator[bytes | memoryview]:
    """Yield the bytes of ITEMS, checking each member against its trailer as the
    gzip module does, with its messages."""
    crc = 0
    size = 0
    for item in items:
        if not isinstance(item, _GzipTrailer):
            crc = zlib.crc32(item, crc)
            size += len(item)
            yield item
            continue
        if item.crc != crc:
            raise gzip.BadGzipFile(f"CRC check failed {hex(item.crc)} != {hex(crc)}")
        if item.size != size & 0xFFFFFFFF:
            raise gzip.BadGzipFile("Incorrect length of data produced")
        crc = 0
        size = 0


def _unzstd(first: bytes, blob: _BlobReader) -> Iterator[bytes]:
    """Yield the uncompressed bytes of the zstd frames that start with FIRST."""
    pending = [first]

    class _Source:
        def read(self, size: int = -1, /) -> bytes:
            return pending.pop() if pending else blob.read()

    reader = zstandard.ZstdDecompressor().stream_reader(
        # stream_reader calls only read(), which _Source has.
        _Source(),  # type: ignore[arg-type]
        read_size=_READ_BYTES,
        read_across_frames=True,
    )
    while chunk := reader.read(_CHUNK_BYTES):
        yield chunk


class _BufferPool:
    """Read buffers that the parser has released, to be filled again.

    The parser releases each chunk of a buffer once it has moved past it, and only
    a released buffer is filled again. The bounded queue keeps the buffers in use
    to about _QUEUE_CHUNKS + 3, and the most recently released buffer is reused
    first, so a blob that the parser keeps up with touches only a few.
    list.append and list.pop are atomic, so the two threads need no lock.
    """

    def __init__(self) -> None:
        self._free: list[bytearray] = []

    def take(self) -> memoryview:
        buffer = self._free.pop() if self._free else bytearray(_PLAIN_READ_BYTES)
        return memoryview(buffer)

    def release(self, chunk: memoryview) -> None:
        """Return the buffer of CHUNK, which its holder no longer reads."""
        if isinstance(chunk.obj, bytearray):
            self._free.append(chunk.obj)


def _plain(
    first: bytes, blob: _BlobReader, pool: _BufferPool
) -> Iterator[bytes | memoryview]:
    """Yield FIRST, then the rest of BLOB in buffers taken from POOL."""
    if not first:
        return
    yield first
    while data := blob.read_into(pool.take()):
        yield data


@dataclass
class _Decoding:
    """The uncompressed content of a blob and the compression it is stored with."""

    # Uncompressed chunks, and gzip trailers, chosen by the blob's magic number.
    items: Iterator[bytes | memoryview | _GzipTrailer]
    compressed: bool
    gzip: bool


def _decoding(blob: _BlobReader, pool: _BufferPool) -> _Decoding:
    head = _read_head(blob)
    if head.startswith(GZIP_MAGIC):
        return _Decoding(_gunzip(head, blob), compressed=True, gzip=True)
    if head[: len(ZSTD_MAGIC)] == ZSTD_MAGIC:
        return _Decoding(_unzstd(head, blob), compressed=True, gzip=False)
    return _Decoding(_plain(head, blob, pool), compressed=False, gzip=False)


class _Failure:
    """An exception raised in the reading thread, handed to the parsing thread."""

    def __init__(self, error: BaseException) -> None:
        self.error = error


_END = object()


class _ThreadedChunks:
    """The items of CHUNKS, produced by a daemon thread and handed over through a
    bounded queue, with the thread's exception raised where the items end."""

    def __init__(self, chunks: Iterator[bytes | memoryview | _GzipTrailer]) -> None:
        self._chunks = chunks
        self._queue: queue.Queue[object] = queue.Queue(_QUEUE_CHUNKS)
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._produce, name="hyperlane-layer-reader", daemon=True
        )
        self._thread.start()

    def _put(self, item: object) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=_PUT_TIMEOUT_SECONDS)
            except queue.Full:
                continue
            return True
        return False

    def _produce(self) -> None:
        item: object = _END
        try:
            for chunk in self._chunks:
                if not self._put(chunk):
                    return
        except BaseException as error:  # __next__ raises it in the parsing thread
            item = _Failure(error)
        self._put(item)

    def __iter__(self) -> Iterator[bytes | memoryview | _GzipTrailer]:
        return self

    def __next__(self) -> bytes | memoryview | _GzipTrailer:
        item = self._queue.get()
        if item is _END:
            self._queue.put(_END)
            raise StopIteration
        if isinstance(item, _Failure):
            self._queue.put(item)
            raise item.error
        assert isinstance(item, bytes | memoryview | _GzipTrailer)
        return item

    def close(self) -> None:
        """Stop the thread and wait for it, so that it no longer reads the source."""
        self._stop.set()
        while self._thread.is_alive():
            try:
                while True:
                    self._queue.get_nowait()
            except queue.Empty:
                pass
            self._thread.join(_PUT_TIMEOUT_SECONDS)


# The uncompressed tar as a forward-only stream.


class _TarStream:
    """The uncompressed tar, read forward from a sequence of chunks.

    DIGEST, unless None, is updated with every chunk as it is taken, so that it
    covers the whole tar once the chunks run out. A chunk that is a memoryview goes
    back to POOL once the stream has moved past it.
    """

    def __init__(
        self,
        chunks: Iterator[bytes | memoryview],
        digest: _Hash | None,
        pool: _BufferPool,
    ) -> None:
        self._chunks = chunks
        self._digest = digest
        self._pool = pool
        # A chunk that is a memoryview is a reused buffer, so what read returns is
        # copied out of it.
        self._chunk: bytes | memoryview = b""
        self._view = memoryview(self._chunk)
        self._position = 0
        # Offset in the tar of the current chunk's first byte.
        self._start = 0
        self.bytes_total = 0

    def _advance(self) -> bool:
        """Make the next chunk current, or return False when there is none."""
        chunk = next(self._chunks, None)
        if chunk is None:
            self._position = len(self._chunk)
            return False
        if self._digest is not None:
            self._digest.update(chunk)
        self.bytes_total += len(chunk)
        self._start += len(self._chunk)
        if isinstance(self._chunk, memoryview):
            self._pool.release(self._chunk)
        self._chunk = chunk
        self._view = memoryview(chunk)
        self._position = 0
        return True

    def tell(self) -> int:
        return self._start + self._position

    def read(self, size: int) -> bytes:
        """Return the next SIZE bytes, fewer only at the end of the tar."""
        end = self._position + size
        if end <= len(self._chunk):
            data = bytes(self._chunk[self._position : end])
            self._position = end
            return data
        parts = [bytes(self._chunk[self._position :])]
        missing = size - len(parts[0])
        while missing > 0 and self._advance():
            part = bytes(self._chunk[:missing])
            self._position = len(part)
            missing -= len(part)
            parts.append(part)
        return b"".join(parts)

    def skip_to(self, offset: int) -> None:
        """Move forward to OFFSET, as tarfile seeks to the next header.

        Raises tarfile.ReadError when the tar ends before OFFSET, as tarfile does.
        """
        while offset > self._start + len(self._chunk):
            if not self._advance():
                raise tarfile.ReadError("unexpected end of data")
        self._position = max(self._position, offset - self._start)

    def xxh3_128(self, size: int) -> bytes:
        """Return the XXH3-128 digest of the next SIZE bytes, read without copying
        them.

        Raises tarfile.ReadError when the tar ends first, as tarfile's extractfile
        does.
        """
        end = self._position + size
        if end <= len(self._chunk):
            digest = xxhash.xxh3_128_digest(self._view[self._position : end])
            self._position = end
            return digest
        hasher = xxhash.xxh3_128()
        while size > 0:
            if self._position == len(self._chunk) and not self._advance():
                raise tarfile.ReadError("unexpected end of data")
            end = min(len(self._chunk), self._position + size)
            hasher.update(self._view[self._position : end])
            size -= end - self._position
            self._position = end
        return hasher.digest()

    def drain(self) -> None:
        """Read the rest of the tar, which belongs to the diff_id too."""
        while self._advance():
            pass


class _HeaderSource(Protocol):
    def read(self, size: int, /) -> bytes: ...

    def tell(self) -> int: ...


class _TarFileShim:
    """The attributes of a tarfile.TarFile that TarInfo.fromtarfile reads and sets.

    NOTE: the attribute list is the one that tarfile of Python 3.11.7 uses. A later
    tarfile that reads another attribute raises AttributeError here.
    """

    def __init__(self, stream: _TarStream) -> None:
        self.stream = stream
        self.fileobj: _HeaderSource = stream
        self.encoding = _ENCODING
        self.errors = _ERRORS
        # Global PAX headers, which tarfile applies to every later member.
        self.pax_headers: dict[str, str] = {}
        # Offset of the next header, which tarfile sets after each member.
        self.offset = 0


# Tar headers.


# Name, then mode, uid and gid as one field, size, mtime, checksum, type flag, link
# name, (magic and version), user and group name as one field, device major and
# minor as one field, prefix, (padding).
_adler32 = zlib.adler32
_HEADER_FIELDS = struct.Struct("100s24s12s12s8s1s100s8x64s16s155s12x")
# Most members of a layer share their mode, owner and device fields, so their
# values are kept by the raw bytes of those fields, up to this many of each.
_FIELD_CACHE_ENTRIES = 4096
_NUMBERS_BY_FIELDS: dict[bytes, tuple[int, ...]] = {}
_OWNER_NAMES_BY_FIELDS: dict[bytes, tuple[str, str]] = {}


def _numbers(fields: bytes) -> tuple[int, ...]:
    """Return the octal numbers of the 8-byte FIELDS, each read up to its first NUL
    as TarInfo.frombuf reads it. Raises ValueError for an invalid number."""
    numbers = _NUMBERS_BY_FIELDS.get(fields)
    if numbers is None:
        numbers = tuple(
            int(fields[start : start + 8].partition(b"\0")[0] or b"0", 8)
            for start in range(0, len(fields), 8)
        )
        if len(_NUMBERS_BY_FIELDS) < _FIELD_CACHE_ENTRIES:
            _NUMBERS_BY_FIELDS[fields] = numbers
    return numbers


def _owner_names(fields: bytes) -> tuple[str, str]:
    """Return the user and group names of the 64-byte FIELDS."""
    names = _OWNER_NAMES_BY_FIELDS.get(fields)
    if names is None:
        names = (
            fields[:32].partition(b"\0")[0].decode(_ENCODING, _ERRORS),
            fields[32:].partition(b"\0")[0].decode(_ENCODING, _ERRORS),
        )
        if len(_OWNER_NAMES_BY_FIELDS) < _FIELD_CACHE_ENTRIES:
            _OWNER_NAMES_BY_FIELDS[fields] = names
    return names


def _unsigned_checksum(header: bytes) -> int:
    """Return the sum of HEADER's bytes with the checksum field read as 8 spaces.

    The low 16 bits of an Adler-32 are 1 plus the byte sum modulo 65521, so each
    of the three spans, at most 200 bytes or 51 000 as a sum, yields its sum
    exactly. This takes 0.4 µs against 2 µs for sum() over the header.
    """
    return (
        (_adler32(header[:148]) & 0xFFFF)
        + (_adler32(header[156:356]) & 0xFFFF)
        + (_adler32(header[356:]) & 0xFFFF)
        # 8 spaces make 256, less the 1 that each of the 3 Adler-32 sums starts at.
        + 253
    )


def _parse_plain_header(header: bytes) -> tarfile.TarInfo | None:
    """Return the member of a plain ustar, GNU or v7 HEADER, as TarInfo.frombuf
    reads it, or None when tarfile must read the header itself.

    Like frombuf, this reads each field up to its first NUL. A number field then goes
    to int(), which fails wherever frombuf's reading could differ, for example for
    a base-256 number, and the header then goes to tarfile.
    """
    if len(header) != _BLOCK or header[156:157] not in _PLAIN_TYPES:
        return None
    (
        name, owner, size, mtime, checksum, type_flag, linkname, owner_names,
        devices, prefix,
    ) = _HEADER_FIELDS.unpack(header)  # fmt: skip
    try:
        stored_checksum = int(checksum.partition(b"\0")[0] or b"0", 8)
        if stored_checksum != _unsigned_checksum(header):
            return None
        member = tarfile.TarInfo()
        member.mode, member.uid, member.gid = _numbers(owner)
        member.size = int(size.partition(b"\0")[0] or b"0", 8)
        member.mtime = int(mtime.partition(b"\0")[0] or b"0", 8)
        member.devmajor, member.devminor = _numbers(devices)
    except ValueError:
        return None
    member.chksum = stored_checksum
    member.type = type_flag
    text = name.partition(b"\0")[0].decode(_ENCODING, _ERRORS)
    # Most members have neither a link name nor a prefix, so a field that starts
    # with NUL is read as "" without a partition and a decode.
    member.linkname = (
        linkname.partition(b"\0")[0].decode(_ENCODING, _ERRORS) if linkname[0] else ""
    )
    member.uname, member.gname = _owner_names(owner_names)
    prefix_text = (
        prefix.partition(b"\0")[0].decode(_ENCODING, _ERRORS) if prefix[0] else ""
    )
    # A v7 tar marks a directory with a trailing slash on a regular file.
    if type_flag == tarfile.AREGTYPE and text.endswith("/"):
        member.type = tarfile.DIRTYPE
    if member.type == tarfile.DIRTYPE:
        text = text.rstrip("/")
    if prefix_text:
        text = prefix_text + "/" + text
        if member.type == tarfile.DIRTYPE:
            text = text.rstrip("/")
    member.name = text
    return member


def _data_end(member: tarfile.TarInfo, data_offset: int) -> int:
    """Return the offset of the header after MEMBER, a plain member."""
    if member.type in _DATA_TYPES:
        return data_offset + -(-member.size // _BLOCK) * _BLOCK
    return data_offset


def _read_member(shim: _TarFileShim) -> tarfile.TarInfo | None:
    """Read the member at shim.offset and set shim.offset to the next header.

    Returns None at the end of the archive. Errors are those of tarfile's stream
    mode. An invalid, empty or cut-off first header raises tarfile.ReadError, while
    such a header later on ends the archive.
    """
    stream = shim.stream
    offset = shim.offset
    stream.skip_to(offset)
    try:
        header = stream.read(_BLOCK)
    except zlib.error as error:
        raise tarfile.ReadError(f"zlib error: {error}") from None
    member = None if shim.pax_headers else _parse_plain_header(header)
    if member is not None:
        member.offset = offset
        member.offset_data = offset + _BLOCK
        shim.offset = _data_end(member, member.offset_data)
        return member
    # tarfile reads this header again, from a stream that starts with it. Its first
    # read takes the whole header, so the stream is back in step after it.
    replay = _ReplayStream(header, stream)
    shim.fileobj = replay
    try:
        # fromtarfile reads only the attributes that the shim has.
        return tarfile.TarInfo.fromtarfile(shim)  # type: ignore[arg-type]
    except EOFHeaderError:
        return None
    except (InvalidHeaderError, EmptyHeaderError, TruncatedHeaderError) as error:
        if offset == 0:
            reason = "empty file" if isinstance(error, EmptyHeaderError) else str(error)
            raise tarfile.ReadError(reason) from None
        return None
    except SubsequentHeaderError as error:
        raise tarfile.ReadError(str(error)) from None
    except zlib.error as error:
        raise tarfile.ReadError(f"zlib error: {error}") from None
    finally:
        shim.fileobj = stream


class _ReplayStream:
    """STREAM with HEADER, already read from it, put back in front."""

    def __init__(self, header: bytes, stream: _TarStream) -> None:
        self._header = header
        self._stream = stream

    def read(self, size: int) -> bytes:
        if not self._header:
            return self._stream.read(size)
        data = self._header[:size]
        self._header = self._header[size:]
        if len(data) < size:
            data += self._stream.read(size - len(data))
        return data

    def tell(self) -> int:
        return self._stream.tell() - len(self._header)


def _members(stream: _TarStream) -> Iterator[tarfile.TarInfo]:
    """Yield the members of the tar in STREAM, skipping data that was not read."""
    shim = _TarFileShim(stream)
    while (member := _read_member(shim)) is not None:
        yield member


# Paths.


def _member_path(name: str) -> str:
    """Return normalize_member_path(NAME).

    For a name whose components are neither empty nor start with ".", normpath
    would only drop a trailing "/", so this drops it without calling normpath.
    """
    if name and name[0] not in "./" and "//" not in name and "/." not in name:
        return name[:-1] if name[-1] == "/" else name
    return normalize_member_path(name)


# The layer.


def _apply_members(
    stream: _TarStream,
    stack: FileSystemStack,
    layer_index: int,
    keep_entries: bool,
) -> list[LayerEntry]:
    entries: list[LayerEntry] = []
    append = entries.append
    apply = stack.apply
    for member in _members(stream):
        path = _member_path(member.name)
        if not keep_entries:
            apply(member, None, path)
            continue
        digest = None
        # TarInfo.isreg() without the method call.
        if member.type in _REGULAR_TYPES and member.sparse is None:
            digest = stream.xxh3_128(member.size)
        entry = make_entry(layer_index, path, member, digest)
        apply(member, entry, path)
        if path:
            append(entry)
    return entries


def _region_chunks(region: BlobRegion, pool: _BufferPool) -> Iterator[memoryview]:
    """Yield the bytes of REGION in buffers taken from POOL, read with os.preadv.

    Raises tarfile.ReadError when the file ends before the region does.
    """
    position = region.offset
    end = region.offset + region.size_bytes
    while position < end:
        buffer = pool.take()
        view = buffer[: min(len(buffer), end - position)]
        count = os.preadv(region.descriptor, [view], position)
        if count == 0:
            raise tarfile.ReadError("unexpected end of data")
        position += count
        yield view[:count]


def _is_plain(region: BlobRegion) -> bool:
    """Return whether REGION starts with neither the gzip nor the zstd magic."""
    head = os.pread(region.descriptor, len(ZSTD_MAGIC), region.offset)
    return not head.startswith(GZIP_MAGIC) and head != ZSTD_MAGIC


def _invalid_layer(error: BaseException, blob_name: str, archive: str) -> ImageInvalid:
    """Return the error of a layer that could not be read or applied."""
    if isinstance(error, PathEscapesRoot):
        return ImageInvalid(
            f"layer {blob_name!r} in {archive!r} has a path outside the root: "
            f"{error.args[0]!r}; the archive is unsafe to unpack, rebuild the image"
        )
    if isinstance(error, LookupError):
        return ImageInvalid(
            f"layer {blob_name!r} in {archive!r} has a hard link to a missing file "
            f"{error.args[0]!r}; rebuild or export the image again"
        )
    reason = str(error)
    # The gzip module's and zlib's own messages do not say what they decompressed.
    if isinstance(error, gzip.BadGzipFile | zlib.error | EOFError) or reason.startswith(
        "zlib error:"
    ):
        reason = f"its gzip stream is invalid ({reason})"
    elif isinstance(error, zstandard.ZstdError):
        reason = f"its zstd stream is invalid ({reason})"
    return ImageInvalid(
        f"layer {blob_name!r} in {archive!r} cannot be read: {reason}; the archive "
        "is truncated or corrupt, export the image again"
    )


# The errors of reading and applying a layer that _invalid_layer turns into
# ImageInvalid.
_LAYER_ERRORS = (
    PathEscapesRoot,
    LookupError,
    tarfile.TarError,
    OSError,
    EOFError,
    zlib.error,
    zstandard.ZstdError,
)


def _read_region(
    region: BlobRegion,
    digests: DigestWorker,
    stack: FileSystemStack,
    blob_name: str,
    archive: str,
    keep_entries: bool,
) -> LayerRead:
    """Apply the plain layer tar in REGION, while DIGESTS hashes the same bytes."""
    counts = stack.begin_layer()
    layer_index = len(stack.layers) - 1
    pending = digests.submit(region, blob_name, archive)
    pool = _BufferPool()
    stream = _TarStream(_region_chunks(region, pool), None, pool)
    try:
        entries = _apply_members(stream, stack, layer_index, keep_entries)
        # Zero blocks after the end-of-archive marker belong to the diff_id too.
        stream.drain()
    except _LAYER_ERRORS as error:
        raise _invalid_layer(error, blob_name, archive) from error
    return LayerRead(
        blob_bytes=region.size_bytes,
        tar_bytes=stream.bytes_total,
        counts=counts,
        entries=entries,
        digests=None,
        pending=pending,
    )


def read_layer(
    source: Readable,
    stack: FileSystemStack,
    blob_name: str,
    archive: str,
    keep_entries: bool = False,
    region: BlobRegion | None = None,
    digests: DigestWorker | None = None,
) -> LayerRead:
    """Apply the layer tar read from SOURCE to STACK as its next layer.

    With KEEP_ENTRIES, every member also gets a LayerEntry, and the content of each
    regular file that is not sparse is hashed with XXH3-128 as it streams past.
    REGION, when given, is where SOURCE's bytes lie in an open file. A plain blob
    there of at least one read is then read in place, and DIGESTS computes its
    digest in its own thread, which LayerRead.finish waits for.

    Raises ImageInvalid naming ARCHIVE and BLOB_NAME when the blob is not a readable
    (gzip, zstd or plain) tar, a member escapes the root or a hard link dangles.
    """
    if (
        region is not None
        and digests is not None
        and region.size_bytes >= _READ_BYTES
        and _is_plain(region)
    ):
        return _read_region(region, digests, stack, blob_name, archive, keep_entries)
    counts = stack.begin_layer()
    layer_index = len(stack.layers) - 1
    blob = _BlobReader(source)
    threaded: _ThreadedChunks | None = None
    pool = _BufferPool()
    try:
        decoding = _decoding(blob, pool)
        items = decoding.items
        if blob.bytes_read >= _READ_BYTES:
            threaded = _ThreadedChunks(items)
            SWITCH_INTERVAL.shorten()
            items = threaded
        chunks: Iterator[bytes | memoryview]
        if decoding.gzip:
            chunks = _check_gzip_trailers(items)
        else:
            # Only gzip yields trailers.
            chunks = (item for item in items if not isinstance(item, _GzipTrailer))
        # A plain blob is its own tar, so its blob digest is its diff_id.
        tar_digest = hashlib.sha256() if decoding.compressed else None
        stream = _TarStream(chunks, tar_digest, pool)
        entries = _apply_members(stream, stack, layer_index, keep_entries)
        # Zero blocks after the end-of-archive marker belong to the diff_id too.
        stream.drain()
    except _LAYER_ERRORS as error:
        raise _invalid_layer(error, blob_name, archive) from error
    finally:
        if threaded is not None:
            threaded.close()
            SWITCH_INTERVAL.restore()
    diff_id = (tar_digest if tar_digest is not None else blob.digest).hexdigest()
    return LayerRead(
        blob_bytes=blob.bytes_read,
        tar_bytes=stream.bytes_total,
        counts=counts,
        entries=entries,
        digests=("sha256:" + blob.digest.hexdigest(), "sha256:" + diff_id),
    )
