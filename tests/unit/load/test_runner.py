"""Closed-model load runs against scripted servers on 127.0.0.1."""

from __future__ import annotations

import json
import socket
import struct
import time

import pytest
from hdrh.histogram import HdrHistogram

from hyperlane import __version__
from hyperlane.load import ERROR_KINDS, LoadProgress, LoadResult, LoadSpec, run_load
from tests.unit.load import servers
from tests.unit.load.servers import TestServer


def _assert_identity(result: LoadResult) -> None:
    accounted = (
        result.requests_total + result.errors_total + result.requests_in_flight_at_stop
    )
    assert result.requests_sent == accounted


def test_keep_alive_reuses_connections() -> None:
    with servers.serving(servers.keep_alive) as server:
        result = run_load(LoadSpec(url=server.url, connections=3, duration_seconds=0.5))
    assert result.connections_opened == 3
    assert server.connections_accepted == 3
    assert result.keep_alive is True
    assert result.errors_total == 0
    assert result.requests_total > 100
    # The server counts a request when it has read it, so requests still in flight
    # at the stop may or may not have reached it.
    assert result.requests_total <= server.requests_received <= result.requests_sent
    assert result.status_classes["2xx"] == result.requests_total
    _assert_identity(result)


def test_keep_alive_bytes_received() -> None:
    with servers.serving(servers.keep_alive) as server:
        result = run_load(LoadSpec(url=server.url, connections=1, requests=50))
    assert result.bytes_received == 50 * len(servers.OK_RESPONSE)


def test_request_headers_sent() -> None:
    with servers.serving(servers.keep_alive) as server:
        run_load(
            LoadSpec(url=server.url, connections=1, requests=1, headers=(("X-A", "1"),))
        )
    head = server.request_heads[0].decode("latin-1")
    lines = head.split("\r\n")
    assert lines[0] == "GET / HTTP/1.1"
    assert f"Host: 127.0.0.1:{server.port}" in lines
    assert f"User-Agent: hyperlane/{__version__}" in lines
    assert "Connection: keep-alive" in lines
    assert "X-A: 1" in lines


def test_connection_close_reconnects() -> None:
    with servers.serving(servers.close_each) as server:
        result = run_load(LoadSpec(url=server.url, connections=2, duration_seconds=0.5))
    assert result.errors_total == 0
    assert result.requests_total > 20
    assert result.keep_alive is False
    # Every response ends its connection, so each completed request used its own.
    assert result.connections_opened >= result.requests_total
    # A connection still being established at the stop reaches only the server,
    # and one established just before it may still wait in the listen backlog.
    assert server.connections_accepted >= result.connections_opened - 2
    assert server.connections_accepted <= result.connections_opened + 2
    _assert_identity(result)


def test_close_delimited_response_succeeds() -> None:
    with servers.serving(servers.close_delimited) as server:
        result = run_load(LoadSpec(url=server.url, connections=2, requests=20))
    assert result.requests_total == 20
    assert result.errors_total == 0
    assert server.requests_received == 20


def test_http10_close_delimited_succeeds() -> None:
    def handler(sock: socket.socket, server: TestServer, index: int) -> bool:
        sock.sendall(b"HTTP/1.0 200 OK\r\n\r\nbody until close")
        return False

    with servers.serving(handler) as server:
        result = run_load(LoadSpec(url=server.url, connections=1, requests=5))
    assert result.requests_total == 5
    assert result.errors_total == 0
    assert result.bytes_received == 5 * len(b"HTTP/1.0 200 OK\r\n\r\nbody until close")


def test_silent_close_after_requests() -> None:
    with servers.serving(servers.close_after(3)) as server:
        result = run_load(LoadSpec(url=server.url, connections=2, requests=60))
    assert result.requests_total == 60
    assert result.errors_total == 0
    assert server.requests_received == 60
    # Three responses per connection: 60 requests need at least 20 connections.
    assert result.connections_opened >= 20
    assert result.keep_alive is True
    # At most the fourth request on each connection meets the close.
    assert result.retries_total <= result.connections_opened
    assert result.requests_sent == 60


def test_close_mid_response_is_error() -> None:
    with servers.serving(servers.close_mid_response) as server:
        result = run_load(LoadSpec(url=server.url, connections=1, requests=4))
    assert result.errors["closed_mid_response"] == 4
    assert result.requests_total == 0
    assert server.requests_received == 4
    assert result.latency.count == 0


def test_chunked_tiny_chunks_fast() -> None:
    with servers.serving(servers.chunked) as server:
        result = run_load(LoadSpec(url=server.url, connections=1, duration_seconds=0.5))
    assert result.errors_total == 0
    # Nagle's algorithm with delayed ACKs would stall a response for about 40 ms.
    assert result.requests_total > 50
    assert result.latency.p99_seconds is not None
    assert result.latency.p99_seconds < 0.03


