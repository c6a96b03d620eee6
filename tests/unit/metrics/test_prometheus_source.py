"""Reading container series from a Prometheus HTTP API: queries, join, chunks, errors.

The error tests run Debian's prometheus binary with an empty data directory, so bad
PromQL, a wrong path, an empty result and rejected basic authentication come from a
real server. The join, merge and chunking tests use StubPrometheus, a small HTTP
server on 127.0.0.1 that serves /api/v1/query_range from canned series. It replaces
Prometheus where a real one would need data that is costly to generate (11,000
points and more per series, or two step points with different working sets for one
scrape), and for what a real one never returns on demand (an HTML error page from a
proxy, HTTP 403 or 503, a reply slower than the timeout).
"""

from __future__ import annotations

import base64
import json
import logging
import math
import re
import threading
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from hyperlane.errors import EngineUnavailable, UsageError
from hyperlane.exitcodes import ExitCode
from hyperlane.metrics.prometheus import (
    MAX_POINTS_PER_QUERY,
    MAX_POINTS_PER_SERIES,
    build_queries,
    parse_time_seconds,
    read_prometheus,
    split_range,
)
from hyperlane.urls import display_url
from tests.integration.cli import run_hyperlane
from tests.integration.monitor.waiting import free_port
from tests.prometheus_server import (
    BASIC_AUTH_PASSWORD,
    BASIC_AUTH_USER,
    PrometheusServer,
)

# Metric name inside a query, also inside max_over_time(...) and timestamp(...).
_METRIC = re.compile(r"container_[a-z_]+")
ValueFunction = Callable[[float], float]
QUERIES_PER_RANGE = 10


@dataclass
class StubSeries:
    """One canned series: its metric, its labels and its value at each step point."""

    metric: str
    labels: dict[str, str]
    value: ValueFunction


@dataclass
class StubPrometheus:
    """A loopback HTTP server that returns range query results from canned series.

    timestamp(METRIC) returns scrape_time of each step point for every series of
    METRIC, like Prometheus returns the time of the last scrape at or before it. The
    default is a scrape exactly at every step point.
    """

    series: list[StubSeries] = field(default_factory=list)
    requests: list[dict[str, str]] = field(default_factory=list)
    authorization: list[str | None] = field(default_factory=list)
    status: int = 200
    body: bytes | None = None
    scrape_time: ValueFunction = float
    delay_seconds: float = 0.0
    """Time to wait before replying, cut short when the test ends."""
    released: threading.Event = field(default_factory=threading.Event)
    url: str = ""

    def matrix(self, form: dict[str, str]) -> dict[str, Any]:
        query = form["query"]
        match = _METRIC.search(query)
        metric = match.group(0) if match else ""
        scrape_timestamps = query.startswith("timestamp(")
        start, end, step = (float(form[key]) for key in ("start", "end", "step"))
        count = round((end - start) / step) + 1
        times = [start + index * step for index in range(count)]
        result: list[dict[str, Any]] = []
        for item in self.series:
            if item.metric != metric:
                continue
            # Like PromQL functions, timestamp() drops the metric name.
            labels = dict(item.labels)
            function = self.scrape_time
            if not scrape_timestamps:
                labels["__name__"] = metric
                function = item.value
            values = [[moment, repr(function(moment))] for moment in times]
            result.append({"metric": labels, "values": values})
        return {"status": "success", "data": {"resultType": "matrix", "result": result}}


