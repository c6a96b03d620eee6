"""Find a process's cgroup and read a container's counters from its cgroup files.

Works on cgroup v1 (one hierarchy per controller under the cgroup root, as on hybrid
hosts) and on cgroup v2 (a single unified hierarchy). The paths come from
/proc/<pid>/cgroup, so the reader must run in the host's cgroup namespace.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from hyperlane.errors import ServiceNotReady, UsageError
from hyperlane.metrics.sample import Sample

logger = logging.getLogger(__name__)

V1_CONTROLLERS = ("cpu", "cpuacct", "memory", "pids")
# The kernel reports "no limit" on v1 as a page-aligned value near 2**63.
UNLIMITED_FLOOR_BYTES = 2**62
NANOSECONDS_PER_SECOND = 1_000_000_000
MICROSECONDS_PER_SECOND = 1_000_000
API_HINT = "or use --metrics-source api"


@dataclass(frozen=True)
class CgroupLocation:
    """Directories of one process's cgroup.

    On v2 every field is the same unified directory. On v1 a field is None when
    that controller is not mounted under the cgroup root.
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
    when any of the cpu, cpuacct, memory and pids controllers is mounted under the
    cgroup root, and falls back to the "0::" line of the unified hierarchy when none
    is. Raises UsageError naming the path when the process or its cgroup is not
    found, or when v1 lacks the cpuacct controller.
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
        )

    # A hybrid host mounts the unified hierarchy below the root.
    unified_root = cgroup_root / "unified"
    if not (unified_root / "cgroup.controllers").is_file():
        unified_root = cgroup_root
    return _unified_location(entries, unified_root, cgroup_file)


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
    )


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
        """Take one sample. Raises ServiceNotReady once the cgroup is removed."""
        timestamp = self._clock()
        if self._location.version == 1:
            return self._read_v1(timestamp)
        return self._read_v2(timestamp)

    def _read_v1(self, timestamp: float) -> Sample:
        location = self._location
        usage_file = location.cpuacct_directory / "cpuacct.usage"
        usage_text = self._read_required(usage_file)
        try:
            cpu_ns = int(usage_text.strip())
        except ValueError:
            raise _invalid_cpu_usage(usage_file, usage_text) from None

        periods = throttled = throttled_seconds = None
        if location.cpu_directory is not None and _has_quota_v1(location.cpu_directory):
            stat = _read_key_values(location.cpu_directory / "cpu.stat")
            periods = stat.get("nr_periods")
            throttled = stat.get("nr_throttled")
            throttled_seconds = _scaled(
                stat.get("throttled_time"), NANOSECONDS_PER_SECOND
            )

        usage_bytes = working_set = limit = None
        if location.memory_directory is not None:
            memory = location.memory_directory
            usage_bytes = _read_int(memory / "memory.usage_in_bytes")
            stat = _read_key_values(memory / "memory.stat")
            # total_inactive_file covers child cgroups, as cAdvisor uses on v1.
            inactive = stat.get("total_inactive_file", stat.get("inactive_file"))
            working_set = _working_set(usage_bytes, inactive)
            limit = self._limit_or_none(_read_int(memory / "memory.limit_in_bytes"))
        rx_bytes, tx_bytes = self._network()

        return Sample(
            timestamp_seconds=timestamp,
            cpu_usage_seconds_total=cpu_ns / NANOSECONDS_PER_SECOND,
            cpu_periods_total=periods,
            cpu_throttled_periods_total=throttled,
            cpu_throttled_seconds_total=throttled_seconds,
            memory_usage_bytes=usage_bytes,
            memory_working_set_bytes=working_set,
            memory_limit_bytes=limit,
            network_rx_bytes_total=rx_bytes,
            network_tx_bytes_total=tx_bytes,
            pids=self._pids(),
        )

    def _read_v2(self, timestamp: float) -> Sample:
        directory = self._location.cpuacct_directory
        stat_file = directory / "cpu.stat"
        stat_text = self._read_required(stat_file)
        cpu_stat = _parse_key_values(stat_text, stat_file)
        usage_usec = cpu_stat.get("usage_usec")
        if usage_usec is None:
            raise _invalid_cpu_usage(stat_file, stat_text)

        periods = throttled = throttled_seconds = None
        if _has_quota_v2(directory):
            periods = cpu_stat.get("nr_periods")
            throttled = cpu_stat.get("nr_throttled")
            throttled_seconds = _scaled(
                cpu_stat.get("throttled_usec"), MICROSECONDS_PER_SECOND
            )

        usage_bytes = _read_int(directory / "memory.current")
        memory_stat = _read_key_values(directory / "memory.stat")
        working_set = _working_set(usage_bytes, memory_stat.get("inactive_file"))
        limit = self._limit_or_none(_read_int(directory / "memory.max"))
        rx_bytes, tx_bytes = self._network()

        return Sample(
            timestamp_seconds=timestamp,
            cpu_usage_seconds_total=usage_usec / MICROSECONDS_PER_SECOND,
            cpu_periods_total=periods,
            cpu_throttled_periods_total=throttled,
            cpu_throttled_seconds_total=throttled_seconds,
            memory_usage_bytes=usage_bytes,
            memory_working_set_bytes=working_set,
            memory_limit_bytes=limit,
            network_rx_bytes_total=rx_bytes,
            network_tx_bytes_total=tx_bytes,
            pids=self._pids(),
        )

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

    def _limit_or_none(self, limit_bytes: int | None) -> int | None:
        if limit_bytes is None or limit_bytes >= UNLIMITED_FLOOR_BYTES:
            return None
        # A limit above physical memory can never be reached, so it reads as none.
        if (
            self._host_memory_bytes is not None
            and limit_bytes > self._host_memory_bytes
        ):
            return None
        return limit_bytes

    def _pids(self) -> int | None:
        directory = self._location.pids_directory
        if directory is None:
            return None
        return _read_int(directory / "pids.current")

    def _network(self) -> tuple[int | None, int | None]:
        """Sum received and sent bytes over the namespace's interfaces except lo."""
        try:
            text = self._net_dev.read_text()
        except OSError as error:
            logger.debug("cannot read %s: %s", self._net_dev, error)
            return None, None
        return parse_net_dev(text)


