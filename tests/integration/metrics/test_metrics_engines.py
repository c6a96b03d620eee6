"""Container metrics on both engines, read from the cgroup files and from the API.

A CPU-bound busybox container under a 0.5 CPU quota runs for about 10 s while the
Sampler reads its cgroup; its figures are checked against the quota, against
utime + stime in /proc/<pid>/stat, and against the engine's stats API.

Further containers check four more figures. They are the working set after writing
64 MiB to /dev/shm, an OOM kill under a 16 MiB limit, the network bytes of a known
transfer through a published port, and the block I/O bytes of a 16 MiB write to a
volume.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import docker.errors
import pytest
from docker.models.containers import Container
from docker.models.volumes import Volume

from hyperlane.errors import HyperlaneError, ServiceNotReady
from hyperlane.metrics import (
    ApiStatsReader,
    CgroupLocation,
    CgroupReader,
    MetricsSeries,
    Sample,
    Sampler,
    SampleReader,
    compute_rates,
    container_from_cgroup_path,
    find_cgroup,
    open_reader,
)
from tests.conftest import unique_name

pytestmark = pytest.mark.integration

NANO_CPUS = 500_000_000
QUOTA_CORES = 0.5
BURN_SECONDS = 10.0
MIB = 1024 * 1024
MEMORY_LIMIT_BYTES = 64 * MIB
BUSY_LOOP = ["sh", "-c", "while :; do :; done"]
IDLE = ["sleep", "120"]


@dataclass(frozen=True)
class Burn:
    """Readings taken around one run of the burner container."""

    engine_name: str
    container_id: str
    proc_cgroup_text: str
    location: CgroupLocation
    series: MetricsSeries
    cgroup_first: Sample
    cgroup_last: Sample
    api_first: Sample
    api_last: Sample
    proc_cpu_first_seconds: float
    proc_cpu_last_seconds: float
    auto_source: str
    api_after_exit: type[Exception] | None
    cgroup_after_exit: type[Exception] | None


def proc_cpu_seconds(procs_file: Path) -> float:
    """Sum utime + stime (fields 14 and 15 of /proc/<pid>/stat) over the cgroup."""
    ticks = 0
    for line in procs_file.read_text().split():
        stat = Path("/proc") / line / "stat"
        # The command name in field 2 may contain spaces, so split after its ")".
        fields = stat.read_text().rsplit(")", 1)[1].split()
        ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def read_after_exit(reader: SampleReader) -> type[Exception] | None:
    # The engine may remove the cgroup a moment after wait() returns.
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline:
        try:
            reader.read()
        except ServiceNotReady:
            return ServiceNotReady
        except HyperlaneError as error:
            return type(error)
        time.sleep(0.1)
    return None


def container_pid(container: Container) -> int:
    container.reload()
    return int(container.attrs["State"]["Pid"])


def open_readers(container: Container) -> tuple[SampleReader, SampleReader]:
    """Open the cgroup reader and the API reader, as --metrics-source selects them."""
    pid = container_pid(container)
    cgroup_reader = open_reader("cgroup", container, pid, local=True)
    api_reader = open_reader("api", container, pid, local=True)
    assert cgroup_reader.source.startswith("cgroup-v")
    assert api_reader.source == "api"
    return cgroup_reader, api_reader


def run_busybox(
    client: docker.DockerClient,
    image: str,
    reap: list[Container],
    prefix: str,
    command: list[str],
    **options: Any,
) -> Container:
    container = client.containers.run(
        image, command, name=unique_name(prefix), detach=True, **options
    )
    reap.append(container)
    return container


def host_mem_total_bytes() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no MemTotal line in /proc/meminfo")


@pytest.fixture(scope="module")
def burn(
    engine_name: str, engine_client: docker.DockerClient, busybox_image: str
) -> Iterator[Burn]:
    container = engine_client.containers.run(
        busybox_image,
        BUSY_LOOP,
        name=unique_name("hl-metrics-burn"),
        detach=True,
        nano_cpus=NANO_CPUS,
        mem_limit=MEMORY_LIMIT_BYTES,
    )
    try:
        pid = container_pid(container)
        proc_cgroup_text = (Path("/proc") / str(pid) / "cgroup").read_text()
        location = find_cgroup(pid)
        cgroup_reader = CgroupReader(location, pid)
        api_reader = ApiStatsReader(container)
        auto_source = open_reader("auto", container, pid, local=True).source

        cgroup_first = cgroup_reader.read()
        proc_first = proc_cpu_seconds(location.procs_file())
        api_first = api_reader.read()

        sampler = Sampler(cgroup_reader)
        sampler.start()
        time.sleep(BURN_SECONDS)
        series = sampler.stop()

        cgroup_last = cgroup_reader.read()
        proc_last = proc_cpu_seconds(location.procs_file())
        api_last = api_reader.read()

        container.kill()
        container.wait(timeout=30)
        yield Burn(
            engine_name=engine_name,
            container_id=str(container.id),
            proc_cgroup_text=proc_cgroup_text,
            location=location,
            series=series,
            cgroup_first=cgroup_first,
            cgroup_last=cgroup_last,
            api_first=api_first,
            api_last=api_last,
            proc_cpu_first_seconds=proc_first,
            proc_cpu_last_seconds=proc_last,
            auto_source=auto_source,
            api_after_exit=read_after_exit(api_reader),
            cgroup_after_exit=read_after_exit(cgroup_reader),
        )
    finally:
        container.remove(force=True)


def cgroup_cpu_seconds(burn: Burn) -> float:
    return (
        burn.cgroup_last.cpu_usage_seconds_total
        - burn.cgroup_first.cpu_usage_seconds_total
    )


def test_sampler_series_shape(burn: Burn) -> None:
    series = burn.series
    assert series.source.startswith("cgroup-v")
    assert series.failed_reads == 0
    # 10 s at 0.5 s gives 21 samples; allow for a loaded machine.
    assert len(series.samples) >= 15
    assert len(series.cpu_cores()) == len(series.samples) - 1


def test_cpu_seconds_match_quota(burn: Burn) -> None:
    summary = burn.series.summary()
    assert summary.cpu_seconds_total is not None
    assert summary.cpu_seconds_total == pytest.approx(
        QUOTA_CORES * BURN_SECONDS, abs=0.5
    )


def test_cpu_cores_within_quota(burn: Burn) -> None:
    summary = burn.series.summary()
    assert summary.cpu_cores_mean == pytest.approx(QUOTA_CORES, abs=0.05)
    assert summary.cpu_cores_max is not None
    # CFS grants 50 ms per 100 ms period; a 0.5 s interval may catch one extra slice.
    assert summary.cpu_cores_max <= QUOTA_CORES + 0.15


def test_rates_cpu_cores(burn: Burn) -> None:
    rates = compute_rates(burn.cgroup_first, burn.cgroup_last)
    assert rates.cpu_cores == pytest.approx(QUOTA_CORES, abs=0.05)
    assert rates.cpu_cfs_throttled_periods_ratio is not None
    # A busy loop under a quota of half a period is throttled in nearly every one.
    assert rates.cpu_cfs_throttled_periods_ratio > 0.8
    assert rates.cpu_cfs_throttled_periods_ratio <= 1.0
    assert compute_rates(None, burn.cgroup_first).cpu_cores is None


def test_api_cpu_cores(burn: Burn) -> None:
    rates = compute_rates(burn.api_first, burn.api_last)
    assert rates.cpu_cores == pytest.approx(QUOTA_CORES, abs=0.05)


def test_throttling_rises(burn: Burn) -> None:
    summary = burn.series.summary()
    assert summary.cpu_periods is not None
    assert summary.cpu_periods >= 50
    assert summary.cpu_throttled_periods is not None
    assert summary.cpu_throttled_periods > 0
    assert summary.cpu_throttled_seconds is not None
    assert summary.cpu_throttled_seconds > 0


def test_cpu_matches_proc_stat(burn: Burn) -> None:
    proc_seconds = burn.proc_cpu_last_seconds - burn.proc_cpu_first_seconds
    assert proc_seconds == pytest.approx(cgroup_cpu_seconds(burn), rel=0.10)


def test_user_system_split(burn: Burn) -> None:
    for first, last in [
        (burn.cgroup_first, burn.cgroup_last),
        (burn.api_first, burn.api_last),
    ]:
        assert first.cpu_user_seconds_total is not None
        assert last.cpu_user_seconds_total is not None
        assert first.cpu_system_seconds_total is not None
        assert last.cpu_system_seconds_total is not None
        user = last.cpu_user_seconds_total - first.cpu_user_seconds_total
        system = last.cpu_system_seconds_total - first.cpu_system_seconds_total
        used = last.cpu_usage_seconds_total - first.cpu_usage_seconds_total
        # The shell loop runs in user mode, and the split is sampled at each tick.
        assert user + system == pytest.approx(used, rel=0.10)
        assert user > 0.9 * used


def test_cpu_pressure(burn: Burn) -> None:
    first, last = burn.cgroup_first, burn.cgroup_last
    if burn.location.unified_directory is None:
        assert last.cpu_pressure_some_seconds_total is None
        return
    assert first.cpu_pressure_some_seconds_total is not None
    assert last.cpu_pressure_some_seconds_total is not None
    stalled = (
        last.cpu_pressure_some_seconds_total - first.cpu_pressure_some_seconds_total
    )
    # Linux 6.18 counts the throttled half of each period as CPU pressure.
    assert stalled > 0.25 * BURN_SECONDS
    assert stalled <= BURN_SECONDS + 1.0
    assert burn.api_last.cpu_pressure_some_seconds_total is None


def test_api_cpu_matches_cgroup(burn: Burn) -> None:
    # The API reads follow the cgroup reads by the length of a stats request,
    # which grows on a loaded machine, so compare rates over each reader's own
    # timestamps rather than CPU seconds over two shifted windows.
    api_cores = compute_rates(burn.api_first, burn.api_last).cpu_cores
    cgroup_cores = compute_rates(burn.cgroup_first, burn.cgroup_last).cpu_cores
    assert cgroup_cores is not None
    assert api_cores == pytest.approx(cgroup_cores, rel=0.05)


def test_api_throttling_fields(burn: Burn) -> None:
    first, last = burn.api_first, burn.api_last
    if burn.engine_name == "podman":
        # Podman 4.3 sends zeros in throttling_data, so the reader reports None.
        assert last.cpu_cfs_periods_total is None
        assert last.cpu_cfs_throttled_periods_total is None
        return
    assert first.cpu_cfs_throttled_periods_total is not None
    assert last.cpu_cfs_throttled_periods_total is not None
    assert last.cpu_cfs_throttled_periods_total > first.cpu_cfs_throttled_periods_total


def test_memory_limit_64mib(burn: Burn) -> None:
    assert burn.cgroup_last.memory_limit_bytes == MEMORY_LIMIT_BYTES
    assert burn.cgroup_last.memory_limit_set is True
    assert burn.api_last.memory_limit_bytes == MEMORY_LIMIT_BYTES
    assert burn.api_last.memory_limit_set is True
    assert burn.series.summary().memory_limit_bytes == MEMORY_LIMIT_BYTES


def test_memory_and_tasks(burn: Burn) -> None:
    sample = burn.cgroup_last
    assert sample.memory_usage_bytes is not None
    assert sample.memory_usage_bytes > 0
    assert sample.memory_working_set_bytes is not None
    assert sample.memory_working_set_bytes <= sample.memory_usage_bytes
    assert sample.memory_rss_bytes is not None
    assert sample.memory_rss_bytes > 0
    assert sample.memory_oom_kills_total == 0
    assert sample.processes == 1
    assert sample.threads == 1
    assert burn.api_last.threads == 1


def test_container_id_of_burner(burn: Burn) -> None:
    lines = burn.proc_cgroup_text.splitlines()
    assert lines
    for line in lines:
        found = container_from_cgroup_path(line)
        assert found is not None, line
        assert found.container_id == burn.container_id
        assert found.pod_uid is None


def test_network_matches_api(burn: Burn) -> None:
    # Both read the counters of the container's interfaces; an idle busybox sends
    # little, so the two reads taken moments apart agree within a few packets.
    cgroup_sample, api_sample = burn.cgroup_last, burn.api_last
    assert cgroup_sample.network_receive_bytes_total is not None
    assert api_sample.network_receive_bytes_total is not None
    assert api_sample.network_receive_bytes_total == pytest.approx(
        cgroup_sample.network_receive_bytes_total, abs=200
    )
    assert cgroup_sample.network_transmit_bytes_total is not None
    assert api_sample.network_transmit_bytes_total is not None
    assert api_sample.network_transmit_bytes_total == pytest.approx(
        cgroup_sample.network_transmit_bytes_total, abs=200
    )


def test_auto_source_is_cgroup(burn: Burn) -> None:
    assert burn.auto_source.startswith("cgroup-v")


def test_readers_after_exit(burn: Burn) -> None:
    assert burn.api_after_exit is ServiceNotReady
    assert burn.cgroup_after_exit is ServiceNotReady


# Memory: working set with shared memory, OOM kill, unlimited container

SHM_BYTES = 64 * MIB


def test_shm_working_set(
    engine_client: docker.DockerClient, busybox_image: str, reap: list[Container]
) -> None:
    container = run_busybox(
        engine_client, busybox_image, reap, "hl-metrics-shm", IDLE, shm_size="128m"
    )
    cgroup_reader, api_reader = open_readers(container)
    cgroup_before, api_before = cgroup_reader.read(), api_reader.read()

    written = container.exec_run(
        ["sh", "-c", f"head -c {SHM_BYTES} /dev/zero > /dev/shm/blob"]
    )
    assert written.exit_code == 0, written.output
    cgroup_after, api_after = cgroup_reader.read(), api_reader.read()

    # tmpfs pages are not reclaimable without swap, so they stay in the working set.
    assert cgroup_before.memory_working_set_bytes is not None
    assert cgroup_after.memory_working_set_bytes is not None
    grown = (
        cgroup_after.memory_working_set_bytes - cgroup_before.memory_working_set_bytes
    )
    assert grown == pytest.approx(SHM_BYTES, rel=0.05)
    assert cgroup_before.memory_cache_bytes is not None
    assert cgroup_after.memory_cache_bytes is not None
    cached = cgroup_after.memory_cache_bytes - cgroup_before.memory_cache_bytes
    assert cached == pytest.approx(SHM_BYTES, rel=0.05)

    if api_after.memory_working_set_bytes is None:
        # Podman 4.3's API has no memory.stat figures, only the usage.
        assert api_before.memory_usage_bytes is not None
        assert api_after.memory_usage_bytes is not None
        api_grown = api_after.memory_usage_bytes - api_before.memory_usage_bytes
    else:
        assert api_before.memory_working_set_bytes is not None
        api_grown = (
            api_after.memory_working_set_bytes - api_before.memory_working_set_bytes
        )
    assert api_grown == pytest.approx(SHM_BYTES, rel=0.05)


def test_oom_kill_counted(
    engine_client: docker.DockerClient, busybox_image: str, reap: list[Container]
) -> None:
    container = run_busybox(
        engine_client, busybox_image, reap, "hl-metrics-oom", IDLE, mem_limit="16m"
    )
    cgroup_reader, api_reader = open_readers(container)
    before = cgroup_reader.read()
    assert before.memory_limit_bytes == 16 * MIB
    assert before.memory_limit_set is True
    assert before.memory_oom_kills_total == 0

    # dd fills a 32 MiB buffer from /dev/zero, twice the limit, and is killed.
    killed = container.exec_run(
        ["dd", "if=/dev/zero", "of=/dev/null", "bs=32M", "count=1"]
    )
    assert killed.exit_code == 137, killed.output
    after = cgroup_reader.read()
    assert after.memory_oom_kills_total == 1
    if after.memory_oom_events_total is not None:
        # memory.events on cgroup v2 also counts the limit hits.
        assert before.memory_oom_events_total is not None
        assert after.memory_oom_events_total > before.memory_oom_events_total
    if cgroup_reader.source == "cgroup-v1":
        assert after.memory_under_oom is False

    api_sample = api_reader.read()
    assert api_sample.memory_limit_bytes == 16 * MIB
    # The stats API has no OOM counter.
    assert api_sample.memory_oom_kills_total is None


# Network: a known transfer through a published port on 127.0.0.1

RECEIVE_BYTES = 1_000_000
TRANSMIT_BYTES = 300_000
RECEIVE_PORT = 8080
TRANSMIT_PORT = 8081
# Every frame on the veth carries an Ethernet header (14 bytes). TCP over IPv4 adds
# at least 20 + 20 and at most 60 + 60 header bytes, and an ARP frame is 42 bytes.
MIN_FRAME_OVERHEAD_BYTES = 42
MAX_FRAME_OVERHEAD_BYTES = 14 + 60 + 60
NETWORK_SCRIPT = (
    f"echo received $(nc -l -p {RECEIVE_PORT} </dev/null | wc -c); "
    f"head -c {TRANSMIT_BYTES} /dev/zero | nc -l -p {TRANSMIT_PORT}; sleep 60"
)


def is_listening(pid: int, port: int) -> bool:
    """Return whether a TCP socket in the process's namespace listens on port."""
    for table in ("tcp", "tcp6"):
        lines = (Path("/proc") / str(pid) / "net" / table).read_text().splitlines()
        for line in lines[1:]:
            fields = line.split()
            # Field 2 is "address:port" in hex, and state 0A is LISTEN.
            if fields[1].endswith(f":{port:04X}") and fields[3] == "0A":
                return True
    return False


