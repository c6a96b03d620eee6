from dataclasses import replace
from pathlib import Path

import pytest

from hyperlane.errors import ServiceNotReady, UsageError
from hyperlane.metrics import (
    CgroupContainer,
    CgroupLocation,
    CgroupReader,
    container_from_cgroup_path,
    find_cgroup,
)
from hyperlane.metrics.cgroup import (
    USER_HZ,
    NetworkCounters,
    parse_blkio_throttle,
    parse_net_dev,
)
from tests.unit.metrics.fakes import (
    CONTAINER_ID,
    MEM_TOTAL_KB,
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
MEM_TOTAL_BYTES = MEM_TOTAL_KB * 1024
MIB = 1024 * 1024


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


def remove_tree(directory: Path) -> None:
    for path in sorted(directory.iterdir()):
        path.unlink()
    directory.rmdir()


# find_cgroup


def test_find_v1_docker_path(tmp_path: Path) -> None:
    proc_root, tree = v1_host(tmp_path)
    location = find_cgroup(PID, proc_root, tree.cgroup_root)
    assert location.version == 1
    assert location.cpu_directory == tree.cgroup_root / "cpu" / "docker" / CONTAINER_ID
    assert location.cpuacct_directory == tree.cpuacct
    assert location.memory_directory == tree.memory
    assert location.pids_directory == tree.pids
    assert location.blkio_directory == tree.blkio
    assert location.unified_directory == tree.unified
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
    assert location.blkio_directory is None
    assert location.unified_directory is None


def test_find_v1_without_unified_cgroup(tmp_path: Path) -> None:
    # The unified hierarchy is mounted, but the process's directory is missing.
    proc_root, tree = v1_host(tmp_path)
    remove_tree(tree.unified)
    location = find_cgroup(PID, proc_root, tree.cgroup_root)
    assert location.version == 1
    assert location.unified_directory is None


def test_find_v2_systemd_scope(tmp_path: Path) -> None:
    proc_root = make_proc(tmp_path / "proc", [f"0::{SYSTEMD_V2_PATH}"])
    make_v2_tree(tmp_path / "cgroup", SYSTEMD_V2_PATH)
    location = find_cgroup(PID, proc_root, tmp_path / "cgroup")
    scope = tmp_path / "cgroup" / "system.slice" / f"docker-{CONTAINER_ID}.scope"
    assert location.version == 2
    assert location.cpuacct_directory == scope
    assert location.memory_directory == scope
    assert location.blkio_directory == scope
    assert location.unified_directory == scope


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
    remove_tree(tree.cpuacct)
    with pytest.raises(UsageError, match="cpuacct"):
        find_cgroup(PID, proc_root, tree.cgroup_root)


# Container ids from cgroup paths

POD_UID = "0f5a1c2e-8b3d-4e6f-9a7b-1c2d3e4f5a6b"
# The systemd cgroup driver writes the pod UID with underscores in slice names.
POD_SLICE_UID = POD_UID.replace("-", "_")
OTHER_ID = "a" * 64


@pytest.mark.parametrize(
    ("cgroup_path", "expected"),
    [
        (
            f"0::/system.slice/docker-{CONTAINER_ID}.scope",
            CgroupContainer(CONTAINER_ID, None),
        ),
        (f"/docker/{CONTAINER_ID}", CgroupContainer(CONTAINER_ID, None)),
        (f"4:memory:/docker/{CONTAINER_ID}", CgroupContainer(CONTAINER_ID, None)),
        (
            f"/libpod_parent/libpod-{CONTAINER_ID}",
            CgroupContainer(CONTAINER_ID, None),
        ),
        (
            f"/machine.slice/libpod-{CONTAINER_ID}.scope",
            CgroupContainer(CONTAINER_ID, None),
        ),
        # Podman on v2 moves the container's processes into a "container" child.
        (
            f"/machine.slice/libpod-{CONTAINER_ID}.scope/container",
            CgroupContainer(CONTAINER_ID, None),
        ),
        (
            "/kubepods.slice/kubepods-burstable.slice/"
            f"kubepods-burstable-pod{POD_SLICE_UID}.slice/"
            f"cri-containerd-{CONTAINER_ID}.scope",
            CgroupContainer(CONTAINER_ID, POD_UID),
        ),
        (
            "/kubepods.slice/kubepods-besteffort.slice/"
            f"kubepods-besteffort-pod{POD_SLICE_UID}.slice/crio-{CONTAINER_ID}.scope",
            CgroupContainer(CONTAINER_ID, POD_UID),
        ),
        # Guaranteed pods sit directly under kubepods.slice.
        (
            f"/kubepods.slice/kubepods-pod{POD_SLICE_UID}.slice/"
            f"cri-containerd-{CONTAINER_ID}.scope",
            CgroupContainer(CONTAINER_ID, POD_UID),
        ),
        (
            "/kubepods.slice/kubepods-burstable.slice/"
            f"kubepods-burstable-pod{POD_SLICE_UID}.slice/docker-{CONTAINER_ID}.scope",
            CgroupContainer(CONTAINER_ID, POD_UID),
        ),
        (
            f"/kubepods/burstable/pod{POD_UID}/{CONTAINER_ID}",
            CgroupContainer(CONTAINER_ID, POD_UID),
        ),
        (
            f"/kubepods/pod{POD_UID}/{CONTAINER_ID}",
            CgroupContainer(CONTAINER_ID, POD_UID),
        ),
        # Static pods have a 32-digit hash as their UID.
        (
            f"/kubepods/besteffort/pod{'6d7f4a8d' * 4}/{CONTAINER_ID}",
            CgroupContainer(CONTAINER_ID, "6d7f4a8d" * 4),
        ),
        # Docker in Docker: the innermost container wins.
        (
            f"/docker/{OTHER_ID}/docker/{CONTAINER_ID}",
            CgroupContainer(CONTAINER_ID, None),
        ),
        # A 64-digit component outside kubepods carries no pod UID.
        (f"/pod{POD_UID}/{CONTAINER_ID}", CgroupContainer(CONTAINER_ID, None)),
    ],
)
def test_container_id_shapes(cgroup_path: str, expected: CgroupContainer) -> None:
    assert container_from_cgroup_path(cgroup_path) == expected


@pytest.mark.parametrize(
    "cgroup_path",
    [
        f"/machine.slice/libpod-conmon-{CONTAINER_ID}.scope",
        f"/libpod_parent/libpod-conmon-{CONTAINER_ID}",
        f"/kubepods.slice/kubepods-pod{POD_SLICE_UID}.slice/"
        f"crio-conmon-{CONTAINER_ID}.scope",
        "/user.slice/user-1000.slice/session-2.scope",
        "0::/",
        "/",
        "",
        f"/docker/{CONTAINER_ID[:-1]}",
        f"/docker/{CONTAINER_ID.upper()}",
        f"/docker/{CONTAINER_ID}0",
    ],
)
def test_container_id_not_found(cgroup_path: str) -> None:
    assert container_from_cgroup_path(cgroup_path) is None


# cgroup v1


def test_v1_read_all_files(tmp_path: Path) -> None:
    reader, _ = v1_reader(tmp_path, FakeClock(12.5))
    sample = reader.read()
    assert reader.source == "cgroup-v1"
    assert sample.timestamp_seconds == 12.5
    assert sample.cpu_usage_seconds_total == pytest.approx(2.5)
    assert sample.cpu_user_seconds_total == pytest.approx(230 / USER_HZ)
    assert sample.cpu_system_seconds_total == pytest.approx(15 / USER_HZ)
    assert sample.cpu_cfs_periods_total == 40
    assert sample.cpu_cfs_throttled_periods_total == 12
    assert sample.cpu_cfs_throttled_seconds_total == pytest.approx(0.75)
    assert sample.memory_usage_bytes == 10 * MIB
    # total_inactive_file (2 MiB) wins over the cgroup's own inactive_file.
    assert sample.memory_working_set_bytes == 8 * MIB
    assert sample.memory_rss_bytes == 6 * MIB
    assert sample.memory_cache_bytes == 4325376
    assert sample.memory_swap_bytes == 131072
    assert sample.memory_limit_bytes == 64 * MIB
    assert sample.memory_limit_set is True
    assert sample.memory_oom_kills_total == 2
    assert sample.memory_oom_events_total is None
    assert sample.memory_under_oom is False
    assert sample.block_io_read_bytes_total == 4096 + 8192
    assert sample.block_io_write_bytes_total == 16785408
    assert sample.block_io_read_operations_total == 3
    assert sample.block_io_write_operations_total == 7
    assert sample.processes == 2
    assert sample.threads == 3


def test_v1_pressure_from_unified(tmp_path: Path) -> None:
    sample = v1_reader(tmp_path)[0].read()
    assert sample.cpu_pressure_some_seconds_total == pytest.approx(1.485081)
    assert sample.cpu_pressure_full_seconds_total == pytest.approx(1.481505)
    assert sample.memory_pressure_some_seconds_total == pytest.approx(0.0025)
    assert sample.memory_pressure_full_seconds_total == pytest.approx(0.001)
    assert sample.io_pressure_some_seconds_total == pytest.approx(0.005659)
    assert sample.io_pressure_full_seconds_total == pytest.approx(0.0056)


def test_v1_pressure_without_unified(tmp_path: Path) -> None:
    proc_root, tree = v1_host(tmp_path)
    remove_tree(tree.unified)
    location = find_cgroup(PID, proc_root, tree.cgroup_root)
    sample = CgroupReader(location, PID, proc_root).read()
    assert sample.cpu_pressure_some_seconds_total is None
    assert sample.cpu_pressure_full_seconds_total is None
    assert sample.memory_pressure_some_seconds_total is None
    assert sample.io_pressure_full_seconds_total is None


def test_v1_network_counters(tmp_path: Path) -> None:
    sample = v1_reader(tmp_path)[0].read()
    assert sample.network_receive_bytes_total == 1200 + 34
    assert sample.network_receive_packets_total == 11
    assert sample.network_receive_errors_total == 1
    assert sample.network_receive_packets_dropped_total == 2
    assert sample.network_transmit_bytes_total == 300 + 7
    assert sample.network_transmit_packets_total == 4
    assert sample.network_transmit_errors_total == 2
    assert sample.network_transmit_packets_dropped_total == 1


def test_v1_non_hierarchical_keys(tmp_path: Path) -> None:
    # Without the total_ keys the reader falls back to the cgroup's own figures.
    reader, tree = v1_reader(tmp_path)
    (tree.memory / "memory.stat").write_text(
        "cache 5\nrss 4096\nswap 8192\ninactive_file 1048576\n"
    )
    sample = reader.read()
    assert sample.memory_working_set_bytes == 9 * MIB
    assert sample.memory_rss_bytes == 4096
    assert sample.memory_cache_bytes == 5
    assert sample.memory_swap_bytes == 8192


def test_v1_without_swap_accounting(tmp_path: Path) -> None:
    reader, tree = v1_reader(tmp_path)
    (tree.memory / "memory.stat").write_text(
        "cache 5\nrss 4096\ninactive_file 0\ntotal_cache 5\ntotal_rss 4096\n"
    )
    assert reader.read().memory_swap_bytes is None


def test_v1_shared_memory_in_working_set(tmp_path: Path) -> None:
    # 64 MiB in /dev/shm: charged as cache and shmem, listed as inactive_anon,
    # so usage minus inactive file keeps it in the working set.
    reader, tree = v1_reader(tmp_path)
    (tree.memory / "memory.usage_in_bytes").write_text(f"{65 * MIB}\n")
    (tree.memory / "memory.stat").write_text(
        f"total_cache {64 * MIB}\ntotal_shmem {64 * MIB}\n"
        f"total_inactive_anon {64 * MIB}\ntotal_inactive_file 0\n"
        f"total_rss {MIB}\n"
    )
    sample = reader.read()
    assert sample.memory_working_set_bytes == 65 * MIB
    assert sample.memory_cache_bytes == 64 * MIB


def test_v1_no_quota(tmp_path: Path) -> None:
    reader, tree = v1_reader(tmp_path)
    (tree.cpu / "cpu.cfs_quota_us").write_text("-1\n")
    sample = reader.read()
    assert sample.cpu_cfs_periods_total is None
    assert sample.cpu_cfs_throttled_periods_total is None
    assert sample.cpu_cfs_throttled_seconds_total is None


@pytest.mark.parametrize(
    ("limit_text", "expected_bytes", "expected_set"),
    [
        ("9223372036854771712", MEM_TOTAL_BYTES, False),  # "no limit" on x86-64
        (str(2**62), MEM_TOTAL_BYTES, False),
        (str(MEM_TOTAL_BYTES + 4096), MEM_TOTAL_BYTES, False),  # above MemTotal
        (str(MEM_TOTAL_BYTES), MEM_TOTAL_BYTES, True),
        ("134217728", 134217728, True),
    ],
)
def test_v1_memory_limit(
    tmp_path: Path, limit_text: str, expected_bytes: int, expected_set: bool
) -> None:
    reader, tree = v1_reader(tmp_path)
    (tree.memory / "memory.limit_in_bytes").write_text(limit_text + "\n")
    sample = reader.read()
    assert sample.memory_limit_bytes == expected_bytes
    assert sample.memory_limit_set is expected_set


def test_v1_oom_control_before_4_13(tmp_path: Path) -> None:
    # Kernels before 4.13 have no oom_kill line in memory.oom_control.
    reader, tree = v1_reader(tmp_path)
    (tree.memory / "memory.oom_control").write_text("oom_kill_disable 1\nunder_oom 1\n")
    sample = reader.read()
    assert sample.memory_oom_kills_total is None
    assert sample.memory_under_oom is True


def test_v1_missing_optional_files(tmp_path: Path) -> None:
    reader, tree = v1_reader(tmp_path)
    for path in [
        tree.cpuacct / "cpuacct.stat",
        tree.cpuacct / "cgroup.procs",
        tree.cpu / "cpu.stat",
        tree.memory / "memory.usage_in_bytes",
        tree.memory / "memory.stat",
        tree.memory / "memory.limit_in_bytes",
        tree.memory / "memory.oom_control",
        tree.pids / "pids.current",
        tree.blkio / "blkio.throttle.io_service_bytes_recursive",
        tree.blkio / "blkio.throttle.io_serviced_recursive",
        tree.unified / "cpu.pressure",
        tree.unified / "memory.pressure",
        tree.unified / "io.pressure",
        tmp_path / "proc" / str(PID) / "net" / "dev",
    ]:
        path.unlink()
    sample = reader.read()
    assert sample.cpu_usage_seconds_total == pytest.approx(2.5)
    for name, value in vars(sample).items():
        if name in ("timestamp_seconds", "cpu_usage_seconds_total"):
            continue
        assert value is None, name


def test_v1_missing_controllers(tmp_path: Path) -> None:
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
    assert sample.cpu_user_seconds_total == pytest.approx(230 / USER_HZ)
    assert sample.cpu_cfs_periods_total is None
    assert sample.memory_usage_bytes is None
    assert sample.memory_limit_bytes is None
    assert sample.memory_limit_set is None
    assert sample.memory_oom_kills_total is None
    assert sample.block_io_write_bytes_total is None
    assert sample.cpu_pressure_some_seconds_total is None
    assert sample.threads is None
    assert sample.processes == 2


def test_v1_blkio_without_devices(tmp_path: Path) -> None:
    # Linux 6.18 lists no device until a throttle rule exists for it.
    reader, tree = v1_reader(tmp_path)
    for name in ("io_service_bytes", "io_serviced"):
        (tree.blkio / f"blkio.throttle.{name}_recursive").write_text("Total 0\n")
    sample = reader.read()
    assert sample.block_io_read_bytes_total is None
    assert sample.block_io_write_bytes_total is None
    assert sample.block_io_read_operations_total is None
    assert sample.block_io_write_operations_total is None


def test_v1_blkio_plain_files(tmp_path: Path) -> None:
    # Kernels before 4.16 have no _recursive files.
    reader, tree = v1_reader(tmp_path)
    for name in ("io_service_bytes", "io_serviced"):
        recursive = tree.blkio / f"blkio.throttle.{name}_recursive"
        recursive.rename(tree.blkio / f"blkio.throttle.{name}")
    sample = reader.read()
    assert sample.block_io_write_bytes_total == 16785408
    assert sample.block_io_write_operations_total == 7


def test_blkio_device_with_zero_io() -> None:
    # A device with a throttle rule and no I/O yet reads as 0, not None.
    text = "254:0 Read 0\n254:0 Write 0\n254:0 Total 0\nTotal 0\n"
    assert parse_blkio_throttle(text, Path("blkio.throttle.io_service_bytes")) == (
        0,
        0,
    )


@pytest.mark.parametrize(
    ("relative_path", "text"),
    [
        ("cpu/docker/{id}/cpu.stat", "nr_periods 40\nnr_throttled twelve\n"),
        ("cpu/docker/{id}/cpu.stat", "nr_periods 40 extra\n"),
        ("cpu/docker/{id}/cpu.cfs_quota_us", "unlimited\n"),
        ("cpuacct/docker/{id}/cpuacct.stat", "user\n"),
        ("memory/docker/{id}/memory.usage_in_bytes", "lots\n"),
        ("memory/docker/{id}/memory.limit_in_bytes", "-\n"),
        ("memory/docker/{id}/memory.stat", "cache 4096\nbroken\n"),
        ("memory/docker/{id}/memory.oom_control", "under_oom yes\n"),
        ("pids/docker/{id}/pids.current", "\n"),
        (
            "blkio/docker/{id}/blkio.throttle.io_service_bytes_recursive",
            "8:0 Read\nTotal 0\n",
        ),
        (
            "blkio/docker/{id}/blkio.throttle.io_service_bytes_recursive",
            "8:0 Write many\n",
        ),
        (
            "blkio/docker/{id}/blkio.throttle.io_serviced_recursive",
            "Total zero\n",
        ),
        ("unified/docker/{id}/cpu.pressure", "some avg10=0.00 total=abc\n"),
        ("unified/docker/{id}/memory.pressure", "partial avg10=0.00 total=1\n"),
        ("unified/docker/{id}/io.pressure", "some avg10=0.00 avg60=0.00\n"),
    ],
)
def test_v1_malformed_file(tmp_path: Path, relative_path: str, text: str) -> None:
    reader, tree = v1_reader(tmp_path)
    path = tree.cgroup_root / relative_path.format(id=CONTAINER_ID)
    assert path.exists()
    path.write_text(text)
    with pytest.raises(UsageError) as caught:
        reader.read()
    assert str(path) in str(caught.value)
    assert "--metrics-source api" in str(caught.value)


def test_v1_malformed_cpu_usage(tmp_path: Path) -> None:
    reader, tree = v1_reader(tmp_path)
    (tree.cpuacct / "cpuacct.usage").write_text("n/a\n")
    with pytest.raises(UsageError) as caught:
        reader.read()
    assert "cpuacct.usage" in str(caught.value)
    assert "'n/a\\n'" in str(caught.value)


def test_v1_removed_cgroup(tmp_path: Path) -> None:
    reader, tree = v1_reader(tmp_path)
    remove_tree(tree.cpuacct)
    with pytest.raises(ServiceNotReady, match="exited"):
        reader.read()


def test_v1_unreadable_meminfo(tmp_path: Path) -> None:
    proc_root, tree = v1_host(tmp_path)
    (proc_root / "meminfo").unlink()
    (tree.memory / "memory.limit_in_bytes").write_text(str(2**40) + "\n")
    location = find_cgroup(PID, proc_root, tree.cgroup_root)
    reader = CgroupReader(location, PID, proc_root)
    # Without MemTotal only the 2**62 floor marks a limit as unlimited.
    limited = reader.read()
    assert limited.memory_limit_bytes == 2**40
    assert limited.memory_limit_set is True
    (tree.memory / "memory.limit_in_bytes").write_text("9223372036854771712\n")
    unlimited = reader.read()
    assert unlimited.memory_limit_bytes is None
    assert unlimited.memory_limit_set is False


# cgroup v2


def test_v2_read_all_files(tmp_path: Path) -> None:
    reader, _ = v2_reader(tmp_path)
    sample = reader.read()
    assert reader.source == "cgroup-v2"
    assert sample.timestamp_seconds == 7.0
    assert sample.cpu_usage_seconds_total == pytest.approx(1.75)
    assert sample.cpu_user_seconds_total == pytest.approx(1.5)
    assert sample.cpu_system_seconds_total == pytest.approx(0.25)
    assert sample.cpu_pressure_some_seconds_total == pytest.approx(1.485081)
    assert sample.cpu_pressure_full_seconds_total == pytest.approx(1.481505)
    assert sample.memory_usage_bytes == 8 * MIB
    assert sample.memory_working_set_bytes == 7 * MIB
    assert sample.memory_rss_bytes == 4 * MIB
    assert sample.memory_cache_bytes == 3 * MIB
    assert sample.memory_swap_bytes == 65536
    assert sample.memory_limit_bytes == 32 * MIB
    assert sample.memory_limit_set is True
    assert sample.memory_oom_kills_total == 1
    assert sample.memory_oom_events_total == 2
    assert sample.memory_under_oom is None
    assert sample.memory_pressure_some_seconds_total == pytest.approx(0.0025)
    assert sample.memory_pressure_full_seconds_total == pytest.approx(0.001)
    assert sample.block_io_read_bytes_total == 1459200 + 90430464
    assert sample.block_io_write_bytes_total == 314773504 + 299008000
    assert sample.block_io_read_operations_total == 192 + 8950
    assert sample.block_io_write_operations_total == 353 + 1252
    assert sample.io_pressure_some_seconds_total == pytest.approx(0.005659)
    assert sample.io_pressure_full_seconds_total == pytest.approx(0.0056)
    assert sample.network_receive_bytes_total == 1234
    assert sample.network_transmit_bytes_total == 307
    assert sample.network_receive_packets_dropped_total == 2
    assert sample.processes == 1
    assert sample.threads == 2


def test_v2_cfs_throttling_units(tmp_path: Path) -> None:
    # throttled_usec is in microseconds: 139381 us is 0.139381 s.
    reader, directory = v2_reader(tmp_path)
    (directory / "cpu.stat").write_text(
        "usage_usec 500000\nuser_usec 400000\nsystem_usec 100000\n"
        "nr_periods 7\nnr_throttled 3\nthrottled_usec 139381\n"
    )
    sample = reader.read()
    assert sample.cpu_cfs_periods_total == 7
    assert sample.cpu_cfs_throttled_periods_total == 3
    assert sample.cpu_cfs_throttled_seconds_total == pytest.approx(0.139381)


def test_v2_max_limits(tmp_path: Path) -> None:
    reader, directory = v2_reader(tmp_path)
    (directory / "memory.max").write_text("max\n")
    (directory / "cpu.max").write_text("max 100000\n")
    sample = reader.read()
    # An unlimited container reports the host's memory, never 2**63 bytes.
    assert sample.memory_limit_bytes == MEM_TOTAL_BYTES
    assert sample.memory_limit_set is False
    assert sample.cpu_cfs_periods_total is None
    assert sample.cpu_cfs_throttled_periods_total is None
    assert sample.cpu_cfs_throttled_seconds_total is None


def test_v2_missing_optional_files(tmp_path: Path) -> None:
    reader, directory = v2_reader(tmp_path)
    for name in [
        "memory.current",
        "memory.stat",
        "memory.swap.current",
        "memory.max",
        "memory.events",
        "io.stat",
        "cpu.pressure",
        "memory.pressure",
        "io.pressure",
        "pids.current",
        "cgroup.procs",
    ]:
        (directory / name).unlink()
    (directory / "cpu.stat").write_text("usage_usec 10\n")
    (tmp_path / "proc" / str(PID) / "net" / "dev").unlink()
    sample = reader.read()
    assert sample.cpu_usage_seconds_total == pytest.approx(10e-6)
    for name, value in vars(sample).items():
        if name in ("timestamp_seconds", "cpu_usage_seconds_total"):
            continue
        assert value is None, name


def test_v2_pressure_without_full(tmp_path: Path) -> None:
    # cpu.pressure has no "full" line before Linux 5.13.
    reader, directory = v2_reader(tmp_path)
    (directory / "cpu.pressure").write_text(
        "some avg10=0.00 avg60=0.00 avg300=0.00 total=250\n"
    )
    sample = reader.read()
    assert sample.cpu_pressure_some_seconds_total == pytest.approx(0.00025)
    assert sample.cpu_pressure_full_seconds_total is None


def test_v2_empty_io_stat(tmp_path: Path) -> None:
    # A device appears in io.stat after its first I/O.
    reader, directory = v2_reader(tmp_path)
    (directory / "io.stat").write_text("")
    sample = reader.read()
    assert sample.block_io_read_bytes_total == 0
    assert sample.block_io_write_bytes_total == 0
    assert sample.block_io_read_operations_total == 0
    assert sample.block_io_write_operations_total == 0


def test_v2_io_stat_cost_keys(tmp_path: Path) -> None:
    # io.cost adds keys with decimal values, which the reader skips.
    reader, directory = v2_reader(tmp_path)
    (directory / "io.stat").write_text(
        "8:0 rbytes=4096 wbytes=8192 rios=1 wios=2 dbytes=0 dios=0 "
        "cost.vrate=135.71 cost.usage=1234 cost.wait=0 cost.indebt=0\n"
    )
    sample = reader.read()
    assert sample.block_io_read_bytes_total == 4096
    assert sample.block_io_write_bytes_total == 8192
    assert sample.block_io_read_operations_total == 1
    assert sample.block_io_write_operations_total == 2


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("cpu.stat", "usage_usec 10\nnr_periods seven\n"),
        ("memory.current", "1.5G\n"),
        ("memory.swap.current", "\n"),
        ("memory.max", "unlimited\n"),
        ("memory.stat", "anon 4096 4096\n"),
        ("memory.events", "oom x\n"),
        ("io.stat", "8:0 rbytes\n"),
        ("io.stat", "rbytes=1 wbytes=2\n"),
        ("io.stat", "8:0 rbytes=1.5\n"),
        ("cpu.pressure", "some avg10=0.00 avg60=0.00 avg300=0.00\n"),
        ("memory.pressure", "some total\n"),
        ("io.pressure", "full avg10=0.00 total=-\n"),
        ("pids.current", "two\n"),
    ],
)
def test_v2_malformed_file(tmp_path: Path, name: str, text: str) -> None:
    reader, directory = v2_reader(tmp_path)
    (directory / name).write_text(text)
    with pytest.raises(UsageError) as caught:
        reader.read()
    assert str(directory / name) in str(caught.value)


