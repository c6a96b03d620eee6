"""Find a process's cgroup and read a container's counters from its cgroup files.

Works on cgroup v1 (one hierarchy per controller under the cgroup root, as on hybrid
hosts) and on cgroup v2 (a single unified hierarchy). The paths come from
/proc/<pid>/cgroup, so the reader must run in the host's cgroup namespace.

A missing file gives None for its figures. A file whose content does not match the
kernel's format raises UsageError naming the file and the line, because a guess
would put wrong numbers in the report.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from hyperlane.errors import ServiceNotReady, UsageError
from hyperlane.metrics.sample import (
    DeviceCounters,
    InterfaceCounters,
    Sample,
    resolve_memory_limit,
)

logger = logging.getLogger(__name__)

V1_CONTROLLERS = ("cpu", "cpuacct", "memory", "pids", "blkio")
NANOSECONDS_PER_SECOND = 1_000_000_000
MICROSECONDS_PER_SECOND = 1_000_000
# cpuacct.stat counts in USER_HZ ticks, which sysconf reports as the clock tick.
USER_HZ = os.sysconf("SC_CLK_TCK")
API_HINT = "or use --metrics-source api"


@dataclass(frozen=True)
class CgroupLocation:
    """Directories of one process's cgroup.

    On v2 every directory field is the same unified directory. On v1 a field is
    None when that controller is not mounted under the cgroup root.
    """

    version: Literal[1, 2]
    """cgroup version: 1 or 2."""
    cpu_directory: Path | None
    """Directory with cpu.stat and the CFS quota."""
    cpuacct_directory: Path
    """Directory with the cumulative CPU usage (cpuacct.usage on v1)."""
    memory_directory: Path | None
    """Directory with the memory usage, memory.stat and the limit."""
    pids_directory: Path | None
    """Directory with pids.current."""
    blkio_directory: Path | None = None
    """Directory with the block I/O counters (blkio.throttle.* on v1, io.stat on v2)."""
    unified_directory: Path | None = None
    """Directory in the unified (v2) hierarchy, which has the PSI files.

    On a v1 host this is the process's directory under <cgroup root>/unified when
    the host mounts one (hybrid mode), else None.
    """

    def procs_file(self) -> Path:
        """Return the cgroup.procs file that lists the cgroup's process ids."""
        return self.cpuacct_directory / "cgroup.procs"


@dataclass(frozen=True)
class _ProcCgroupEntry:
    """One line of /proc/<pid>/cgroup: "hierarchy-id:controllers:path"."""

    controllers: tuple[str, ...]
    path: str


def find_cgroup(
    pid: int,
    proc_root: Path = Path("/proc"),
    cgroup_root: Path = Path("/sys/fs/cgroup"),
) -> CgroupLocation:
    """Locate the cgroup directories of a process.

    Chooses v2 when the cgroup root contains cgroup.controllers. Otherwise chooses v1
    when any of the cpu, cpuacct, memory, pids and blkio controllers is mounted
    under the cgroup root, and falls back to the "0::" line of the unified
    hierarchy when none is. Raises UsageError naming the path when the process or
    its cgroup is not found, or when v1 lacks the cpuacct controller.
    """
    cgroup_file = proc_root / str(pid) / "cgroup"
    try:
        text = cgroup_file.read_text()
    except OSError as error:
        raise UsageError(
            f"cannot read {str(cgroup_file)!r} ({error}): the process {pid!r} may "
            f"have exited; check that the container is running, {API_HINT}"
        ) from error
    entries = _parse_proc_cgroup(text)

    if (cgroup_root / "cgroup.controllers").is_file():
        return _unified_location(entries, cgroup_root, cgroup_file)

    # A hybrid host mounts the unified hierarchy below the root.
    unified_root = cgroup_root / "unified"
    has_unified = (unified_root / "cgroup.controllers").is_file()
    mounted = _v1_directories(entries, cgroup_root)
    if mounted:
        cpuacct = mounted.get("cpuacct")
        if cpuacct is None:
            raise UsageError(
                f"no cpuacct cgroup of process {pid!r} found under "
                f"{str(cgroup_root)!r} (listed in {str(cgroup_file)!r}); mount the "
                f"cpuacct controller, {API_HINT}"
            )
        return CgroupLocation(
            version=1,
            cpu_directory=mounted.get("cpu"),
            cpuacct_directory=cpuacct,
            memory_directory=mounted.get("memory"),
            pids_directory=mounted.get("pids"),
            blkio_directory=mounted.get("blkio"),
            unified_directory=(
                _unified_directory(entries, unified_root) if has_unified else None
            ),
        )

    return _unified_location(
        entries, unified_root if has_unified else cgroup_root, cgroup_file
    )


