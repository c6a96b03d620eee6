from pathlib import Path

import pytest

from hyperlane.errors import ServiceNotReady, UsageError
from hyperlane.metrics import CgroupLocation, CgroupReader, find_cgroup
from hyperlane.metrics.cgroup import parse_net_dev
from tests.unit.metrics.fakes import (
    CONTAINER_ID,
    NET_DEV,
    PID,
    FakeClock,
    V1Tree,
    make_proc,
    make_v1_tree,
    make_v2_tree,
    v1_cgroup_lines,
    write,
)

DOCKER_V1_PATH = f"/docker/{CONTAINER_ID}"
PODMAN_V1_PATH = f"/libpod_parent/libpod-{CONTAINER_ID}"
SYSTEMD_V2_PATH = f"/system.slice/docker-{CONTAINER_ID}.scope"


def v1_host(tmp_path: Path, cgroup_path: str = DOCKER_V1_PATH) -> tuple[Path, V1Tree]:
    proc_root = make_proc(tmp_path / "proc", v1_cgroup_lines(cgroup_path))
    return proc_root, make_v1_tree(tmp_path / "cgroup", cgroup_path)


def v1_reader(
    tmp_path: Path, clock: FakeClock | None = None
) -> tuple[CgroupReader, V1Tree]:
    proc_root, tree = v1_host(tmp_path)
    location = find_cgroup(PID, proc_root, tree.cgroup_root)
    reader = CgroupReader(location, PID, proc_root, clock or FakeClock(1.0))
    return reader, tree


def v2_reader(tmp_path: Path) -> tuple[CgroupReader, Path]:
    proc_root = make_proc(tmp_path / "proc", [f"0::{SYSTEMD_V2_PATH}"])
    directory = make_v2_tree(tmp_path / "cgroup", SYSTEMD_V2_PATH)
    location = find_cgroup(PID, proc_root, tmp_path / "cgroup")
    return CgroupReader(location, PID, proc_root, FakeClock(7.0)), directory


def test_find_v1_docker_path(tmp_path: Path) -> None:
    proc_root, tree = v1_host(tmp_path)
    location = find_cgroup(PID, proc_root, tree.cgroup_root)
    assert location.version == 1
    assert location.cpu_directory == tree.cgroup_root / "cpu" / "docker" / CONTAINER_ID
    assert location.cpuacct_directory == tree.cpuacct
    assert location.memory_directory == tree.memory
    assert location.pids_directory == tree.pids
    assert location.procs_file() == tree.cpuacct / "cgroup.procs"


def test_find_v1_libpod_path(tmp_path: Path) -> None:
    proc_root, tree = v1_host(tmp_path, PODMAN_V1_PATH)
    location = find_cgroup(PID, proc_root, tree.cgroup_root)
    expected = tree.cgroup_root / "memory" / "libpod_parent" / f"libpod-{CONTAINER_ID}"
    assert location.memory_directory == expected
    assert location.cpuacct_directory.name == f"libpod-{CONTAINER_ID}"


def test_find_v1_combined_mount(tmp_path: Path) -> None:
    lines = [f"3:cpu,cpuacct:{DOCKER_V1_PATH}", f"2:memory:{DOCKER_V1_PATH}"]
    proc_root = make_proc(tmp_path / "proc", lines)
    cgroup_root = tmp_path / "cgroup"
    combined = cgroup_root / "cpu,cpuacct" / "docker" / CONTAINER_ID
    write(combined / "cpuacct.usage", "1\n")
    (cgroup_root / "memory" / "docker" / CONTAINER_ID).mkdir(parents=True)
    location = find_cgroup(PID, proc_root, cgroup_root)
    assert location.cpuacct_directory == combined
    assert location.cpu_directory == combined
    assert location.pids_directory is None