def wait_listening(pid: int, port: int) -> None:
    deadline = time.monotonic() + 10.0
    while not is_listening(pid, port):
        assert time.monotonic() < deadline, f"nothing listens on port {port}"
        time.sleep(0.05)


def host_port(container: Container, port: int) -> int:
    container.reload()
    return int(
        container.attrs["NetworkSettings"]["Ports"][f"{port}/tcp"][0]["HostPort"]
    )


def transfer(container: Container) -> int:
    """Send RECEIVE_BYTES to the container, then read what it sends back."""
    pid = container_pid(container)
    wait_listening(pid, RECEIVE_PORT)
    with socket.create_connection(
        ("127.0.0.1", host_port(container, RECEIVE_PORT))
    ) as sock:
        sock.sendall(b"x" * RECEIVE_BYTES)
    wait_listening(pid, TRANSMIT_PORT)
    received = 0
    with socket.create_connection(
        ("127.0.0.1", host_port(container, TRANSMIT_PORT))
    ) as sock:
        while received < TRANSMIT_BYTES:
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += len(chunk)
    return received


def assert_payload_bytes(
    bytes_delta: int | None, packets_delta: int, payload_bytes: int
) -> None:
    """Check that the byte counter grew by the payload plus a header per frame."""
    assert bytes_delta is not None
    assert packets_delta > 0
    assert bytes_delta >= payload_bytes + MIN_FRAME_OVERHEAD_BYTES * packets_delta
    assert bytes_delta <= payload_bytes + MAX_FRAME_OVERHEAD_BYTES * packets_delta


