"""`hyperlane rightsize --prometheus` against a real Prometheus with backfilled series.

Three containers are generated in memory with cAdvisor's metric names and kubelet
labels, one sample per second for 180 s. One is steady, one has a working set spike
that lasts a single sample, and one is OOM-killed under a 256 MiB limit and a 0.5 CPU
quota. A pod-level row and a pause container row sit beside them. promtool backfills
the series as OpenMetrics text into a fresh data directory, and Debian's prometheus
binary serves it on a loopback port. The recommendations read back through the CLI
must equal the ones computed from the same samples in memory.

A second server contains the same three containers scraped every 2 s instead, and
is read at a 1 s step, below the scrape interval.
"""

from __future__ import annotations

import json
import random
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

from hyperlane.cli.rightsize import sizing_rules
from hyperlane.metrics.prometheus import read_prometheus
from hyperlane.metrics.sample import Sample
from hyperlane.settings import RightsizeSettings
from hyperlane.sizing.policy import MIB
from hyperlane.sizing.strategies import size_container
from hyperlane.sizing.throttling import analyse_throttling
from hyperlane.sizing.usage import usage_from_samples
from tests.integration.cli import run_hyperlane
from tests.prometheus_server import PrometheusServer, Series, backfill, openmetrics_text

pytestmark = pytest.mark.integration

SAMPLES = 180
NAMESPACE = "shop"
SPIKE_INDEX = 91
SPIKE_BYTES = 1200 * MIB
OOM_INDEX = 120
OOM_LIMIT_BYTES = 256 * MIB
CFS_PERIOD_MICROSECONDS = 100_000
CFS_QUOTA_MICROSECONDS = 50_000
# Periods of 100 ms elapse ten times per second while the container runs.
CFS_PERIODS_PER_SECOND = 10


@dataclass
class GeneratedContainer:
    """One container's samples in memory and the OpenMetrics series written for it."""

    app: str
    samples: list[Sample] = field(default_factory=list)
    series: list[Series] = field(default_factory=list)
    cpu_limit_cores: float | None = None

    @property
    def name(self) -> str:
        return f"{NAMESPACE}/{self.app}-0/{self.app}"


def _labels(app: str, container: str | None) -> dict[str, str]:
    labels = {
        "namespace": NAMESPACE,
        "pod": f"{app}-0",
        "id": f"/kubepods/pod-{app}/{container or 'pod'}",
        "image": f"localhost/{app}:1",
        "instance": "node-1:10250",
        "job": "kubelet",
    }
    if container is not None:
        labels["container"] = container
        labels["name"] = f"k8s_{container}_{app}-0"
    return labels


def _sample(timestamp_seconds: int, **values: Any) -> Sample:
    optional: dict[str, Any] = {
        name: None
        for name in Sample.__dataclass_fields__
        if name not in ("timestamp_seconds", "cpu_usage_seconds_total")
    }
    return Sample(timestamp_seconds=float(timestamp_seconds), **{**optional, **values})


@dataclass
class _CfsCounters:
    """Running CFS and OOM counters of the OOM-killed container."""

    periods: int = 0
    throttled_periods: int = 0
    throttled_seconds: float = 0.0
    kills: int = 0

    def advance(self, index: int, interval_seconds: int) -> dict[str, Any]:
        """Count the periods of the interval that ends at sample index."""
        if index == OOM_INDEX:
            self.kills += 1
        if index > 0:
            self.periods += CFS_PERIODS_PER_SECOND * interval_seconds
            self.throttled_periods += 1 + index % 3
            self.throttled_seconds += 0.01 * (1 + index % 3)
        return {
            "memory_oom_kills_total": self.kills,
            "memory_limit_bytes": OOM_LIMIT_BYTES,
            "memory_limit_set": True,
            "cpu_cfs_periods_total": self.periods,
            "cpu_cfs_throttled_periods_total": self.throttled_periods,
            "cpu_cfs_throttled_seconds_total": self.throttled_seconds,
        }


