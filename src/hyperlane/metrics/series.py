"""A series of samples and its summary: rates, deltas and percentiles."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, TypeVar

from hyperlane.errors import UsageError
from hyperlane.metrics.sample import Sample

Number = TypeVar("Number", int, float)


def nearest_rank(values: Sequence[Number], percent: float) -> Number | None:
    """Return the nearest-rank percentile: the ceil(percent/100 * n)-th smallest value.

    Returns None for no values. percent 0 returns the minimum.
    """
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(percent / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def counter_increase(values: Sequence[Number | None]) -> Number | None:
    """Sum a counter's increases, skipping None and treating a drop as a reset to 0.

    After a reset the counter restarted from zero, so its current value is the
    increase since the previous reading. Returns None with fewer than two values.
    """
    present = [value for value in values if value is not None]
    if len(present) < 2:
        return None
    total = present[0] - present[0]
    for previous, current in itertools.pairwise(present):
        total += current - previous if current >= previous else current
    return total


@dataclass(frozen=True)
class SampleRates:
    """Per-second rates of one container over the interval that ends at a sample.

    A rate is None (unknown) for the first sample, which has no baseline. It is
    also None when either sample lacks the counter, when the counter went
    backwards, or when no time elapsed. It is never 0 or a lifetime average in
    place of an unknown value.
    """

    timestamp_seconds: float
    """Monotonic timestamp of the sample that ends the interval, in seconds."""
    interval_seconds: float | None
    """Time since the previous sample in seconds, or None for the first sample."""
    counter_reset: bool
    """True when the CPU usage counter went backwards, so every rate is None.

    The container restarted in a new cgroup, and the current sample is the
    baseline of the next interval.
    """
    cpu_cores: float | None
    """CPU seconds used per second, so 1.0 is one fully used core."""
    cpu_cfs_throttled_periods_ratio: float | None
    """Throttled CFS periods divided by elapsed CFS periods, from 0 to 1.

    None when no CFS period elapsed (an idle container) or no quota is set.
    """
    network_receive_bytes_per_second: float | None
    """Bytes received per second."""
    network_transmit_bytes_per_second: float | None
    """Bytes sent per second."""
    block_io_read_bytes_per_second: float | None
    """Bytes read from block devices per second."""
    block_io_write_bytes_per_second: float | None
    """Bytes written to block devices per second."""


def compute_rates(previous: Sample | None, current: Sample) -> SampleRates:
    """Compute the per-second rates between two samples of one container.

    previous is None for the first sample, and then every rate is None. Raises
    UsageError when current is older than previous, because the timestamps come
    from one monotonic clock and only grow.
    """
    if previous is None:
        return _unknown_rates(current, interval_seconds=None, counter_reset=False)
    elapsed = current.timestamp_seconds - previous.timestamp_seconds
    if elapsed < 0:
        raise UsageError(
            f"sample at {current.timestamp_seconds!r} s is older than the previous "
            f"one at {previous.timestamp_seconds!r} s; pass the samples of one "
            f"container in the order taken"
        )
    if current.cpu_usage_seconds_total < previous.cpu_usage_seconds_total:
        return _unknown_rates(current, interval_seconds=elapsed, counter_reset=True)
    if elapsed == 0:
        return _unknown_rates(current, interval_seconds=elapsed, counter_reset=False)

    periods = _delta(previous.cpu_cfs_periods_total, current.cpu_cfs_periods_total)
    throttled = _delta(
        previous.cpu_cfs_throttled_periods_total,
        current.cpu_cfs_throttled_periods_total,
    )
    throttled_ratio = None
    if periods and throttled is not None:
        throttled_ratio = throttled / periods
    return SampleRates(
        timestamp_seconds=current.timestamp_seconds,
        interval_seconds=elapsed,
        counter_reset=False,
        cpu_cores=(current.cpu_usage_seconds_total - previous.cpu_usage_seconds_total)
        / elapsed,
        cpu_cfs_throttled_periods_ratio=throttled_ratio,
        network_receive_bytes_per_second=_per_second(
            previous.network_receive_bytes_total,
            current.network_receive_bytes_total,
            elapsed,
        ),
        network_transmit_bytes_per_second=_per_second(
            previous.network_transmit_bytes_total,
            current.network_transmit_bytes_total,
            elapsed,
        ),
        block_io_read_bytes_per_second=_per_second(
            previous.block_io_read_bytes_total,
            current.block_io_read_bytes_total,
            elapsed,
        ),
        block_io_write_bytes_per_second=_per_second(
            previous.block_io_write_bytes_total,
            current.block_io_write_bytes_total,
            elapsed,
        ),
    )


def series_rates(samples: Sequence[Sample]) -> list[SampleRates]:
    """Return the rates ending at each sample, so the first entry is all None."""
    rates = []
    previous: Sample | None = None
    for sample in samples:
        rates.append(compute_rates(previous, sample))
        previous = sample
    return rates


def _unknown_rates(
    sample: Sample, interval_seconds: float | None, counter_reset: bool
) -> SampleRates:
    return SampleRates(
        timestamp_seconds=sample.timestamp_seconds,
        interval_seconds=interval_seconds,
        counter_reset=counter_reset,
        cpu_cores=None,
        cpu_cfs_throttled_periods_ratio=None,
        network_receive_bytes_per_second=None,
        network_transmit_bytes_per_second=None,
        block_io_read_bytes_per_second=None,
        block_io_write_bytes_per_second=None,
    )


def _delta(previous: int | None, current: int | None) -> int | None:
    """Return current - previous, or None when either is missing or it decreased."""
    if previous is None or current is None or current < previous:
        return None
    return current - previous


def _per_second(
    previous: int | None, current: int | None, elapsed: float
) -> float | None:
    delta = _delta(previous, current)
    return None if delta is None else delta / elapsed


@dataclass(frozen=True)
class MetricsSummary:
    """Figures over a whole series. A field is None where the source has no data."""

    source: str
    """Reader that produced the samples: "cgroup-v1", "cgroup-v2" or "api"."""
    samples: int
    """Number of samples in the series."""
    interval_seconds: float
    """Requested time between samples, in seconds."""
    duration_seconds: float
    """Time from the first to the last sample, in seconds (0 for one sample)."""
    cpu_seconds_total: float | None
    """CPU time used over the series, in seconds."""
    cpu_cores_mean: float | None
    """CPU seconds divided by the duration, in cores."""
    cpu_cores_p95: float | None
    """Nearest-rank 95th percentile of the per-interval CPU use, in cores."""
    cpu_cores_max: float | None
    """Maximum per-interval CPU use, in cores."""
    cpu_periods: int | None
    """CFS periods elapsed over the series."""
    cpu_throttled_periods: int | None
    """CFS periods in which the container was throttled over the series."""
    cpu_throttled_seconds: float | None
    """Time throttled over the series, in seconds."""
    memory_working_set_max_bytes: int | None
    """Maximum working set, in bytes."""
    memory_working_set_p95_bytes: int | None
    """Nearest-rank 95th percentile of the working set, in bytes."""
    memory_limit_bytes: int | None
    """Memory limit at the last sample where a limit is set, in bytes.

    None when no sample has memory_limit_set True, so an unlimited container
    never reports the host's memory here.
    """
    network_rx_bytes: int | None
    """Bytes received over the series."""
    network_tx_bytes: int | None
    """Bytes sent over the series."""
    memory_oom_kills: int | None
    """Processes killed by the OOM killer over the series."""
    block_io_read_bytes: int | None
    """Bytes read from block devices over the series."""
    block_io_write_bytes: int | None
    """Bytes written to block devices over the series."""

    def to_dict(self) -> dict[str, Any]:
        """Return the fields as a JSON-ready dict."""
        return asdict(self)


@dataclass(frozen=True)
class MetricsSeries:
    """Samples of one container taken at a fixed interval."""

    source: str
    """Reader that produced the samples: "cgroup-v1", "cgroup-v2" or "api"."""
    interval_seconds: float
    """Requested time between samples, in seconds."""
    samples: tuple[Sample, ...]
    """Samples in the order taken."""
    failed_reads: int
    """Reads that raised instead of returning a sample."""

    def rates(self) -> list[SampleRates]:
        """Return the rates ending at each sample, as series_rates() computes them."""
        return series_rates(self.samples)

    def cpu_cores(self) -> list[float]:
        """Return the CPU cores used in each interval between consecutive samples.

        Each value is delta CPU seconds / delta seconds. An interval whose rate
        is unknown (a counter reset or no elapsed time) is left out, so the list
        has at most one value fewer than there are samples.
        """
        return [rate.cpu_cores for rate in self.rates() if rate.cpu_cores is not None]

    def summary(self) -> MetricsSummary:
        """Compute the summary figures of the series."""
        samples = self.samples
        duration = 0.0
        if len(samples) >= 2:
            duration = samples[-1].timestamp_seconds - samples[0].timestamp_seconds

        cpu_seconds = counter_increase([s.cpu_usage_seconds_total for s in samples])
        cores = self.cpu_cores()
        cores_mean = None
        if cpu_seconds is not None and duration > 0:
            cores_mean = cpu_seconds / duration

        working_sets = [
            s.memory_working_set_bytes
            for s in samples
            if s.memory_working_set_bytes is not None
        ]
        limits = [
            s.memory_limit_bytes
            for s in samples
            if s.memory_limit_set and s.memory_limit_bytes is not None
        ]

        return MetricsSummary(
            source=self.source,
            samples=len(samples),
            interval_seconds=self.interval_seconds,
            duration_seconds=duration,
            cpu_seconds_total=cpu_seconds,
            cpu_cores_mean=cores_mean,
            cpu_cores_p95=nearest_rank(cores, 95),
            cpu_cores_max=max(cores, default=None),
            cpu_periods=counter_increase([s.cpu_cfs_periods_total for s in samples]),
            cpu_throttled_periods=counter_increase(
                [s.cpu_cfs_throttled_periods_total for s in samples]
            ),
            cpu_throttled_seconds=counter_increase(
                [s.cpu_cfs_throttled_seconds_total for s in samples]
            ),
            memory_working_set_max_bytes=max(working_sets, default=None),
            memory_working_set_p95_bytes=nearest_rank(working_sets, 95),
            memory_limit_bytes=limits[-1] if limits else None,
            network_rx_bytes=counter_increase(
                [s.network_receive_bytes_total for s in samples]
            ),
            network_tx_bytes=counter_increase(
                [s.network_transmit_bytes_total for s in samples]
            ),
            memory_oom_kills=counter_increase(
                [s.memory_oom_kills_total for s in samples]
            ),
            block_io_read_bytes=counter_increase(
                [s.block_io_read_bytes_total for s in samples]
            ),
            block_io_write_bytes=counter_increase(
                [s.block_io_write_bytes_total for s in samples]
            ),
        )
