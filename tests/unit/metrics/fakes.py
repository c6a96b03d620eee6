"""Fake /proc and cgroup trees, and a fake docker-SDK container, for unit tests."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, cast

import docker.errors
from docker.models.containers import Container

from hyperlane.metrics import Sample

CONTAINER_ID = "77f96846ee08dcc9967fefc8b915444a0368878474c626e39eb16e24df3707ab"
PID = 4242
MEM_TOTAL_KB = 1_000_000
# MemTotal of the fake engine's /info: the host memory Docker reports as the limit
# of an unlimited container on the test machine.
ENGINE_MEM_TOTAL_BYTES = 25_276_071_936
# A sample with every optional field None, to copy with dataclasses.replace().
_OPTIONAL_FIELDS: dict[str, Any] = dict.fromkeys(
    [field.name for field in fields(Sample)][2:], None
)
BASE = Sample(timestamp_seconds=0.0, cpu_usage_seconds_total=0.0, **_OPTIONAL_FIELDS)
# Receive and transmit columns: bytes packets errs drop fifo frame compressed
# multicast, then bytes packets errs drop fifo colls carrier compressed.
NET_DEV = """\
Inter-|   Receive                            |  Transmit
 face |bytes packets errs drop fifo frame compressed multicast|bytes packets ...
    lo: 5000 50 0 0 0 0 0 0 5000 50 0 0 0 0 0 0
  eth0: 1200 10 1 2 0 0 0 0  300  3 0 1 0 0 0 0
  eth1:   34  1 0 0 0 0 0 0    7  1 2 0 0 0 0 0
"""
# PSI files as Linux 6.18 writes them, with totals in microseconds.
CPU_PRESSURE = (
    "some avg10=8.15 avg60=1.47 avg300=0.30 total=1485081\n"
    "full avg10=8.15 avg60=1.47 avg300=0.30 total=1481505\n"
)
MEMORY_PRESSURE = (
    "some avg10=0.00 avg60=0.00 avg300=0.00 total=2500\n"
    "full avg10=0.00 avg60=0.00 avg300=0.00 total=1000\n"
)
IO_PRESSURE = (
    "some avg10=0.00 avg60=0.00 avg300=0.00 total=5659\n"
    "full avg10=0.00 avg60=0.00 avg300=0.00 total=5600\n"
)
# A v1 blkio.throttle file as Linux writes it for two devices with throttle rules.
BLKIO_SERVICE_BYTES = """\
8:0 Read 4096
8:0 Write 16785408
8:0 Sync 16789504
8:0 Async 0
8:0 Discard 0
8:0 Total 16789504
254:0 Read 8192
254:0 Write 0
254:0 Sync 0
254:0 Async 8192
254:0 Discard 0
254:0 Total 8192
Total 16797696
"""
BLKIO_SERVICED = """\
8:0 Read 1
8:0 Write 7
8:0 Sync 8
8:0 Async 0
8:0 Discard 0
8:0 Total 8
254:0 Read 2
254:0 Write 0
254:0 Sync 0
254:0 Async 2
254:0 Discard 0
254:0 Total 2
Total 10
"""
IO_STAT = (
    "8:16 rbytes=1459200 wbytes=314773504 rios=192 wios=353 dbytes=0 dios=0\n"
    "8:0 rbytes=90430464 wbytes=299008000 rios=8950 wios=1252 dbytes=50331648 "
    "dios=3021\n"
)


def write(path: Path, text: str) -> Path:
    """Write text to path, creating its parent directories."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def make_proc(proc_root: Path, cgroup_lines: list[str], pid: int = PID) -> Path:
    """Create /proc/<pid>/cgroup, /proc/<pid>/net/dev and /proc/meminfo."""
    write(
        proc_root / str(pid) / "cgroup", "".join(f"{line}\n" for line in cgroup_lines)
    )
    write(proc_root / str(pid) / "net" / "dev", NET_DEV)
    write(proc_root / "meminfo", f"MemTotal:       {MEM_TOTAL_KB} kB\nMemFree: 1 kB\n")
    return proc_root


def v1_cgroup_lines(cgroup_path: str) -> list[str]:
    """Return /proc/<pid>/cgroup lines of a hybrid host with separate v1 mounts."""
    return [
        f"9:name=systemd:{cgroup_path}",
        f"8:pids:{cgroup_path}",
        f"7:blkio:{cgroup_path}",
        f"4:memory:{cgroup_path}",
        f"2:cpuacct:{cgroup_path}",
        f"1:cpu:{cgroup_path}",
        f"0::{cgroup_path}",
    ]


@dataclass
class V1Tree:
    """Directories of one fake cgroup v1 container on a hybrid host."""

    cgroup_root: Path
    cpu: Path
    cpuacct: Path
    memory: Path
    pids: Path
    blkio: Path
    unified: Path


