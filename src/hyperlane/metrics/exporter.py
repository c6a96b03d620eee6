"""Expose the latest sample of each container as Prometheus metrics with cAdvisor names.

Metric names, types, units and the id, name and image labels follow cAdvisor's
Prometheus metrics (docs/storage/prometheus.md in google/cadvisor), so dashboards and
PromQL written for cAdvisor work unchanged. Samples carry the time they were taken as
their Prometheus timestamp, as cAdvisor's do.

The network metrics carry one series per interface with its `interface` label, and
the block I/O metrics one series per device with cAdvisor's `device` label (plus
`major`, `minor` and `operation` on container_blkio_device_usage_total). A sample
without those breakdowns (a recording of schema 1.0) gives one series of totals
instead, with the `interface` label that ContainerIdentity.interface sets.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample as PrometheusSample

from hyperlane.errors import UsageError
from hyperlane.metrics.discovery import (
    DEFAULT_CFS_PERIOD_MICROSECONDS,
    NANO_CPUS_PER_CORE,
    ContainerInfo,
)
from hyperlane.metrics.sample import Sample

logger = logging.getLogger(__name__)

DEFAULT_LISTEN_HOST = "127.0.0.1"
DEFAULT_LISTEN_PORT = 9560
# RFC 1123 host name: dot-separated labels of letters, digits and inner hyphens.
_HOST_NAME = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
)
_LABEL_INVALID = re.compile(r"[^a-zA-Z0-9_]")
CONTAINER_LABEL_PREFIX = "container_label_"


def parse_listen_address(text: str) -> tuple[str, int]:
    """Parse HOST:PORT into (host, port); an IPv6 host goes in brackets.

    An empty host (":9560") means 127.0.0.1. Port 0 lets the kernel choose a free
    port. Raises ValueError with the expected form.
    """
    value = text.strip()
    expected = (
        "use HOST:PORT with a port from 0 to 65535 and an IPv6 host in brackets, "
        "e.g. 127.0.0.1:9560 or [::1]:9560"
    )
    if value.startswith("["):
        host, separator, rest = value[1:].partition("]")
        if not separator or not rest.startswith(":"):
            raise ValueError(f"invalid listen address {text!r}: {expected}")
        port_text = rest[1:]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(
                f"invalid IPv6 address {host!r} in {text!r}: {expected}"
            ) from None
    else:
        host, separator, port_text = value.rpartition(":")
        if not separator:
            raise ValueError(f"missing port in listen address {text!r}: {expected}")
        if ":" in host:
            raise ValueError(f"IPv6 address {host!r} must be in brackets: {expected}")
        host = host or DEFAULT_LISTEN_HOST
        if not _is_ipv4(host) and not _HOST_NAME.match(host):
            raise ValueError(f"invalid host {host!r} in {text!r}: {expected}")
    if not port_text.isdigit() or int(port_text) > 65535:
        raise ValueError(f"invalid port {port_text!r} in {text!r}: {expected}")
    return host, int(port_text)


def _is_ipv4(host: str) -> bool:
    try:
        ipaddress.IPv4Address(host)
    except ValueError:
        return False
    return True


def format_listen_address(host: str, port: int) -> str:
    """Return HOST:PORT, with an IPv6 host in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@dataclass(frozen=True)
class ContainerIdentity:
    """The labels and specification of one container, fixed while it runs."""

    container_id: str
    """Full container id."""
    cgroup_id: str
    """Value of the `id` label: the container's cgroup path as cAdvisor sets it.

    It is the full container id when the cgroup path is unknown (remote engine).
    """
    name: str
    """Container name without the leading "/"."""
    image: str
    """Image reference the container was created from (Config.Image)."""
    labels: Mapping[str, str] = field(default_factory=dict)
    """Container labels, exported as container_label_<key> labels."""
    interface: str = ""
    """Value of the `interface` label of network totals.

    The exporter uses it only for a sample without per-interface counters,
    whose totals are summed over every interface except lo. With one such
    interface this is its name ("eth0"), with several the names joined by "+",
    and empty (no label) when the names are unknown.
    """
    cpu_quota_microseconds: int | None = None
    """CFS quota per period in microseconds, None when no CPU limit is set."""
    cpu_period_microseconds: int | None = None
    """CFS period in microseconds."""
    start_time_seconds: float | None = None
    """Unix time at which the container started, in seconds."""


