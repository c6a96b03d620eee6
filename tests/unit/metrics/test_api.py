from datetime import datetime
from typing import Any

import docker.errors
import pytest

from hyperlane.errors import EngineUnavailable, ServiceNotReady
from hyperlane.metrics import (
    ApiStatsReader,
    cpu_percent,
    online_cpu_count,
    parse_api_stats,
)
from tests.unit.metrics.fakes import (
    ENGINE_MEM_TOTAL_BYTES,
    FakeClient,
    FakeClock,
    FakeContainer,
    as_container,
)

QUOTA_HOST_CONFIG = {"NanoCpus": 500_000_000, "CpuQuota": 0, "Memory": 67108864}
MIB = 1024 * 1024


def blkio_entries(read: int, write: int, operations: tuple[str, str]) -> list[Any]:
    """Return a blkio_stats list for device 254:0 with the given read and write."""
    read_name, write_name = operations
    return [
        {"major": 254, "minor": 0, "op": read_name, "value": read},
        {"major": 254, "minor": 0, "op": write_name, "value": write},
        {"major": 254, "minor": 0, "op": "Sync", "value": read + write},
        {"major": 254, "minor": 0, "op": "Async", "value": 0},
        {"major": 254, "minor": 0, "op": "Discard", "value": 0},
        {"major": 254, "minor": 0, "op": "Total", "value": read + write},
    ]


def docker_stats() -> dict[str, Any]:
    """Return a one-shot stats object shaped like Docker 20.10's on cgroup v1."""
    return {
        "read": "2026-12-04T14:03:36.226125189Z",
        "preread": "0001-01-01T00:00:00Z",
        "name": "/hl-fake",
        "pids_stats": {"current": 4},
        "blkio_stats": {
            "io_service_bytes_recursive": blkio_entries(
                4096, 16785408, ("Read", "Write")
            ),
            "io_serviced_recursive": blkio_entries(1, 7, ("Read", "Write")),
        },
        "cpu_stats": {
            "cpu_usage": {
                "total_usage": 1_544_364_121,
                "percpu_usage": [5_634_430, 1_538_729_691],
                "usage_in_kernelmode": 10_000_000,
                "usage_in_usermode": 1_530_000_000,
            },
            "system_cpu_usage": 16_002_140_000_000,
            "online_cpus": 2,
            "throttling_data": {
                "periods": 32,
                "throttled_periods": 30,
                "throttled_time": 1_489_860_257,
            },
        },
        "precpu_stats": {"cpu_usage": {"total_usage": 0}},
        "memory_stats": {
            "usage": 5_000_000,
            "max_usage": 5_100_000,
            "stats": {
                "cache": 200,
                "rss": 300,
                "inactive_file": 100,
                "total_cache": 2_000_000,
                "total_rss": 3_000_000,
                "total_inactive_file": 1_000_000,
            },
            "limit": 67108864,
        },
        "networks": {
            "eth0": {
                "rx_bytes": 736,
                "rx_packets": 8,
                "rx_errors": 1,
                "rx_dropped": 2,
                "tx_bytes": 10,
                "tx_packets": 1,
                "tx_errors": 0,
                "tx_dropped": 3,
            },
            "eth1": {
                "rx_bytes": 4,
                "rx_packets": 1,
                "rx_errors": 0,
                "rx_dropped": 0,
                "tx_bytes": 5,
                "tx_packets": 1,
                "tx_errors": 4,
                "tx_dropped": 0,
            },
        },
    }


def docker_v2_stats() -> dict[str, Any]:
    """Return a stats object shaped like Docker's on cgroup v2."""
    stats = docker_stats()
    stats["memory_stats"] = {
        "usage": 8_388_608,
        "stats": {"anon": 4_194_304, "file": 3_145_728, "inactive_file": 1_048_576},
        "limit": 33_554_432,
    }
    stats["blkio_stats"] = {
        "io_service_bytes_recursive": [
            {"major": 8, "minor": 0, "op": "read", "value": 90_430_464},
            {"major": 8, "minor": 0, "op": "write", "value": 299_008_000},
        ],
        "io_serviced_recursive": None,
    }
    del stats["cpu_stats"]["cpu_usage"]["percpu_usage"]
    return stats


