"""The usage figures that every sizing strategy reads, from a series of Samples."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from hyperlane.metrics.sample import Sample
from hyperlane.metrics.series import counter_increase, series_rates


@dataclass(frozen=True)
class CpuReading:
    """CPU cores used over one interval between two consecutive samples."""

    end_seconds: float
    """Monotonic timestamp of the sample that ends the interval, in seconds."""
    interval_seconds: float
    cores: float
    throttled_cores: float | None
    """Throttled seconds per second over the interval, or None without CFS data."""


@dataclass(frozen=True)
class MemoryReading:
    """Working set at one sample."""

    timestamp_seconds: float
    working_set_bytes: int


@dataclass(frozen=True)
class OomKill:
    """An increase of memory_oom_kills_total between two samples."""

    timestamp_seconds: float
    """Timestamp of the first sample that shows the increase, in seconds."""
    kills: int
    limit_in_force_bytes: int | None
    """Memory limit at the sample before the increase, or None when none was set."""


@dataclass(frozen=True)
class ContainerUsage:
    """CPU readings, memory readings and OOM kills of one container."""

    name: str
    samples: int
    history_seconds: float
    """Time from the first to the last sample, in seconds."""
    cpu: tuple[CpuReading, ...]
    memory: tuple[MemoryReading, ...]
    oom_kills: tuple[OomKill, ...]
    memory_measure: str
    """Name of the memory measure: "working set", or total usage without one."""
    cfs_periods: int | None
    cfs_throttled_periods: int | None
    cpu_limit_cores: float | None
    """CPU quota in force, in cores, or None when none is known."""

    @property
    def cpu_cores(self) -> list[float]:
        """CPU cores used in each interval, in the order measured."""
        return [reading.cores for reading in self.cpu]

    @property
    def memory_bytes(self) -> list[int]:
        """Memory readings in bytes, in the order measured."""
        return [reading.working_set_bytes for reading in self.memory]

    @property
    def oom_limit_in_force_bytes(self) -> int | None:
        """Largest memory limit in force at an OOM kill, or None when none is known."""
        limits = [
            kill.limit_in_force_bytes
            for kill in self.oom_kills
            if kill.limit_in_force_bytes is not None
        ]
        return max(limits, default=None)


def usage_from_samples(
    name: str, samples: Sequence[Sample], cpu_limit_cores: float | None = None
) -> ContainerUsage:
    """Extract the CPU, memory and OOM figures of one container's samples.

    The samples must be in the order taken. The memory readings are the working
    set, or the total memory usage when no sample has a working set (Podman's
    stats API), which memory_measure then states.
    """
    cpu: list[CpuReading] = []
    rates_by_sample = series_rates(samples)
    for index in range(1, len(samples)):
        previous = samples[index - 1]
        current = samples[index]
        rates = rates_by_sample[index]
        if rates.cpu_cores is None or rates.interval_seconds is None:
            continue
        throttled_cores = None
        if (
            previous.cpu_cfs_throttled_seconds_total is not None
            and current.cpu_cfs_throttled_seconds_total is not None
            and current.cpu_cfs_throttled_seconds_total
            >= previous.cpu_cfs_throttled_seconds_total
        ):
            throttled_cores = (
                current.cpu_cfs_throttled_seconds_total
                - previous.cpu_cfs_throttled_seconds_total
            ) / rates.interval_seconds
        cpu.append(
            CpuReading(
                end_seconds=current.timestamp_seconds,
                interval_seconds=rates.interval_seconds,
                cores=rates.cpu_cores,
                throttled_cores=throttled_cores,
            )
        )

    memory = [
        MemoryReading(sample.timestamp_seconds, sample.memory_working_set_bytes)
        for sample in samples
        if sample.memory_working_set_bytes is not None
    ]
    memory_measure = "working set"
    if not memory:
        memory = [
            MemoryReading(sample.timestamp_seconds, sample.memory_usage_bytes)
            for sample in samples
            if sample.memory_usage_bytes is not None
        ]
        if memory:
            memory_measure = "memory usage (page cache included; no working set)"

    history_seconds = 0.0
    if len(samples) >= 2:
        history_seconds = samples[-1].timestamp_seconds - samples[0].timestamp_seconds
    return ContainerUsage(
        name=name,
        samples=len(samples),
        history_seconds=history_seconds,
        cpu=tuple(cpu),
        memory=tuple(memory),
        oom_kills=tuple(_oom_kills(samples)),
        memory_measure=memory_measure,
        cfs_periods=counter_increase([s.cpu_cfs_periods_total for s in samples]),
        cfs_throttled_periods=counter_increase(
            [s.cpu_cfs_throttled_periods_total for s in samples]
        ),
        cpu_limit_cores=cpu_limit_cores,
    )


def _oom_kills(samples: Sequence[Sample]) -> list[OomKill]:
    kills = []
    previous: Sample | None = None
    for sample in samples:
        current_total = sample.memory_oom_kills_total
        if previous is not None and current_total is not None:
            previous_total = previous.memory_oom_kills_total
            # A drop is a counter reset in a new cgroup, so the new value counts.
            if previous_total is None:
                increase = 0
            elif current_total >= previous_total:
                increase = current_total - previous_total
            else:
                increase = current_total
            if increase > 0:
                kills.append(
                    OomKill(
                        timestamp_seconds=sample.timestamp_seconds,
                        kills=increase,
                        limit_in_force_bytes=_limit_in_force(previous, sample),
                    )
                )
        previous = sample
    return kills


def _limit_in_force(previous: Sample, current: Sample) -> int | None:
    """Return the memory limit that was set when the kill happened, if any."""
    for sample in (previous, current):
        if sample.memory_limit_set is not False and sample.memory_limit_bytes:
            return sample.memory_limit_bytes
    return None