def test_find_v2_systemd_scope(tmp_path: Path) -> None:
    proc_root = make_proc(tmp_path / "proc", [f"0::{SYSTEMD_V2_PATH}"])
    make_v2_tree(tmp_path / "cgroup", SYSTEMD_V2_PATH)
    location = find_cgroup(PID, proc_root, tmp_path / "cgroup")
    scope = tmp_path / "cgroup" / "system.slice" / f"docker-{CONTAINER_ID}.scope"
    assert location.version == 2
    assert location.cpuacct_directory == scope
    assert location.memory_directory == location.cpuacct_directory


def test_find_v2_ignores_v1_lines(tmp_path: Path) -> None:
    # A v2 root wins even when /proc/<pid>/cgroup also lists v1 hierarchies.
    lines = [f"1:name=systemd:{SYSTEMD_V2_PATH}", f"0::{SYSTEMD_V2_PATH}"]
    proc_root = make_proc(tmp_path / "proc", lines)
    make_v2_tree(tmp_path / "cgroup", SYSTEMD_V2_PATH)
    assert find_cgroup(PID, proc_root, tmp_path / "cgroup").version == 2


def test_find_hybrid_without_v1(tmp_path: Path) -> None:
    proc_root = make_proc(tmp_path / "proc", [f"0::{DOCKER_V1_PATH}"])
    cgroup_root = tmp_path / "cgroup"
    make_v2_tree(cgroup_root / "unified", DOCKER_V1_PATH)
    location = find_cgroup(PID, proc_root, cgroup_root)
    assert location.version == 2
    assert (
        location.cpuacct_directory == cgroup_root / "unified" / "docker" / CONTAINER_ID
    )


def test_find_skips_malformed_lines(tmp_path: Path) -> None:
    proc_root, tree = v1_host(tmp_path)
    cgroup_file = proc_root / str(PID) / "cgroup"
    cgroup_file.write_text("garbage\n\n" + cgroup_file.read_text())
    location = find_cgroup(PID, proc_root, tree.cgroup_root)
    assert location.cpuacct_directory == tree.cpuacct


def test_find_missing_pid(tmp_path: Path) -> None:
    with pytest.raises(UsageError) as caught:
        find_cgroup(99, tmp_path / "proc", tmp_path / "cgroup")
    assert str(tmp_path / "proc" / "99" / "cgroup") in str(caught.value)
    assert "--metrics-source api" in str(caught.value)


def test_find_missing_directory(tmp_path: Path) -> None:
    proc_root = make_proc(tmp_path / "proc", [f"0::{SYSTEMD_V2_PATH}"])
    write(tmp_path / "cgroup" / "cgroup.controllers", "cpu memory\n")
    with pytest.raises(UsageError) as caught:
        find_cgroup(PID, proc_root, tmp_path / "cgroup")
    assert f"docker-{CONTAINER_ID}.scope" in str(caught.value)
    assert "--metrics-source api" in str(caught.value)


def test_find_v1_without_cpuacct(tmp_path: Path) -> None:
    proc_root, tree = v1_host(tmp_path)
    for path in sorted(tree.cpuacct.iterdir()):
        path.unlink()
    tree.cpuacct.rmdir()
    with pytest.raises(UsageError, match="cpuacct"):
        find_cgroup(PID, proc_root, tree.cgroup_root)


def test_v1_read_all_files(tmp_path: Path) -> None:
    reader, _ = v1_reader(tmp_path, FakeClock(12.5))
    sample = reader.read()
    assert reader.source == "cgroup-v1"
    assert sample.timestamp_seconds == 12.5
    assert sample.cpu_usage_seconds_total == pytest.approx(2.5)
    assert sample.cpu_periods_total == 40
    assert sample.cpu_throttled_periods_total == 12
    assert sample.cpu_throttled_seconds_total == pytest.approx(0.75)
    assert sample.memory_usage_bytes == 10 * 1024 * 1024
    # total_inactive_file (2 MiB) wins over the cgroup's own inactive_file.
    assert sample.memory_working_set_bytes == 8 * 1024 * 1024
    assert sample.memory_limit_bytes == 64 * 1024 * 1024
    assert sample.pids == 3
    assert sample.network_rx_bytes_total == 1200 + 34
    assert sample.network_tx_bytes_total == 300 + 7


