"""One reading of a container's counters, and the protocol that readers implement.

Field names follow cAdvisor's Prometheus metrics (docs/storage/prometheus.md in
google/cadvisor) without the "container_" prefix, with the unit in the name.
docs/metrics.md maps every field to its cgroup v1 and v2 file, its stats API field
and its cAdvisor metric.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, kw_only=True)
class InterfaceCounters:
    """Counters of one network interface, as /proc/net/dev lists them."""

    name: str
    """Interface name, e.g. "eth0"."""
    receive_bytes: int | None
    receive_packets: int | None
    receive_errors: int | None
    receive_dropped: int | None
    transmit_bytes: int | None
    transmit_packets: int | None
    transmit_errors: int | None
    transmit_dropped: int | None


@dataclass(frozen=True, kw_only=True)
class DeviceCounters:
    """Block I/O counters of one device, identified by its major:minor numbers."""

    major: int
    minor: int
    read_bytes: int | None
    write_bytes: int | None
    read_operations: int | None
    write_operations: int | None


# The kernel reports "no limit" on cgroup v1 as a page-aligned value near 2**63.
UNLIMITED_FLOOR_BYTES = 2**62


@dataclass(frozen=True, kw_only=True)
class Sample:
    """Counters and gauges of one container at one instant.

    A field is None when the source or the kernel does not expose that figure,
    never 0 in its place. Fields ending in _total are counters, which grow while
    the container runs and restart from 0 in a new cgroup. The one exception is
    cpu_user_seconds_total from Podman's API, which Podman computes as total minus
    kernel time, so it can drop by up to one USER_HZ tick.
    """

    timestamp_seconds: float
    """Monotonic clock reading when the sample was taken, in seconds."""

    cpu_usage_seconds_total: float
    """CPU time used by all the container's tasks, in seconds."""
    cpu_user_seconds_total: float | None
    """CPU time spent in user mode, in seconds (USER_HZ ticks on cgroup v1)."""
    cpu_system_seconds_total: float | None
    """CPU time spent in kernel mode, in seconds (USER_HZ ticks on cgroup v1)."""
    cpu_cfs_periods_total: int | None
    """Elapsed CFS enforcement periods, or None when no CPU quota is set."""
    cpu_cfs_throttled_periods_total: int | None
    """CFS periods in which the container used up its quota and was throttled."""
    cpu_cfs_throttled_seconds_total: float | None
    """Time the container's tasks spent throttled, in seconds."""
    cpu_pressure_some_seconds_total: float | None
    """PSI time in which at least one task waited for a CPU, in seconds."""
    cpu_pressure_full_seconds_total: float | None
    """PSI time in which all non-idle tasks waited for a CPU, in seconds."""

    memory_usage_bytes: int | None
    """Memory charged to the cgroup, page cache included, in bytes."""
    memory_working_set_bytes: int | None
    """Usage minus inactive file cache, floored at 0, in bytes.

    Shared memory (tmpfs, /dev/shm) sits on the anonymous LRU lists, so it stays
    in the working set.
    """
    memory_rss_bytes: int | None
    """Anonymous memory (heap, stacks), in bytes."""
    memory_cache_bytes: int | None
    """Page cache, tmpfs and shared memory included, in bytes."""
    memory_swap_bytes: int | None
    """Swap used by the container, in bytes."""
    memory_limit_bytes: int | None
    """Memory the container may use, in bytes.

    When memory_limit_set is False this is the host's MemTotal. It is None only
    when the source gives no limit and the host's memory is unknown.
    """
    memory_limit_set: bool | None
    """True when the cgroup's memory limit is at or below the host's MemTotal.

    False when no limit is set, or when the limit exceeds MemTotal and so can
    never be reached.
    """
    memory_oom_kills_total: int | None
    """Processes of the cgroup that the OOM killer killed."""
    memory_oom_events_total: int | None
    """Times the cgroup hit its limit and an allocation was about to fail."""
    memory_under_oom: bool | None
    """True while the cgroup is under OOM with the OOM killer disabled (v1 only)."""
    memory_pressure_some_seconds_total: float | None
    """PSI time in which at least one task stalled on memory, in seconds."""
    memory_pressure_full_seconds_total: float | None
    """PSI time in which all non-idle tasks stalled on memory, in seconds."""

    block_io_read_bytes_total: int | None
    """Bytes read from block devices, summed over the devices."""
    block_io_write_bytes_total: int | None
    """Bytes written to block devices, summed over the devices."""
    block_io_read_operations_total: int | None
    """Read operations completed on block devices."""
    block_io_write_operations_total: int | None
    """Write operations completed on block devices."""
    io_pressure_some_seconds_total: float | None
    """PSI time in which at least one task stalled on I/O, in seconds."""
    io_pressure_full_seconds_total: float | None
    """PSI time in which all non-idle tasks stalled on I/O, in seconds."""

    network_receive_bytes_total: int | None
    """Bytes received, summed over the interfaces except lo."""
    network_receive_packets_total: int | None
    """Packets received, summed over the interfaces except lo."""
    network_receive_errors_total: int | None
    """Receive errors, summed over the interfaces except lo."""
    network_receive_packets_dropped_total: int | None
    """Received packets dropped, summed over the interfaces except lo."""
    network_transmit_bytes_total: int | None
    """Bytes sent, summed over the interfaces except lo."""
    network_transmit_packets_total: int | None
    """Packets sent, summed over the interfaces except lo."""
    network_transmit_errors_total: int | None
    """Transmit errors, summed over the interfaces except lo."""
    network_transmit_packets_dropped_total: int | None
    """Packets dropped while sending, summed over the interfaces except lo."""

    processes: int | None
    """Processes in the container's own cgroup (lines of cgroup.procs)."""
    threads: int | None
    """Tasks (threads) in the cgroup and its descendants (pids.current)."""

    network_interfaces: tuple[InterfaceCounters, ...] | None = None
    """Counters per interface except lo, in the source's order.

    The network_* totals are their sums. None when the source lists no
    interfaces, and an empty tuple for a namespace with only lo.
    """
    block_devices: tuple[DeviceCounters, ...] | None = None
    """Counters per block device, ordered by major:minor.

    The block_io_* totals are their sums. None when the source gives no
    per-device figures, and an empty tuple before the first I/O.
    """


def resolve_memory_limit(
    limit_bytes: int | None, host_memory_bytes: int | None
) -> tuple[int | None, bool]:
    """Return (memory_limit_bytes, memory_limit_set) for a cgroup's memory limit.

    limit_bytes None means that no limit is set ("max" on cgroup v2). A limit of
    UNLIMITED_FLOOR_BYTES or more, or one above host_memory_bytes, can never be
    reached and counts as no limit. Without a limit the host's memory is the
    limit, or None when host_memory_bytes is unknown.
    """
    if (
        limit_bytes is None
        or limit_bytes >= UNLIMITED_FLOOR_BYTES
        or (host_memory_bytes is not None and limit_bytes > host_memory_bytes)
    ):
        return host_memory_bytes, False
    return limit_bytes, True


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