def test_requests_exact_count() -> None:
    with servers.serving(servers.keep_alive) as server:
        result = run_load(
            LoadSpec(url=server.url, connections=4, requests=137, duration_seconds=5)
        )
    assert result.requests_sent == 137
    assert result.requests_total == 137
    assert server.requests_received == 137
    assert result.requests_in_flight_at_stop == 0
    # The run ends when the last response arrives, long before the duration.
    assert result.duration_seconds < 4


def test_refused_port_backs_off() -> None:
    port = servers.unused_port()
    url = f"http://127.0.0.1:{port}/"
    cpu_start = time.process_time()
    result = run_load(LoadSpec(url=url, connections=2, duration_seconds=0.6))
    cpu_seconds = time.process_time() - cpu_start
    assert result.errors["refused"] > 0
    assert result.errors["refused"] == result.errors_total
    assert result.requests_total == 0
    assert result.latency.count == 0
    assert result.latency.p50_seconds is None
    assert result.duration_seconds >= 0.6
    # A 20 ms back-off allows at most about 50 attempts per second per connection.
    assert result.errors["refused"] <= 2 * 0.6 / 0.02 + 2
    assert cpu_seconds < 0.3
    _assert_identity(result)


def test_silent_server_times_out() -> None:
    with servers.serving(servers.silent) as server:
        result = run_load(
            LoadSpec(
                url=server.url,
                connections=2,
                duration_seconds=1.0,
                timeout_seconds=0.2,
            )
        )
    _assert_timeouts(result)


def _assert_timeouts(result: LoadResult) -> None:
    # Each of the 2 connections times out every 0.2 s for 1 s: 10 timeouts, less
    # at most one round (one per connection) still waiting at the stop.
    expected = round(2 * 1.0 / 0.2)
    assert expected - 2 <= result.errors["timeout"] <= expected
    assert result.errors["timeout"] + result.requests_in_flight_at_stop >= expected - 2
    assert result.errors["timeout"] == result.errors_total
    assert result.requests_total == 0
    assert result.latency.count == 0
    _assert_identity(result)


def test_in_flight_at_stop_counted() -> None:
    with servers.serving(servers.delayed(0.3)) as server:
        result = run_load(LoadSpec(url=server.url, connections=3, duration_seconds=0.5))
    # Each connection completed one 0.3 s response and waits for the second.
    assert result.requests_total == 3
    assert result.requests_in_flight_at_stop == 3
    assert result.requests_sent == 6
    assert result.errors_total == 0
    _assert_identity(result)


def test_latency_matches_server_delay() -> None:
    with servers.serving(servers.delayed(0.05)) as server:
        result = run_load(LoadSpec(url=server.url, connections=2, requests=10))
    assert result.latency.count == 10
    assert result.latency.p50_seconds is not None
    assert 0.05 <= result.latency.p50_seconds < 0.08
    assert result.latency.max_seconds is not None
    assert result.latency.max_seconds < 0.2


def test_percentiles_monotonic() -> None:
    def jitter(sock: socket.socket, server: TestServer, index: int) -> bool:
        time.sleep((index % 7) * 0.001)
        sock.sendall(servers.OK_RESPONSE)
        return True

    with servers.serving(jitter) as server:
        result = run_load(LoadSpec(url=server.url, connections=2, duration_seconds=0.5))
    latency = result.latency
    assert latency.p50_seconds is not None
    assert latency.p90_seconds is not None
    assert latency.p99_seconds is not None
    assert latency.p999_seconds is not None
    assert latency.max_seconds is not None
    assert latency.p50_seconds <= latency.p90_seconds
    assert latency.p90_seconds <= latency.p99_seconds
    assert latency.p99_seconds <= latency.p999_seconds
    assert latency.p999_seconds <= latency.max_seconds


def test_parse_error_counted() -> None:
    with servers.serving(servers.garbage) as server:
        result = run_load(LoadSpec(url=server.url, connections=1, requests=3))
    assert result.errors["parse"] == 3
    assert result.requests_total == 0


def test_status_classes_counted() -> None:
    statuses = [b"200 OK", b"302 Found", b"404 Not Found", b"503 Unavailable"]

    def handler(sock: socket.socket, server: TestServer, index: int) -> bool:
        status = statuses[index % 4]
        sock.sendall(b"HTTP/1.1 " + status + b"\r\nContent-Length: 0\r\n\r\n")
        return True

    with servers.serving(handler) as server:
        result = run_load(LoadSpec(url=server.url, connections=1, requests=8))
    assert result.status_classes == {"2xx": 2, "3xx": 2, "4xx": 2, "5xx": 2}
    assert result.requests_total == 8
    assert result.warnings == []


