"""Read a container's counters from the engine's stats API (Docker or Podman)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

import docker.errors
from docker.models.containers import Container

from hyperlane.errors import EngineUnavailable, ServiceNotReady
from hyperlane.metrics.sample import Sample

logger = logging.getLogger(__name__)

NANOSECONDS_PER_SECOND = 1_000_000_000
UNLIMITED_FLOOR_BYTES = 2**62
# Docker fills "read" with Go's zero time when the container is not running.
ZERO_TIME_PREFIX = "0001-01-01"


class ApiStatsReader:
    """Read one-shot stats of a docker-SDK Container.

    Podman 4.3 returns only usage and limit under memory_stats and zeros in
    throttling_data, so this reader reports those fields as None for Podman.
    Podman before 4.4 also swaps rx_bytes and tx_bytes, which this reader swaps back.
    """

    def __init__(
        self, container: Container, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.source = "api"
        self._container = container
        self._clock = clock
        podman_version = _podman_version(container)
        self._throttling_exposed = podman_version is None
        self._network_swapped = podman_version is not None and podman_version < (4, 4)
        host_config: Mapping[str, Any] = container.attrs.get("HostConfig") or {}
        self._cpu_quota_set = _cpu_quota_set(host_config)
        self._memory_limited = _memory_limited(host_config)

    def read(self) -> Sample:
        """Take one sample. Raises ServiceNotReady when the container is not running."""
        before = self._clock()
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
            timestamp_seconds=(before + after) / 2,
            throttling_exposed=self._throttling_exposed,
            network_swapped=self._network_swapped,
            cpu_quota_set=self._cpu_quota_set,
            memory_limited=self._memory_limited,
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


def parse_api_stats(
    stats: Mapping[str, Any],
    timestamp_seconds: float,
    throttling_exposed: bool = True,
    network_swapped: bool = False,
    cpu_quota_set: bool | None = None,
    memory_limited: bool | None = None,
) -> Sample:
    """Convert one stats object of the Docker-compatible API into a Sample.

    network_swapped exchanges rx_bytes and tx_bytes for engines that report them
    the wrong way round. cpu_quota_set and memory_limited come from the
    container's HostConfig. When they are None (unknown), zero CFS periods and a
    limit of 2**62 bytes or more read as "no quota" and "unlimited".
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
            throttled_ns = _get_int(
                stats, "cpu_stats", "throttling_data", "throttled_time"
            )
            if throttled_ns is not None:
                throttled_seconds = throttled_ns / NANOSECONDS_PER_SECOND

    usage_bytes = _get_int(stats, "memory_stats", "usage")
    # v1 names the hierarchical figure total_inactive_file, and v2 has inactive_file.
    inactive = _get_int(stats, "memory_stats", "stats", "total_inactive_file")
    if inactive is None:
        inactive = _get_int(stats, "memory_stats", "stats", "inactive_file")
    working_set = None
    if usage_bytes is not None and inactive is not None:
        working_set = max(0, usage_bytes - inactive)

    limit = _get_int(stats, "memory_stats", "limit")
    # Docker reports the host's memory as the limit of an unlimited container.
    if memory_limited is False or (
        limit is not None and limit >= UNLIMITED_FLOOR_BYTES
    ):
        limit = None

    rx_bytes, tx_bytes = _network_totals(stats.get("networks"))
    if network_swapped:
        rx_bytes, tx_bytes = tx_bytes, rx_bytes
    return Sample(
        timestamp_seconds=timestamp_seconds,
        cpu_usage_seconds_total=cpu_ns / NANOSECONDS_PER_SECOND,
        cpu_periods_total=periods,
        cpu_throttled_periods_total=throttled,
        cpu_throttled_seconds_total=throttled_seconds,
        memory_usage_bytes=usage_bytes,
        memory_working_set_bytes=working_set,
        memory_limit_bytes=limit,
        network_rx_bytes_total=rx_bytes,
        network_tx_bytes_total=tx_bytes,
        pids=_get_int(stats, "pids_stats", "current"),
    )


def _network_totals(networks: object) -> tuple[int | None, int | None]:
    """Sum rx_bytes and tx_bytes over the interfaces, or (None, None) without any."""
    if not isinstance(networks, Mapping) or not networks:
        return None, None
    rx_total = tx_total = 0
    for interface in networks.values():
        if not isinstance(interface, Mapping):
            continue
        rx_total += _get_int(interface, "rx_bytes") or 0
        tx_total += _get_int(interface, "tx_bytes") or 0
    return rx_total, tx_total


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