def test_v1_inactive_file_fallback(tmp_path: Path) -> None:
    reader, tree = v1_reader(tmp_path)
    (tree.memory / "memory.stat").write_text("cache 5\ninactive_file 1048576\n")
    sample = reader.read()
    assert sample.memory_working_set_bytes == 9 * 1024 * 1024


def test_v1_no_quota(tmp_path: Path) -> None:
    reader, tree = v1_reader(tmp_path)
    (tree.cpu / "cpu.cfs_quota_us").write_text("-1\n")
    sample = reader.read()
    assert sample.cpu_periods_total is None
    assert sample.cpu_throttled_periods_total is None
    assert sample.cpu_throttled_seconds_total is None


@pytest.mark.parametrize(
    ("limit_text", "expected"),
    [
        ("9223372036854771712", None),  # the kernel's "no limit" on x86-64
        (str(2**62), None),
        (str(1_000_000 * 1024 + 4096), None),  # above MemTotal
        (str(1_000_000 * 1024), 1_000_000 * 1024),  # equal to MemTotal
        ("134217728", 134217728),
    ],
)
def test_v1_limit_unlimited(
    tmp_path: Path, limit_text: str, expected: int | None
) -> None:
    reader, tree = v1_reader(tmp_path)
    (tree.memory / "memory.limit_in_bytes").write_text(limit_text + "\n")
    assert reader.read().memory_limit_bytes == expected


def test_v1_missing_optional_files(tmp_path: Path) -> None:
    reader, tree = v1_reader(tmp_path)
    for path in [
        tree.cpu / "cpu.stat",
        tree.memory / "memory.usage_in_bytes",
        tree.memory / "memory.stat",
        tree.memory / "memory.limit_in_bytes",
        tree.pids / "pids.current",
        tmp_path / "proc" / str(PID) / "net" / "dev",
    ]:
        path.unlink()
    sample = reader.read()
    assert sample.cpu_usage_seconds_total == pytest.approx(2.5)
    assert sample.cpu_periods_total is None
    assert sample.cpu_throttled_seconds_total is None
    assert sample.memory_usage_bytes is None
    assert sample.memory_working_set_bytes is None
    assert sample.memory_limit_bytes is None
    assert sample.pids is None
    assert sample.network_rx_bytes_total is None
    assert sample.network_tx_bytes_total is None


def test_v1_missing_memory_controller(tmp_path: Path) -> None:
    proc_root, tree = v1_host(tmp_path)
    location = find_cgroup(PID, proc_root, tree.cgroup_root)
    reader = CgroupReader(
        CgroupLocation(
            version=1,
            cpu_directory=None,
            cpuacct_directory=location.cpuacct_directory,
            memory_directory=None,
            pids_directory=None,
        ),
        PID,
        proc_root,
    )
    sample = reader.read()
    assert sample.cpu_periods_total is None
    assert sample.memory_usage_bytes is None
    assert sample.pids is None


def test_v1_malformed_lines(tmp_path: Path) -> None:
    reader, tree = v1_reader(tmp_path)
    (tree.cpu / "cpu.stat").write_text(
        "nr_periods 40\nnr_throttled twelve\nbroken\nthrottled_time 5 extra\n"
    )
    (tree.memory / "memory.usage_in_bytes").write_text("lots\n")
    (tree.pids / "pids.current").write_text("\n")
    sample = reader.read()
    assert sample.cpu_periods_total == 40
    assert sample.cpu_throttled_periods_total is None
    assert sample.cpu_throttled_seconds_total is None
    assert sample.memory_usage_bytes is None
    assert sample.memory_working_set_bytes is None
    assert sample.pids is None


def test_v1_malformed_cpu_usage(tmp_path: Path) -> None:
    reader, tree = v1_reader(tmp_path)
    (tree.cpuacct / "cpuacct.usage").write_text("n/a\n")
    with pytest.raises(UsageError) as caught:
        reader.read()
    assert "cpuacct.usage" in str(caught.value)
    assert "'n/a\\n'" in str(caught.value)