def podman_stats() -> dict[str, Any]:
    """Return a stats object shaped like Podman 4.3's compatible API on cgroup v1."""
    return {
        "read": "2026-12-04T14:03:42.359681575Z",
        "name": "hl-fake",
        "pids_stats": {"current": 1},
        "blkio_stats": {
            # Podman 4.3 swaps major and minor here, which the sum does not use.
            "io_service_bytes_recursive": [
                {"major": 0, "minor": 254, "op": "Read", "value": 20480},
                {"major": 0, "minor": 254, "op": "Write", "value": 16_809_984},
                {"major": 0, "minor": 254, "op": "Total", "value": 16_830_464},
            ],
            "io_serviced_recursive": None,
        },
        "cpu_stats": {
            "cpu_usage": {
                "total_usage": 1_041_166_217,
                "usage_in_kernelmode": 8_000_000,
                "usage_in_usermode": 1_033_166_217,
            },
            "cpu": 476.0,
            "throttling_data": {
                "periods": 0,
                "throttled_periods": 0,
                "throttled_time": 0,
            },
        },
        "memory_stats": {"usage": 622592, "limit": 67108864},
        "networks": {
            "network": {
                "rx_bytes": 426,
                "rx_packets": 0,
                "rx_errors": 0,
                "rx_dropped": 0,
                "tx_bytes": 1020,
                "tx_packets": 0,
                "tx_errors": 0,
                "tx_dropped": 0,
            }
        },
    }


def test_docker_stats_fields() -> None:
    sample = parse_api_stats(
        docker_stats(), 3.0, cpu_quota_set=True, memory_limited=True
    )
    assert sample.timestamp_seconds == 3.0
    assert sample.cpu_usage_seconds_total == pytest.approx(1.544364121)
    assert sample.cpu_user_seconds_total == pytest.approx(1.53)
    assert sample.cpu_system_seconds_total == pytest.approx(0.01)
    assert sample.cpu_cfs_periods_total == 32
    assert sample.cpu_cfs_throttled_periods_total == 30
    assert sample.cpu_cfs_throttled_seconds_total == pytest.approx(1.489860257)
    assert sample.memory_usage_bytes == 5_000_000
    assert sample.memory_working_set_bytes == 4_000_000
    assert sample.memory_rss_bytes == 3_000_000
    assert sample.memory_cache_bytes == 2_000_000
    assert sample.memory_swap_bytes is None
    assert sample.memory_limit_bytes == 64 * MIB
    assert sample.memory_limit_set is True
    assert sample.block_io_read_bytes_total == 4096
    assert sample.block_io_write_bytes_total == 16785408
    assert sample.block_io_read_operations_total == 1
    assert sample.block_io_write_operations_total == 7
    assert sample.network_receive_bytes_total == 740
    assert sample.network_receive_packets_total == 9
    assert sample.network_receive_errors_total == 1
    assert sample.network_receive_packets_dropped_total == 2
    assert sample.network_transmit_bytes_total == 15
    assert sample.network_transmit_packets_total == 2
    assert sample.network_transmit_errors_total == 4
    assert sample.network_transmit_packets_dropped_total == 3
    assert sample.threads == 4


def test_api_lacks_kernel_counters() -> None:
    # The stats API has no OOM counters, PSI totals or process count.
    sample = parse_api_stats(docker_stats(), 0.0)
    assert sample.memory_oom_kills_total is None
    assert sample.memory_oom_events_total is None
    assert sample.memory_under_oom is None
    assert sample.cpu_pressure_some_seconds_total is None
    assert sample.cpu_pressure_full_seconds_total is None
    assert sample.memory_pressure_some_seconds_total is None
    assert sample.memory_pressure_full_seconds_total is None
    assert sample.io_pressure_some_seconds_total is None
    assert sample.io_pressure_full_seconds_total is None
    assert sample.processes is None