def test_only_errors_warned() -> None:
    def handler(sock: socket.socket, server: TestServer, index: int) -> bool:
        sock.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
        return True

    with servers.serving(handler) as server:
        result = run_load(LoadSpec(url=server.url, connections=1, requests=5))
    assert result.status_classes["4xx"] == 5
    assert len(result.warnings) == 1
    assert "no response had a 2xx or 3xx status" in result.warnings[0]


def test_head_without_body() -> None:
    def handler(sock: socket.socket, server: TestServer, index: int) -> bool:
        sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n")
        return True

    with servers.serving(handler) as server:
        result = run_load(
            LoadSpec(url=server.url, connections=1, requests=20, method="HEAD")
        )
    assert result.requests_total == 20
    assert server.requests_received == 20
    assert result.errors_total == 0
    assert result.connections_opened == 1


def test_result_json_ready() -> None:
    with servers.serving(servers.keep_alive) as server:
        result = run_load(LoadSpec(url=server.url, connections=1, requests=5))
    data = json.loads(json.dumps(result.to_dict()))
    assert data["model"] == "closed"
    assert set(data["errors"]) == set(ERROR_KINDS)
    assert data["latency"]["count"] == 5
    assert data["latency_uncorrected"] is None


def test_histogram_encoding_merges() -> None:
    with servers.serving(servers.keep_alive) as server:
        first = run_load(LoadSpec(url=server.url, connections=1, requests=30))
        second = run_load(LoadSpec(url=server.url, connections=1, requests=12))
    merged = HdrHistogram.decode(first.histogram)
    merged.add(HdrHistogram.decode(second.histogram))
    assert merged.get_total_count() == 42


def test_progress_called_each_interval() -> None:
    reports: list[LoadProgress] = []
    with servers.serving(servers.keep_alive) as server:
        result = run_load(
            LoadSpec(url=server.url, connections=1, duration_seconds=0.6),
            progress=reports.append,
            progress_interval_seconds=0.1,
        )
    assert 4 <= len(reports) <= 7
    elapsed = [report.elapsed_seconds for report in reports]
    assert elapsed == sorted(elapsed)
    assert reports[-1].requests_total <= result.requests_total
    assert reports[-1].p99_seconds is not None


def test_slow_response_not_success() -> None:
    with servers.serving(servers.delayed(0.25)) as server:
        result = run_load(
            LoadSpec(
                url=server.url,
                connections=1,
                duration_seconds=0.7,
                timeout_seconds=0.2,
            )
        )
    assert result.requests_total == 0
    assert result.latency.count == 0
    assert result.errors["timeout"] >= 2


def test_reset_counted() -> None:
    def reset(sock: socket.socket, server: TestServer, index: int) -> bool:
        # Linger 0 turns the close into a TCP RST.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        return False

    with servers.serving(reset) as server:
        result = run_load(LoadSpec(url=server.url, connections=1, requests=3))
    assert result.errors["reset"] == 3
    assert result.requests_total == 0


def test_connect_timeout_counted() -> None:
    # A listener that never accepts keeps one handshake in its backlog and drops
    # the other SYNs, so further connection attempts hang.
    with socket.create_server(("127.0.0.1", 0), backlog=0) as listener:
        port = listener.getsockname()[1]
        result = run_load(
            LoadSpec(
                url=f"http://127.0.0.1:{port}/",
                connections=4,
                duration_seconds=0.7,
                timeout_seconds=0.3,
                connect_timeout_seconds=0.2,
            )
        )
    assert result.errors["connect_timeout"] > 0
    assert result.requests_total == 0
    _assert_identity(result)


def test_informational_response_skipped() -> None:
    def early_hints(sock: socket.socket, server: TestServer, index: int) -> bool:
        sock.sendall(b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n")
        sock.sendall(servers.OK_RESPONSE)
        return True

    with servers.serving(early_hints) as server:
        result = run_load(LoadSpec(url=server.url, connections=1, requests=5))
    assert result.requests_total == 5
    assert result.status_classes["2xx"] == 5
    assert result.errors_total == 0
    assert result.connections_opened == 1


def test_progress_error_propagates() -> None:
    def broken(report: LoadProgress) -> None:
        raise RuntimeError("progress sink failed")

    with servers.serving(servers.keep_alive) as server:
        started = time.monotonic()
        with pytest.raises(RuntimeError):
            run_load(
                LoadSpec(url=server.url, connections=1, duration_seconds=5),
                progress=broken,
                progress_interval_seconds=0.1,
            )
        elapsed_seconds = time.monotonic() - started
    assert elapsed_seconds < 1