def make_v1_tree(cgroup_root: Path, cgroup_path: str) -> V1Tree:
    """Create v1 controller directories and a unified directory with all files."""
    relative = cgroup_path.lstrip("/")
    tree = V1Tree(
        cgroup_root=cgroup_root,
        cpu=cgroup_root / "cpu" / relative,
        cpuacct=cgroup_root / "cpuacct" / relative,
        memory=cgroup_root / "memory" / relative,
        pids=cgroup_root / "pids" / relative,
        blkio=cgroup_root / "blkio" / relative,
        unified=cgroup_root / "unified" / relative,
    )
    write(tree.cpuacct / "cpuacct.usage", "2500000000\n")
    write(tree.cpuacct / "cpuacct.stat", "user 230\nsystem 15\n")
    write(tree.cpuacct / "cgroup.procs", f"{PID}\n{PID + 1}\n")
    write(tree.cpu / "cpu.cfs_quota_us", "50000\n")
    write(
        tree.cpu / "cpu.stat",
        "nr_periods 40\nnr_throttled 12\nthrottled_time 750000000\n"
        "nr_bursts 0\nburst_time 0\n",
    )
    write(tree.memory / "memory.usage_in_bytes", "10485760\n")
    write(
        tree.memory / "memory.stat",
        "cache 4194304\nrss 5242880\nshmem 1048576\nswap 0\n"
        "inactive_anon 1048576\ninactive_file 1048576\n"
        "hierarchical_memory_limit 67108864\n"
        "total_cache 4325376\ntotal_rss 6291456\ntotal_shmem 1048576\n"
        "total_swap 131072\ntotal_inactive_file 2097152\n",
    )
    write(tree.memory / "memory.limit_in_bytes", "67108864\n")
    write(
        tree.memory / "memory.oom_control",
        "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
    )
    write(tree.pids / "pids.current", "3\n")
    write(tree.blkio / "blkio.throttle.io_service_bytes_recursive", BLKIO_SERVICE_BYTES)
    write(tree.blkio / "blkio.throttle.io_serviced_recursive", BLKIO_SERVICED)
    write(cgroup_root / "unified" / "cgroup.controllers", "")
    write(tree.unified / "cpu.pressure", CPU_PRESSURE)
    write(tree.unified / "memory.pressure", MEMORY_PRESSURE)
    write(tree.unified / "io.pressure", IO_PRESSURE)
    return tree


def make_v2_tree(cgroup_root: Path, cgroup_path: str) -> Path:
    """Create a v2 root and one cgroup directory with a full set of files."""
    write(cgroup_root / "cgroup.controllers", "cpuset cpu io memory pids\n")
    directory = cgroup_root / cgroup_path.lstrip("/")
    write(
        directory / "cpu.stat",
        "usage_usec 1750000\nuser_usec 1500000\nsystem_usec 250000\n"
        "nr_periods 7\nnr_throttled 3\nthrottled_usec 139381\n"
        "nr_bursts 0\nburst_usec 0\n",
    )
    write(directory / "cpu.max", "50000 100000\n")
    write(directory / "cpu.pressure", CPU_PRESSURE)
    write(directory / "memory.current", "8388608\n")
    write(
        directory / "memory.stat",
        "anon 4194304\nfile 3145728\nkernel 524288\nshmem 1048576\n"
        "inactive_anon 1048576\nactive_anon 3145728\n"
        "inactive_file 1048576\nactive_file 1048576\n",
    )
    write(directory / "memory.swap.current", "65536\n")
    write(directory / "memory.max", "33554432\n")
    write(
        directory / "memory.events",
        "low 0\nhigh 0\nmax 5\noom 2\noom_kill 1\noom_group_kill 0\n",
    )
    write(directory / "memory.pressure", MEMORY_PRESSURE)
    write(directory / "io.stat", IO_STAT)
    write(directory / "io.pressure", IO_PRESSURE)
    write(directory / "pids.current", "2\n")
    write(directory / "cgroup.procs", f"{PID}\n")
    return directory


class FakeClock:
    """A clock that returns the given readings in turn."""

    def __init__(self, *readings: float) -> None:
        self._readings = list(readings)

    def __call__(self) -> float:
        return self._readings.pop(0)


@dataclass
class FakeClient:
    """Stand-in for docker.DockerClient: version() and info().

    version() lists the (name, version) pairs of components, and info() returns
    info_result, or raises it when it is an exception.
    """

    components: list[tuple[str, str]] = field(
        default_factory=lambda: [("Engine", "20.10.24")]
    )
    info_result: dict[str, Any] | Exception = field(
        default_factory=lambda: {"MemTotal": ENGINE_MEM_TOTAL_BYTES}
    )

    def info(self) -> dict[str, Any]:
        if isinstance(self.info_result, Exception):
            raise self.info_result
        return self.info_result

    def version(self) -> dict[str, Any]:
        parts = [
            {"Name": name, "Version": version} for name, version in self.components
        ]
        return {"Components": parts}


@dataclass
class FakeContainer:
    """Stand-in for a docker-SDK Container: stats(), reload(), attrs, status."""

    stats_result: Callable[[], object]
    host_config: dict[str, Any] = field(default_factory=dict)
    client: FakeClient = field(default_factory=FakeClient)
    name: str = "hl-fake"
    status: str = "running"
    status_after_reload: str | None = None
    removed: bool = False
    stats_calls: list[dict[str, Any]] = field(default_factory=list)

    @property
    def attrs(self) -> dict[str, Any]:
        return {"HostConfig": self.host_config}

    def stats(self, **kwargs: Any) -> object:
        self.stats_calls.append(kwargs)
        return self.stats_result()

    def reload(self) -> None:
        if self.removed:
            raise docker.errors.NotFound("No such container")
        if self.status_after_reload is not None:
            self.status = self.status_after_reload


def as_container(fake: FakeContainer) -> Container:
    """Type a fake as a Container for the readers' signatures."""
    return cast(Container, fake)
