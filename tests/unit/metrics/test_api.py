from typing import Any

import pytest

from hyperlane.errors import EngineUnavailable, ServiceNotReady
from hyperlane.metrics import ApiStatsReader, parse_api_stats
from tests.unit.metrics.fakes import FakeClient, FakeClock, FakeContainer, as_container

QUOTA_HOST_CONFIG = {"NanoCpus": 500_000_000, "CpuQuota": 0, "Memory": 67108864}


def docker_stats() -> dict[str, Any]:
    """Return a stats object shaped like Docker 20.10's on cgroup v1."""
    return {
        "read": "2026-12-04T14:03:36.226125189Z",
        "name": "/hl-fake",
        "pids_stats": {"current": 4},
        "cpu_stats": {
            "cpu_usage": {"total_usage": 1_544_364_121},
            "throttling_data": {
                "periods": 32,
                "throttled_periods": 30,
                "throttled_time": 1_489_860_257,
            },
        },
        "memory_stats": {
            "usage": 5_000_000,
            "stats": {"inactive_file": 100, "total_inactive_file": 1_000_000},
            "limit": 67108864,
        },
        "networks": {
            "eth0": {"rx_bytes": 736, "tx_bytes": 10},
            "eth1": {"rx_bytes": 4, "tx_bytes": 5},
        },
    }


def podman_stats() -> dict[str, Any]:
    """Return a stats object shaped like Podman 4.3's compatible API on cgroup v1."""
    return {
        "read": "2026-12-04T14:03:42.359681575Z",
        "name": "hl-fake",
        "pids_stats": {"current": 1},
        "cpu_stats": {
            "cpu_usage": {"total_usage": 1_041_166_217},
            "cpu": 476.0,
            "throttling_data": {
                "periods": 0,
                "throttled_periods": 0,
                "throttled_time": 0,
            },
        },
        "memory_stats": {"usage": 622592, "limit": 67108864},
        "networks": {"network": {"rx_bytes": 426, "tx_bytes": 1020}},
    }


def test_docker_stats_fields() -> None:
    sample = parse_api_stats(
        docker_stats(), 3.0, cpu_quota_set=True, memory_limited=True
    )
    assert sample.timestamp_seconds == 3.0
    assert sample.cpu_usage_seconds_total == pytest.approx(1.544364121)
    assert sample.cpu_periods_total == 32
    assert sample.cpu_throttled_periods_total == 30
    assert sample.cpu_throttled_seconds_total == pytest.approx(1.489860257)
    assert sample.memory_usage_bytes == 5_000_000
    assert sample.memory_working_set_bytes == 4_000_000
    assert sample.memory_limit_bytes == 64 * 1024 * 1024
    assert sample.network_rx_bytes_total == 740
    assert sample.network_tx_bytes_total == 15
    assert sample.pids == 4


def test_v2_inactive_file() -> None:
    stats = docker_stats()
    stats["memory_stats"]["stats"] = {"inactive_file": 2_000_000}
    assert parse_api_stats(stats, 0.0).memory_working_set_bytes == 3_000_000


def test_podman_stats_fields() -> None:
    sample = parse_api_stats(podman_stats(), 1.0, throttling_exposed=False)
    assert sample.cpu_usage_seconds_total == pytest.approx(1.041166217)
    assert sample.cpu_periods_total is None
    assert sample.cpu_throttled_periods_total is None
    assert sample.cpu_throttled_seconds_total is None
    assert sample.memory_usage_bytes == 622592
    assert sample.memory_working_set_bytes is None
    assert sample.memory_limit_bytes == 67108864
    assert sample.network_rx_bytes_total == 426
    assert sample.network_tx_bytes_total == 1020


def test_no_quota_periods() -> None:
    sample = parse_api_stats(docker_stats(), 0.0, cpu_quota_set=False)
    assert sample.cpu_periods_total is None
    assert sample.cpu_throttled_seconds_total is None


def test_unknown_quota_zero_periods() -> None:
    sample = parse_api_stats(podman_stats(), 0.0, cpu_quota_set=None)
    assert sample.cpu_periods_total is None


def test_quota_zero_periods() -> None:
    # A container with a quota reports 0 periods before its first period ends.
    sample = parse_api_stats(podman_stats(), 0.0, cpu_quota_set=True)
    assert sample.cpu_periods_total == 0


def test_unlimited_memory() -> None:
    stats = docker_stats()
    stats["memory_stats"]["limit"] = 25_276_071_936  # the host's MemTotal
    assert parse_api_stats(stats, 0.0, memory_limited=False).memory_limit_bytes is None


def test_huge_limit_unlimited() -> None:
    stats = docker_stats()
    stats["memory_stats"]["limit"] = 9223372036854771712
    assert parse_api_stats(stats, 0.0).memory_limit_bytes is None


def test_missing_sections() -> None:
    stats = {
        "read": "2026-12-04T14:00:00Z",
        "cpu_stats": {"cpu_usage": {"total_usage": 5}},
    }
    sample = parse_api_stats(stats, 0.0)
    assert sample.cpu_usage_seconds_total == pytest.approx(5e-9)
    assert sample.cpu_periods_total is None
    assert sample.memory_usage_bytes is None
    assert sample.memory_working_set_bytes is None
    assert sample.memory_limit_bytes is None
    assert sample.network_rx_bytes_total is None
    assert sample.network_tx_bytes_total is None
    assert sample.pids is None


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


def test_reader_docker_engine() -> None:
    fake = FakeContainer(docker_stats, host_config=QUOTA_HOST_CONFIG)
    reader = ApiStatsReader(as_container(fake), clock=FakeClock(10.0, 10.5))
    sample = reader.read()
    assert reader.source == "api"
    assert fake.stats_calls == [{"stream": False, "one_shot": True}]
    assert sample.timestamp_seconds == pytest.approx(10.25)
    assert sample.cpu_periods_total == 32
    assert sample.memory_limit_bytes == 64 * 1024 * 1024


def test_reader_podman_engine() -> None:
    stats = podman_stats()
    stats["cpu_stats"]["throttling_data"]["periods"] = 7
    fake = FakeContainer(
        lambda: stats,
        host_config=QUOTA_HOST_CONFIG,
        client=FakeClient([("Podman Engine", "4.3.1"), ("Conmon", "2.1.6")]),
    )
    sample = ApiStatsReader(as_container(fake), clock=FakeClock(0.0, 0.0)).read()
    assert sample.cpu_periods_total is None
    # Podman 4.3 sends the container's received bytes as tx_bytes.
    assert sample.network_rx_bytes_total == 1020
    assert sample.network_tx_bytes_total == 426


@pytest.mark.parametrize("version", ["4.4.0", "5.2.1-dev", "unknown"])
def test_reader_podman_network_fixed(version: str) -> None:
    fake = FakeContainer(podman_stats, client=FakeClient([("Podman Engine", version)]))
    sample = ApiStatsReader(as_container(fake), clock=FakeClock(0.0, 0.0)).read()
    assert sample.network_rx_bytes_total == 426
    assert sample.network_tx_bytes_total == 1020


def test_reader_unlimited_memory() -> None:
    fake = FakeContainer(docker_stats, host_config={"Memory": 0, "NanoCpus": 0})
    sample = ApiStatsReader(as_container(fake), clock=FakeClock(0.0, 0.0)).read()
    assert sample.memory_limit_bytes is None
    assert sample.cpu_periods_total is None


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