def _parse_proc_cgroup(text: str) -> list[_ProcCgroupEntry]:
    entries = []
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            logger.debug("skipping malformed /proc/<pid>/cgroup line %r", line)
            continue
        _, controllers, path = parts
        names = tuple(name for name in controllers.split(",") if name)
        entries.append(_ProcCgroupEntry(controllers=names, path=path))
    return entries


def _join(mount: Path, cgroup_path: str) -> Path:
    return mount / cgroup_path.lstrip("/")


def _v1_directories(
    entries: list[_ProcCgroupEntry], cgroup_root: Path
) -> dict[str, Path]:
    """Map each v1 controller of interest to the process's directory in it."""
    directories: dict[str, Path] = {}
    for entry in entries:
        for controller in entry.controllers:
            if controller not in V1_CONTROLLERS:
                continue
            # Controllers are mounted one per directory, or together as
            # "cpu,cpuacct" with per-controller symlinks that may be missing.
            candidates = [cgroup_root / controller]
            candidates.append(cgroup_root / ",".join(entry.controllers))
            for mount in candidates:
                directory = _join(mount, entry.path)
                if directory.is_dir():
                    directories[controller] = directory
                    break
    return directories


def _unified_directory(
    entries: list[_ProcCgroupEntry], unified_root: Path
) -> Path | None:
    """Return the process's directory in the unified hierarchy, if it exists."""
    for entry in entries:
        if not entry.controllers:
            directory = _join(unified_root, entry.path)
            return directory if directory.is_dir() else None
    return None


def _unified_location(
    entries: list[_ProcCgroupEntry], unified_root: Path, cgroup_file: Path
) -> CgroupLocation:
    paths = [entry.path for entry in entries if not entry.controllers]
    if not paths:
        raise UsageError(
            f"no cgroup v2 entry (a line starting with '0::') in "
            f"{str(cgroup_file)!r}; run on a host with cgroup v1 or v2 mounted under "
            f"the cgroup root, {API_HINT}"
        )
    directory = _join(unified_root, paths[0])
    if not directory.is_dir():
        raise UsageError(
            f"cgroup directory {str(directory)!r} not found (from "
            f"{str(cgroup_file)!r}); check the cgroup root, {API_HINT}"
        )
    return CgroupLocation(
        version=2,
        cpu_directory=directory,
        cpuacct_directory=directory,
        memory_directory=directory,
        pids_directory=directory,
        blkio_directory=directory,
        unified_directory=directory,
    )


# Container ids in cgroup paths.

# One path component that names a container: "<id>", "docker-<id>.scope",
# "libpod-<id>", "libpod-<id>.scope", "cri-containerd-<id>.scope", "crio-<id>.scope".
# The conmon scopes of Podman and CRI-O ("libpod-conmon-<id>.scope") do not match,
# because their processes are the container monitor, not the container.
_CONTAINER_COMPONENT = re.compile(
    r"(?:(?:docker|libpod|cri-containerd|crio)-)?"
    r"(?P<id>[0-9a-f]{64})(?:\.scope)?"
)
_PROC_CGROUP_LINE = re.compile(r"[0-9]+:[^:]*:(?P<path>.*)")
# The pod component of a Kubernetes path: "pod<uid>" with the cgroupfs driver, or
# "kubepods-<qos>-pod<uid>.slice" with the systemd driver, which writes the uid's
# dashes as underscores.
_POD_COMPONENT = re.compile(
    r"(?:kubepods(?:-[a-z]+)?-)?pod(?P<uid>[0-9a-f]+(?:[-_][0-9a-f]+)*)(?:\.slice)?"
)


@dataclass(frozen=True)
class CgroupContainer:
    """A container named by a cgroup path."""

    container_id: str
    """Full container id: 64 lowercase hexadecimal digits."""
    pod_uid: str | None
    """Kubernetes pod UID with dashes, or None outside a kubepods hierarchy."""