def test_docker_v2_stats_fields() -> None:
    sample = parse_api_stats(docker_v2_stats(), 0.0, memory_limited=True)
    assert sample.memory_working_set_bytes == 7 * MIB
    assert sample.memory_rss_bytes == 4 * MIB
    assert sample.memory_cache_bytes == 3 * MIB
    assert sample.memory_limit_bytes == 32 * MIB
    assert sample.block_io_read_bytes_total == 90_430_464
    assert sample.block_io_write_bytes_total == 299_008_000
    assert sample.block_io_read_operations_total is None
    assert sample.block_io_write_operations_total is None


def test_podman_stats_fields() -> None:
    sample = parse_api_stats(podman_stats(), 1.0, throttling_exposed=False)
    assert sample.cpu_usage_seconds_total == pytest.approx(1.041166217)
    assert sample.cpu_user_seconds_total == pytest.approx(1.033166217)
    assert sample.cpu_system_seconds_total == pytest.approx(0.008)
    assert sample.cpu_cfs_periods_total is None
    assert sample.cpu_cfs_throttled_periods_total is None
    assert sample.cpu_cfs_throttled_seconds_total is None
    assert sample.memory_usage_bytes == 622592
    assert sample.memory_working_set_bytes is None
    assert sample.memory_rss_bytes is None
    assert sample.memory_cache_bytes is None
    assert sample.memory_limit_bytes == 67108864
    assert sample.block_io_read_bytes_total == 20480
    assert sample.block_io_write_bytes_total == 16_809_984
    assert sample.block_io_read_operations_total is None
    assert sample.network_receive_bytes_total == 426
    assert sample.network_transmit_bytes_total == 1020


def test_podman_packets_unreported() -> None:
    # Podman 4.3 sends bytes but zero packets, errors and drops.
    sample = parse_api_stats(podman_stats(), 1.0)
    assert sample.network_receive_packets_total is None
    assert sample.network_receive_errors_total is None
    assert sample.network_receive_packets_dropped_total is None
    assert sample.network_transmit_packets_total is None
    assert sample.network_transmit_errors_total is None
    assert sample.network_transmit_packets_dropped_total is None


def test_idle_interface_packets_zero() -> None:
    # No bytes and no packets is a real zero, not a missing counter.
    stats = docker_stats()
    stats["networks"] = {"eth0": dict.fromkeys(stats["networks"]["eth0"], 0)}
    sample = parse_api_stats(stats, 0.0)
    assert sample.network_receive_packets_total == 0
    assert sample.network_transmit_errors_total == 0


def test_no_quota_periods() -> None:
    sample = parse_api_stats(docker_stats(), 0.0, cpu_quota_set=False)
    assert sample.cpu_cfs_periods_total is None
    assert sample.cpu_cfs_throttled_seconds_total is None


def test_unknown_quota_zero_periods() -> None:
    sample = parse_api_stats(podman_stats(), 0.0, cpu_quota_set=None)
    assert sample.cpu_cfs_periods_total is None


def test_quota_zero_periods() -> None:
    # A container with a quota reports 0 periods before its first period ends.
    sample = parse_api_stats(podman_stats(), 0.0, cpu_quota_set=True)
    assert sample.cpu_cfs_periods_total == 0


def test_unlimited_memory() -> None:
    stats = docker_stats()
    stats["memory_stats"]["limit"] = ENGINE_MEM_TOTAL_BYTES
    sample = parse_api_stats(
        stats, 0.0, memory_limited=False, host_memory_bytes=ENGINE_MEM_TOTAL_BYTES
    )
    assert sample.memory_limit_bytes == ENGINE_MEM_TOTAL_BYTES
    assert sample.memory_limit_set is False