@dataclass(frozen=True)
class ContainerSnapshot:
    """The latest sample of one container and the wall time it was taken."""

    identity: ContainerIdentity
    source: str
    """Reader that took the sample: "cgroup-v1", "cgroup-v2" or "api"."""
    sample: Sample
    sample_unix_seconds: float
    """Unix time of the sample, in seconds."""
    oom_kills_total: int | None = None
    """OOM kills of every instance of the container name (OomKillTracker).

    None leaves container_oom_events_total to the sample's own count.
    """


def identity_from_info(
    info: ContainerInfo,
    local: bool,
    proc_root: Path = Path("/proc"),
) -> ContainerIdentity:
    """Build the labels of a discovered container from its inspect data.

    On a local engine the cgroup path and the interface names come from
    /proc/<pid>/cgroup and /proc/<pid>/net/dev.
    """
    attrs = info.container.attrs
    host_config = attrs.get("HostConfig") or {}
    quota, period = cpu_quota_and_period(host_config)
    cgroup_id = info.container_id
    interface = ""
    if local:
        cgroup_id = cgroup_path(proc_root / str(info.pid) / "cgroup") or cgroup_id
        interface = "+".join(interface_names(proc_root / str(info.pid) / "net/dev"))
    state = attrs.get("State") or {}
    return ContainerIdentity(
        container_id=info.container_id,
        cgroup_id=cgroup_id,
        name=info.name,
        image=info.image,
        labels=dict(info.labels),
        interface=interface,
        cpu_quota_microseconds=quota,
        cpu_period_microseconds=period,
        start_time_seconds=parse_engine_time(state.get("StartedAt")),
    )


def cpu_quota_and_period(host_config: Mapping[str, Any]) -> tuple[int | None, int]:
    """Return (quota, period) in microseconds from a HostConfig.

    docker run --cpus sets NanoCpus, which the engines apply with the default
    period of 100 000 microseconds. --cpu-quota sets CpuQuota per CpuPeriod.
    """
    period = host_config.get("CpuPeriod") or DEFAULT_CFS_PERIOD_MICROSECONDS
    nano_cpus = host_config.get("NanoCpus") or 0
    if isinstance(nano_cpus, int) and nano_cpus > 0:
        period = DEFAULT_CFS_PERIOD_MICROSECONDS
        return round(nano_cpus * period / NANO_CPUS_PER_CORE), period
    quota = host_config.get("CpuQuota") or 0
    if isinstance(quota, int) and quota > 0:
        return quota, int(period)
    return None, int(period)


def cgroup_path(proc_cgroup: Path) -> str | None:
    """Return the cgroup path that cAdvisor uses as the `id` label, or None.

    That is the path of the cpuacct hierarchy on cgroup v1 and of the "0::" line
    on cgroup v2, read from /proc/<pid>/cgroup.
    """
    try:
        text = proc_cgroup.read_text()
    except OSError as error:
        logger.debug("cannot read %s: %s", proc_cgroup, error)
        return None
    unified = None
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        controllers = parts[1].split(",")
        if "cpuacct" in controllers:
            return parts[2]
        if parts[1] == "":
            unified = parts[2]
    return unified


def interface_names(net_dev: Path) -> list[str]:
    """Return the interface names in /proc/<pid>/net/dev except lo, in file order."""
    try:
        text = net_dev.read_text()
    except OSError as error:
        logger.debug("cannot read %s: %s", net_dev, error)
        return []
    names = []
    for line in text.splitlines()[2:]:
        name, separator, _ = line.partition(":")
        if separator and name.strip() != "lo":
            names.append(name.strip())
    return names


def parse_engine_time(value: object) -> float | None:
    """Return the Unix time of an engine timestamp such as State.StartedAt, or None.

    The engines write RFC 3339 with up to nanoseconds, which is cut to the
    microseconds that datetime parses. Go's zero time gives None.
    """
    if not isinstance(value, str) or not value or value.startswith("0001-01-01"):
        return None
    match = re.fullmatch(
        r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)", value
    )
    if match is None:
        return None
    fraction = (match[2] or ".0")[:7]
    zone = "+00:00" if match[3] == "Z" else match[3]
    return datetime.fromisoformat(f"{match[1]}{fraction}{zone}").timestamp()


