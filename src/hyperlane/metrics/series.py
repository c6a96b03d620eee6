"""A series of samples and its summary: rates, deltas and percentiles."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, TypeVar

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
    """Memory limit at the last sample that reported one, in bytes."""
    network_rx_bytes: int | None
    """Bytes received over the series."""
    network_tx_bytes: int | None
    """Bytes sent over the series."""

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

    def cpu_cores(self) -> list[float]:
        """Return the CPU cores used in each interval between consecutive samples.

        Each value is delta CPU seconds / delta seconds, with a counter drop read as
        a reset, so the list has one value fewer than there are samples. An interval
        with no elapsed time gives 0.
        """
        cores = []
        for previous, current in itertools.pairwise(self.samples):
            elapsed = current.timestamp_seconds - previous.timestamp_seconds
            used = counter_increase(
                [previous.cpu_usage_seconds_total, current.cpu_usage_seconds_total]
            )
            cores.append(used / elapsed if used is not None and elapsed > 0 else 0.0)
        return cores

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
            s.memory_limit_bytes for s in samples if s.memory_limit_bytes is not None
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
            cpu_periods=counter_increase([s.cpu_periods_total for s in samples]),
            cpu_throttled_periods=counter_increase(
                [s.cpu_throttled_periods_total for s in samples]
            ),
            cpu_throttled_seconds=counter_increase(
                [s.cpu_throttled_seconds_total for s in samples]
            ),
            memory_working_set_max_bytes=max(working_sets, default=None),
            memory_working_set_p95_bytes=nearest_rank(working_sets, 95),
            memory_limit_bytes=limits[-1] if limits else None,
            network_rx_bytes=counter_increase(
                [s.network_rx_bytes_total for s in samples]
            ),
            network_tx_bytes=counter_increase(
                [s.network_tx_bytes_total for s in samples]
            ),
        )