def test_unlimited_without_host_memory() -> None:
    # Docker reports the host's memory as the limit of an unlimited container.
    stats = docker_stats()
    stats["memory_stats"]["limit"] = ENGINE_MEM_TOTAL_BYTES
    sample = parse_api_stats(stats, 0.0, memory_limited=False)
    assert sample.memory_limit_bytes == ENGINE_MEM_TOTAL_BYTES
    assert sample.memory_limit_set is False


def test_limit_equal_host_memory() -> None:
    # Without HostConfig, a limit equal to the host's memory is Docker's "none".
    stats = docker_stats()
    stats["memory_stats"]["limit"] = ENGINE_MEM_TOTAL_BYTES
    sample = parse_api_stats(stats, 0.0, host_memory_bytes=ENGINE_MEM_TOTAL_BYTES)
    assert sample.memory_limit_bytes == ENGINE_MEM_TOTAL_BYTES
    assert sample.memory_limit_set is False


@pytest.mark.parametrize("host_memory_bytes", [None, ENGINE_MEM_TOTAL_BYTES])
def test_huge_limit_unlimited(host_memory_bytes: int | None) -> None:
    stats = docker_stats()
    stats["memory_stats"]["limit"] = 9223372036854771712
    sample = parse_api_stats(stats, 0.0, host_memory_bytes=host_memory_bytes)
    assert sample.memory_limit_bytes == host_memory_bytes
    assert sample.memory_limit_set is False


def test_missing_sections() -> None:
    stats = {
        "read": "2026-12-04T14:00:00Z",
        "cpu_stats": {"cpu_usage": {"total_usage": 5}},
    }
    sample = parse_api_stats(stats, 0.0)
    assert sample.cpu_usage_seconds_total == pytest.approx(5e-9)
    for name, value in vars(sample).items():
        if name in ("timestamp_seconds", "cpu_usage_seconds_total"):
            continue
        assert value is None, name


def test_empty_blkio_lists() -> None:
    # Docker sends empty lists for a v1 cgroup whose devices have no throttle rule.
    stats = docker_stats()
    stats["blkio_stats"] = {
        "io_service_bytes_recursive": [],
        "io_serviced_recursive": [],
    }
    sample = parse_api_stats(stats, 0.0)
    assert sample.block_io_read_bytes_total is None
    assert sample.block_io_write_bytes_total is None
    assert sample.block_io_read_operations_total is None
    assert sample.block_io_write_operations_total is None


def test_zero_read_time() -> None:
    stats = docker_stats()
    stats["read"] = "0001-01-01T00:00:00Z"
    with pytest.raises(ServiceNotReady, match="not running"):
        parse_api_stats(stats, 0.0)


def test_missing_cpu_usage() -> None:
    stats = docker_stats()
    del stats["cpu_stats"]["cpu_usage"]
    with pytest.raises(EngineUnavailable, match="total_usage"):
        parse_api_stats(stats, 0.0)


# CPU percent


def cpu_stats(
    total_ns: int, system_ns: int, online: int | None, per_cpu: list[int] | None
) -> dict[str, Any]:
    usage: dict[str, Any] = {"total_usage": total_ns}
    if per_cpu is not None:
        usage["percpu_usage"] = per_cpu
    stats: dict[str, Any] = {"cpu_usage": usage, "system_cpu_usage": system_ns}
    if online is not None:
        stats["online_cpus"] = online
    return stats


# 15,609,314 ns of container CPU over 7.96e9 ns of host CPU on 8 online CPUs.
CONTAINER_DELTA_NS = 15_609_314
HOST_DELTA_NS = 7_960_000_000
EXPECTED_PERCENT = CONTAINER_DELTA_NS / HOST_DELTA_NS * 8 * 100