def counter_delta(before: int | None, after: int | None) -> int | None:
    if before is None or after is None:
        return None
    return after - before


def test_network_transfer_bytes(
    engine_client: docker.DockerClient, busybox_image: str, reap: list[Container]
) -> None:
    container = run_busybox(
        engine_client,
        busybox_image,
        reap,
        "hl-metrics-net",
        ["sh", "-c", NETWORK_SCRIPT],
        ports={
            f"{RECEIVE_PORT}/tcp": ("127.0.0.1", None),
            f"{TRANSMIT_PORT}/tcp": ("127.0.0.1", None),
        },
    )
    cgroup_reader, api_reader = open_readers(container)
    wait_listening(container_pid(container), RECEIVE_PORT)
    cgroup_before, api_before = cgroup_reader.read(), api_reader.read()
    sent_back = transfer(container)
    assert sent_back == TRANSMIT_BYTES
    # The container logs what nc received, so the payload is known on both ends.
    deadline = time.monotonic() + 10.0
    while b"received" not in container.logs():
        assert time.monotonic() < deadline, container.logs()
        time.sleep(0.05)
    assert f"received {RECEIVE_BYTES}".encode() in container.logs()
    cgroup_after, api_after = cgroup_reader.read(), api_reader.read()

    cgroup_receive_packets = counter_delta(
        cgroup_before.network_receive_packets_total,
        cgroup_after.network_receive_packets_total,
    )
    cgroup_transmit_packets = counter_delta(
        cgroup_before.network_transmit_packets_total,
        cgroup_after.network_transmit_packets_total,
    )
    assert cgroup_receive_packets is not None
    assert cgroup_transmit_packets is not None
    for before, after in [(cgroup_before, cgroup_after), (api_before, api_after)]:
        # Podman 4.3's API has no packet counts. Its reads follow the cgroup reads
        # within milliseconds of an idle link, so the cgroup's counts apply.
        receive_packets = counter_delta(
            before.network_receive_packets_total, after.network_receive_packets_total
        )
        transmit_packets = counter_delta(
            before.network_transmit_packets_total, after.network_transmit_packets_total
        )
        if receive_packets is None:
            receive_packets = cgroup_receive_packets
        if transmit_packets is None:
            transmit_packets = cgroup_transmit_packets
        assert_payload_bytes(
            counter_delta(
                before.network_receive_bytes_total, after.network_receive_bytes_total
            ),
            receive_packets,
            RECEIVE_BYTES,
        )
        assert_payload_bytes(
            counter_delta(
                before.network_transmit_bytes_total, after.network_transmit_bytes_total
            ),
            transmit_packets,
            TRANSMIT_BYTES,
        )
    assert cgroup_after.network_receive_errors_total == 0
    assert cgroup_after.network_receive_packets_dropped_total == 0

    # An unlimited container reports the host's memory as its limit.
    assert cgroup_after.memory_limit_bytes == host_mem_total_bytes()
    assert cgroup_after.memory_limit_set is False
    assert api_after.memory_limit_bytes == engine_client.info()["MemTotal"]
    assert api_after.memory_limit_set is False


