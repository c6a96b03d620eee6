"""The cAdvisor-named collector, the --listen parser and the metrics server."""

from __future__ import annotations

import dataclasses
import socket
import urllib.request
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample as PrometheusSample

from hyperlane.errors import UsageError
from hyperlane.metrics.exporter import (
    EXPORTED_METRIC_NAMES,
    CadvisorCollector,
    ContainerIdentity,
    ContainerSnapshot,
    SampleStore,
    cgroup_path,
    cpu_quota_and_period,
    interface_names,
    parse_engine_time,
    parse_listen_address,
    serve_metrics,
)
from tests.unit.metrics.fakes import BASE, CONTAINER_ID, NET_DEV

UNIX_SECONDS = 1_700_000_000.25
WEB = ContainerIdentity(
    container_id=CONTAINER_ID,
    cgroup_id=f"/docker/{CONTAINER_ID}",
    name="web",
    image="localhost/web:1.0",
    labels={"com.example.team": "blue"},
    interface="eth0",
    cpu_quota_microseconds=50_000,
    cpu_period_microseconds=100_000,
    start_time_seconds=1_699_999_000.0,
)
WEB_SAMPLE = dataclasses.replace(
    BASE,
    timestamp_seconds=12.5,
    cpu_usage_seconds_total=3.25,
    cpu_cfs_periods_total=40,
    cpu_cfs_throttled_periods_total=10,
    memory_working_set_bytes=5_000_000,
    memory_limit_bytes=64 * 2**20,
    memory_limit_set=True,
    memory_oom_kills_total=1,
    network_receive_bytes_total=1234,
    block_io_read_bytes_total=4096,
    threads=3,
)
WEB_LABELS = {
    "id": f"/docker/{CONTAINER_ID}",
    "image": "localhost/web:1.0",
    "name": "web",
    "container_label_com_example_team": "blue",
}
# An unlimited container read from the API: no labels, no quota, no interface.
IDLE = ContainerIdentity(
    container_id="b" * 64,
    cgroup_id="b" * 64,
    name="idle",
    image="localhost/idle:1.0",
    cpu_period_microseconds=100_000,
)
IDLE_SAMPLE = dataclasses.replace(
    BASE,
    cpu_usage_seconds_total=0.5,
    memory_limit_bytes=8 * 2**30,
    memory_limit_set=False,
    network_receive_bytes_total=10,
)
IDLE_LABELS = {"id": "b" * 64, "image": "localhost/idle:1.0", "name": "idle"}