def test_cpu_percent_online_cpus() -> None:
    before = cpu_stats(1_000_000_000, 50_000_000_000, 8, None)
    after = cpu_stats(
        1_000_000_000 + CONTAINER_DELTA_NS, 50_000_000_000 + HOST_DELTA_NS, 8, None
    )
    percent = cpu_percent(after, before)
    assert percent == pytest.approx(1.5688, abs=1e-4)
    assert percent == pytest.approx(EXPECTED_PERCENT)


def test_cpu_percent_percpu_fallback() -> None:
    # 16 possible CPUs, 8 online: the offline ones report 0 and must not count.
    per_cpu = [2_000_000, 0, 1_500_000, 0, 900_000, 0, 3_100_000, 0] * 2
    before = cpu_stats(1_000_000_000, 50_000_000_000, None, per_cpu)
    after = cpu_stats(
        1_000_000_000 + CONTAINER_DELTA_NS,
        50_000_000_000 + HOST_DELTA_NS,
        None,
        per_cpu,
    )
    assert online_cpu_count(after) == 8
    assert cpu_percent(after, before) == pytest.approx(EXPECTED_PERCENT)


def test_online_cpus_zero_fallback() -> None:
    # An engine that sends online_cpus 0 falls back to the per-CPU list.
    assert online_cpu_count(cpu_stats(1, 1, 0, [5, 0, 7])) == 2


def test_online_cpus_unknown() -> None:
    assert online_cpu_count(cpu_stats(1, 1, None, None)) is None
    assert online_cpu_count(cpu_stats(1, 1, None, [0, 0])) is None


def test_cpu_percent_one_shot() -> None:
    # A one-shot read leaves precpu_stats without system_cpu_usage.
    stats = docker_stats()
    assert cpu_percent(stats["cpu_stats"], stats["precpu_stats"]) is None


def test_cpu_percent_no_host_delta() -> None:
    before = cpu_stats(1_000, 5_000, 2, None)
    assert cpu_percent(cpu_stats(2_000, 5_000, 2, None), before) is None


def test_cpu_percent_counter_reset() -> None:
    before = cpu_stats(9_000, 5_000, 2, None)
    assert cpu_percent(cpu_stats(1_000, 9_000, 2, None), before) is None


# ApiStatsReader


def test_reader_docker_engine() -> None:
    fake = FakeContainer(docker_stats, host_config=QUOTA_HOST_CONFIG)
    reader = ApiStatsReader(as_container(fake), clock=FakeClock(10.0, 10.5))
    sample = reader.read()
    assert reader.source == "api"
    assert fake.stats_calls == [{"stream": False, "one_shot": True}]
    assert sample.timestamp_seconds == pytest.approx(10.25)
    assert sample.cpu_cfs_periods_total == 32
    assert sample.memory_limit_bytes == 64 * MIB
    assert sample.memory_limit_set is True


def test_reader_uses_read_time() -> None:
    # The engine's reading was taken 0.8 s before the request started.
    stats = docker_stats()
    read_wall = datetime.fromisoformat(stats["read"]).timestamp()
    fake = FakeContainer(lambda: stats, host_config=QUOTA_HOST_CONFIG)
    reader = ApiStatsReader(
        as_container(fake),
        clock=FakeClock(10.0, 10.5),
        wall_clock=lambda: read_wall + 0.8,
    )
    assert reader.read().timestamp_seconds == pytest.approx(9.2)


@pytest.mark.parametrize("read", ["2099-01-01T00:00:00Z", "soon", None])
def test_reader_invalid_read_time(read: str | None) -> None:
    stats = docker_stats()
    stats["read"] = read
    fake = FakeContainer(lambda: stats, host_config=QUOTA_HOST_CONFIG)
    reader = ApiStatsReader(as_container(fake), clock=FakeClock(10.0, 10.5))
    assert reader.read().timestamp_seconds == pytest.approx(10.25)