@pytest.fixture
def stub() -> Iterator[StubPrometheus]:
    state = StubPrometheus()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            form = dict(urllib.parse.parse_qsl(self.rfile.read(length).decode()))
            state.requests.append({"path": self.path, **form})
            state.authorization.append(self.headers.get("Authorization"))
            if state.delay_seconds:
                state.released.wait(state.delay_seconds)
            body = state.body
            if body is None:
                body = json.dumps(state.matrix(form)).encode()
            try:
                self.send_response(state.status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                # The client timed out and closed the connection first.
                pass

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield state
    finally:
        state.released.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def auth_prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Start a real Prometheus with no data that requires basic authentication."""
    directory = tmp_path_factory.mktemp("prometheus-auth")
    data = directory / "data"
    data.mkdir()
    server = PrometheusServer(directory, data, basic_auth=True)
    try:
        server.wait_ready()
        yield server.url
    finally:
        server.stop()


@pytest.fixture(scope="module")
def empty_prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Start a real Prometheus with no data and no scrape targets."""
    directory = tmp_path_factory.mktemp("prometheus-empty")
    data = directory / "data"
    data.mkdir()
    server = PrometheusServer(directory, data)
    try:
        server.wait_ready()
        yield server.url
    finally:
        server.stop()


def kubelet_labels(pod: str, container: str | None) -> dict[str, str]:
    labels = {
        "namespace": "shop",
        "pod": pod,
        "id": f"/kubepods/{pod}/{container}",
        "instance": "node-1:10250",
        "job": "kubelet",
    }
    if container is not None:
        labels["container"] = container
    return labels


def read(url: str, **overrides: Any) -> list[Any]:
    arguments: dict[str, Any] = {
        "start_seconds": 1000.0,
        "end_seconds": 1010.0,
        "step_seconds": 1.0,
        "timeout_seconds": 10.0,
    }
    arguments.update(overrides)
    return read_prometheus(url, **arguments)


# Queries


def test_queries_carry_selector_and_window() -> None:
    queries = {query.key: query.promql for query in build_queries('ns="a"', 60.0)}
    assert queries["cpu_usage_seconds_total"] == (
        'container_cpu_usage_seconds_total{ns="a"}'
    )
    assert queries["memory_working_set_bytes"] == (
        'max_over_time(container_memory_working_set_bytes{ns="a"}[59999ms])'
    )
    assert queries["memory_oom_kills_total"] == 'container_oom_events_total{ns="a"}'
    assert queries["memory_limit_bytes"] == (
        'container_spec_memory_limit_bytes{ns="a"}'
    )
    assert queries["cpu_quota"] == 'container_spec_cpu_quota{ns="a"}'
    assert queries["cpu_period"] == 'container_spec_cpu_period{ns="a"}'
    assert queries["cpu_usage_scrape_timestamp_seconds"] == (
        'timestamp(container_cpu_usage_seconds_total{ns="a"})'
    )
    assert len(queries) == QUERIES_PER_RANGE


def test_queries_empty_selector() -> None:
    queries = {query.key: query.promql for query in build_queries("", 1.0)}
    assert queries["cpu_cfs_periods_total"] == "container_cpu_cfs_periods_total{}"
    assert queries["memory_working_set_bytes"].endswith("{}[999ms])")


def test_reader_posts_form(stub: StubPrometheus) -> None:
    stub.series = [StubSeries("container_cpu_usage_seconds_total", {"id": "/a"}, float)]
    read(stub.url + "/prefix/", selector='id="/a"', step_seconds=0.5)
    assert len(stub.requests) == QUERIES_PER_RANGE
    first = stub.requests[0]
    assert first["path"] == "/prefix/api/v1/query_range"
    assert first["query"] == 'container_cpu_usage_seconds_total{id="/a"}'
    assert first["start"] == "1000.000"
    assert first["end"] == "1010.000"
    assert first["step"] == "0.500"


# Chunks


def test_split_range_one_chunk_seven_days() -> None:
    assert split_range(0.0, 7 * 86_400.0, 60.0) == [(0.0, 7 * 86_400.0)]


def test_split_range_exact_limit() -> None:
    end = float(MAX_POINTS_PER_QUERY - 1)
    assert split_range(0.0, end, 1.0) == [(0.0, end)]


def test_split_range_keeps_grid() -> None:
    step = 15.0
    end = 30_000 * step + 7.0
    ranges = split_range(0.0, end, step)
    assert len(ranges) == 3
    points: list[float] = []
    for chunk_start, chunk_end in ranges:
        count = int((chunk_end - chunk_start) / step) + 1
        assert count <= MAX_POINTS_PER_QUERY
        points += [chunk_start + index * step for index in range(count)]
    assert points == [index * step for index in range(30_001)]
    assert ranges[-1][1] == end


def test_split_range_too_many_points() -> None:
    with pytest.raises(UsageError, match="raise --step or shorten --history"):
        split_range(0.0, float(MAX_POINTS_PER_SERIES), 1.0)


def test_reader_chunks_long_range(stub: StubPrometheus) -> None:
    stub.series = [
        StubSeries("container_cpu_usage_seconds_total", {"id": "/a"}, lambda t: t / 2),
        StubSeries("container_memory_working_set_bytes", {"id": "/a"}, lambda t: 5.0),
    ]
    points = MAX_POINTS_PER_QUERY + 500
    (container,) = read(stub.url, start_seconds=0.0, end_seconds=points - 1.0)
    ranges = sorted({(float(r["start"]), float(r["end"])) for r in stub.requests})
    assert ranges == [(0.0, 10_999.0), (11_000.0, points - 1.0)]
    assert len(stub.requests) == 2 * QUERIES_PER_RANGE
    assert len(container.samples) == points
    timestamps = [sample.timestamp_seconds for sample in container.samples]
    assert timestamps == [float(index) for index in range(points)]
    assert container.samples[-1].cpu_usage_seconds_total == (points - 1) / 2


# Join


def test_join_drops_name_and_cpu_labels(stub: StubPrometheus) -> None:
    labels = kubelet_labels("api-0", "api")
    stub.series = [
        StubSeries(
            "container_cpu_usage_seconds_total", {**labels, "cpu": "total"}, float
        ),
        StubSeries("container_memory_working_set_bytes", labels, lambda t: 7.0),
        StubSeries("container_cpu_cfs_periods_total", labels, lambda t: t * 10),
        StubSeries("container_cpu_cfs_throttled_periods_total", labels, lambda t: 3.0),
        StubSeries("container_cpu_cfs_throttled_seconds_total", labels, lambda t: 0.5),
        StubSeries("container_oom_events_total", labels, lambda t: 2.0),
        StubSeries("container_spec_memory_limit_bytes", labels, lambda t: 2.0**28),
        StubSeries("container_spec_cpu_quota", labels, lambda t: 150_000.0),
        StubSeries("container_spec_cpu_period", labels, lambda t: 100_000.0),
    ]
    (container,) = read(stub.url)
    assert container.name == "shop/api-0/api"
    assert container.labels == labels
    assert container.cpu_limit_cores == 1.5
    sample = container.samples[0]
    assert sample.timestamp_seconds == 1000.0
    assert sample.cpu_usage_seconds_total == 1000.0
    assert sample.memory_working_set_bytes == 7
    assert sample.cpu_cfs_periods_total == 10_000
    assert sample.cpu_cfs_throttled_periods_total == 3
    assert sample.cpu_cfs_throttled_seconds_total == 0.5
    assert sample.memory_oom_kills_total == 2
    assert sample.memory_limit_bytes == 2**28
    assert sample.memory_limit_set is True
    assert sample.memory_usage_bytes is None


def test_join_missing_metrics_are_none(stub: StubPrometheus) -> None:
    labels = {"id": "/docker/abc", "name": "web", "instance": "h:8080"}
    stub.series = [
        StubSeries("container_cpu_usage_seconds_total", labels, float),
        StubSeries("container_spec_memory_limit_bytes", labels, lambda t: 0.0),
    ]
    (container,) = read(stub.url)
    assert container.name == "web"
    assert container.cpu_limit_cores is None
    sample = container.samples[0]
    assert sample.memory_working_set_bytes is None
    assert sample.cpu_cfs_periods_total is None
    assert sample.memory_oom_kills_total is None
    # 0 is cAdvisor's "no limit".
    assert sample.memory_limit_bytes is None
    assert sample.memory_limit_set is False


def test_join_keeps_instances_apart(stub: StubPrometheus) -> None:
    stub.series = [
        StubSeries(
            "container_cpu_usage_seconds_total",
            {"id": "/x", "instance": instance},
            float,
        )
        for instance in ("a:1", "b:1")
    ]
    containers = read(stub.url)
    assert [c.labels["instance"] for c in containers] == ["a:1", "b:1"]
    assert [c.name for c in containers] == ["/x", "/x"]


def test_join_excludes_pod_and_pause_rows(stub: StubPrometheus) -> None:
    rows = [
        kubelet_labels("api-0", "api"),
        kubelet_labels("api-0", None),
        kubelet_labels("api-0", "POD"),
        {"id": "/system.slice/kubelet.service", "instance": "node-1:10250"},
    ]
    stub.series = [
        StubSeries("container_cpu_usage_seconds_total", labels, float)
        for labels in rows
    ]
    containers = read(stub.url)
    assert [container.name for container in containers] == ["shop/api-0/api"]


def test_join_skips_memory_only_container(
    stub: StubPrometheus, caplog: pytest.LogCaptureFixture
) -> None:
    stub.series = [
        StubSeries("container_cpu_usage_seconds_total", {"name": "a"}, float),
        StubSeries("container_memory_working_set_bytes", {"name": "b"}, float),
    ]
    with caplog.at_level(logging.WARNING, logger="hyperlane.metrics.prometheus"):
        containers = read(stub.url)
    assert [container.name for container in containers] == ["a"]
    assert "Container b has a working set but no CPU usage series" in caplog.text


def test_join_warns_spec_only_series(
    stub: StubPrometheus, caplog: pytest.LogCaptureFixture
) -> None:
    stub.series = [
        StubSeries("container_cpu_usage_seconds_total", {"name": "a"}, float),
        StubSeries("container_spec_cpu_quota", {"name": "gone"}, lambda t: 5e4),
    ]
    with caplog.at_level(logging.WARNING, logger="hyperlane.metrics.prometheus"):
        containers = read(stub.url)
    assert [container.name for container in containers] == ["a"]
    assert "Skipped 1 series sets that have neither CPU usage" in caplog.text
    assert "e.g. gone" in caplog.text


# Scrapes


def every_two_seconds(moment: float) -> float:
    """Return the time of the last scrape at or before moment, scraping every 2 s."""
    return 2.0 * math.floor(moment / 2.0)


def test_reader_merges_repeated_scrapes(
    stub: StubPrometheus, caplog: pytest.LogCaptureFixture
) -> None:
    stub.scrape_time = every_two_seconds
    labels = {"name": "web"}
    stub.series = [
        StubSeries(
            "container_cpu_usage_seconds_total",
            labels,
            lambda t: every_two_seconds(t) / 4,
        ),
        # A working set that falls, so the max of a merged pair is its earlier point.
        StubSeries("container_memory_working_set_bytes", labels, lambda t: 2000 - t),
        # A counter that differs between the points of a pair shows which one wins.
        StubSeries("container_oom_events_total", labels, float),
    ]
    with caplog.at_level(logging.INFO, logger="hyperlane.metrics.prometheus"):
        (container,) = read(stub.url, start_seconds=1000.0, end_seconds=1010.0)

    samples = container.samples
    timestamps = [sample.timestamp_seconds for sample in samples]
    assert timestamps == [1000.0, 1002.0, 1004.0, 1006.0, 1008.0, 1010.0]
    assert [sample.cpu_usage_seconds_total for sample in samples] == [
        250.0,
        250.5,
        251.0,
        251.5,
        252.0,
        252.5,
    ]
    working_sets = [sample.memory_working_set_bytes for sample in samples]
    assert working_sets == [1000, 998, 996, 994, 992, 990]
    oom_kills = [sample.memory_oom_kills_total for sample in samples]
    assert oom_kills == [1001, 1003, 1005, 1007, 1009, 1010]

    warnings = [
        record for record in caplog.records if record.levelno == logging.WARNING
    ]
    assert len(warnings) == 1, caplog.text
    message = warnings[0].getMessage()
    assert "The step of 1 s is below the scrape interval of 2 s" in message
    assert "so 5 step points repeated a scrape" in message
    assert "pass --step 2s or more" in message


def test_reader_stamps_scrape_times(
    stub: StubPrometheus, caplog: pytest.LogCaptureFixture
) -> None:
    stub.scrape_time = every_two_seconds
    stub.series = [
        StubSeries(
            "container_cpu_usage_seconds_total", {"name": "web"}, every_two_seconds
        )
    ]
    with caplog.at_level(logging.WARNING, logger="hyperlane.metrics.prometheus"):
        (container,) = read(
            stub.url, start_seconds=1000.0, end_seconds=1009.0, step_seconds=3.0
        )
    # The step points 1000, 1003, 1006 and 1009 carry the scrapes before them.
    timestamps = [sample.timestamp_seconds for sample in container.samples]
    assert timestamps == [1000.0, 1002.0, 1006.0, 1008.0]
    assert caplog.records == []


def test_reader_jittered_scrapes_kept(
    stub: StubPrometheus, caplog: pytest.LogCaptureFixture
) -> None:
    # Each scrape lands 0.2 s before its step point, so no two points share one.
    stub.scrape_time = lambda t: t - 0.2
    stub.series = [
        StubSeries("container_cpu_usage_seconds_total", {"name": "web"}, float)
    ]
    with caplog.at_level(logging.WARNING, logger="hyperlane.metrics.prometheus"):
        (container,) = read(stub.url)
    timestamps = [sample.timestamp_seconds for sample in container.samples]
    assert timestamps == [1000.0 + index - 0.2 for index in range(11)]
    assert caplog.records == []


def test_reader_logs_selector_and_range(
    stub: StubPrometheus, caplog: pytest.LogCaptureFixture
) -> None:
    stub.series = [StubSeries("container_cpu_usage_seconds_total", {"id": "/"}, float)]
    with caplog.at_level(logging.INFO, logger="hyperlane.metrics.prometheus"):
        read(stub.url, selector='id="/"', start_seconds=1000.0, end_seconds=1300.0)
    assert (
        f'Reading the containers matching {{id="/"}} from Prometheus {stub.url}, '
        "300 s ending at 1970-01-01T00:21:40Z at a 1 s step"
    ) in caplog.text


def test_reader_sends_basic_auth(stub: StubPrometheus) -> None:
    stub.series = [StubSeries("container_cpu_usage_seconds_total", {"id": "/"}, float)]
    url = stub.url.replace("http://", "http://reader:s3cret@")
    read(url)
    expected = "Basic " + base64.b64encode(b"reader:s3cret").decode()
    assert stub.authorization[0] == expected


# Errors


def test_error_not_http_url() -> None:
    with pytest.raises(UsageError, match=r"'ftp://host/' is not an http:// or https"):
        read("ftp://host/")


def test_error_brace_in_selector() -> None:
    with pytest.raises(UsageError, match="is wrapped in braces"):
        read("http://127.0.0.1:1", selector='{job="x"}')


def test_selector_brace_inside_value(stub: StubPrometheus) -> None:
    stub.series = [StubSeries("container_cpu_usage_seconds_total", {"id": "/"}, float)]
    read(stub.url, selector='id=~"/a{2}"')
    assert stub.requests[0]["query"] == (
        'container_cpu_usage_seconds_total{id=~"/a{2}"}'
    )


def test_error_unreachable_hides_password() -> None:
    port = free_port()
    with pytest.raises(EngineUnavailable) as caught:
        read(f"http://admin:hunter2@127.0.0.1:{port}")
    message = str(caught.value)
    assert caught.value.exit_code == ExitCode.ENGINE_UNAVAILABLE
    assert f"Prometheus at http://127.0.0.1:{port} could not be reached" in message
    assert "Connection refused" in message
    assert "hunter2" not in message
    assert "admin" not in message


def test_error_read_timeout(stub: StubPrometheus) -> None:
    stub.series = [StubSeries("container_cpu_usage_seconds_total", {"id": "/"}, float)]
    stub.delay_seconds = 5.0
    with pytest.raises(EngineUnavailable) as caught:
        read(stub.url, timeout_seconds=0.3)
    message = str(caught.value)
    assert f"Prometheus at {stub.url} did not answer within 0.3 s" in message
    assert "ReadTimeout" in message
    assert "raise --prometheus-timeout" in message


def test_error_server_error_json(stub: StubPrometheus) -> None:
    stub.status = 503
    stub.body = json.dumps(
        {"status": "error", "errorType": "timeout", "error": "query timed out"}
    ).encode()
    with pytest.raises(EngineUnavailable) as caught:
        read(stub.url)
    message = str(caught.value)
    assert f"Prometheus at {stub.url} returned HTTP 503" in message
    assert "(timeout: query timed out)" in message


def test_error_forbidden_is_usage(stub: StubPrometheus) -> None:
    stub.status = 403
    stub.body = b"Forbidden"
    url = stub.url.replace("http://", "http://viewer:n0access@")
    with pytest.raises(UsageError) as caught:
        read(url)
    message = str(caught.value)
    assert caught.value.exit_code == ExitCode.USAGE_ERROR
    assert "rejected the credentials in the URL (HTTP 403)" in message
    assert "n0access" not in message


def test_error_wrong_password_real_server(auth_prometheus: str) -> None:
    url = auth_prometheus.replace("http://", f"http://{BASIC_AUTH_USER}:wrong-secret@")
    with pytest.raises(UsageError) as caught:
        read(url)
    message = str(caught.value)
    assert caught.value.exit_code == ExitCode.USAGE_ERROR
    assert (
        f"Prometheus at {auth_prometheus} rejected the credentials in the URL "
        "(HTTP 401)"
    ) in message
    example = auth_prometheus.replace("http://", "http://USER:PASSWORD@")
    assert f"--prometheus {example}" in message
    assert "basic authentication" in message
    assert "wrong-secret" not in message


def test_error_no_credentials_real_server(auth_prometheus: str) -> None:
    with pytest.raises(UsageError, match=r"which carried no credentials \(HTTP 401\)"):
        read(auth_prometheus)


def test_reader_right_password_real_server(auth_prometheus: str) -> None:
    url = auth_prometheus.replace(
        "http://", f"http://{BASIC_AUTH_USER}:{BASIC_AUTH_PASSWORD}@"
    )
    # The server accepts the credentials and has no series to return.
    with pytest.raises(UsageError, match="has no container_cpu_usage_seconds_total"):
        read(url)


def test_error_bad_promql_real_server(empty_prometheus: str) -> None:
    with pytest.raises(UsageError) as caught:
        read(empty_prometheus, selector='namespace="shop",container=')
    message = str(caught.value)
    assert f"Prometheus at {empty_prometheus} rejected the query" in message
    assert "bad_data" in message
    assert "container=}" in message
    assert "--prometheus-selector" in message


def test_error_wrong_path_real_server(empty_prometheus: str) -> None:
    with pytest.raises(UsageError, match="returned HTTP 404 for /api/v1/query_range"):
        read(empty_prometheus + "/not-prometheus")


def test_error_no_series_real_server(empty_prometheus: str) -> None:
    with pytest.raises(UsageError) as caught:
        read(empty_prometheus, selector='namespace="shop"')
    message = str(caught.value)
    assert "has no container_cpu_usage_seconds_total" in message
    assert '{namespace="shop"}' in message
    assert "between 1000 and 1010" in message


def test_error_only_excluded_rows(stub: StubPrometheus) -> None:
    stub.series = [
        StubSeries(
            "container_cpu_usage_seconds_total", kubelet_labels("a-0", None), float
        )
    ]
    with pytest.raises(UsageError, match="none of a container with CPU usage"):
        read(stub.url)


def test_error_proxy_page_hides_password(stub: StubPrometheus) -> None:
    stub.status = 502
    stub.body = b"<html>Bad Gateway</html>"
    url = stub.url.replace("http://", "http://u:pa55word@")
    with pytest.raises(EngineUnavailable) as caught:
        read(url)
    message = str(caught.value)
    assert f"Prometheus at {stub.url} returned HTTP 502" in message
    assert "a proxy in front of it failed" in message
    assert "pa55word" not in message


def test_error_empty_range() -> None:
    with pytest.raises(UsageError, match="is empty: pass a start before the end"):
        read("http://127.0.0.1:1", start_seconds=10.0, end_seconds=10.0)


# Helpers


def test_display_url_strips_userinfo() -> None:
    assert display_url("https://u:p@prom.example:9090/x") == (
        "https://prom.example:9090/x"
    )
    assert display_url("http://[::1]:9090") == "http://[::1]:9090"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("1700000000", 1_700_000_000.0),
        ("1700000000.5", 1_700_000_000.5),
        ("2023-11-14T22:13:20Z", 1_700_000_000.0),
        ("2023-11-15T00:13:20+02:00", 1_700_000_000.0),
    ],
)
def test_parse_time_seconds(text: str, seconds: float) -> None:
    assert parse_time_seconds(text) == seconds