def scrape(store: SampleStore) -> dict[str, tuple[str, list[PrometheusSample]]]:
    """Return {family name: (type, samples)} parsed from the collector's text."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(CadvisorCollector(store))
    text = generate_latest(registry).decode()
    return {
        family.name: (family.type, family.samples)
        for family in text_string_to_metric_families(text)
    }


@pytest.fixture
def families() -> dict[str, tuple[str, list[PrometheusSample]]]:
    store = SampleStore()
    store.update(ContainerSnapshot(WEB, "cgroup-v2", WEB_SAMPLE, UNIX_SECONDS))
    store.update(ContainerSnapshot(IDLE, "api", IDLE_SAMPLE, UNIX_SECONDS + 1))
    return scrape(store)


def only(
    families: dict[str, tuple[str, list[PrometheusSample]]], family: str, name: str
) -> PrometheusSample:
    matches = [s for s in families[family][1] if s.labels.get("name") == name]
    assert len(matches) == 1, matches
    return matches[0]


def test_collector_cpu_counter(
    families: dict[str, tuple[str, list[PrometheusSample]]],
) -> None:
    kind, _ = families["container_cpu_usage_seconds"]
    sample = only(families, "container_cpu_usage_seconds", "web")
    assert kind == "counter"
    assert sample.name == "container_cpu_usage_seconds_total"
    assert sample.labels == {**WEB_LABELS, "cpu": "total"}
    assert sample.value == 3.25
    assert sample.timestamp == UNIX_SECONDS


def test_collector_gauges_and_spec(
    families: dict[str, tuple[str, list[PrometheusSample]]],
) -> None:
    expected = {
        "container_memory_working_set_bytes": 5_000_000,
        "container_spec_memory_limit_bytes": 64 * 2**20,
        "container_spec_cpu_quota": 50_000,
        "container_spec_cpu_period": 100_000,
        "container_threads": 3,
        "container_last_seen": UNIX_SECONDS,
        "container_start_time_seconds": 1_699_999_000.0,
    }
    for family, value in expected.items():
        kind, _ = families[family]
        sample = only(families, family, "web")
        assert kind == "gauge", family
        assert sample.labels == WEB_LABELS, family
        assert sample.value == value, family


def test_collector_counters_web(
    families: dict[str, tuple[str, list[PrometheusSample]]],
) -> None:
    expected = {
        "container_cpu_cfs_periods": 40,
        "container_cpu_cfs_throttled_periods": 10,
        "container_oom_events": 1,
        "container_fs_reads_bytes": 4096,
    }
    for family, value in expected.items():
        kind, _ = families[family]
        sample = only(families, family, "web")
        assert kind == "counter", family
        assert sample.name == f"{family}_total"
        assert sample.labels == WEB_LABELS, family
        assert sample.value == value, family


def test_collector_network_interface(
    families: dict[str, tuple[str, list[PrometheusSample]]],
) -> None:
    web = only(families, "container_network_receive_bytes", "web")
    idle = only(families, "container_network_receive_bytes", "idle")
    assert web.labels == {**WEB_LABELS, "interface": "eth0"}
    assert web.value == 1234
    # Without known interface names the label is left out.
    assert idle.labels == IDLE_LABELS
    assert idle.value == 10


def test_collector_unlimited_and_missing(
    families: dict[str, tuple[str, list[PrometheusSample]]],
) -> None:
    limit = only(families, "container_spec_memory_limit_bytes", "idle")
    assert limit.value == 0
    assert limit.timestamp == UNIX_SECONDS + 1
    # None fields and an unset quota give no sample at all, never 0.
    for family in (
        "container_spec_cpu_quota",
        "container_memory_working_set_bytes",
        "container_threads",
        "container_start_time_seconds",
    ):
        names = [s.labels["name"] for s in families[family][1]]
        assert names == ["web"], family


def test_collector_source_info(
    families: dict[str, tuple[str, list[PrometheusSample]]],
) -> None:
    kind, samples = families["hyperlane_sample_source_info"]
    assert kind == "gauge"
    by_name = {s.labels["name"]: s for s in samples}
    assert by_name["web"].labels == {**WEB_LABELS, "source": "cgroup-v2"}
    assert by_name["idle"].labels == {**IDLE_LABELS, "source": "api"}
    assert by_name["web"].value == 1


def test_collector_names_are_exported(
    families: dict[str, tuple[str, list[PrometheusSample]]],
) -> None:
    sample_names = {s.name for _, samples in families.values() for s in samples}
    assert sample_names <= EXPORTED_METRIC_NAMES
    assert "container_cpu_usage_seconds_total" in sample_names


def test_collector_removed_container() -> None:
    store = SampleStore()
    store.update(ContainerSnapshot(WEB, "cgroup-v2", WEB_SAMPLE, UNIX_SECONDS))
    store.remove(WEB.container_id)
    families = scrape(store)
    assert families["container_cpu_usage_seconds"][1] == []
    assert store.last_scrape_unix_seconds is not None


def test_label_key_collision_keeps_first() -> None:
    identity = dataclasses.replace(WEB, labels={"a.b": "dot", "a-b": "dash"})
    store = SampleStore()
    store.update(ContainerSnapshot(identity, "cgroup-v2", WEB_SAMPLE, UNIX_SECONDS))
    sample = only(scrape(store), "container_threads", "web")
    # "a-b" sorts before "a.b".
    assert sample.labels["container_label_a_b"] == "dash"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:9560", ("127.0.0.1", 9560)),
        (":9560", ("127.0.0.1", 9560)),
        ("[::1]:9560", ("::1", 9560)),
        ("localhost:0", ("localhost", 0)),
        (" 0.0.0.0:65535 ", ("0.0.0.0", 65535)),
    ],
)
def test_listen_address_valid(text: str, expected: tuple[str, int]) -> None:
    assert parse_listen_address(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("127.0.0.1", "missing port"),
        ("::1:9560", "must be in brackets"),
        ("[::1]9560", "invalid listen address"),
        ("[not-ipv6]:9560", "invalid IPv6 address"),
        ("127.0.0.1:65536", "invalid port"),
        ("127.0.0.1:http", "invalid port"),
        ("127.0.0.1:-1", "invalid port"),
        ("bad_host!:9560", "invalid host"),
    ],
)
def test_listen_address_invalid(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_listen_address(text)


def test_server_serves_and_port_in_use() -> None:
    store = SampleStore()
    store.update(ContainerSnapshot(WEB, "cgroup-v1", WEB_SAMPLE, UNIX_SECONDS))
    server = serve_metrics("127.0.0.1", 0, store)
    try:
        url = f"http://127.0.0.1:{server.port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            body = response.read().decode()
        assert 'container_threads{container_label_com_example_team="blue"' in body
        with pytest.raises(UsageError, match=f"port {server.port} is already in use"):
            serve_metrics("127.0.0.1", server.port, store)
    finally:
        server.close()


def test_server_port_in_use_exit_code() -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        with pytest.raises(UsageError) as raised:
            serve_metrics("127.0.0.1", port, SampleStore())
    assert int(raised.value.exit_code) == 2
    assert f"127.0.0.1:{port}" in str(raised.value)


def test_cpu_quota_and_period() -> None:
    assert cpu_quota_and_period({"NanoCpus": 500_000_000}) == (50_000, 100_000)
    assert cpu_quota_and_period({"CpuQuota": 20_000, "CpuPeriod": 50_000}) == (
        20_000,
        50_000,
    )
    assert cpu_quota_and_period({"NanoCpus": 0, "CpuQuota": 0}) == (None, 100_000)


def test_cgroup_path_v1_and_v2(tmp_path: Path) -> None:
    v1 = tmp_path / "v1"
    v1.write_text(
        "12:pids:/docker/abc\n4:cpu,cpuacct:/docker/abc\n0::/system.slice/x\n"
    )
    v2 = tmp_path / "v2"
    v2.write_text("0::/system.slice/docker-abc.scope\n")
    assert cgroup_path(v1) == "/docker/abc"
    assert cgroup_path(v2) == "/system.slice/docker-abc.scope"
    assert cgroup_path(tmp_path / "missing") is None


def test_interface_names(tmp_path: Path) -> None:
    net_dev = tmp_path / "dev"
    net_dev.write_text(NET_DEV)
    assert interface_names(net_dev) == ["eth0", "eth1"]


def test_parse_engine_time() -> None:
    assert parse_engine_time("2023-11-14T22:13:20.123456789Z") == pytest.approx(
        1_700_000_000.123456
    )
    assert parse_engine_time("2023-11-14T23:13:20+01:00") == 1_700_000_000.0
    assert parse_engine_time("0001-01-01T00:00:00Z") is None
    assert parse_engine_time("yesterday") is None