def test_reader_podman_engine() -> None:
    stats = podman_stats()
    stats["cpu_stats"]["throttling_data"]["periods"] = 7
    fake = FakeContainer(
        lambda: stats,
        host_config=QUOTA_HOST_CONFIG,
        client=FakeClient([("Podman Engine", "4.3.1"), ("Conmon", "2.1.6")]),
    )
    sample = ApiStatsReader(as_container(fake), clock=FakeClock(0.0, 0.0)).read()
    assert sample.cpu_cfs_periods_total is None
    # Podman 4.3 sends the container's received bytes as tx_bytes.
    assert sample.network_receive_bytes_total == 1020
    assert sample.network_transmit_bytes_total == 426


def test_reader_swaps_packets_too() -> None:
    stats = docker_stats()
    fake = FakeContainer(lambda: stats, client=FakeClient([("Podman Engine", "4.3.1")]))
    sample = ApiStatsReader(as_container(fake), clock=FakeClock(0.0, 0.0)).read()
    assert sample.network_receive_bytes_total == 15
    assert sample.network_receive_packets_total == 2
    assert sample.network_receive_errors_total == 4
    assert sample.network_receive_packets_dropped_total == 3
    assert sample.network_transmit_bytes_total == 740
    assert sample.network_transmit_packets_total == 9


@pytest.mark.parametrize("version", ["4.4.0", "5.2.1-dev", "unknown"])
def test_reader_podman_network_fixed(version: str) -> None:
    fake = FakeContainer(podman_stats, client=FakeClient([("Podman Engine", version)]))
    sample = ApiStatsReader(as_container(fake), clock=FakeClock(0.0, 0.0)).read()
    assert sample.network_receive_bytes_total == 426
    assert sample.network_transmit_bytes_total == 1020


def test_reader_unlimited_memory() -> None:
    stats = docker_stats()
    stats["memory_stats"]["limit"] = 9223372036854771712
    fake = FakeContainer(lambda: stats, host_config={"Memory": 0, "NanoCpus": 0})
    sample = ApiStatsReader(as_container(fake), clock=FakeClock(0.0, 0.0)).read()
    # The limit of an unlimited container is the MemTotal of the engine's /info.
    assert sample.memory_limit_bytes == ENGINE_MEM_TOTAL_BYTES
    assert sample.memory_limit_set is False
    assert sample.cpu_cfs_periods_total is None


def test_reader_info_failure() -> None:
    client = FakeClient(info_result=docker.errors.APIError("info failed"))
    stats = docker_stats()
    stats["memory_stats"]["limit"] = 9223372036854771712
    fake = FakeContainer(lambda: stats, host_config={"Memory": 0}, client=client)
    sample = ApiStatsReader(as_container(fake), clock=FakeClock(0.0, 0.0)).read()
    assert sample.memory_limit_bytes is None
    assert sample.memory_limit_set is False


def raise_json_error() -> object:
    raise ValueError("Expecting value: line 1 column 1 (char 0)")


def test_reader_exited_container() -> None:
    fake = FakeContainer(raise_json_error, status_after_reload="exited")
    reader = ApiStatsReader(as_container(fake), clock=FakeClock(0.0))
    with pytest.raises(ServiceNotReady, match="'exited'"):
        reader.read()


def test_reader_removed_container() -> None:
    fake = FakeContainer(raise_json_error, removed=True)
    reader = ApiStatsReader(as_container(fake), clock=FakeClock(0.0))
    with pytest.raises(ServiceNotReady, match="no longer exists"):
        reader.read()


def test_reader_engine_failure() -> None:
    def fail_connection() -> object:
        raise ConnectionRefusedError("connection refused")

    reader = ApiStatsReader(
        as_container(FakeContainer(fail_connection)), clock=FakeClock(0.0)
    )
    with pytest.raises(EngineUnavailable, match="connection refused"):
        reader.read()


def test_reader_non_object() -> None:
    fake = FakeContainer(lambda: iter([b"{}"]))
    reader = ApiStatsReader(as_container(fake), clock=FakeClock(0.0, 0.0))
    with pytest.raises(EngineUnavailable, match="JSON object"):
        reader.read()
