import itertools
import threading
import time
from dataclasses import replace

import pytest

from hyperlane.errors import ServiceNotReady, UsageError
from hyperlane.metrics import Sample, Sampler
from tests.unit.metrics.fakes import BASE

INTERVAL_SECONDS = 0.02


class CountingReader:
    """A reader whose CPU counter is the number of reads so far.

    It raises ServiceNotReady from read number exit_after + 1 on, and UsageError on
    the reads listed in fail_on.
    """

    source = "fake"

    def __init__(
        self, exit_after: int | None = None, fail_on: tuple[int, ...] = ()
    ) -> None:
        self.reads = 0
        self.threads: set[str] = set()
        self._exit_after = exit_after
        self._fail_on = fail_on

    def read(self) -> Sample:
        self.reads += 1
        self.threads.add(threading.current_thread().name)
        if self._exit_after is not None and self.reads > self._exit_after:
            raise ServiceNotReady("container 'fake' has exited")
        if self.reads in self._fail_on:
            raise UsageError("cannot read 'fake'")
        return replace(
            BASE,
            timestamp_seconds=time.monotonic(),
            cpu_usage_seconds_total=float(self.reads),
        )


def test_sampler_collects_series() -> None:
    reader = CountingReader()
    sampler = Sampler(reader, INTERVAL_SECONDS)
    sampler.start()
    assert reader.reads == 1
    time.sleep(15 * INTERVAL_SECONDS)
    series = sampler.stop()
    assert series.source == "fake"
    assert series.interval_seconds == INTERVAL_SECONDS
    assert series.failed_reads == 0
    assert len(series.samples) >= 4
    # stop()'s final read may replace the thread's last sample.
    assert len(series.samples) >= reader.reads - 1
    assert len(series.samples) <= reader.reads
    assert "hyperlane-metrics-sampler" in reader.threads


def test_sampler_final_sample() -> None:
    reader = CountingReader()
    sampler = Sampler(reader, interval_seconds=60.0)
    sampler.start()
    series = sampler.stop()
    counters = [sample.cpu_usage_seconds_total for sample in series.samples]
    assert counters == [1.0, 2.0]


class ScriptedClockReader(CountingReader):
    """A CountingReader whose timestamps come from a list instead of the clock."""

    def __init__(self, timestamps: list[float]) -> None:
        super().__init__()
        self._timestamps = timestamps

    def read(self) -> Sample:
        sample = super().read()
        return replace(sample, timestamp_seconds=self._timestamps[self.reads - 1])


def test_sampler_final_replaces_recent() -> None:
    # start() reads at 0.0, the thread at 0.05 and 0.10, and stop() 0.01 s later,
    # less than half of the 0.05 s interval.
    reader = ScriptedClockReader([0.0, 0.05, 0.10, 0.11])
    sampler = Sampler(reader, interval_seconds=0.05, max_samples=3)
    sampler.start()
    time.sleep(0.3)
    samples = sampler.stop().samples
    assert [s.timestamp_seconds for s in samples] == [0.0, 0.05, 0.11]
    assert [s.cpu_usage_seconds_total for s in samples] == [1.0, 2.0, 4.0]


def test_sampler_final_keeps_old() -> None:
    reader = ScriptedClockReader([0.0, 0.05, 0.10, 0.13])
    sampler = Sampler(reader, interval_seconds=0.05, max_samples=3)
    sampler.start()
    time.sleep(0.3)
    samples = sampler.stop().samples
    assert [s.timestamp_seconds for s in samples] == [0.0, 0.05, 0.10, 0.13]


def test_sampler_spacing() -> None:
    sampler = Sampler(CountingReader(), INTERVAL_SECONDS)
    sampler.start()
    time.sleep(8 * INTERVAL_SECONDS)
    samples = sampler.stop().samples
    gaps = [
        b.timestamp_seconds - a.timestamp_seconds
        for a, b in itertools.pairwise(samples)
    ]
    assert min(gaps) >= INTERVAL_SECONDS / 2


def test_sampler_container_exit() -> None:
    reader = CountingReader(exit_after=3)
    sampler = Sampler(reader, INTERVAL_SECONDS)
    sampler.start()
    time.sleep(10 * INTERVAL_SECONDS)
    series = sampler.stop()
    assert len(series.samples) == 3
    assert series.failed_reads == 1
    # No read after the one that reported the exit, including stop()'s final one.
    assert reader.reads == 4


def test_sampler_transient_failure() -> None:
    reader = CountingReader(fail_on=(2,))
    sampler = Sampler(reader, INTERVAL_SECONDS)
    sampler.start()
    time.sleep(8 * INTERVAL_SECONDS)
    series = sampler.stop()
    counters = [sample.cpu_usage_seconds_total for sample in series.samples]
    assert series.failed_reads == 1
    assert counters[:2] == [1.0, 3.0]


def test_sampler_failed_final_read() -> None:
    reader = CountingReader(exit_after=1)
    sampler = Sampler(reader, interval_seconds=60.0)
    sampler.start()
    series = sampler.stop()
    assert len(series.samples) == 1
    assert series.failed_reads == 1


def test_sampler_first_read_raises() -> None:
    sampler = Sampler(CountingReader(exit_after=0), INTERVAL_SECONDS)
    with pytest.raises(ServiceNotReady):
        sampler.start()


def test_sampler_max_samples() -> None:
    reader = CountingReader()
    sampler = Sampler(reader, INTERVAL_SECONDS, max_samples=3)
    sampler.start()
    time.sleep(10 * INTERVAL_SECONDS)
    series = sampler.stop()
    # Three from the thread's cap, then the final sample from stop().
    assert len(series.samples) == 4


@pytest.mark.parametrize("interval", [0.0, -1.0, float("nan"), float("inf")])
def test_sampler_invalid_interval(interval: float) -> None:
    with pytest.raises(UsageError, match="interval"):
        Sampler(CountingReader(), interval)


def test_sampler_invalid_max_samples() -> None:
    with pytest.raises(UsageError, match="max_samples"):
        Sampler(CountingReader(), max_samples=1)


def test_sampler_call_order() -> None:
    sampler = Sampler(CountingReader(), INTERVAL_SECONDS)
    with pytest.raises(UsageError, match="before start"):
        sampler.stop()
    sampler.start()
    with pytest.raises(UsageError, match="already called"):
        sampler.start()
    sampler.stop()
    with pytest.raises(UsageError, match="already called"):
        sampler.stop()