class SampleStore:
    """Latest snapshot of each container, shared by the sampling loop and scrapes."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._lock = threading.Lock()
        self._snapshots: dict[str, ContainerSnapshot] = {}
        self._clock = clock
        self.last_scrape_unix_seconds: float | None = None
        """Unix time of the last collect(), None before the first scrape."""

    def update(self, snapshot: ContainerSnapshot) -> None:
        with self._lock:
            self._snapshots[snapshot.identity.container_id] = snapshot

    def get(self, container_id: str) -> ContainerSnapshot | None:
        with self._lock:
            return self._snapshots.get(container_id)

    def remove(self, container_id: str) -> None:
        with self._lock:
            self._snapshots.pop(container_id, None)

    def snapshots(self) -> list[ContainerSnapshot]:
        """Return the snapshots ordered by container name."""
        with self._lock:
            return sorted(self._snapshots.values(), key=lambda s: s.identity.name)

    def mark_scraped(self) -> None:
        self.last_scrape_unix_seconds = self._clock()


DeviceNamer = Callable[[int, int], str]
"""Return the `device` label of a block device from its major and minor numbers."""
Series = list[tuple[dict[str, str], float]]


@dataclass(frozen=True)
class _Metric:
    """One exported metric: its cAdvisor name, type, help text and value."""

    name: str
    kind: str
    """"counter" or "gauge"."""
    help: str
    value: Callable[[ContainerSnapshot], float | None]
    extra_labels: tuple[tuple[str, str], ...] = ()
    """Fixed labels after id, image and name."""
    series: Callable[[ContainerSnapshot, DeviceNamer], Series] | None = None
    """Labels and values of several series per container, which replace value."""


def _network(
    total_field: str, interface_field: str
) -> Callable[[ContainerSnapshot, DeviceNamer], Series]:
    def series(snapshot: ContainerSnapshot, device_name: DeviceNamer) -> Series:
        interfaces = snapshot.sample.network_interfaces
        if interfaces is None:
            total = getattr(snapshot.sample, total_field)
            if total is None:
                return []
            interface = snapshot.identity.interface
            return [({"interface": interface} if interface else {}, float(total))]
        result = []
        for item in interfaces:
            value = getattr(item, interface_field)
            if value is not None:
                result.append(({"interface": item.name}, float(value)))
        return result

    return series


def _block_io(
    total_field: str, device_field: str
) -> Callable[[ContainerSnapshot, DeviceNamer], Series]:
    def series(snapshot: ContainerSnapshot, device_name: DeviceNamer) -> Series:
        devices = snapshot.sample.block_devices
        if devices is None:
            total = getattr(snapshot.sample, total_field)
            return [] if total is None else [({}, float(total))]
        result = []
        for item in devices:
            value = getattr(item, device_field)
            if value is not None:
                labels = {"device": device_name(item.major, item.minor)}
                result.append((labels, float(value)))
        return result

    return series


def _blkio_device_usage(
    snapshot: ContainerSnapshot, device_name: DeviceNamer
) -> Series:
    result: Series = []
    for item in snapshot.sample.block_devices or ():
        for operation, value in (
            ("Read", item.read_bytes),
            ("Write", item.write_bytes),
        ):
            if value is None:
                continue
            labels = {
                "device": device_name(item.major, item.minor),
                "major": str(item.major),
                "minor": str(item.minor),
                "operation": operation,
            }
            result.append((labels, float(value)))
    return result


def _no_value(snapshot: ContainerSnapshot) -> float | None:
    return None


def _field(name: str) -> Callable[[ContainerSnapshot], float | None]:
    def value(snapshot: ContainerSnapshot) -> float | None:
        result = getattr(snapshot.sample, name)
        return None if result is None else float(result)

    return value


def _memory_limit(snapshot: ContainerSnapshot) -> float | None:
    # cAdvisor reports 0 for a container without a memory limit.
    sample = snapshot.sample
    if sample.memory_limit_set is False:
        return 0.0
    if sample.memory_limit_bytes is None:
        return None
    return float(sample.memory_limit_bytes)


def _optional(value: float | int | None) -> float | None:
    return None if value is None else float(value)


_CPU_TOTAL = (("cpu", "total"),)

METRICS: tuple[_Metric, ...] = (
    _Metric(
        "container_cpu_usage_seconds_total",
        "counter",
        "Cumulative cpu time consumed in seconds.",
        _field("cpu_usage_seconds_total"),
        _CPU_TOTAL,
    ),
    _Metric(
        "container_cpu_user_seconds_total",
        "counter",
        "Cumulative user cpu time consumed in seconds.",
        _field("cpu_user_seconds_total"),
    ),
    _Metric(
        "container_cpu_system_seconds_total",
        "counter",
        "Cumulative system cpu time consumed in seconds.",
        _field("cpu_system_seconds_total"),
    ),
    _Metric(
        "container_cpu_cfs_periods_total",
        "counter",
        "Number of elapsed enforcement period intervals.",
        _field("cpu_cfs_periods_total"),
    ),
    _Metric(
        "container_cpu_cfs_throttled_periods_total",
        "counter",
        "Number of throttled period intervals.",
        _field("cpu_cfs_throttled_periods_total"),
    ),
    _Metric(
        "container_cpu_cfs_throttled_seconds_total",
        "counter",
        "Total time duration the container has been throttled.",
        _field("cpu_cfs_throttled_seconds_total"),
    ),
    _Metric(
        "container_pressure_cpu_waiting_seconds_total",
        "counter",
        "Total time in seconds that at least one task waited for a CPU (PSI some).",
        _field("cpu_pressure_some_seconds_total"),
    ),
    _Metric(
        "container_pressure_cpu_stalled_seconds_total",
        "counter",
        "Total time in seconds that no task could run for lack of CPU (PSI full).",
        _field("cpu_pressure_full_seconds_total"),
    ),
    _Metric(
        "container_memory_usage_bytes",
        "gauge",
        "Current memory usage in bytes, including all memory regardless of when it "
        "was accessed.",
        _field("memory_usage_bytes"),
    ),
    _Metric(
        "container_memory_working_set_bytes",
        "gauge",
        "Current working set in bytes.",
        _field("memory_working_set_bytes"),
    ),
    _Metric(
        "container_memory_rss",
        "gauge",
        "Size of RSS in bytes.",
        _field("memory_rss_bytes"),
    ),
    _Metric(
        "container_memory_cache",
        "gauge",
        "Number of bytes of page cache memory.",
        _field("memory_cache_bytes"),
    ),
    _Metric(
        "container_memory_swap",
        "gauge",
        "Container swap usage in bytes.",
        _field("memory_swap_bytes"),
    ),
    _Metric(
        "container_oom_events_total",
        "counter",
        "Count of out of memory events observed for the container (OOM kills).",
        lambda snapshot: _optional(
            snapshot.sample.memory_oom_kills_total
            if snapshot.oom_kills_total is None
            else snapshot.oom_kills_total
        ),
    ),
    _Metric(
        "container_pressure_memory_waiting_seconds_total",
        "counter",
        "Total time in seconds that at least one task stalled on memory (PSI some).",
        _field("memory_pressure_some_seconds_total"),
    ),
    _Metric(
        "container_pressure_memory_stalled_seconds_total",
        "counter",
        "Total time in seconds that all tasks stalled on memory (PSI full).",
        _field("memory_pressure_full_seconds_total"),
    ),
    _Metric(
        "container_fs_reads_bytes_total",
        "counter",
        "Cumulative count of bytes read.",
        _no_value,
        series=_block_io("block_io_read_bytes_total", "read_bytes"),
    ),
    _Metric(
        "container_fs_writes_bytes_total",
        "counter",
        "Cumulative count of bytes written.",
        _no_value,
        series=_block_io("block_io_write_bytes_total", "write_bytes"),
    ),
    _Metric(
        "container_fs_reads_total",
        "counter",
        "Cumulative count of reads completed.",
        _no_value,
        series=_block_io("block_io_read_operations_total", "read_operations"),
    ),
    _Metric(
        "container_fs_writes_total",
        "counter",
        "Cumulative count of writes completed.",
        _no_value,
        series=_block_io("block_io_write_operations_total", "write_operations"),
    ),
    _Metric(
        "container_blkio_device_usage_total",
        "counter",
        "Blkio device bytes usage.",
        _no_value,
        series=_blkio_device_usage,
    ),
    _Metric(
        "container_pressure_io_waiting_seconds_total",
        "counter",
        "Total time in seconds that at least one task stalled on I/O (PSI some).",
        _field("io_pressure_some_seconds_total"),
    ),
    _Metric(
        "container_pressure_io_stalled_seconds_total",
        "counter",
        "Total time in seconds that all tasks stalled on I/O (PSI full).",
        _field("io_pressure_full_seconds_total"),
    ),
    _Metric(
        "container_network_receive_bytes_total",
        "counter",
        "Cumulative count of bytes received.",
        _no_value,
        series=_network("network_receive_bytes_total", "receive_bytes"),
    ),
    _Metric(
        "container_network_receive_packets_total",
        "counter",
        "Cumulative count of packets received.",
        _no_value,
        series=_network("network_receive_packets_total", "receive_packets"),
    ),
    _Metric(
        "container_network_receive_errors_total",
        "counter",
        "Cumulative count of errors encountered while receiving.",
        _no_value,
        series=_network("network_receive_errors_total", "receive_errors"),
    ),
    _Metric(
        "container_network_receive_packets_dropped_total",
        "counter",
        "Cumulative count of packets dropped while receiving.",
        _no_value,
        series=_network("network_receive_packets_dropped_total", "receive_dropped"),
    ),
    _Metric(
        "container_network_transmit_bytes_total",
        "counter",
        "Cumulative count of bytes transmitted.",
        _no_value,
        series=_network("network_transmit_bytes_total", "transmit_bytes"),
    ),
    _Metric(
        "container_network_transmit_packets_total",
        "counter",
        "Cumulative count of packets transmitted.",
        _no_value,
        series=_network("network_transmit_packets_total", "transmit_packets"),
    ),
    _Metric(
        "container_network_transmit_errors_total",
        "counter",
        "Cumulative count of errors encountered while transmitting.",
        _no_value,
        series=_network("network_transmit_errors_total", "transmit_errors"),
    ),
    _Metric(
        "container_network_transmit_packets_dropped_total",
        "counter",
        "Cumulative count of packets dropped while transmitting.",
        _no_value,
        series=_network("network_transmit_packets_dropped_total", "transmit_dropped"),
    ),
    _Metric(
        "container_processes",
        "gauge",
        "Number of processes running inside the container.",
        _field("processes"),
    ),
    _Metric(
        "container_threads",
        "gauge",
        "Number of threads running inside the container.",
        _field("threads"),
    ),
    _Metric(
        "container_spec_memory_limit_bytes",
        "gauge",
        "Memory limit for the container in bytes, 0 when none is set.",
        _memory_limit,
    ),
    _Metric(
        "container_spec_cpu_quota",
        "gauge",
        "CPU quota of the container in microseconds per CFS period.",
        lambda snapshot: _optional(snapshot.identity.cpu_quota_microseconds),
    ),
    _Metric(
        "container_spec_cpu_period",
        "gauge",
        "CPU period of the container in microseconds.",
        lambda snapshot: _optional(snapshot.identity.cpu_period_microseconds),
    ),
    _Metric(
        "container_start_time_seconds",
        "gauge",
        "Start time of the container since unix epoch in seconds.",
        lambda snapshot: snapshot.identity.start_time_seconds,
    ),
    _Metric(
        "container_last_seen",
        "gauge",
        "Last time a container was seen by the exporter, in Unix seconds.",
        lambda snapshot: snapshot.sample_unix_seconds,
    ),
)
SOURCE_METRIC = "hyperlane_sample_source"
"""Info metric whose `source` label names the reader: cgroup-v1, cgroup-v2 or api."""

EXPORTED_METRIC_NAMES = frozenset(
    [metric.name for metric in METRICS] + [f"{SOURCE_METRIC}_info"]
)
"""Every metric name that appears in the exposition."""


def container_labels(identity: ContainerIdentity) -> dict[str, str]:
    """Return the id, image, name and container_label_* labels of a container.

    Label keys become Prometheus label names by replacing every character other
    than letters, digits and "_" with "_". When two keys map to one name, the
    key that sorts first wins.
    """
    labels = {"id": identity.cgroup_id, "image": identity.image, "name": identity.name}
    for key in sorted(identity.labels):
        label = CONTAINER_LABEL_PREFIX + _LABEL_INVALID.sub("_", key)
        labels.setdefault(label, identity.labels[key])
    return labels


def block_device_name(major: int, minor: int, sys_root: Path | None) -> str:
    """Return "/dev/<name>" of a block device from <sys_root>/dev/block, or MAJ:MIN.

    cAdvisor labels a device with its /dev path. sys_root None (a remote engine,
    whose device numbers mean nothing on this host) and an unknown device give
    "major:minor", which keeps the series of two devices apart.
    """
    fallback = f"{major}:{minor}"
    if sys_root is None:
        return fallback
    uevent = sys_root / "dev" / "block" / fallback / "uevent"
    try:
        text = uevent.read_text()
    except OSError as error:
        logger.debug("cannot read %s: %s", uevent, error)
        return fallback
    for line in text.splitlines():
        key, _, value = line.partition("=")
        if key == "DEVNAME" and value:
            return f"/dev/{value}"
    return fallback


class CadvisorCollector(Collector):
    """A prometheus-client collector that yields the store's latest samples.

    sys_root is the sysfs mount that names block devices, None for a remote engine.
    """

    def __init__(
        self, store: SampleStore, sys_root: Path | None = Path("/sys")
    ) -> None:
        self._store = store
        self._sys_root = sys_root
        self._device_names: dict[tuple[int, int], str] = {}

    def _device_name(self, major: int, minor: int) -> str:
        key = (major, minor)
        if key not in self._device_names:
            self._device_names[key] = block_device_name(major, minor, self._sys_root)
        return self._device_names[key]

    def describe(self) -> list[Metric]:
        # An empty description keeps register() from calling collect().
        return []

    def collect(self) -> Iterator[Metric]:
        snapshots = self._store.snapshots()
        self._store.mark_scraped()
        labels_by_id = {
            snapshot.identity.container_id: container_labels(snapshot.identity)
            for snapshot in snapshots
        }
        for metric in METRICS:
            family: CounterMetricFamily | GaugeMetricFamily
            if metric.kind == "counter":
                family = CounterMetricFamily(metric.name, metric.help)
            else:
                family = GaugeMetricFamily(metric.name, metric.help)
            for snapshot in snapshots:
                container = labels_by_id[snapshot.identity.container_id]
                for extra, value in self._series(metric, snapshot):
                    family.samples.append(
                        PrometheusSample(
                            family.name + _suffix(family),
                            {**container, **extra},
                            value,
                            snapshot.sample_unix_seconds,
                        )
                    )
            yield family

        info = InfoMetricFamily(
            SOURCE_METRIC, "Reader that produced the container's samples."
        )
        for snapshot in snapshots:
            labels = labels_by_id[snapshot.identity.container_id]
            info.samples.append(
                PrometheusSample(
                    f"{SOURCE_METRIC}_info",
                    {**labels, "source": snapshot.source},
                    1.0,
                    snapshot.sample_unix_seconds,
                )
            )
        yield info

    def _series(self, metric: _Metric, snapshot: ContainerSnapshot) -> Series:
        if metric.series is not None:
            return metric.series(snapshot, self._device_name)
        value = metric.value(snapshot)
        return [] if value is None else [(dict(metric.extra_labels), value)]


def _suffix(family: Metric) -> str:
    # CounterMetricFamily drops "_total" from the family name, and its sample
    # names carry it again.
    return "_total" if family.type == "counter" else ""


@dataclass
class MetricsServer:
    """An HTTP server on a daemon thread that serves /metrics."""

    host: str
    port: int
    """Port the server listens on, the kernel's choice when 0 was requested."""
    _server: Any
    _thread: threading.Thread

    def close(self) -> None:
        """Stop serving and close the listening socket."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def serve_metrics(
    host: str, port: int, store: SampleStore, sys_root: Path | None = Path("/sys")
) -> MetricsServer:
    """Serve the store's snapshots in Prometheus text format on http://HOST:PORT/.

    sys_root names the block devices, as for CadvisorCollector.

    Raises UsageError naming the address when the port is in use or the address
    cannot be bound.
    """
    registry = CollectorRegistry(auto_describe=False)
    registry.register(CadvisorCollector(store, sys_root))
    address = format_listen_address(host, port)
    try:
        server, thread = start_http_server(port, host, registry)
    except OSError as error:
        if error.errno == errno.EADDRINUSE:
            raise UsageError(
                f"cannot listen on {address}: port {port} is already in use; stop "
                f"the process that uses it or pass another port to --listen"
            ) from None
        raise UsageError(
            f"cannot listen on {address}: {error}; pass an address of this host "
            f"to --listen, e.g. 127.0.0.1:{DEFAULT_LISTEN_PORT}"
        ) from None
    bound_port = int(server.server_port)
    return MetricsServer(host=host, port=bound_port, _server=server, _thread=thread)