# Block I/O: a 16 MiB write with conv=fsync to a volume

WRITE_BYTES = 16 * MIB
DD_WRITE = ["dd", "if=/dev/zero", "of=/data/blob", "bs=1M", "count=16", "conv=fsync"]


def whole_disk_of(path: str) -> Path | None:
    """Return /dev/<disk> of the disk that contains path, or None if not on a disk."""
    device = Path(path).stat().st_dev
    sysfs = Path("/sys/dev/block") / f"{os.major(device)}:{os.minor(device)}"
    if not sysfs.exists():
        return None
    sysfs = sysfs.resolve()
    if (sysfs / "partition").exists():
        sysfs = sysfs.parent
    node = Path("/dev") / sysfs.name
    return node if node.exists() else None


@pytest.fixture
def volume(
    engine_client: docker.DockerClient, reap: list[Container]
) -> Iterator[Volume]:
    """A named volume, removed after the containers in reap that mount it."""
    created = engine_client.volumes.create(unique_name("hl-metrics-volume"))
    yield created
    for container in reap:
        with contextlib.suppress(docker.errors.NotFound):
            container.remove(force=True)
    created.remove(force=True)


def write_to_volume(
    engine_client: docker.DockerClient,
    busybox_image: str,
    reap: list[Container],
    volume: Volume,
    **options: Any,
) -> tuple[Sample, Sample, Sample, Sample]:
    """Write WRITE_BYTES to the volume and return cgroup and API samples around it."""
    container = run_busybox(
        engine_client,
        busybox_image,
        reap,
        "hl-metrics-blkio",
        IDLE,
        volumes={volume.name: {"bind": "/data", "mode": "rw"}},
        **options,
    )
    cgroup_reader, api_reader = open_readers(container)
    cgroup_before, api_before = cgroup_reader.read(), api_reader.read()
    written = container.exec_run(DD_WRITE)
    assert written.exit_code == 0, written.output
    return cgroup_before, cgroup_reader.read(), api_before, api_reader.read()