def container_from_cgroup_path(cgroup_path: str) -> CgroupContainer | None:
    """Return the container that a cgroup path belongs to, or None.

    Accepts the path of a /proc/<pid>/cgroup line ("/docker/<id>",
    "/system.slice/docker-<id>.scope", "/libpod_parent/libpod-<id>",
    "/machine.slice/libpod-<id>.scope/container", Kubernetes paths with the
    systemd or the cgroupfs driver) or the whole line ("0::/docker/<id>"). The
    component nearest the end that names a container wins, so a nested container
    (Docker in Docker) and a sub-cgroup of the container resolve to the innermost
    container. A conmon scope returns None.
    """
    line = _PROC_CGROUP_LINE.fullmatch(cgroup_path)
    path = cgroup_path if line is None else line["path"]
    components = [component for component in path.split("/") if component]
    for index in range(len(components) - 1, -1, -1):
        match = _CONTAINER_COMPONENT.fullmatch(components[index])
        if match is None:
            continue
        return CgroupContainer(
            container_id=match["id"], pod_uid=_pod_uid(components[:index])
        )
    return None


def _pod_uid(parents: list[str]) -> str | None:
    """Return the pod UID from the components above a container, when in kubepods."""
    if not any(component.startswith("kubepods") for component in parents):
        return None
    for component in reversed(parents):
        match = _POD_COMPONENT.fullmatch(component)
        if match is not None:
            return match["uid"].replace("_", "-")
    return None


# Figures read from one group of files, assembled into a Sample.


@dataclass(frozen=True)
class _CpuFigures:
    usage_seconds: float
    user_seconds: float | None
    system_seconds: float | None
    periods: int | None
    throttled_periods: int | None
    throttled_seconds: float | None


@dataclass(frozen=True)
class _MemoryFigures:
    usage_bytes: int | None
    working_set_bytes: int | None
    rss_bytes: int | None
    cache_bytes: int | None
    swap_bytes: int | None
    limit_bytes: int | None
    limit_set: bool | None
    oom_kills: int | None
    oom_events: int | None
    under_oom: bool | None


_NO_MEMORY = _MemoryFigures(None, None, None, None, None, None, None, None, None, None)


@dataclass(frozen=True)
class BlockIoCounters:
    """Block I/O counters summed over the devices of one cgroup."""

    read_bytes: int | None
    """Bytes read."""
    write_bytes: int | None
    """Bytes written."""
    read_operations: int | None
    """Read operations."""
    write_operations: int | None
    """Write operations."""
    devices: tuple[DeviceCounters, ...] | None = None
    """The same counters per device, ordered by major:minor."""


_NO_BLOCK_IO = BlockIoCounters(None, None, None, None)


@dataclass(frozen=True)
class PressureTotals:
    """Totals of one PSI file (cpu.pressure, memory.pressure or io.pressure)."""

    some_seconds: float | None
    """Time in which at least one task stalled, in seconds."""
    full_seconds: float | None
    """Time in which all non-idle tasks stalled, in seconds.

    None when the file has no "full" line, as cpu.pressure before Linux 5.13.
    """


_NO_PRESSURE = PressureTotals(None, None)


@dataclass(frozen=True)
class NetworkCounters:
    """Interface counters summed over every interface except lo.

    A field is None when the source does not report that counter.
    """

    receive_bytes: int | None
    receive_packets: int | None
    receive_errors: int | None
    receive_dropped: int | None
    transmit_bytes: int | None
    transmit_packets: int | None
    transmit_errors: int | None
    transmit_dropped: int | None
    interfaces: tuple[InterfaceCounters, ...] | None = None
    """The same counters per interface except lo, in the source's order."""


def network_counters(
    values: Sequence[int | None], interfaces: tuple[InterfaceCounters, ...] | None
) -> NetworkCounters:
    """Build NetworkCounters from the eight totals in the order of its fields."""
    return NetworkCounters(
        receive_bytes=values[0],
        receive_packets=values[1],
        receive_errors=values[2],
        receive_dropped=values[3],
        transmit_bytes=values[4],
        transmit_packets=values[5],
        transmit_errors=values[6],
        transmit_dropped=values[7],
        interfaces=interfaces,
    )


NO_NETWORK = NetworkCounters(None, None, None, None, None, None, None, None)