def test_v1_removed_cgroup(tmp_path: Path) -> None:
    reader, tree = v1_reader(tmp_path)
    for path in sorted(tree.cpuacct.iterdir()):
        path.unlink()
    tree.cpuacct.rmdir()
    with pytest.raises(ServiceNotReady, match="exited"):
        reader.read()


def test_v2_read_all_files(tmp_path: Path) -> None:
    reader, _ = v2_reader(tmp_path)
    sample = reader.read()
    assert reader.source == "cgroup-v2"
    assert sample.timestamp_seconds == 7.0
    assert sample.cpu_usage_seconds_total == pytest.approx(1.75)
    assert sample.cpu_periods_total == 30
    assert sample.cpu_throttled_periods_total == 9
    assert sample.cpu_throttled_seconds_total == pytest.approx(0.42)
    assert sample.memory_usage_bytes == 8 * 1024 * 1024
    assert sample.memory_working_set_bytes == 7 * 1024 * 1024
    assert sample.memory_limit_bytes == 32 * 1024 * 1024
    assert sample.pids == 2
    assert sample.network_rx_bytes_total == 1234
    assert sample.network_tx_bytes_total == 307


def test_v2_max_limits(tmp_path: Path) -> None:
    reader, directory = v2_reader(tmp_path)
    (directory / "memory.max").write_text("max\n")
    (directory / "cpu.max").write_text("max 100000\n")
    sample = reader.read()
    assert sample.memory_limit_bytes is None
    assert sample.cpu_periods_total is None
    assert sample.cpu_throttled_periods_total is None
    assert sample.cpu_throttled_seconds_total is None


def test_v2_missing_optional_files(tmp_path: Path) -> None:
    reader, directory = v2_reader(tmp_path)
    for name in ["memory.current", "memory.stat", "memory.max", "pids.current"]:
        (directory / name).unlink()
    (directory / "cpu.stat").write_text("usage_usec 10\n")
    sample = reader.read()
    assert sample.cpu_usage_seconds_total == pytest.approx(10e-6)
    assert sample.cpu_periods_total is None
    assert sample.memory_usage_bytes is None
    assert sample.memory_working_set_bytes is None
    assert sample.memory_limit_bytes is None
    assert sample.pids is None


def test_v2_missing_usage_usec(tmp_path: Path) -> None:
    reader, directory = v2_reader(tmp_path)
    (directory / "cpu.stat").write_text("nr_periods 3\n")
    with pytest.raises(UsageError, match=r"cpu\.stat"):
        reader.read()


def test_v2_removed_cgroup(tmp_path: Path) -> None:
    reader, directory = v2_reader(tmp_path)
    for path in sorted(directory.iterdir()):
        path.unlink()
    directory.rmdir()
    with pytest.raises(ServiceNotReady):
        reader.read()


def test_v1_unreadable_meminfo(tmp_path: Path) -> None:
    proc_root, tree = v1_host(tmp_path)
    (proc_root / "meminfo").unlink()
    (tree.memory / "memory.limit_in_bytes").write_text(str(2**40) + "\n")
    location = find_cgroup(PID, proc_root, tree.cgroup_root)
    sample = CgroupReader(location, PID, proc_root).read()
    # Without MemTotal only the 2**62 floor marks a limit as unlimited.
    assert sample.memory_limit_bytes == 2**40


def test_net_dev_excludes_lo() -> None:
    assert parse_net_dev(NET_DEV) == (1234, 307)


def test_net_dev_only_lo() -> None:
    lines = NET_DEV.splitlines()[:3]
    assert parse_net_dev("\n".join(lines)) == (0, 0)


def test_net_dev_malformed() -> None:
    header = "\n".join(NET_DEV.splitlines()[:2])
    assert parse_net_dev(header + "\n  eth0: 1 2 x\nnot a line\n") == (None, None)


def test_net_dev_skips_bad_line() -> None:
    text = NET_DEV + "  eth2: many 2 3 4 5 6 7 8 9 10\n"
    assert parse_net_dev(text) == (1234, 307)