@pytest.mark.parametrize(
    ("text", "reason"),
    [("yesterday", "invalid time"), ("2023-11-14T22:13:20", "no UTC offset")],
)
def test_parse_time_seconds_invalid(text: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_time_seconds(text)


# Command line


def test_cli_needs_inputs_or_prometheus() -> None:
    result = run_hyperlane("rightsize")
    assert result.returncode == ExitCode.USAGE_ERROR
    assert "needs INPUT files or --prometheus URL" in result.stderr


def test_cli_rejects_inputs_and_prometheus(tmp_path: Path) -> None:
    result = run_hyperlane(
        "rightsize", str(tmp_path), "--prometheus", "http://127.0.0.1:1"
    )
    assert result.returncode == ExitCode.USAGE_ERROR
    assert "either INPUT files or --prometheus, not both" in result.stderr


def test_cli_invalid_start() -> None:
    result = run_hyperlane(
        "rightsize", "--prometheus", "http://127.0.0.1:1", "--start", "monday"
    )
    assert result.returncode == ExitCode.USAGE_ERROR
    assert "invalid value 'monday' for --start" in result.stderr


def test_cli_unreachable_exit_4() -> None:
    port = free_port()
    result = run_hyperlane(
        "rightsize", "--prometheus", f"http://user:topsecret@127.0.0.1:{port}"
    )
    assert result.returncode == ExitCode.ENGINE_UNAVAILABLE
    assert f"Prometheus at http://127.0.0.1:{port} could not be reached" in (
        result.stderr
    )
    assert "topsecret" not in result.stderr


def test_cli_logs_range_in_words(stub: StubPrometheus) -> None:
    stub.series = [StubSeries("container_cpu_usage_seconds_total", {"id": "/"}, float)]
    result = run_hyperlane(
        "rightsize",
        "--prometheus",
        stub.url,
        "--end",
        "2026-01-02T03:04:05Z",
        "--history",
        "300s",
        "--step",
        "2s",
        "--json",
    )
    assert result.returncode == 0, result.stderr
    assert (
        f"Reading every container from Prometheus {stub.url}, 300 s ending at "
        "2026-01-02T03:04:05Z at a 2 s step"
    ) in result.stderr


def test_cli_reversed_range_not_logged() -> None:
    result = run_hyperlane(
        "rightsize",
        "--prometheus",
        "http://127.0.0.1:1",
        "--start",
        "2026-01-02T00:00:00Z",
        "--end",
        "2026-01-01T00:00:00Z",
    )
    assert result.returncode == ExitCode.USAGE_ERROR
    assert "is empty: pass a start before the end" in result.stderr
    assert "Reading" not in result.stderr
    assert "-86400" not in result.stderr


def test_cli_timeout_and_days_history(stub: StubPrometheus) -> None:
    stub.delay_seconds = 30.0
    result = run_hyperlane(
        "rightsize",
        "--prometheus",
        stub.url,
        "--history",
        "7d",
        "--prometheus-timeout",
        "0.5s",
        timeout_seconds=60,
    )
    assert result.returncode == ExitCode.ENGINE_UNAVAILABLE, result.stderr
    assert "604800 s ending at" in result.stderr
    assert f"Prometheus at {stub.url} did not answer within 0.5 s" in result.stderr


def test_cli_wrong_password_exit_2(auth_prometheus: str) -> None:
    url = auth_prometheus.replace("http://", f"http://{BASIC_AUTH_USER}:wrong-secret@")
    result = run_hyperlane("rightsize", "--prometheus", url)
    assert result.returncode == ExitCode.USAGE_ERROR
    assert "rejected the credentials in the URL (HTTP 401)" in result.stderr
    assert "wrong-secret" not in result.stderr


def test_cli_help_selector_default_once() -> None:
    result = run_hyperlane("rightsize", "--help", env={"COLUMNS": "200"})
    assert result.returncode == 0, result.stderr
    # The help wraps lines, maybe inside a default, so compare with single spaces.
    text = " ".join(result.stdout.split())
    assert text.count("(default: every container)") == 1
    assert "(default: )" not in text
    assert "--prometheus-timeout" in text
