"""Open-model runs: constant rate and coordinated-omission correction."""

from __future__ import annotations

import socket
import time

from hyperlane.load import LoadSpec, run_load
from tests.unit.load import servers
from tests.unit.load.servers import TestServer


def test_open_rate_kept() -> None:
    with servers.serving(servers.keep_alive) as server:
        result = run_load(
            LoadSpec(
                url=server.url,
                connections=2,
                duration_seconds=1.0,
                rate_per_second=100.0,
            )
        )
    assert result.model == "open"
    # Intended send times 0, 10 ms, ... 990 ms: 100 of them fall inside 1 s.
    assert 95 <= server.requests_received <= 101
    assert 95 <= result.requests_total <= 101
    assert result.errors_total == 0
    assert result.late_sends_total == 0
    assert result.latency_uncorrected is not None
    assert result.histogram_uncorrected is not None
    assert result.requests_per_second < 110


def test_open_stall_corrected() -> None:
    stall_seconds = 0.3

    def stall_once(sock: socket.socket, server: TestServer, index: int) -> bool:
        if index == 20:
            time.sleep(stall_seconds)
        sock.sendall(servers.OK_RESPONSE)
        return True

    with servers.serving(stall_once) as server:
        result = run_load(
            LoadSpec(
                url=server.url,
                connections=1,
                duration_seconds=1.0,
                rate_per_second=100.0,
            )
        )
    uncorrected = result.latency_uncorrected
    assert uncorrected is not None
    assert uncorrected.p90_seconds is not None
    assert result.latency.p90_seconds is not None
    # About 30 sends were due during the stall, so their corrected latencies
    # spread from 0 to 0.3 s, while each of them alone was fast.
    assert uncorrected.p90_seconds < 0.05
    assert result.latency.p90_seconds > 0.1
    assert result.late_sends_total is not None
    assert 20 <= result.late_sends_total <= 31
    assert result.latency.max_seconds is not None
    assert result.latency.max_seconds >= stall_seconds


def test_open_requests_limit() -> None:
    with servers.serving(servers.keep_alive) as server:
        result = run_load(
            LoadSpec(
                url=server.url,
                connections=2,
                duration_seconds=2.0,
                requests=25,
                rate_per_second=200.0,
            )
        )
    assert result.requests_sent == 25
    assert server.requests_received == 25
    # 25 sends at 5 ms intervals take 0.12 s.
    assert result.duration_seconds < 0.5


def test_closed_has_no_uncorrected() -> None:
    with servers.serving(servers.keep_alive) as server:
        result = run_load(LoadSpec(url=server.url, connections=1, requests=3))
    assert result.latency_uncorrected is None
    assert result.histogram_uncorrected is None
    assert result.late_sends_total is None


def test_open_idle_close_keeps_budget() -> None:
    # Each connection closes while its next request waits for its send time, so
    # that reserved request must move to the next connection.
    with servers.serving(servers.close_after(1)) as server:
        result = run_load(
            LoadSpec(
                url=server.url,
                connections=2,
                duration_seconds=2.0,
                requests=10,
                rate_per_second=50.0,
            )
        )
    assert result.requests_sent == 10
    assert result.requests_total == 10
    assert server.requests_received == 10
    assert result.errors_total == 0