def parse_net_dev(text: str) -> tuple[int | None, int | None]:
    """Return (received bytes, sent bytes) summed over /proc/net/dev, lo excluded.

    Returns (None, None) when no line parses, so a garbled file is not read as zero.
    """
    rx_total = tx_total = 0
    parsed_lines = 0
    # The first two lines are column headers.
    for line in text.splitlines()[2:]:
        interface, separator, counters = line.partition(":")
        fields = counters.split()
        if not separator or len(fields) < 9:
            logger.debug("skipping malformed net/dev line %r", line)
            continue
        try:
            rx_bytes = int(fields[0])
            tx_bytes = int(fields[8])
        except ValueError:
            logger.debug("skipping malformed net/dev line %r", line)
            continue
        parsed_lines += 1
        if interface.strip() == "lo":
            continue
        rx_total += rx_bytes
        tx_total += tx_bytes
    if parsed_lines == 0:
        return None, None
    return rx_total, tx_total


def _invalid_cpu_usage(path: Path, text: str) -> UsageError:
    return UsageError(
        f"invalid CPU usage in {str(path)!r}: {text[:200]!r}; the kernel's cgroup "
        f"format is not supported, {API_HINT}"
    )


def _has_quota_v1(cpu_directory: Path) -> bool:
    """Return False only when cpu.cfs_quota_us states that no quota is set (-1)."""
    quota = _read_int(cpu_directory / "cpu.cfs_quota_us")
    return quota is None or quota >= 0


def _has_quota_v2(directory: Path) -> bool:
    """Return False only when cpu.max states that no quota is set ("max ...")."""
    try:
        text = (directory / "cpu.max").read_text()
    except OSError:
        return True
    return not text.startswith("max")


def _working_set(
    usage_bytes: int | None, inactive_file_bytes: int | None
) -> int | None:
    if usage_bytes is None or inactive_file_bytes is None:
        return None
    return max(0, usage_bytes - inactive_file_bytes)


def _scaled(value: int | None, units_per_second: int) -> float | None:
    return None if value is None else value / units_per_second


def _read_int(path: Path) -> int | None:
    """Return the integer in a file, or None when it is missing, invalid or "max"."""
    try:
        text = path.read_text().strip()
    except OSError as error:
        logger.debug("cannot read %s: %s", path, error)
        return None
    if text == "max":
        return None
    try:
        return int(text)
    except ValueError:
        logger.debug("invalid integer %r in %s", text, path)
        return None


def _read_key_values(path: Path) -> dict[str, int]:
    try:
        text = path.read_text()
    except OSError as error:
        logger.debug("cannot read %s: %s", path, error)
        return {}
    return _parse_key_values(text, path)


def _parse_key_values(text: str, path: Path) -> dict[str, int]:
    """Parse "key value" lines as in cpu.stat and memory.stat, skipping bad lines."""
    values: dict[str, int] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) != 2:
            logger.debug("skipping malformed line %r in %s", line, path)
            continue
        try:
            values[parts[0]] = int(parts[1])
        except ValueError:
            logger.debug("skipping malformed line %r in %s", line, path)
    return values


def _read_mem_total(meminfo: Path) -> int | None:
    """Return MemTotal from /proc/meminfo in bytes, or None when unreadable."""
    try:
        text = meminfo.read_text()
    except OSError as error:
        logger.debug("cannot read %s: %s", meminfo, error)
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
