"""Fake /proc and cgroup trees, and a fake docker-SDK container, for unit tests."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import docker.errors
from docker.models.containers import Container

from hyperlane.metrics import Sample

CONTAINER_ID = "77f96846ee08dcc9967fefc8b915444a0368878474c626e39eb16e24df3707"
PID = 4242
MEM_TOTAL_KB = 1_000_000
# A sample with every optional field None, to copy with dataclasses.replace().
BASE = Sample(
    timestamp_seconds=0.0,
    cpu_usage_seconds_total=0.0,
    cpu_periods_total=None,
    cpu_throttled_periods_total=None,
    cpu_throttled_seconds_total=None,
    memory_usage_bytes=None,
    memory_working_set_bytes=None,
    memory_limit_bytes=None,
    network_rx_bytes_total=None,
    network_tx_bytes_total=None,
    pids=None,
)
NET_DEV = """\
Inter-|   Receive                            |  Transmit
 face |bytes packets errs drop fifo frame compressed multicast|bytes packets ...
    lo: 5000 50 0 0 0 0 0 0 5000 50 0 0 0 0 0 0
  eth0: 1200 10 0 0 0 0 0 0  300  3 0 0 0 0 0 0
  eth1:   34  1 0 0 0 0 0 0    7  1 0 0 0 0 0 0
"""


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
        f"4:memory:{cgroup_path}",
        f"2:cpuacct:{cgroup_path}",
        f"1:cpu:{cgroup_path}",
        f"0::{cgroup_path}",
    ]


@dataclass
class V1Tree:
    """Directories of one fake cgroup v1 container."""

    cgroup_root: Path
    cpu: Path
    cpuacct: Path
    memory: Path
    pids: Path


def make_v1_tree(cgroup_root: Path, cgroup_path: str) -> V1Tree:
    """Create v1 controller directories with a full set of counter files."""
    relative = cgroup_path.lstrip("/")
    tree = V1Tree(
        cgroup_root=cgroup_root,
        cpu=cgroup_root / "cpu" / relative,
        cpuacct=cgroup_root / "cpuacct" / relative,
        memory=cgroup_root / "memory" / relative,
        pids=cgroup_root / "pids" / relative,
    )
    write(tree.cpuacct / "cpuacct.usage", "2500000000\n")
    write(tree.cpuacct / "cgroup.procs", f"{PID}\n")
    write(tree.cpu / "cpu.cfs_quota_us", "50000\n")
    write(
        tree.cpu / "cpu.stat",
        "nr_periods 40\nnr_throttled 12\nthrottled_time 750000000\n"
        "nr_bursts 0\nburst_time 0\n",
    )
    write(tree.memory / "memory.usage_in_bytes", "10485760\n")
    write(
        tree.memory / "memory.stat",
        "cache 4194304\ninactive_file 1048576\ntotal_inactive_file 2097152\n",
    )
    write(tree.memory / "memory.limit_in_bytes", "67108864\n")
    write(tree.pids / "pids.current", "3\n")
    return tree


def make_v2_tree(cgroup_root: Path, cgroup_path: str) -> Path:
    """Create a v2 root and one cgroup directory with a full set of files."""
    write(cgroup_root / "cgroup.controllers", "cpuset cpu io memory pids\n")
    directory = cgroup_root / cgroup_path.lstrip("/")
    write(
        directory / "cpu.stat",
        "usage_usec 1750000\nuser_usec 1500000\nsystem_usec 250000\n"
        "nr_periods 30\nnr_throttled 9\nthrottled_usec 420000\n",
    )
    write(directory / "cpu.max", "50000 100000\n")
    write(directory / "memory.current", "8388608\n")
    write(
        directory / "memory.stat", "anon 4194304\nfile 3145728\ninactive_file 1048576\n"
    )
    write(directory / "memory.max", "33554432\n")
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
    """Stand-in for docker.DockerClient: only version(), from (name, version) pairs."""

    components: list[tuple[str, str]] = field(
        default_factory=lambda: [("Engine", "20.10.24")]
    )

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
