"""OOM kill totals that survive restarts and replacements of a container."""

from __future__ import annotations

from pathlib import Path

from hyperlane.metrics.cgroup import CgroupReader, find_cgroup
from hyperlane.metrics.discovery import ContainerInfo, OomKillTracker
from tests.unit.metrics.fakes import (
    PID,
    FakeClock,
    FakeContainer,
    as_container,
    make_proc,
    make_v2_tree,
)

V2_PATH = "/system.slice/docker-web.scope"


def info(container_id: str, pid: int) -> ContainerInfo:
    return ContainerInfo(
        container_id=container_id,
        name="web",
        image="localhost/web:1.0",
        pid=pid,
        labels={},
        cpu_limit_cores=None,
        container=as_container(FakeContainer(lambda: {})),
    )


class FakeCgroup:
    """A fake cgroup v2 tree read by the real CgroupReader, with a settable count."""

    def __init__(self, root: Path) -> None:
        proc_root = make_proc(root / "proc", [f"0::{V2_PATH}"])
        self.directory = make_v2_tree(root / "cgroup", V2_PATH)
        location = find_cgroup(PID, proc_root, root / "cgroup")
        self.reader = CgroupReader(location, PID, proc_root, FakeClock(*range(10)))

    def read_oom_kills(self, oom_kills: int) -> int | None:
        (self.directory / "memory.events").write_text(
            f"low 0\nhigh 0\nmax 9\noom {oom_kills}\noom_kill {oom_kills}\n"
        )
        return self.reader.read().memory_oom_kills_total


def test_restart_carries_kills(tmp_path: Path) -> None:
    tracker = OomKillTracker()
    first, second = info("a" * 64, 100), info("a" * 64, 200)
    cgroup = FakeCgroup(tmp_path)
    assert tracker.observe(first, cgroup.read_oom_kills(0)) == 0
    assert tracker.observe(first, cgroup.read_oom_kills(1)) == 1
    tracker.end_instance(first, oom_killed=True)
    # The kill was sampled, so State.OOMKilled adds nothing to it.
    assert tracker.total("web") == 1
    # The restart created a new cgroup whose counter starts at 0.
    assert tracker.observe(second, cgroup.read_oom_kills(0)) == 1


def test_unsampled_final_kill_counted(tmp_path: Path) -> None:
    tracker = OomKillTracker()
    first, second = info("a" * 64, 100), info("a" * 64, 200)
    cgroup = FakeCgroup(tmp_path)
    assert tracker.observe(first, cgroup.read_oom_kills(0)) == 0
    # The OOM kill ended the process before the next sample.
    tracker.end_instance(first, oom_killed=True)
    assert tracker.total("web") == 1
    tracker.end_instance(first, oom_killed=True)
    assert tracker.total("web") == 1
    assert tracker.observe(second, cgroup.read_oom_kills(0)) == 1


def test_clean_exit_adds_nothing(tmp_path: Path) -> None:
    tracker = OomKillTracker()
    first, second = info("a" * 64, 100), info("a" * 64, 200)
    cgroup = FakeCgroup(tmp_path)
    assert tracker.observe(first, cgroup.read_oom_kills(0)) == 0
    tracker.end_instance(first, oom_killed=False)
    assert tracker.observe(second, cgroup.read_oom_kills(0)) == 0


def test_replacement_under_same_name(tmp_path: Path) -> None:
    tracker = OomKillTracker()
    old, new = info("a" * 64, 100), info("b" * 64, 300)
    cgroup = FakeCgroup(tmp_path)
    assert tracker.observe(old, cgroup.read_oom_kills(2)) == 2
    # docker rm -f and docker run --name web between two samples: no end seen.
    assert tracker.observe(new, cgroup.read_oom_kills(0)) == 2
    assert tracker.observe(new, cgroup.read_oom_kills(1)) == 3


def test_counter_reset_without_pid_change(tmp_path: Path) -> None:
    tracker = OomKillTracker()
    same = info("a" * 64, 100)
    cgroup = FakeCgroup(tmp_path)
    assert tracker.observe(same, cgroup.read_oom_kills(3)) == 3
    assert tracker.observe(same, cgroup.read_oom_kills(0)) == 3


def test_api_source_counts_engine_flag() -> None:
    # The stats API has no OOM counter, so only State.OOMKilled counts.
    tracker = OomKillTracker()
    first, second = info("a" * 64, 100), info("a" * 64, 200)
    assert tracker.observe(first, None) is None
    tracker.end_instance(first, oom_killed=True)
    assert tracker.observe(second, None) == 1
    assert tracker.total("other") is None


def test_end_of_unknown_instance_ignored() -> None:
    tracker = OomKillTracker()
    tracker.observe(info("a" * 64, 100), 1)
    tracker.end_instance(info("a" * 64, 999), oom_killed=True)
    assert tracker.total("web") == 1
