from pathlib import Path

import pytest

from hyperlane.errors import UsageError
from hyperlane.metrics import ApiStatsReader, CgroupReader, MetricsSource, open_reader
from tests.unit.metrics.fakes import (
    CONTAINER_ID,
    PID,
    FakeContainer,
    as_container,
    make_proc,
    make_v1_tree,
    v1_cgroup_lines,
)

CGROUP_PATH = f"/libpod_parent/libpod-{CONTAINER_ID}"


def fake_container() -> FakeContainer:
    return FakeContainer(dict)


def open_local(
    tmp_path: Path, source: MetricsSource, pid: int = PID, local: bool = True
) -> object:
    proc_root = make_proc(tmp_path / "proc", v1_cgroup_lines(CGROUP_PATH))
    make_v1_tree(tmp_path / "cgroup", CGROUP_PATH)
    return open_reader(
        source,
        as_container(fake_container()),
        pid,
        local=local,
        proc_root=proc_root,
        cgroup_root=tmp_path / "cgroup",
    )


def test_auto_local_cgroup(tmp_path: Path) -> None:
    reader = open_local(tmp_path, "auto")
    assert isinstance(reader, CgroupReader)
    assert reader.source == "cgroup-v1"


def test_auto_missing_pid(tmp_path: Path) -> None:
    assert isinstance(open_local(tmp_path, "auto", pid=99), ApiStatsReader)


def test_auto_unreadable_usage(tmp_path: Path) -> None:
    proc_root = make_proc(tmp_path / "proc", v1_cgroup_lines(CGROUP_PATH))
    tree = make_v1_tree(tmp_path / "cgroup", CGROUP_PATH)
    (tree.cpuacct / "cpuacct.usage").write_text("garbled\n")
    reader = open_reader(
        "auto", as_container(fake_container()), PID, True, proc_root, tree.cgroup_root
    )
    assert isinstance(reader, ApiStatsReader)


def test_auto_remote(tmp_path: Path) -> None:
    assert isinstance(open_local(tmp_path, "auto", local=False), ApiStatsReader)


def test_api_source(tmp_path: Path) -> None:
    assert isinstance(open_local(tmp_path, "api"), ApiStatsReader)


def test_cgroup_source(tmp_path: Path) -> None:
    assert isinstance(open_local(tmp_path, "cgroup"), CgroupReader)


def test_cgroup_missing_files(tmp_path: Path) -> None:
    with pytest.raises(UsageError) as caught:
        open_local(tmp_path, "cgroup", pid=99)
    assert str(tmp_path / "proc" / "99" / "cgroup") in str(caught.value)
    assert "--metrics-source api" in str(caught.value)


def test_cgroup_remote(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="--metrics-source api"):
        open_local(tmp_path, "cgroup", local=False)


def test_invalid_source(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="'proc'"):
        open_local(tmp_path, "proc")  # type: ignore[arg-type]