def _generate(
    app: str, base_seconds: int, seed: int, interval_seconds: int = 1
) -> GeneratedContainer:
    """Generate one container's samples, one per interval from base_seconds."""
    generator = random.Random(seed)
    container = GeneratedContainer(app)
    oom = app == "oom"
    if oom:
        container.cpu_limit_cores = CFS_QUOTA_MICROSECONDS / CFS_PERIOD_MICROSECONDS
    counters = _CfsCounters()
    cpu_total = 0.0

    for index in range(SAMPLES):
        if index > 0:
            cores = 0.45 if oom else generator.uniform(0.2, 0.3)
            if oom and index == OOM_INDEX:
                # The killed container restarts in a new cgroup, so its counter
                # starts again from 0.
                cpu_total = 0.0
            cpu_total += cores * interval_seconds

        working_set = 200 * MIB + generator.randrange(0, 8 * MIB)
        if app == "spike" and index == SPIKE_INDEX:
            working_set = SPIKE_BYTES
        values: dict[str, Any] = {
            "cpu_usage_seconds_total": cpu_total,
            "memory_working_set_bytes": working_set,
            "memory_oom_kills_total": 0,
            "memory_limit_bytes": None,
            "memory_limit_set": False,
        }

        if oom:
            # The working set climbs to just under the limit before the kill.
            values["memory_working_set_bytes"] = (
                OOM_LIMIT_BYTES - MIB
                if index == OOM_INDEX - 1
                else 150 * MIB + index * MIB // 2
            )
            values.update(counters.advance(index, interval_seconds))
        timestamp_seconds = base_seconds + index * interval_seconds
        container.samples.append(_sample(timestamp_seconds, **values))

    container.series = _series_of(container)
    return container


def _series_of(container: GeneratedContainer) -> list[Series]:
    labels = _labels(container.app, container.app)
    samples = container.samples

    def points(name: str) -> list[tuple[int, float]]:
        return [
            (int(sample.timestamp_seconds), float(getattr(sample, name)))
            for sample in samples
            if getattr(sample, name) is not None
        ]

    def constant(value: float) -> list[tuple[int, float]]:
        return [(int(sample.timestamp_seconds), value) for sample in samples]

    limit = float(samples[0].memory_limit_bytes or 0)
    series = [
        Series(
            "container_cpu_usage_seconds_total",
            {**labels, "cpu": "total"},
            points("cpu_usage_seconds_total"),
        ),
        Series(
            "container_memory_working_set_bytes",
            labels,
            points("memory_working_set_bytes"),
        ),
        Series("container_oom_events_total", labels, points("memory_oom_kills_total")),
        Series("container_spec_memory_limit_bytes", labels, constant(limit)),
    ]
    if container.cpu_limit_cores is not None:
        series += [
            Series(
                "container_cpu_cfs_periods_total",
                labels,
                points("cpu_cfs_periods_total"),
            ),
            Series(
                "container_cpu_cfs_throttled_periods_total",
                labels,
                points("cpu_cfs_throttled_periods_total"),
            ),
            Series(
                "container_cpu_cfs_throttled_seconds_total",
                labels,
                points("cpu_cfs_throttled_seconds_total"),
            ),
            Series(
                "container_spec_cpu_quota", labels, constant(CFS_QUOTA_MICROSECONDS)
            ),
            Series(
                "container_spec_cpu_period", labels, constant(CFS_PERIOD_MICROSECONDS)
            ),
        ]
    return series


def _excluded_rows(app: str, base_seconds: int) -> list[Series]:
    """Return a pod-level row (no container label) and a pause container row."""
    rows = []
    for container in (None, "POD"):
        labels = _labels(app, container)
        cpu = [(base_seconds + index, 0.5 * index) for index in range(SAMPLES)]
        memory = [(base_seconds + index, 300.0 * MIB) for index in range(SAMPLES)]
        rows.append(
            Series("container_cpu_usage_seconds_total", {**labels, "cpu": "total"}, cpu)
        )
        rows.append(Series("container_memory_working_set_bytes", labels, memory))
    return rows


@dataclass(frozen=True)
class Backfilled:
    """The running server, the generated containers and the range they cover."""

    server: PrometheusServer
    containers: list[GeneratedContainer]
    start_seconds: int
    end_seconds: int