class CgroupReader:
    """Read a container's counters from its cgroup files and its network namespace."""

    def __init__(
        self,
        location: CgroupLocation,
        pid: int,
        proc_root: Path = Path("/proc"),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.source = f"cgroup-v{location.version}"
        self._location = location
        self._net_dev = proc_root / str(pid) / "net" / "dev"
        self._clock = clock
        self._host_memory_bytes = _read_mem_total(proc_root / "meminfo")

    def read(self) -> Sample:
        """Take one sample.

        Raises ServiceNotReady once the cgroup is removed, and UsageError when the
        CPU usage file is unreadable or any file does not match the kernel's format.
        """
        timestamp = self._clock()
        location = self._location
        if location.version == 1:
            cpu = self._cpu_v1()
            memory = self._memory_v1()
            block_io = _block_io_v1(location.blkio_directory)
        else:
            cpu = self._cpu_v2()
            memory = self._memory_v2()
            block_io = _block_io_v2(location.blkio_directory)
        pressure = {
            resource: _read_pressure(location.unified_directory, resource)
            for resource in ("cpu", "memory", "io")
        }
        threads = None
        if location.pids_directory is not None:
            threads = _read_int(location.pids_directory / "pids.current")
        return _assemble_sample(
            timestamp,
            cpu,
            memory,
            block_io,
            pressure,
            self._network(),
            processes=_count_lines(location.procs_file()),
            threads=threads,
        )

    def _cpu_v1(self) -> _CpuFigures:
        location = self._location
        usage_file = location.cpuacct_directory / "cpuacct.usage"
        usage_text = self._read_required(usage_file)
        try:
            usage_ns = int(usage_text.strip())
        except ValueError:
            raise _invalid_cpu_usage(usage_file, usage_text) from None

        ticks = _read_flat_keyed(location.cpuacct_directory / "cpuacct.stat")
        periods = throttled = throttled_seconds = None
        if location.cpu_directory is not None and _has_quota_v1(location.cpu_directory):
            stat = _read_flat_keyed(location.cpu_directory / "cpu.stat")
            periods = stat.get("nr_periods")
            throttled = stat.get("nr_throttled")
            throttled_seconds = _scaled(
                stat.get("throttled_time"), NANOSECONDS_PER_SECOND
            )
        return _CpuFigures(
            usage_seconds=usage_ns / NANOSECONDS_PER_SECOND,
            user_seconds=_scaled(ticks.get("user"), USER_HZ),
            system_seconds=_scaled(ticks.get("system"), USER_HZ),
            periods=periods,
            throttled_periods=throttled,
            throttled_seconds=throttled_seconds,
        )

    def _cpu_v2(self) -> _CpuFigures:
        directory = self._location.cpuacct_directory
        stat_file = directory / "cpu.stat"
        stat_text = self._read_required(stat_file)
        stat = _parse_flat_keyed(stat_text, stat_file)
        usage_usec = stat.get("usage_usec")
        if usage_usec is None:
            raise _invalid_cpu_usage(stat_file, stat_text)

        periods = throttled = throttled_seconds = None
        if _has_quota_v2(directory):
            periods = stat.get("nr_periods")
            throttled = stat.get("nr_throttled")
            throttled_seconds = _scaled(
                stat.get("throttled_usec"), MICROSECONDS_PER_SECOND
            )
        return _CpuFigures(
            usage_seconds=usage_usec / MICROSECONDS_PER_SECOND,
            user_seconds=_scaled(stat.get("user_usec"), MICROSECONDS_PER_SECOND),
            system_seconds=_scaled(stat.get("system_usec"), MICROSECONDS_PER_SECOND),
            periods=periods,
            throttled_periods=throttled,
            throttled_seconds=throttled_seconds,
        )

    def _memory_v1(self) -> _MemoryFigures:
        directory = self._location.memory_directory
        if directory is None:
            return _NO_MEMORY
        usage = _read_int(directory / "memory.usage_in_bytes")
        stat = _read_flat_keyed(directory / "memory.stat")
        oom_control = _read_flat_keyed(directory / "memory.oom_control")
        limit, limit_set = self._memory_limit(directory / "memory.limit_in_bytes")
        under_oom = oom_control.get("under_oom")
        # The total_ keys cover child cgroups too, as cAdvisor reads them on v1.
        return _MemoryFigures(
            usage_bytes=usage,
            working_set_bytes=_working_set(
                usage, _first_present(stat, "total_inactive_file", "inactive_file")
            ),
            rss_bytes=_first_present(stat, "total_rss", "rss"),
            cache_bytes=_first_present(stat, "total_cache", "cache"),
            # memory.stat lists swap only when swap accounting is enabled.
            swap_bytes=_first_present(stat, "total_swap", "swap"),
            limit_bytes=limit,
            limit_set=limit_set,
            # Linux 4.13 added oom_kill, so older kernels give None.
            oom_kills=oom_control.get("oom_kill"),
            oom_events=None,
            under_oom=None if under_oom is None else under_oom != 0,
        )

    def _memory_v2(self) -> _MemoryFigures:
        directory = self._location.memory_directory
        if directory is None:
            return _NO_MEMORY
        usage = _read_int(directory / "memory.current")
        stat = _read_flat_keyed(directory / "memory.stat")
        events = _read_flat_keyed(directory / "memory.events")
        limit, limit_set = self._memory_limit(directory / "memory.max")
        return _MemoryFigures(
            usage_bytes=usage,
            working_set_bytes=_working_set(usage, stat.get("inactive_file")),
            rss_bytes=stat.get("anon"),
            cache_bytes=stat.get("file"),
            # memory.swap.current exists only when the kernel accounts swap.
            swap_bytes=_read_int(directory / "memory.swap.current"),
            limit_bytes=limit,
            limit_set=limit_set,
            oom_kills=events.get("oom_kill"),
            oom_events=events.get("oom"),
            under_oom=None,
        )

    def _memory_limit(self, path: Path) -> tuple[int | None, bool | None]:
        """Return (limit bytes, whether a limit is set) from a limit file."""
        text = _read_text(path)
        if text is None:
            return None, None
        value = text.strip()
        if value == "max":
            return resolve_memory_limit(None, self._host_memory_bytes)
        return resolve_memory_limit(_parse_int(value, path), self._host_memory_bytes)

    def _read_required(self, path: Path) -> str:
        try:
            return path.read_text()
        except OSError as error:
            if not path.parent.is_dir():
                raise ServiceNotReady(
                    f"cgroup directory {str(path.parent)!r} no longer exists, so the "
                    f"container has exited; check its logs and exit code"
                ) from error
            raise UsageError(
                f"cannot read CPU usage from {str(path)!r} ({error}); run as a user "
                f"who can read the cgroup files, {API_HINT}"
            ) from error

    def _network(self) -> NetworkCounters:
        text = _read_text(self._net_dev)
        return NO_NETWORK if text is None else parse_net_dev(text, self._net_dev)


def _assemble_sample(
    timestamp: float,
    cpu: _CpuFigures,
    memory: _MemoryFigures,
    block_io: BlockIoCounters,
    pressure: dict[str, PressureTotals],
    network: NetworkCounters,
    processes: int | None,
    threads: int | None,
) -> Sample:
    return Sample(
        timestamp_seconds=timestamp,
        cpu_usage_seconds_total=cpu.usage_seconds,
        cpu_user_seconds_total=cpu.user_seconds,
        cpu_system_seconds_total=cpu.system_seconds,
        cpu_cfs_periods_total=cpu.periods,
        cpu_cfs_throttled_periods_total=cpu.throttled_periods,
        cpu_cfs_throttled_seconds_total=cpu.throttled_seconds,
        cpu_pressure_some_seconds_total=pressure["cpu"].some_seconds,
        cpu_pressure_full_seconds_total=pressure["cpu"].full_seconds,
        memory_usage_bytes=memory.usage_bytes,
        memory_working_set_bytes=memory.working_set_bytes,
        memory_rss_bytes=memory.rss_bytes,
        memory_cache_bytes=memory.cache_bytes,
        memory_swap_bytes=memory.swap_bytes,
        memory_limit_bytes=memory.limit_bytes,
        memory_limit_set=memory.limit_set,
        memory_oom_kills_total=memory.oom_kills,
        memory_oom_events_total=memory.oom_events,
        memory_under_oom=memory.under_oom,
        memory_pressure_some_seconds_total=pressure["memory"].some_seconds,
        memory_pressure_full_seconds_total=pressure["memory"].full_seconds,
        block_io_read_bytes_total=block_io.read_bytes,
        block_io_write_bytes_total=block_io.write_bytes,
        block_io_read_operations_total=block_io.read_operations,
        block_io_write_operations_total=block_io.write_operations,
        io_pressure_some_seconds_total=pressure["io"].some_seconds,
        io_pressure_full_seconds_total=pressure["io"].full_seconds,
        network_receive_bytes_total=network.receive_bytes,
        network_receive_packets_total=network.receive_packets,
        network_receive_errors_total=network.receive_errors,
        network_receive_packets_dropped_total=network.receive_dropped,
        network_transmit_bytes_total=network.transmit_bytes,
        network_transmit_packets_total=network.transmit_packets,
        network_transmit_errors_total=network.transmit_errors,
        network_transmit_packets_dropped_total=network.transmit_dropped,
        processes=processes,
        threads=threads,
        network_interfaces=network.interfaces,
        block_devices=block_io.devices,
    )


def _block_io_v1(directory: Path | None) -> BlockIoCounters:
    """Read blkio.throttle.io_service_bytes and io_serviced, preferring _recursive.

    The _recursive files (Linux 4.16 and later) include child cgroups.
    """
    if directory is None:
        return _NO_BLOCK_IO
    read_bytes = write_bytes = read_operations = write_operations = None
    per_device: dict[tuple[int, int], dict[str, int]] = {}
    for name, is_bytes in (("io_service_bytes", True), ("io_serviced", False)):
        path = directory / f"blkio.throttle.{name}_recursive"
        text = _read_text(path)
        if text is None:
            path = directory / f"blkio.throttle.{name}"
            text = _read_text(path)
        if text is None:
            continue
        devices = blkio_throttle_devices(text, path)
        if not devices:
            continue
        read_total = sum(read for read, _ in devices.values())
        write_total = sum(write for _, write in devices.values())
        kind = "bytes" if is_bytes else "operations"
        for device, (read, write) in devices.items():
            counters = per_device.setdefault(device, {})
            counters[f"read_{kind}"] = read
            counters[f"write_{kind}"] = write
        if is_bytes:
            read_bytes, write_bytes = read_total, write_total
        else:
            read_operations, write_operations = read_total, write_total
    return BlockIoCounters(
        read_bytes,
        write_bytes,
        read_operations,
        write_operations,
        devices=_device_counters(per_device) if per_device else None,
    )


def _device_counters(
    per_device: Mapping[tuple[int, int], Mapping[str, int]],
) -> tuple[DeviceCounters, ...]:
    return tuple(
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


def parse_blkio_throttle(text: str, path: Path) -> tuple[int, int] | None:
    """Sum the Read and Write lines of a v1 blkio.throttle.* file over its devices.

    Lines are "<major>:<minor> <operation> <value>", with the operations Read,
    Write, Sync, Async, Discard and Total, and a last line "Total <value>" over
    all devices. Returns None when no device is listed, because a file reading
    just "Total 0" gives no figure for the I/O done. Linux 6.18 accounts a disk
    only after some cgroup has set a throttle rule (blkio.throttle.*_device) for
    it since boot, and a device appears in a cgroup's file after its first I/O.
    Raises UsageError naming the file for a line in another format.
    """
    devices = blkio_throttle_devices(text, path)
    if not devices:
        return None
    read_total = sum(read for read, _ in devices.values())
    write_total = sum(write for _, write in devices.values())
    return read_total, write_total


def blkio_throttle_devices(text: str, path: Path) -> dict[tuple[int, int], list[int]]:
    """Return the [Read, Write] values of a v1 blkio.throttle.* file per device.

    The keys are (major, minor). Raises UsageError naming the file for a line
    that parse_blkio_throttle would reject.
    """
    devices: dict[tuple[int, int], list[int]] = {}
    for line in text.splitlines():
        fields = line.split()
        if not fields:
            continue
        if len(fields) == 2 and fields[0] == "Total":
            _parse_int(fields[1], path, line)
            continue
        if len(fields) != 3 or ":" not in fields[0]:
            raise _invalid_line(path, line, "'<major>:<minor> <operation> <value>'")
        counters = devices.setdefault(_parse_device(fields[0], path, line), [0, 0])
        value = _parse_int(fields[2], path, line)
        if fields[1] == "Read":
            counters[0] += value
        elif fields[1] == "Write":
            counters[1] += value
    return devices


def _parse_device(text: str, path: Path, line: str) -> tuple[int, int]:
    major, _, minor = text.partition(":")
    return _parse_int(major, path, line), _parse_int(minor, path, line)


def _block_io_v2(directory: Path | None) -> BlockIoCounters:
    if directory is None:
        return _NO_BLOCK_IO
    path = directory / "io.stat"
    text = _read_text(path)
    # io.stat exists only where the io controller is enabled for the cgroup.
    return _NO_BLOCK_IO if text is None else parse_io_stat(text, path)


def parse_io_stat(text: str, path: Path) -> BlockIoCounters:
    """Sum rbytes, wbytes, rios and wios of a v2 io.stat file over its devices.

    Lines are "<major>:<minor> key=value ...". A device appears after its first
    I/O, so an empty file means no I/O yet and gives zeros. Keys other than the
    four are skipped, because io.cost adds keys with non-integer values. Raises
    UsageError naming the file for a line in another format.
    """
    keys = {
        "rbytes": "read_bytes",
        "wbytes": "write_bytes",
        "rios": "read_operations",
        "wios": "write_operations",
    }
    per_device: dict[tuple[int, int], dict[str, int]] = {}
    for line in text.splitlines():
        fields = line.split()
        if not fields:
            continue
        if ":" not in fields[0]:
            raise _invalid_line(path, line, "'<major>:<minor> key=value ...'")
        counters = per_device.setdefault(
            _parse_device(fields[0], path, line), dict.fromkeys(keys.values(), 0)
        )
        for field in fields[1:]:
            key, separator, value = field.partition("=")
            if not separator:
                raise _invalid_line(path, line, "'<major>:<minor> key=value ...'")
            if key in keys:
                counters[keys[key]] += _parse_int(value, path, line)
    devices = _device_counters(per_device)
    return BlockIoCounters(
        read_bytes=sum(device.read_bytes or 0 for device in devices),
        write_bytes=sum(device.write_bytes or 0 for device in devices),
        read_operations=sum(device.read_operations or 0 for device in devices),
        write_operations=sum(device.write_operations or 0 for device in devices),
        devices=devices,
    )


def _read_pressure(directory: Path | None, resource: str) -> PressureTotals:
    if directory is None:
        return _NO_PRESSURE
    path = directory / f"{resource}.pressure"
    text = _read_text(path)
    # The files are missing on kernels built without PSI or booted with psi=0.
    return _NO_PRESSURE if text is None else parse_pressure(text, path)


def parse_pressure(text: str, path: Path) -> PressureTotals:
    """Return the "some" and "full" totals of a PSI file, in seconds.

    Lines are "some avg10=0.00 avg60=0.00 avg300=0.00 total=<microseconds>" and
    the same for "full". Raises UsageError naming the file for a line in another
    format or a line without an integer total.
    """
    totals: dict[str, float] = {}
    expected = "'some|full avg10=<ratio> avg60=<ratio> avg300=<ratio> total=<us>'"
    for line in text.splitlines():
        fields = line.split()
        if not fields:
            continue
        if fields[0] not in ("some", "full"):
            raise _invalid_line(path, line, expected)
        values = {}
        for field in fields[1:]:
            key, separator, value = field.partition("=")
            if not separator:
                raise _invalid_line(path, line, expected)
            values[key] = value
        if "total" not in values:
            raise _invalid_line(path, line, expected)
        total_usec = _parse_int(values["total"], path, line)
        totals[fields[0]] = total_usec / MICROSECONDS_PER_SECOND
    return PressureTotals(totals.get("some"), totals.get("full"))


def parse_net_dev(text: str, path: Path = Path("/proc/net/dev")) -> NetworkCounters:
    """Sum the counters of /proc/net/dev over every interface except lo.

    After two header lines, each line is "<interface>: " and 16 integers: bytes,
    packets, errs, drop, fifo, frame, compressed and multicast received, then
    bytes, packets, errs, drop, fifo, colls, carrier and compressed sent. A
    namespace with only lo gives zeros. Raises UsageError naming the file for a
    line in another format.
    """
    sums = [0] * 8
    # Received bytes, packets, errs, drop and sent bytes, packets, errs, drop.
    columns = (0, 1, 2, 3, 8, 9, 10, 11)
    interfaces = []
    for line in text.splitlines()[2:]:
        if not line.strip():
            continue
        interface, separator, counters = line.partition(":")
        fields = counters.split()
        if not separator or len(fields) != 16:
            raise _invalid_line(path, line, "'<interface>: ' and 16 integers")
        values = [_parse_int(field, path, line) for field in fields]
        if interface.strip() == "lo":
            continue
        selected = [values[column] for column in columns]
        interfaces.append(interface_counters(interface.strip(), selected))
        for index, value in enumerate(selected):
            sums[index] += value
    return network_counters(sums, tuple(interfaces))


def interface_counters(name: str, values: Sequence[int | None]) -> InterfaceCounters:
    """Build InterfaceCounters from the eight counters in the order of its fields."""
    return InterfaceCounters(
        name=name,
        receive_bytes=values[0],
        receive_packets=values[1],
        receive_errors=values[2],
        receive_dropped=values[3],
        transmit_bytes=values[4],
        transmit_packets=values[5],
        transmit_errors=values[6],
        transmit_dropped=values[7],
    )


def _invalid_cpu_usage(path: Path, text: str) -> UsageError:
    return UsageError(
        f"invalid CPU usage in {str(path)!r}: {text[:200]!r}; the kernel's cgroup "
        f"format is not supported, {API_HINT}"
    )


def _invalid_line(path: Path, line: str, expected: str) -> UsageError:
    return UsageError(
        f"invalid line {line[:200]!r} in {str(path)!r}: expected {expected}; the "
        f"kernel's format is not supported, {API_HINT}"
    )


def _has_quota_v1(cpu_directory: Path) -> bool:
    """Return False only when cpu.cfs_quota_us states that no quota is set (-1)."""
    quota = _read_int(cpu_directory / "cpu.cfs_quota_us")
    return quota is None or quota >= 0


def _has_quota_v2(directory: Path) -> bool:
    """Return False only when cpu.max states that no quota is set ("max ...")."""
    text = _read_text(directory / "cpu.max")
    return text is None or not text.startswith("max")


def _working_set(
    usage_bytes: int | None, inactive_file_bytes: int | None
) -> int | None:
    if usage_bytes is None or inactive_file_bytes is None:
        return None
    return max(0, usage_bytes - inactive_file_bytes)


def _first_present(values: dict[str, int], *keys: str) -> int | None:
    for key in keys:
        if key in values:
            return values[key]
    return None


def _scaled(value: int | None, units_per_second: int) -> float | None:
    return None if value is None else value / units_per_second


def _read_text(path: Path) -> str | None:
    """Return a file's text, or None when it is missing or unreadable."""
    try:
        return path.read_text()
    except OSError as error:
        logger.debug("cannot read %s: %s", path, error)
        return None


def _parse_int(text: str, path: Path, line: str | None = None) -> int:
    try:
        return int(text)
    except ValueError:
        raise _invalid_line(
            path, text if line is None else line, "an integer"
        ) from None


def _read_int(path: Path) -> int | None:
    """Return the integer in a file, or None when it is missing."""
    text = _read_text(path)
    return None if text is None else _parse_int(text.strip(), path)


def _count_lines(path: Path) -> int | None:
    text = _read_text(path)
    return None if text is None else len(text.split())


def _read_flat_keyed(path: Path) -> dict[str, int]:
    text = _read_text(path)
    return {} if text is None else _parse_flat_keyed(text, path)


def _parse_flat_keyed(text: str, path: Path) -> dict[str, int]:
    """Parse "key value" lines as in cpu.stat, memory.stat and memory.events.

    Raises UsageError naming the file for a line in another format.
    """
    values: dict[str, int] = {}
    for line in text.splitlines():
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2:
            raise _invalid_line(path, line, "'<key> <integer>'")
        values[parts[0]] = _parse_int(parts[1], path, line)
    return values


def _read_mem_total(meminfo: Path) -> int | None:
    """Return MemTotal from /proc/meminfo in bytes, or None when unreadable."""
    text = _read_text(meminfo)
    if text is None:
        return None
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] == "MemTotal:" and parts[2] == "kB":
            try:
                return int(parts[1]) * 1024
            except ValueError:
                break
    logger.debug("no MemTotal line in %s", meminfo)
    return None
