"""Request bodies, weighted endpoints, per-endpoint results, timeline and warm-up."""

from __future__ import annotations

import itertools
import socket
import time

from hdrh.histogram import HdrHistogram

from hyperlane.load import Endpoint, LoadSpec, run_load
from tests.unit.load import servers
from tests.unit.load.servers import TestServer


def _paths(server: TestServer) -> list[str]:
    return [head.split(b" ")[1].decode() for head in server.request_heads]


def test_post_body_received() -> None:
    body = b'{"item": 42, "note": "' + b"x" * 5000 + b'"}'
    with servers.serving(servers.keep_alive) as server:
        result = run_load(
            LoadSpec(
                url=server.url,
                connections=2,
                requests=30,
                method="POST",
                body=body,
                headers=(("Content-Type", "application/json"),),
            )
        )
    assert result.requests_total == 30
    assert server.request_bodies == [body] * 30
    head = server.request_heads[0].decode("latin-1").split("\r\n")
    assert head[0] == "POST / HTTP/1.1"
    assert "Content-Type: application/json" in head
    assert result.bytes_sent == 30 * (len(server.request_heads[0]) + len(body))


def test_weights_split_requests() -> None:
    endpoints = (
        Endpoint("home", path="/", weight=3),
        Endpoint("health", path="/health", method="HEAD"),
    )
    with servers.serving(servers.keep_alive) as server:
        result = run_load(
            LoadSpec(url=server.url, connections=2, requests=40, endpoints=endpoints)
        )
    paths = _paths(server)
    assert paths.count("/") == 30
    assert paths.count("/health") == 10
    by_name = {endpoint.name: endpoint for endpoint in result.endpoints}
    assert by_name["home"].requests_total == 30
    assert by_name["health"].requests_total == 10
    assert by_name["health"].method == "HEAD"
    assert result.requests_total == 40
    assert result.errors_total == 0


def test_endpoint_figures_add_up() -> None:
    def slow_health(sock: socket.socket, server: TestServer, index: int) -> bool:
        with server.lock:
            path = server.request_heads[-1].split(b" ")[1]
        if path == b"/health":
            time.sleep(0.02)
            sock.sendall(b"HTTP/1.1 503 Unavailable\r\nContent-Length: 0\r\n\r\n")
        else:
            sock.sendall(servers.OK_RESPONSE)
        return True

    endpoints = (Endpoint("home", path="/"), Endpoint("health", path="/health"))
    with servers.serving(slow_health) as server:
        result = run_load(
            LoadSpec(url=server.url, connections=1, requests=20, endpoints=endpoints)
        )
    home, health = result.endpoints
    assert home.status_classes["2xx"] == 10
    assert health.status_classes["5xx"] == 10
    assert home.bytes_received + health.bytes_received == result.bytes_received
    assert home.requests_sent + health.requests_sent == result.requests_sent
    assert home.latency.max_seconds is not None
    assert health.latency.p50_seconds is not None
    assert home.latency.max_seconds < 0.02
    assert health.latency.p50_seconds >= 0.02
    merged = HdrHistogram.decode(home.histogram)
    merged.add(HdrHistogram.decode(health.histogram))
    assert merged.get_total_count() == result.latency.count


def test_single_url_one_endpoint() -> None:
    with servers.serving(servers.keep_alive) as server:
        result = run_load(LoadSpec(url=server.url + "a?b=1", connections=1, requests=4))
    assert [endpoint.name for endpoint in result.endpoints] == ["/a?b=1"]
    assert result.endpoints[0].requests_total == 4


def test_timeline_adds_up() -> None:
    with servers.serving(servers.keep_alive) as server:
        result = run_load(LoadSpec(url=server.url, connections=2, duration_seconds=1.4))
    timeline = result.timeline
    # One full tick and the partial tick that the stop closed.
    assert len(timeline) == 2
    assert 0.95 <= timeline[0].end_seconds - timeline[0].start_seconds <= 1.1
    assert timeline[1].start_seconds == timeline[0].end_seconds
    assert sum(tick.requests_total for tick in timeline) == result.requests_total
    assert sum(tick.requests_sent for tick in timeline) == result.requests_sent
    assert sum(tick.bytes_received for tick in timeline) == result.bytes_received
    first = timeline[0]
    assert first.p50_seconds is not None
    assert first.p99_seconds is not None
    assert first.max_seconds is not None
    assert first.p50_seconds <= first.p99_seconds <= first.max_seconds
    assert len(result.endpoints[0].timeline) == 2


def test_warmup_excluded() -> None:
    slow_seconds = 0.3

    def slow_start(sock: socket.socket, server: TestServer, index: int) -> bool:
        with server.lock:
            elapsed = server.request_times[-1] - server.request_times[0]
        if elapsed < slow_seconds:
            time.sleep(0.04)
        sock.sendall(servers.OK_RESPONSE)
        return True

    with servers.serving(slow_start) as server:
        result = run_load(
            LoadSpec(
                url=server.url,
                connections=2,
                duration_seconds=1.0,
                warmup_seconds=0.5,
            )
        )
    assert result.warmup_requests_total > 0
    assert result.latency.max_seconds is not None
    # The 40 ms responses all belong to requests sent during the warm-up.
    assert result.latency.max_seconds < 0.03
    assert 0.45 <= result.duration_seconds <= 0.6
    assert result.warmup_seconds == 0.5
    # Requests in flight at the stop may or may not have reached the server.
    received = server.requests_received
    assert received <= result.requests_sent + result.warmup_requests_total
    assert received >= result.requests_total + result.warmup_requests_total - 2


def test_think_time_paces() -> None:
    with servers.serving(servers.keep_alive) as server:
        result = run_load(
            LoadSpec(
                url=server.url,
                connections=1,
                duration_seconds=0.55,
                think_time_seconds=0.1,
            )
        )
    # Writes at about 0, 0.1, ... 0.5 s.
    assert 5 <= server.requests_received <= 6
    assert result.think_time_seconds == 0.1
    assert result.latency.max_seconds is not None
    assert result.latency.max_seconds < 0.05
    times = server.request_times
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    assert min(gaps) >= 0.095