def _serve_backfilled(directory: Path, interval_seconds: int) -> Iterator[Backfilled]:
    # An hour ago keeps every point inside the last two hours and the retention.
    base_seconds = int(time.time()) - 3600
    containers = [
        _generate(app, base_seconds, seed, interval_seconds)
        for seed, app in enumerate(("steady", "spike", "oom"))
    ]
    series = [item for container in containers for item in container.series]
    series += _excluded_rows("steady", base_seconds)
    data = backfill(openmetrics_text(series), directory)
    server = PrometheusServer(directory, data)
    end_seconds = base_seconds + (SAMPLES - 1) * interval_seconds
    try:
        server.wait_ready()
        yield Backfilled(server, containers, base_seconds, end_seconds)
    finally:
        server.stop()


@pytest.fixture(scope="module")
def backfilled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backfilled]:
    yield from _serve_backfilled(tmp_path_factory.mktemp("prometheus"), 1)


@pytest.fixture(scope="module")
def backfilled_every_2s(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Backfilled]:
    yield from _serve_backfilled(tmp_path_factory.mktemp("prometheus-2s"), 2)


def _expected(
    container: GeneratedContainer, strategy: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Return the sizing and throttling dicts that rightsize computes in memory."""
    settings = RightsizeSettings()
    policy, parameters = sizing_rules(settings)
    usage = usage_from_samples(
        container.name, container.samples, container.cpu_limit_cores
    )
    sizing = size_container(usage, strategy, policy, parameters)
    throttling = analyse_throttling(usage, settings.throttling_threshold)
    # A JSON round trip gives the types that the CLI's output parses into.
    expected: dict[str, Any] = json.loads(json.dumps(sizing.to_dict()))
    expected_throttling: dict[str, Any] = json.loads(json.dumps(throttling.to_dict()))
    return expected, expected_throttling


def _run_rightsize(
    backfilled: Backfilled, *arguments: str
) -> subprocess.CompletedProcess[str]:
    """Run rightsize --json on the backfilled range and check that it succeeded."""
    result = run_hyperlane(
        "rightsize",
        "--prometheus",
        backfilled.server.url,
        "--start",
        str(backfilled.start_seconds),
        "--end",
        str(backfilled.end_seconds),
        "--json",
        *arguments,
        timeout_seconds=120,
    )
    assert result.returncode == 0, result.stderr
    return result


def _rightsize(backfilled: Backfilled, *arguments: str) -> dict[str, Any]:
    result = _run_rightsize(backfilled, *arguments)
    document: dict[str, Any] = json.loads(result.stdout)
    return document


@pytest.mark.parametrize("strategy", ["percentile", "histogram"])
def test_prometheus_equals_in_memory(backfilled: Backfilled, strategy: str) -> None:
    document = _rightsize(backfilled, "--step", "1s", "--strategy", strategy)
    by_name = {item["container"]: item for item in document["containers"]}
    names = [container.name for container in backfilled.containers]
    # The pod-level and pause rows of the steady pod are excluded.
    assert sorted(by_name) == sorted(names)
    for container in backfilled.containers:
        item = by_name[container.name]
        expected, expected_throttling = _expected(container, strategy)
        assert item["source"] == backfilled.server.url
        assert item["recommendation"]["estimate"] is False
        for key, value in expected.items():
            assert item[key] == value, (container.name, key)
        assert item["throttling"] == expected_throttling, container.name


def test_oom_container_limits_read(backfilled: Backfilled) -> None:
    document = _rightsize(backfilled, "--step", "1s")
    item = next(
        entry for entry in document["containers"] if entry["container"].endswith("oom")
    )
    explanation = item["recommendation"]["memory_explanation"]
    # The kill and the limit in force come from container_oom_events_total and
    # container_spec_memory_limit_bytes.
    assert "limit in force 256 MiB" in explanation, explanation
    assert item["recommendation"]["memory_request_bytes"] >= OOM_LIMIT_BYTES * 1.2
    assert item["throttling"]["throttled_share"] is not None, item["throttling"]


# A lead of 10,910 s puts the end of the first 11,000-point query at sample 89.
@pytest.mark.parametrize("lead_seconds", [0, 10_910], ids=["one-query", "chunked"])
def test_reader_returns_generated_samples(
    backfilled: Backfilled, lead_seconds: int
) -> None:
    containers = read_prometheus(
        backfilled.server.url,
        start_seconds=backfilled.start_seconds - lead_seconds,
        end_seconds=backfilled.end_seconds,
        step_seconds=1.0,
        selector=f'namespace="{NAMESPACE}"',
    )
    by_name = {container.name: container for container in containers}
    assert sorted(by_name) == sorted(c.name for c in backfilled.containers)
    for generated in backfilled.containers:
        read = by_name[generated.name]
        assert read.cpu_limit_cores == generated.cpu_limit_cores, generated.name
        assert len(read.samples) == SAMPLES, generated.name
        for index, (got, want) in enumerate(
            zip(read.samples, generated.samples, strict=True)
        ):
            assert got == want, (generated.name, index)
        assert read.labels["job"] == "kubelet"
        assert "cpu" not in read.labels


def test_coarse_step_keeps_spike(backfilled: Backfilled) -> None:
    step_seconds = 4
    assert (SPIKE_INDEX % step_seconds) != 0, "the spike must fall between two points"
    document = _rightsize(backfilled, "--step", f"{step_seconds}s")
    item = next(
        entry
        for entry in document["containers"]
        if entry["container"].endswith("spike")
    )
    assert item["recommendation"]["memory_request_bytes"] >= SPIKE_BYTES

    # The instant value at the same step points never reaches the spike.
    reply = requests.get(
        f"{backfilled.server.url}/api/v1/query_range",
        params={
            "query": 'container_memory_working_set_bytes{container="spike"}',
            "start": str(backfilled.start_seconds),
            "end": str(backfilled.end_seconds),
            "step": str(step_seconds),
        },
        timeout=10,
    )
    assert reply.status_code == 200, reply.text
    result = reply.json()["data"]["result"]
    assert len(result) == 1, result
    instant_peak = max(float(value) for _, value in result[0]["values"])
    assert instant_peak < SPIKE_BYTES


@pytest.mark.parametrize("strategy", ["percentile", "histogram"])
def test_step_below_scrape_interval(
    backfilled_every_2s: Backfilled, strategy: str
) -> None:
    result = _run_rightsize(backfilled_every_2s, "--step", "1s", "--strategy", strategy)
    document = json.loads(result.stdout)
    by_name = {item["container"]: item for item in document["containers"]}
    assert sorted(by_name) == sorted(c.name for c in backfilled_every_2s.containers)
    for container in backfilled_every_2s.containers:
        item = by_name[container.name]
        expected, expected_throttling = _expected(container, strategy)
        # Merging the step points of each scrape gives back the 2 s samples
        # exactly, so the figures are equal, not only within rounding.
        assert (
            item["recommendation"]["cpu_request_millicores"]
            == (expected["recommendation"]["cpu_request_millicores"])
        ), container.name
        for key, value in expected.items():
            assert item[key] == value, (container.name, key)
        assert item["throttling"] == expected_throttling, container.name
    assert result.stderr.count("is below the scrape interval") == 1, result.stderr
    assert "The step of 1 s is below the scrape interval of 2 s" in result.stderr


def test_reader_merges_2s_scrapes(backfilled_every_2s: Backfilled) -> None:
    containers = read_prometheus(
        backfilled_every_2s.server.url,
        start_seconds=backfilled_every_2s.start_seconds,
        end_seconds=backfilled_every_2s.end_seconds,
        step_seconds=1.0,
        selector=f'namespace="{NAMESPACE}"',
    )
    by_name = {container.name: container for container in containers}
    for generated in backfilled_every_2s.containers:
        read = by_name[generated.name]
        assert len(read.samples) == SAMPLES, generated.name
        for index, (got, want) in enumerate(
            zip(read.samples, generated.samples, strict=True)
        ):
            assert got == want, (generated.name, index)