def written_bytes(before: Sample, after: Sample) -> int | None:
    """Return the bytes written between two samples of a fresh container.

    cgroup v1 lists a device after the cgroup's first I/O on it, so a baseline of
    None before the first write is 0.
    """
    if after.block_io_write_bytes_total is None:
        return None
    return after.block_io_write_bytes_total - (before.block_io_write_bytes_total or 0)


def test_block_io_written_bytes(
    engine_client: docker.DockerClient,
    busybox_image: str,
    reap: list[Container],
    volume: Volume,
) -> None:
    disk = whole_disk_of(volume.attrs["Mountpoint"])
    if disk is None:
        pytest.skip(f"volume {volume.attrs['Mountpoint']} is not on a block device")
    # A throttle rule far above the disk's speed makes cgroup v1 account the disk.
    rule = [{"Path": str(disk), "Rate": 1 << 30}]
    cgroup_before, cgroup_after, api_before, api_after = write_to_volume(
        engine_client, busybox_image, reap, volume, device_write_bps=rule
    )
    written = written_bytes(cgroup_before, cgroup_after)
    assert written is not None
    # The file system adds its journal and metadata blocks to the 16 MiB.
    assert written >= WRITE_BYTES
    assert written <= WRITE_BYTES * 1.05
    assert cgroup_after.block_io_write_operations_total is not None
    assert cgroup_after.block_io_write_operations_total >= 1
    assert written_bytes(api_before, api_after) == written


def test_block_io_without_throttle_rule(
    engine_client: docker.DockerClient,
    busybox_image: str,
    reap: list[Container],
    volume: Volume,
) -> None:
    cgroup_before, cgroup_after, _, api_after = write_to_volume(
        engine_client, busybox_image, reap, volume
    )
    written = written_bytes(cgroup_before, cgroup_after)
    if written is None:
        assert api_after.block_io_write_bytes_total is None
        pytest.skip(
            f"blkio.throttle.io_service_bytes listed no device after a 16 MiB dd "
            f"conv=fsync to a volume on Linux {os.uname().release}: cgroup v1 "
            f"accounts a disk only after a throttle rule was set for it since boot"
        )
    assert written >= WRITE_BYTES
    assert written <= WRITE_BYTES * 1.05
