"""One reading of a container's counters, and the protocol that readers implement."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Sample:
    """Counters and gauges of one container at one instant.

    A field is None when the source does not expose it, never 0 in its place.
    """

    timestamp_seconds: float
    """Monotonic clock reading when the sample was taken, in seconds."""
    cpu_usage_seconds_total: float
    """Cumulative CPU time of all the container's processes, in seconds."""
    cpu_periods_total: int | None
    """Elapsed CFS enforcement periods, or None without a CPU quota or when hidden."""
    cpu_throttled_periods_total: int | None
    """CFS periods in which the container was throttled."""
    cpu_throttled_seconds_total: float | None
    """Total time the container was throttled, in seconds."""
    memory_usage_bytes: int | None
    """Memory charged to the cgroup, page cache included, in bytes."""
    memory_working_set_bytes: int | None
    """Usage minus inactive file cache (cAdvisor's definition), in bytes."""
    memory_limit_bytes: int | None
    """Memory limit in bytes, or None when the container is unlimited."""
    network_rx_bytes_total: int | None
    """Bytes received on all interfaces except loopback."""
    network_tx_bytes_total: int | None
    """Bytes sent on all interfaces except loopback."""
    pids: int | None
    """Number of processes and threads in the cgroup."""


class SampleReader(Protocol):
    """A source of samples for one container."""

    source: str
    """Source name: "cgroup-v1", "cgroup-v2" or "api"."""

    def read(self) -> Sample:
        """Take one sample.

        Raises ServiceNotReady when the container has exited, and another
        HyperlaneError when the source failed for a different reason.
        """
        ...
