"""Background sampling of one container while the caller runs a load."""

from __future__ import annotations

import logging
import math
import threading
import time

from hyperlane.errors import HyperlaneError, ServiceNotReady, UsageError
from hyperlane.metrics.sample import Sample, SampleReader
from hyperlane.metrics.series import MetricsSeries

logger = logging.getLogger(__name__)

# One hour of samples at the default 0.5 s interval.
DEFAULT_MAX_SAMPLES = 7200


class Sampler:
    """Collect samples from a reader on a background thread at a fixed interval.

    start() takes the first sample in the caller's thread, so the series begins
    before anything the caller does next. stop() takes the final sample, which
    replaces a background sample less than half an interval older than it,
    because a CPU rate over a few milliseconds reads anywhere from 0 to all cores
    under a CFS quota. The thread stops reading once the container has exited
    (the reader raised ServiceNotReady) or after max_samples samples.
    """

    def __init__(
        self,
        reader: SampleReader,
        interval_seconds: float = 0.5,
        max_samples: int = DEFAULT_MAX_SAMPLES,
    ) -> None:
        if not math.isfinite(interval_seconds) or interval_seconds <= 0:
            raise UsageError(
                f"invalid sampling interval {interval_seconds!r} s; pass a positive "
                f"number of seconds such as 0.5"
            )
        if max_samples < 2:
            raise UsageError(
                f"invalid max_samples {max_samples!r}; pass at least 2 so that the "
                f"series has a first and a last sample"
            )
        self._reader = reader
        self._interval_seconds = interval_seconds
        self._max_samples = max_samples
        self._samples: list[Sample] = []
        self._failed_reads = 0
        self._exited = False
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._series: MetricsSeries | None = None

    def start(self) -> None:
        """Take the first sample and start the background thread.

        Raises the reader's error when the first read fails, and UsageError when
        called twice.
        """
        if self._thread is not None:
            raise UsageError(
                "Sampler.start() was already called; create a new Sampler per run"
            )
        self._samples.append(self._reader.read())
        self._thread = threading.Thread(
            target=self._run, name="hyperlane-metrics-sampler", daemon=True
        )
        self._thread.start()
        logger.debug(
            "sampling %s every %s s", self._reader.source, self._interval_seconds
        )

    def stop(self) -> MetricsSeries:
        """Stop the thread, take a final sample and return the series.

        A failed final read is counted in failed_reads, not raised. Raises
        UsageError when start() was not called or stop() was called before.
        """
        if self._thread is None:
            raise UsageError("Sampler.stop() was called before start(); start first")
        if self._series is not None:
            raise UsageError("Sampler.stop() was already called; use its result")
        self._stopping.set()
        # NOTE: join() waits for a read in progress, which the engine client's own
        # request timeout bounds for the API reader.
        self._thread.join()
        if not self._exited:
            self._take_sample(final=True)
        self._series = MetricsSeries(
            source=self._reader.source,
            interval_seconds=self._interval_seconds,
            samples=tuple(self._samples),
            failed_reads=self._failed_reads,
        )
        logger.debug(
            "sampling %s stopped after %d samples and %d failed reads",
            self._reader.source,
            len(self._samples),
            self._failed_reads,
        )
        return self._series

    def _run(self) -> None:
        next_time = time.monotonic() + self._interval_seconds
        while len(self._samples) < self._max_samples:
            if self._stopping.wait(max(0.0, next_time - time.monotonic())):
                return
            if not self._take_sample():
                return
            next_time += self._interval_seconds
            # After a late wake-up or a slow read, restart the schedule instead of
            # reading in a burst, so samples stay at least half an interval apart.
            now = time.monotonic()
            if next_time - now < self._interval_seconds / 2:
                next_time = now + self._interval_seconds
        logger.warning(
            "sampling %s stopped at max_samples=%d; only stop() adds a sample now",
            self._reader.source,
            self._max_samples,
        )

    def _take_sample(self, final: bool = False) -> bool:
        """Append one sample, and return False when the container has exited."""
        try:
            sample = self._reader.read()
        except ServiceNotReady as error:
            self._failed_reads += 1
            self._exited = True
            logger.debug("sampling %s ended: %s", self._reader.source, error)
            return False
        except (HyperlaneError, OSError) as error:
            self._failed_reads += 1
            # The first failure is a warning, repeats would flood the log.
            level = logging.WARNING if self._failed_reads == 1 else logging.DEBUG
            logger.log(
                level,
                "sample read %d from %s failed: %s",
                self._failed_reads,
                self._reader.source,
                error,
            )
            return True
        if final and len(self._samples) >= 2:
            age = sample.timestamp_seconds - self._samples[-1].timestamp_seconds
            if age < self._interval_seconds / 2:
                self._samples[-1] = sample
                return True
        self._samples.append(sample)
        return True
