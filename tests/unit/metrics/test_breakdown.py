"""Per-interface network and per-device block I/O counters, read and exported."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample as PrometheusSample

from hyperlane.metrics.api import parse_api_stats
from hyperlane.metrics.cgroup import CgroupReader, find_cgroup
from hyperlane.metrics.exporter import (
    CadvisorCollector,
    ContainerIdentity,
    ContainerSnapshot,
    SampleStore,
    block_device_name,
)
from hyperlane.metrics.sample import DeviceCounters, InterfaceCounters, Sample
from tests.unit.metrics.fakes import (
    BASE,
    CONTAINER_ID,
    PID,
    FakeClock,
    make_proc,
    make_v1_tree,
    make_v2_tree,
    v1_cgroup_lines,
    write,
)

V1_PATH = f"/docker/{CONTAINER_ID}"
V2_PATH = f"/system.slice/docker-{CONTAINER_ID}.scope"
# eth0 and eth1 of fakes.NET_DEV, without lo.
ETH0 = InterfaceCounters(
    name="eth0",
    receive_bytes=1200,
    receive_packets=10,
    receive_errors=1,
    receive_dropped=2,
    transmit_bytes=300,
    transmit_packets=3,
    transmit_errors=0,
    transmit_dropped=1,
)
ETH1 = InterfaceCounters(
    name="eth1",
    receive_bytes=34,
    receive_packets=1,
    receive_errors=0,
    receive_dropped=0,
    transmit_bytes=7,
    transmit_packets=1,
    transmit_errors=2,
    transmit_dropped=0,
)


def v1_sample(tmp_path: Path) -> Sample:
    proc_root = make_proc(tmp_path / "proc", v1_cgroup_lines(V1_PATH))
    tree = make_v1_tree(tmp_path / "cgroup", V1_PATH)
    location = find_cgroup(PID, proc_root, tree.cgroup_root)
    return CgroupReader(location, PID, proc_root, FakeClock(1.0)).read()


def v2_sample(tmp_path: Path) -> Sample:
    proc_root = make_proc(tmp_path / "proc", [f"0::{V2_PATH}"])
    make_v2_tree(tmp_path / "cgroup", V2_PATH)
    location = find_cgroup(PID, proc_root, tmp_path / "cgroup")
    return CgroupReader(location, PID, proc_root, FakeClock(1.0)).read()


def assert_totals_are_sums(sample: Sample) -> None:
    interfaces = sample.network_interfaces or ()
    devices = sample.block_devices or ()
    assert sample.network_receive_bytes_total == sum(
        item.receive_bytes or 0 for item in interfaces
    )
    assert sample.network_transmit_errors_total == sum(
        item.transmit_errors or 0 for item in interfaces
    )
    assert sample.block_io_read_bytes_total == sum(
        item.read_bytes or 0 for item in devices
    )
    assert sample.block_io_write_operations_total == sum(
        item.write_operations or 0 for item in devices
    )


def test_v1_interfaces_and_devices(tmp_path: Path) -> None:
    sample = v1_sample(tmp_path)
    assert sample.network_interfaces == (ETH0, ETH1)
    assert sample.block_devices == (
        DeviceCounters(
            major=8,
            minor=0,
            read_bytes=4096,
            write_bytes=16785408,
            read_operations=1,
            write_operations=7,
        ),
        DeviceCounters(
            major=254,
            minor=0,
            read_bytes=8192,
            write_bytes=0,
            read_operations=2,
            write_operations=0,
        ),
    )
    assert_totals_are_sums(sample)


def test_v2_interfaces_and_devices(tmp_path: Path) -> None:
    sample = v2_sample(tmp_path)
    assert sample.network_interfaces == (ETH0, ETH1)
    # io.stat lists 8:16 before 8:0; the tuple is ordered by major:minor.
    assert sample.block_devices == (
        DeviceCounters(
            major=8,
            minor=0,
            read_bytes=90430464,
            write_bytes=299008000,
            read_operations=8950,
            write_operations=1252,
        ),
        DeviceCounters(
            major=8,
            minor=16,
            read_bytes=1459200,
            write_bytes=314773504,
            read_operations=192,
            write_operations=353,
        ),
    )
    assert_totals_are_sums(sample)


def test_v2_no_io_yet(tmp_path: Path) -> None:
    proc_root = make_proc(tmp_path / "proc", [f"0::{V2_PATH}"])
    directory = make_v2_tree(tmp_path / "cgroup", V2_PATH)
    (directory / "io.stat").write_text("")
    location = find_cgroup(PID, proc_root, tmp_path / "cgroup")
    sample = CgroupReader(location, PID, proc_root, FakeClock(1.0)).read()
    assert sample.block_devices == ()
    assert sample.block_io_read_bytes_total == 0


def test_net_dev_missing_gives_none(tmp_path: Path) -> None:
    proc_root = make_proc(tmp_path / "proc", [f"0::{V2_PATH}"])
    make_v2_tree(tmp_path / "cgroup", V2_PATH)
    (proc_root / str(PID) / "net" / "dev").unlink()
    location = find_cgroup(PID, proc_root, tmp_path / "cgroup")
    sample = CgroupReader(location, PID, proc_root, FakeClock(1.0)).read()
    assert sample.network_interfaces is None
    assert sample.network_receive_bytes_total is None


def api_stats() -> dict[str, Any]:
    """Docker 20.10 stats on cgroup v2: two interfaces and two devices."""

    def entry(major: int, minor: int, op: str, value: int) -> dict[str, Any]:
        return {"major": major, "minor": minor, "op": op, "value": value}

    return {
        "read": "2026-12-04T16:00:00.5Z",
        "cpu_stats": {"cpu_usage": {"total_usage": 1_000_000_000}},
        "networks": {
            "eth0": {
                "rx_bytes": 1200,
                "rx_packets": 10,
                "rx_errors": 1,
                "rx_dropped": 2,
                "tx_bytes": 300,
                "tx_packets": 3,
                "tx_errors": 0,
                "tx_dropped": 1,
            },
            "eth1": {
                "rx_bytes": 34,
                "rx_packets": 1,
                "rx_errors": 0,
                "rx_dropped": 0,
                "tx_bytes": 7,
                "tx_packets": 1,
                "tx_errors": 2,
                "tx_dropped": 0,
            },
        },
        "blkio_stats": {
            "io_service_bytes_recursive": [
                entry(254, 0, "read", 8192),
                entry(254, 0, "write", 0),
                entry(8, 0, "read", 4096),
                entry(8, 0, "write", 16785408),
            ],
            "io_serviced_recursive": [
                entry(8, 0, "read", 1),
                entry(8, 0, "write", 7),
                entry(254, 0, "read", 2),
                entry(254, 0, "write", 0),
            ],
        },
    }


def test_api_interfaces_and_devices() -> None:
    sample = parse_api_stats(api_stats(), 0.0)
    assert sample.network_interfaces == (ETH0, ETH1)
    assert sample.block_devices == v1_sample_devices()
    assert_totals_are_sums(sample)


def v1_sample_devices() -> tuple[DeviceCounters, ...]:
    return (
        DeviceCounters(
            major=8,
            minor=0,
            read_bytes=4096,
            write_bytes=16785408,
            read_operations=1,
            write_operations=7,
        ),
        DeviceCounters(
            major=254,
            minor=0,
            read_bytes=8192,
            write_bytes=0,
            read_operations=2,
            write_operations=0,
        ),
    )


def test_api_swapped_interfaces() -> None:
    # Podman before 4.4 reports rx as tx, and the reader swaps them back.
    sample = parse_api_stats(api_stats(), 0.0, network_swapped=True)
    interfaces = sample.network_interfaces or ()
    assert [item.receive_bytes for item in interfaces] == [300, 7]
    assert [item.transmit_bytes for item in interfaces] == [1200, 34]
    assert sample.network_receive_bytes_total == 307


def test_api_podman_43_counters_unreported() -> None:
    stats = api_stats()
    for interface in stats["networks"].values():
        for key in ("rx_packets", "rx_errors", "rx_dropped"):
            interface[key] = 0
    stats["blkio_stats"]["io_serviced_recursive"] = None
    sample = parse_api_stats(stats, 0.0)
    interfaces = sample.network_interfaces or ()
    assert [item.receive_packets for item in interfaces] == [None, None]
    assert [item.transmit_packets for item in interfaces] == [3, 1]
    devices = sample.block_devices or ()
    assert [item.read_operations for item in devices] == [None, None]
    assert [item.read_bytes for item in devices] == [4096, 8192]


def test_api_without_networks() -> None:
    stats = api_stats()
    del stats["networks"]
    del stats["blkio_stats"]
    sample = parse_api_stats(stats, 0.0)
    assert sample.network_interfaces is None
    assert sample.block_devices is None


IDENTITY = ContainerIdentity(
    container_id=CONTAINER_ID,
    cgroup_id=V2_PATH,
    name="web",
    image="localhost/web:1.0",
    interface="eth0+eth1",
)
LABELS = {"id": V2_PATH, "image": "localhost/web:1.0", "name": "web"}


def series(
    sample: Sample, family: str, sys_root: Path | None = None
) -> list[PrometheusSample]:
    """Return the samples of one family that the collector exports for sample."""
    store = SampleStore()
    store.update(ContainerSnapshot(IDENTITY, "cgroup-v2", sample, 1.0))
    registry = CollectorRegistry(auto_describe=False)
    registry.register(CadvisorCollector(store, sys_root))
    text = generate_latest(registry).decode()
    for parsed in text_string_to_metric_families(text):
        if parsed.name == family:
            return list(parsed.samples)
    raise AssertionError(f"family {family!r} not exported")


def test_exporter_series_per_interface(tmp_path: Path) -> None:
    sample = v2_sample(tmp_path)
    received = series(sample, "container_network_receive_bytes")
    assert [(item.labels, item.value) for item in received] == [
        ({**LABELS, "interface": "eth0"}, 1200.0),
        ({**LABELS, "interface": "eth1"}, 34.0),
    ]
    dropped = series(sample, "container_network_transmit_packets_dropped")
    assert [item.value for item in dropped] == [1.0, 0.0]


def test_exporter_series_per_device(tmp_path: Path) -> None:
    sample = dataclasses.replace(BASE, block_devices=v1_sample_devices())
    # The fake sysfs names 8:0 only, so 254:0 keeps its numbers as the label.
    write(tmp_path / "dev/block/8:0/uevent", "MAJOR=8\nMINOR=0\nDEVNAME=sda\n")
    reads = series(sample, "container_fs_reads_bytes", tmp_path)
    assert [item.labels["device"] for item in reads] == ["/dev/sda", "254:0"]
    assert [item.value for item in reads] == [4096.0, 8192.0]
    usage = series(sample, "container_blkio_device_usage", tmp_path)
    assert [
        (item.labels["major"], item.labels["minor"], item.labels["operation"])
        for item in usage
    ] == [
        ("8", "0", "Read"),
        ("8", "0", "Write"),
        ("254", "0", "Read"),
        ("254", "0", "Write"),
    ]
    assert [item.value for item in usage] == [4096.0, 16785408.0, 8192.0, 0.0]
    assert usage[0].labels["device"] == "/dev/sda"


def test_exporter_totals_without_breakdown() -> None:
    # A recording of schema 1.0 has totals only.
    sample = dataclasses.replace(
        BASE, network_receive_bytes_total=1234, block_io_read_bytes_total=4096
    )
    received = series(sample, "container_network_receive_bytes")
    assert [(item.labels, item.value) for item in received] == [
        ({**LABELS, "interface": "eth0+eth1"}, 1234.0)
    ]
    reads = series(sample, "container_fs_reads_bytes")
    assert [(item.labels, item.value) for item in reads] == [(LABELS, 4096.0)]
    assert series(sample, "container_blkio_device_usage") == []


def test_block_device_name_from_sysfs(tmp_path: Path) -> None:
    write(tmp_path / "dev/block/8:0/uevent", "MAJOR=8\nMINOR=0\nDEVNAME=sda\n")
    write(tmp_path / "dev/block/8:1/uevent", "MAJOR=8\nMINOR=1\n")
    assert block_device_name(8, 0, tmp_path) == "/dev/sda"
    assert block_device_name(8, 1, tmp_path) == "8:1"
    assert block_device_name(8, 2, tmp_path) == "8:2"
    assert block_device_name(8, 0, None) == "8:0"