def test_v2_missing_usage_usec(tmp_path: Path) -> None:
    reader, directory = v2_reader(tmp_path)
    (directory / "cpu.stat").write_text("nr_periods 3\n")
    with pytest.raises(UsageError, match=r"cpu\.stat"):
        reader.read()


def test_v2_removed_cgroup(tmp_path: Path) -> None:
    reader, directory = v2_reader(tmp_path)
    remove_tree(directory)
    with pytest.raises(ServiceNotReady):
        reader.read()


# /proc/<pid>/net/dev


def test_net_dev_excludes_lo() -> None:
    assert replace(parse_net_dev(NET_DEV), interfaces=None) == NetworkCounters(
        receive_bytes=1234,
        receive_packets=11,
        receive_errors=1,
        receive_dropped=2,
        transmit_bytes=307,
        transmit_packets=4,
        transmit_errors=2,
        transmit_dropped=1,
    )


def test_net_dev_only_lo() -> None:
    lines = NET_DEV.splitlines()[:3]
    counters = parse_net_dev("\n".join(lines))
    assert counters == NetworkCounters(0, 0, 0, 0, 0, 0, 0, 0, interfaces=())


@pytest.mark.parametrize(
    "line",
    [
        "  eth0: 1 2 x",
        "not a line",
        "  eth2: many 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16",
        "  eth2: 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17",
    ],
)
def test_net_dev_malformed(line: str) -> None:
    path = Path("/proc/4242/net/dev")
    with pytest.raises(UsageError) as caught:
        parse_net_dev(NET_DEV + line + "\n", path)
    assert str(path) in str(caught.value)
    assert repr(line) in str(caught.value)
