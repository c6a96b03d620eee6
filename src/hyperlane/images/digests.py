"""SHA-256 of plain layer blobs, computed by a thread of its own.

An uncompressed blob that lies in a file is read twice at the same time. Such a
blob is a ``layer.tar`` member of a docker-archive or a blob file of an OCI layout.
The tar parser reads it in the calling thread, and a digest thread reads and
hashes it. Unless a layer fails, the parser waits for no digest until every layer
is read and analysed. So it can go on to the next layer, and the analyses can start,
while the digest of the last blob is still being computed. hashlib and os.preadv
release the GIL, so the digest thread runs on a second core.
"""

from __future__ import annotations

import hashlib
import os
import queue
import sys
import tarfile
import threading
from dataclasses import dataclass

from hyperlane.errors import ImageInvalid

# Bytes per read of the digest thread. It takes the GIL once per read, so larger
# reads mean fewer waits for the parsing thread to hand it over.
_DIGEST_READ_BYTES = 4 << 20
# The GIL switch interval while a reading or digest thread runs. After each read
# and each hash update, which release the GIL, such a thread waits for the parsing
# thread to hand the GIL back, by default for up to 5 ms. On the tree archive of
# bench/image_vs_dive.py, 50 µs cut the reading thread's time from 1.1 s to 0.8 s.
_READING_SWITCH_INTERVAL_SECONDS = 50e-6


class SwitchInterval:
    """The process-wide GIL switch interval, shortened while any helper thread runs.

    Threads that shorten it at the same time share one shortening, so the interval
    from before the first is restored after the last.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._holders = 0
        self._saved_seconds = 0.0

    def shorten(self) -> None:
        with self._lock:
            if self._holders == 0:
                self._saved_seconds = sys.getswitchinterval()
                sys.setswitchinterval(
                    min(self._saved_seconds, _READING_SWITCH_INTERVAL_SECONDS)
                )
            self._holders += 1

    def restore(self) -> None:
        with self._lock:
            self._holders -= 1
            if self._holders == 0:
                sys.setswitchinterval(self._saved_seconds)


SWITCH_INTERVAL = SwitchInterval()


@dataclass(frozen=True)
class BlobRegion:
    """The bytes of a blob stored uncompressed in place inside an open file."""

    descriptor: int
    offset: int
    size_bytes: int


class PendingDigest:
    """The SHA-256 of one blob region, which the digest thread fills in."""

    def __init__(
        self, descriptor: int, region: BlobRegion, blob_name: str, archive: str
    ) -> None:
        # A duplicate of the region's descriptor, so that the caller may close its
        # own file before the digest is done. The digest thread closes it.
        self._descriptor = descriptor
        self._offset = region.offset
        self.size_bytes = region.size_bytes
        self._blob_name = blob_name
        self._archive = archive
        self._done = threading.Event()
        self._digest: str | None = None
        self._error: BaseException | None = None

    def compute(self, buffer: memoryview, cancelled: threading.Event) -> None:
        """Read and hash the region into BUFFER, then close the descriptor."""
        try:
            digest = hashlib.sha256()
            position = self._offset
            end = self._offset + self.size_bytes
            while position < end:
                if cancelled.is_set():
                    self._error = RuntimeError("the digest was cancelled")
                    return
                view = buffer[: min(len(buffer), end - position)]
                count = os.preadv(self._descriptor, [view], position)
                if count == 0:
                    # The file is shorter than its tar header or fstat reported,
                    # so it was cut while it was read.
                    raise tarfile.ReadError("unexpected end of data")
                digest.update(view[:count])
                position += count
            self._digest = "sha256:" + digest.hexdigest()
        except (OSError, tarfile.ReadError) as error:
            self._error = error
        finally:
            os.close(self._descriptor)
            self._done.set()

    def wait(self) -> str:
        """Return "sha256:..." of the region once it is computed.

        Raises ImageInvalid naming the blob when it could not be read to its end.
        """
        self._done.wait()
        if self._digest is None:
            raise ImageInvalid(
                f"layer {self._blob_name!r} in {self._archive!r} cannot be read: "
                f"{self._error}; the archive is truncated or corrupt, export the "
                "image again"
            )
        return self._digest


class DigestWorker:
    """One thread that computes the digests of the regions submitted, in order.

    Use it as a context manager: leaving the block cancels the digests not yet
    computed and waits for the thread.
    """

    def __init__(self) -> None:
        self._pending: queue.SimpleQueue[PendingDigest | None] = queue.SimpleQueue()
        self._cancelled = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> DigestWorker:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def submit(self, region: BlobRegion, blob_name: str, archive: str) -> PendingDigest:
        """Queue the SHA-256 of REGION, the blob BLOB_NAME of ARCHIVE."""
        pending = PendingDigest(os.dup(region.descriptor), region, blob_name, archive)
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name="hyperlane-blob-digest", daemon=True
            )
            SWITCH_INTERVAL.shorten()
            self._thread.start()
        self._pending.put(pending)
        return pending

    def _run(self) -> None:
        buffer = memoryview(bytearray(_DIGEST_READ_BYTES))
        while (pending := self._pending.get()) is not None:
            pending.compute(buffer, self._cancelled)

    def close(self) -> None:
        """Cancel the digests not yet computed and wait for the thread to end."""
        if self._thread is None:
            return
        self._cancelled.set()
        self._pending.put(None)
        self._thread.join()
        self._thread = None
        SWITCH_INTERVAL.restore()
