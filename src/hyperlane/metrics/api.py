"""Read a container's counters from the engine's stats API (Docker or Podman)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

import docker.errors
from docker.models.containers import Container

from hyperlane.errors import EngineUnavailable, ServiceNotReady
from hyperlane.metrics.cgroup import (
    NO_NETWORK,
    BlockIoCounters,
    NetworkCounters,
    interface_counters,
    network_counters,
)
from hyperlane.metrics.sample import (
    UNLIMITED_FLOOR_BYTES,
    DeviceCounters,
    InterfaceCounters,
    Sample,
    resolve_memory_limit,
)

logger = logging.getLogger(__name__)

# Oldest reading, relative to the request, accepted from the "read" field: Docker's
# collector reads once a second, and a busy daemon can be late.
MAX_READING_AGE_SECONDS = 3.0

NANOSECONDS_PER_SECOND = 1_000_000_000
# Docker fills "read" with Go's zero time when the container is not running.
ZERO_TIME_PREFIX = "0001-01-01"


class ApiStatsReader:
    """Read one-shot stats of a docker-SDK Container.

    Podman 4.3 returns only usage and limit under memory_stats and zeros in
    throttling_data, so this reader reports those fields as None for Podman.
    Podman before 4.4 also swaps rx_bytes and tx_bytes, which this reader swaps back.
    An unlimited container's limit is MemTotal from the engine's /info, which is
    the memory of the engine's host, not of this one.
    """

    def __init__(
        self,
        container: Container,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.source = "api"
        self._wall_clock = wall_clock
        self._container = container
        self._clock = clock
        podman_version = _podman_version(container)
        self._throttling_exposed = podman_version is None
        self._network_swapped = podman_version is not None and podman_version < (4, 4)
        host_config: Mapping[str, Any] = container.attrs.get("HostConfig") or {}
        self._cpu_quota_set = _cpu_quota_set(host_config)
        self._memory_limited = _memory_limited(host_config)
        self._host_memory_bytes = _engine_memory_bytes(container)

    def read(self) -> Sample:
        """Take one sample. Raises ServiceNotReady when the container is not running."""
        before = self._clock()
        wall_before = self._wall_clock()
        try:
            # one_shot skips the engine's second reading for precpu_stats, which
            # costs Docker about a second per request.
            stats = self._container.stats(stream=False, one_shot=True)
        except (docker.errors.DockerException, OSError, ValueError) as error:
            # requests raises OSError subclasses for connection failures and a
            # ValueError subclass for a non-JSON body, which Podman sends once the
            # container has stopped.
            raise self._failure(error) from error
        after = self._clock()
        if not isinstance(stats, dict):
            raise EngineUnavailable(
                f"stats of container {self._container.name!r} returned "
                f"{type(stats).__name__!r}, expected a JSON object; check the engine"
            )
        return parse_api_stats(
            stats,
            timestamp_seconds=_reading_time(
                stats.get("read"), before, after, wall_before
            ),
            throttling_exposed=self._throttling_exposed,
            network_swapped=self._network_swapped,
            cpu_quota_set=self._cpu_quota_set,
            memory_limited=self._memory_limited,
            host_memory_bytes=self._host_memory_bytes,
        )

    def _failure(self, error: Exception) -> Exception:
        """Return ServiceNotReady when the container is gone, else EngineUnavailable."""
        name = self._container.name
        try:
            self._container.reload()
        except docker.errors.NotFound:
            return ServiceNotReady(
                f"container {name!r} no longer exists, so its stats cannot be read"
            )
        except (docker.errors.DockerException, OSError, ValueError) as reload_error:
            logger.debug("reloading container %s failed: %s", name, reload_error)
        else:
            if self._container.status != "running":
                return ServiceNotReady(
                    f"container {name!r} is {self._container.status!r}, not running, "
                    f"so its stats cannot be read; check its logs and exit code"
                )
        return EngineUnavailable(
            f"stats request for container {name!r} failed: {error}; check that the "
            f"engine is running"
        )


def _reading_time(
    read: object, before: float, after: float, wall_before: float
) -> float:
    """Return the monotonic time of the engine's reading, from its "read" field.

    Docker responds to a one-shot request with the latest reading of its stats
    collector, which runs once a second, so that reading can be up to a second
    older than the request. Stamping it with the request's own time put rates
    off by up to a third. BEFORE and AFTER are the monotonic clock around the
    request and WALL_BEFORE the wall clock at BEFORE. The midpoint of the request
    is the fallback for a missing, invalid or implausible "read" value.
    """
    midpoint = (before + after) / 2
    if not isinstance(read, str):
        return midpoint
    try:
        read_wall = datetime.fromisoformat(read).timestamp()
    except (ValueError, OverflowError):
        return midpoint
    estimate = before + (read_wall - wall_before)
    if before - MAX_READING_AGE_SECONDS <= estimate <= after:
        return estimate
    return midpoint


def parse_api_stats(
    stats: Mapping[str, Any],
    timestamp_seconds: float,
    throttling_exposed: bool = True,
    network_swapped: bool = False,
    cpu_quota_set: bool | None = None,
    memory_limited: bool | None = None,
    host_memory_bytes: int | None = None,
) -> Sample:
    """Convert one stats object of the Docker-compatible API into a Sample.

    network_swapped exchanges the receive and transmit counters for engines that
    report them the wrong way round. cpu_quota_set and memory_limited come from
    the container's HostConfig. When they are None (unknown), zero CFS periods
    read as "no quota", and a limit of 2**62 bytes or more, or one equal to
    host_memory_bytes, reads as "no limit". The API has no OOM counters, PSI
    totals or process count, so those fields are None.
    """
    if str(stats.get("read", "")).startswith(ZERO_TIME_PREFIX):
        raise ServiceNotReady(
            f"stats of container {stats.get('name')!r} are empty because it is not "
            f"running; check its logs and exit code"
        )
    cpu_ns = _get_int(stats, "cpu_stats", "cpu_usage", "total_usage")
    if cpu_ns is None:
        raise EngineUnavailable(
            f"stats of container {stats.get('name')!r} lack "
            f"cpu_stats.cpu_usage.total_usage; check the engine's stats API"
        )

    periods = throttled = None
    throttled_seconds = None
    if throttling_exposed:
        periods = _get_int(stats, "cpu_stats", "throttling_data", "periods")
        if cpu_quota_set is False or (cpu_quota_set is None and not periods):
            periods = None
        if periods is not None:
            throttled = _get_int(
                stats, "cpu_stats", "throttling_data", "throttled_periods"
            )
            throttled_seconds = _seconds(
                _get_int(stats, "cpu_stats", "throttling_data", "throttled_time")
            )

    memory = stats.get("memory_stats")
    if not isinstance(memory, Mapping):
        memory = {}
    usage_bytes = _get_int(memory, "usage")
    # v1 names the hierarchical figures total_*, and v2 names them after memory.stat.
    inactive = _first_int(memory, "total_inactive_file", "inactive_file")
    working_set = None
    if usage_bytes is not None and inactive is not None:
        working_set = max(0, usage_bytes - inactive)
    limit_bytes, limit_set = _memory_limit(
        _get_int(memory, "limit"), memory_limited, host_memory_bytes
    )

    network = _network_totals(stats.get("networks"))
    if network_swapped:
        network = _swap_directions(network)
    block_io = _block_io_totals(stats.get("blkio_stats"))
    return Sample(
        timestamp_seconds=timestamp_seconds,
        cpu_usage_seconds_total=cpu_ns / NANOSECONDS_PER_SECOND,
        cpu_user_seconds_total=_seconds(
            _get_int(stats, "cpu_stats", "cpu_usage", "usage_in_usermode")
        ),
        cpu_system_seconds_total=_seconds(
            _get_int(stats, "cpu_stats", "cpu_usage", "usage_in_kernelmode")
        ),
        cpu_cfs_periods_total=periods,
        cpu_cfs_throttled_periods_total=throttled,
        cpu_cfs_throttled_seconds_total=throttled_seconds,
        cpu_pressure_some_seconds_total=None,
        cpu_pressure_full_seconds_total=None,
        memory_usage_bytes=usage_bytes,
        memory_working_set_bytes=working_set,
        memory_rss_bytes=_first_int(memory, "total_rss", "rss", "anon"),
        memory_cache_bytes=_first_int(memory, "total_cache", "cache", "file"),
        memory_swap_bytes=_first_int(memory, "total_swap", "swap"),
        memory_limit_bytes=limit_bytes,
        memory_limit_set=limit_set,
        memory_oom_kills_total=None,
        memory_oom_events_total=None,
        memory_under_oom=None,
        memory_pressure_some_seconds_total=None,
        memory_pressure_full_seconds_total=None,
        block_io_read_bytes_total=block_io.read_bytes,
        block_io_write_bytes_total=block_io.write_bytes,
        block_io_read_operations_total=block_io.read_operations,
        block_io_write_operations_total=block_io.write_operations,
        io_pressure_some_seconds_total=None,
        io_pressure_full_seconds_total=None,
        network_receive_bytes_total=network.receive_bytes,
        network_receive_packets_total=network.receive_packets,
        network_receive_errors_total=network.receive_errors,
        network_receive_packets_dropped_total=network.receive_dropped,
        network_transmit_bytes_total=network.transmit_bytes,
        network_transmit_packets_total=network.transmit_packets,
        network_transmit_errors_total=network.transmit_errors,
        network_transmit_packets_dropped_total=network.transmit_dropped,
        network_interfaces=network.interfaces,
        block_devices=block_io.devices,
        processes=None,
        threads=_get_int(stats, "pids_stats", "current"),
    )


def online_cpu_count(cpu_stats: Mapping[str, Any]) -> int | None:
    """Return the number of online CPUs in a cpu_stats (or precpu_stats) object.

    Uses online_cpus, else the number of non-zero entries of
    cpu_usage.percpu_usage, because that list may have one zero entry for each
    possible but offline CPU. Returns None when neither gives a count.
    """
    online = _get_int(cpu_stats, "online_cpus")
    if online:
        return online
    usage = cpu_stats.get("cpu_usage")
    per_cpu = usage.get("percpu_usage") if isinstance(usage, Mapping) else None
    if not isinstance(per_cpu, list):
        return None
    used = sum(1 for value in per_cpu if isinstance(value, int) and value > 0)
    return used or None


def cpu_percent(
    cpu_stats: Mapping[str, Any], precpu_stats: Mapping[str, Any]
) -> float | None:
    """Compute the CPU percent between two cpu_stats objects, as `docker stats` does.

    The percent is (container CPU delta / host CPU delta) * online CPUs * 100,
    from cpu_usage.total_usage and system_cpu_usage, with the CPU count of
    online_cpu_count(cpu_stats). 100 % is one fully used CPU. Pass a stats
    object's cpu_stats and precpu_stats, or the cpu_stats of two one-shot reads.
    Returns None when a figure is missing, when the host counter did not
    advance, or when the container counter went backwards (a restart).
    """
    container_now = _get_int(cpu_stats, "cpu_usage", "total_usage")
    container_before = _get_int(precpu_stats, "cpu_usage", "total_usage")
    host_now = _get_int(cpu_stats, "system_cpu_usage")
    host_before = _get_int(precpu_stats, "system_cpu_usage")
    cpus = online_cpu_count(cpu_stats)
    if (
        container_now is None
        or container_before is None
        or host_now is None
        or host_before is None
        or cpus is None
    ):
        return None
    container_delta = container_now - container_before
    host_delta = host_now - host_before
    if host_delta <= 0 or container_delta < 0:
        return None
    return container_delta / host_delta * cpus * 100


def _memory_limit(
    limit_bytes: int | None,
    memory_limited: bool | None,
    host_memory_bytes: int | None,
) -> tuple[int | None, bool | None]:
    if limit_bytes is None:
        return None, None
    if memory_limited is False:
        # Docker reports the host's memory as the limit of an unlimited container.
        if host_memory_bytes is None and limit_bytes < UNLIMITED_FLOOR_BYTES:
            host_memory_bytes = limit_bytes
        return resolve_memory_limit(None, host_memory_bytes)
    if memory_limited is None and limit_bytes == host_memory_bytes:
        return resolve_memory_limit(None, host_memory_bytes)
    return resolve_memory_limit(limit_bytes, host_memory_bytes)


def _network_totals(networks: object) -> NetworkCounters:
    """Sum the counters over the interfaces, or all None without any interface.

    Podman 4.3 fills only rx_bytes and tx_bytes and leaves the packet, error and
    drop counters at 0. A direction with bytes but no packets therefore reports
    those three as None.
    """
    if not isinstance(networks, Mapping) or not networks:
        return NO_NETWORK
    keys = (
        "rx_bytes",
        "rx_packets",
        "rx_errors",
        "rx_dropped",
        "tx_bytes",
        "tx_packets",
        "tx_errors",
        "tx_dropped",
    )
    sums = dict.fromkeys(keys, 0)
    interfaces = []
    for name, interface in networks.items():
        if not isinstance(interface, Mapping):
            continue
        values = {key: _get_int(interface, key) or 0 for key in keys}
        for key in keys:
            sums[key] += values[key]
        counters = _without_unreported(values)
        interfaces.append(interface_counters(str(name), counters))
    return network_counters(_without_unreported(sums), tuple(interfaces))


def _without_unreported(values: Mapping[str, int]) -> list[int | None]:
    """Return the eight counters, None for those Podman 4.3 leaves at 0."""
    totals: dict[str, int | None] = dict(values)
    for direction in ("rx", "tx"):
        if values[f"{direction}_bytes"] > 0 and values[f"{direction}_packets"] == 0:
            for counter in ("packets", "errors", "dropped"):
                totals[f"{direction}_{counter}"] = None
    return list(totals.values())


def _swap_directions(network: NetworkCounters) -> NetworkCounters:
    interfaces = None
    if network.interfaces is not None:
        interfaces = tuple(
            InterfaceCounters(
                name=item.name,
                receive_bytes=item.transmit_bytes,
                receive_packets=item.transmit_packets,
                receive_errors=item.transmit_errors,
                receive_dropped=item.transmit_dropped,
                transmit_bytes=item.receive_bytes,
                transmit_packets=item.receive_packets,
                transmit_errors=item.receive_errors,
                transmit_dropped=item.receive_dropped,
            )
            for item in network.interfaces
        )
    return NetworkCounters(
        interfaces=interfaces,
        receive_bytes=network.transmit_bytes,
        receive_packets=network.transmit_packets,
        receive_errors=network.transmit_errors,
        receive_dropped=network.transmit_dropped,
        transmit_bytes=network.receive_bytes,
        transmit_packets=network.receive_packets,
        transmit_errors=network.receive_errors,
        transmit_dropped=network.receive_dropped,
    )


def _block_io_totals(blkio_stats: object) -> BlockIoCounters:
    """Sum the read and write entries of two blkio_stats lists over the devices.

    Bytes come from io_service_bytes_recursive and operations from
    io_serviced_recursive. Docker on v1 names the operations Read and Write
    (besides Sync, Async, Discard and Total), and on v2 read and write. An empty
    or null list gives None: Docker sends an empty list for a v1 cgroup whose
    devices have no throttle rule, and Podman 4.3 sends null operations.
    """
    if not isinstance(blkio_stats, Mapping):
        return BlockIoCounters(None, None, None, None)
    per_device: dict[tuple[int, int], dict[str, int]] = {}
    read_bytes, write_bytes = _sum_blkio_entries(
        blkio_stats.get("io_service_bytes_recursive"), "bytes", per_device
    )
    read_operations, write_operations = _sum_blkio_entries(
        blkio_stats.get("io_serviced_recursive"), "operations", per_device
    )
    devices = None
    if per_device:
        devices = tuple(
            DeviceCounters(
                major=major,
                minor=minor,
                read_bytes=counters.get("read_bytes"),
                write_bytes=counters.get("write_bytes"),
                read_operations=counters.get("read_operations"),
                write_operations=counters.get("write_operations"),
            )
            for (major, minor), counters in sorted(per_device.items())
        )
    return BlockIoCounters(
        read_bytes, write_bytes, read_operations, write_operations, devices=devices
    )


def _sum_blkio_entries(
    entries: object, unit: str, per_device: dict[tuple[int, int], dict[str, int]]
) -> tuple[int | None, int | None]:
    """Sum the read and write entries, and add them per device to per_device.

    unit is "bytes" or "operations", the suffix of the DeviceCounters fields.
    Entries without integer major and minor numbers count in the sums only.
    """
    if not isinstance(entries, list) or not entries:
        return None, None
    read_total = write_total = 0
    for entry in entries:
        if not isinstance(entry, Mapping):
            continue
        operation = str(entry.get("op", "")).lower()
        if operation not in ("read", "write"):
            continue
        value = _get_int(entry, "value") or 0
        if operation == "read":
            read_total += value
        else:
            write_total += value
        major = _get_int(entry, "major")
        minor = _get_int(entry, "minor")
        if major is not None and minor is not None:
            counters = per_device.setdefault((major, minor), {})
            key = f"{operation}_{unit}"
            counters[key] = counters.get(key, 0) + value
    return read_total, write_total


def _seconds(nanoseconds: int | None) -> float | None:
    return None if nanoseconds is None else nanoseconds / NANOSECONDS_PER_SECOND


def _first_int(memory_stats: Mapping[str, Any], *keys: str) -> int | None:
    """Return the first of keys present in memory_stats.stats."""
    for key in keys:
        value = _get_int(memory_stats, "stats", key)
        if value is not None:
            return value
    return None


def _get_int(mapping: Mapping[str, Any], *keys: str) -> int | None:
    """Return the integer at a path of keys, or None when any part is missing."""
    value: object = mapping
    for key in keys:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value


def _cpu_quota_set(host_config: Mapping[str, Any]) -> bool | None:
    if "NanoCpus" not in host_config and "CpuQuota" not in host_config:
        return None
    nano_cpus = host_config.get("NanoCpus") or 0
    cpu_quota = host_config.get("CpuQuota") or 0
    return bool(nano_cpus > 0 or cpu_quota > 0)


def _memory_limited(host_config: Mapping[str, Any]) -> bool | None:
    if "Memory" not in host_config:
        return None
    return bool((host_config.get("Memory") or 0) > 0)


def _engine_memory_bytes(container: Container) -> int | None:
    """Return MemTotal of the engine's /info in bytes, or None when unavailable."""
    client = container.client
    if client is None:
        return None
    try:
        info = client.info()
    except (docker.errors.DockerException, OSError, ValueError) as error:
        logger.debug("engine info request failed: %s", error)
        return None
    memory = info.get("MemTotal") if isinstance(info, Mapping) else None
    if isinstance(memory, bool) or not isinstance(memory, int) or memory <= 0:
        return None
    return memory


def _podman_version(container: Container) -> tuple[int, int] | None:
    """Return Podman's (major, minor) version from /version, or None for Docker.

    An engine whose /version request fails is taken to be Docker.
    """
    client = container.client
    if client is None:
        return None
    try:
        version = client.version()
    except (docker.errors.DockerException, OSError, ValueError) as error:
        logger.debug("engine version request failed, assuming Docker: %s", error)
        return None
    components = version.get("Components") or []
    for component in components:
        if not isinstance(component, dict):
            continue
        if "podman" not in str(component.get("Name", "")).lower():
            continue
        text = str(component.get("Version", ""))
        try:
            major, minor = (int(part) for part in text.split(".")[:2])
        except ValueError:
            # NOTE: an unparsable version is taken as a current Podman (4.4 or later).
            logger.debug("unparsable Podman version %r", text)
            return (99, 0)
        return (major, minor)
    return None
