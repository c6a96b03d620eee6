"""Open-model runs: constant rate and coordinated-omission correction."""

from __future__ import annotations

import math
import socket
import threading
import time

from hyperlane.load import LoadResult, LoadSpec, Stage, run_load
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


def _expected_percentile(count: int, stalled: float, pause: float, q: float) -> float:
    """Corrected latency at percentile ``q`` when ``stalled`` of ``count`` intended
    sends fell in a pause of ``pause`` seconds and every other request was instant.

    The stalled sends were due evenly across the pause, so their corrected
    latencies are spread evenly from 0 to the pause length.
    """
    rank = math.ceil(q / 100 * count)
    fast = count - stalled
    if rank <= fast:
        return 0.0
    return (rank - fast) / stalled * pause


def test_open_pause_percentiles() -> None:
    rate = 200.0
    pause_after_seconds = 0.7
    pause_seconds = 0.5
    lock = threading.Lock()
    window: dict[str, float] = {}

    def pausing(sock: socket.socket, server: TestServer, index: int) -> bool:
        now = time.perf_counter()
        with lock:
            first = window.setdefault("first", now)
            if "start" not in window and now - first >= pause_after_seconds:
                window["start"] = now
                window["end"] = now + pause_seconds
            end = window.get("end", 0.0)
        if now < end:
            time.sleep(end - now)
        sock.sendall(servers.OK_RESPONSE)
        return True

    with servers.serving(pausing) as server:
        result = run_load(
            LoadSpec(
                url=server.url,
                connections=4,
                duration_seconds=2.0,
                rate_per_second=rate,
            )
        )
    measured_pause = window["end"] - window["start"]
    count = result.latency.count
    stalled = rate * measured_pause
    for q, measured in (
        (90.0, result.latency.p90_seconds),
        (99.0, result.latency.p99_seconds),
    ):
        expected = _expected_percentile(count, stalled, measured_pause, q)
        assert measured is not None
        assert abs(measured - expected) <= 0.15 * expected, (q, measured, expected)
    uncorrected = result.latency_uncorrected
    assert uncorrected is not None
    assert uncorrected.p90_seconds is not None
    # Only the requests in flight when the pause began waited for it themselves.
    assert uncorrected.p90_seconds < 0.05
    # uvloop timers have millisecond resolution, so a send due in the last
    # millisecond before the stop may still wait for its timer.
    assert result.requests_unsent is not None
    assert result.requests_unsent <= 1
    assert result.errors_total == 0


def test_open_busy_counts_unsent() -> None:
    with servers.serving(servers.delayed(0.1)) as server:
        result = run_load(
            LoadSpec(
                url=server.url,
                connections=1,
                duration_seconds=1.0,
                rate_per_second=100.0,
            )
        )
    # Sends due at 0, 10 ms, ... 1000 ms, while one connection completes only
    # about ten 100 ms responses.
    assert result.requests_scheduled is not None
    assert result.requests_unsent is not None
    assert 99 <= result.requests_scheduled <= 102
    assert result.requests_sent <= 11
    assert result.requests_unsent == result.requests_scheduled - result.requests_sent
    assert any("fell behind" in warning for warning in result.warnings)


def test_open_refused_all_fail() -> None:
    url = f"http://127.0.0.1:{servers.unused_port()}/"
    result = run_load(
        LoadSpec(url=url, connections=2, duration_seconds=0.5, rate_per_second=400.0)
    )
    assert result.requests_total == 0
    assert result.errors["refused"] == result.requests_sent
    assert result.requests_scheduled is not None
    assert result.requests_unsent is not None
    # Two connections backing off 20 ms after each refusal try about 50 times.
    assert result.requests_sent <= 60
    assert result.requests_unsent == result.requests_scheduled - result.requests_sent
    assert 195 <= result.requests_scheduled <= 202


def test_stages_ramp_rate() -> None:
    stages = (Stage(1.0, 200.0), Stage(0.5, 200.0))
    with servers.serving(servers.keep_alive) as server:
        result = run_load(LoadSpec(url=server.url, connections=4, stages=stages))
    # A ramp from 0 to 200/s over 1 s sends 100 requests, the constant stage 100.
    assert 198 <= server.requests_received <= 201
    assert result.requests_total == server.requests_received
    first = server.request_times[0]
    early = [t for t in server.request_times if t - first < 0.5]
    # Sends due in the first 0.5 s of the ramp: 200 * 0.5² / (2 * 1) = 25.
    assert 22 <= len(early) <= 28
    assert 1.45 <= result.duration_seconds <= 1.7


def test_share_splits_schedule() -> None:
    results: list[LoadResult] = []

    def run_share(index: int) -> None:
        spec = LoadSpec(
            url=server.url,
            connections=1,
            duration_seconds=1.25,
            rate_per_second=2.0,
            share_index=index,
            share_count=3,
        )
        results.append(run_load(spec))

    with servers.serving(servers.keep_alive) as server:
        threads = [threading.Thread(target=run_share, args=(i,)) for i in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=5)
    # 2/s across three shares: sends due at 0, 0.5 and 1.0 s, one each.
    assert server.requests_received == 3
    assert [result.requests_total for result in results] == [1, 1, 1]


def test_share_splits_budget() -> None:
    with servers.serving(servers.keep_alive) as server:
        first = run_load(
            LoadSpec(url=server.url, connections=2, requests=7, share_count=2)
        )
        second = run_load(
            LoadSpec(
                url=server.url,
                connections=2,
                requests=7,
                share_index=1,
                share_count=2,
            )
        )
    assert first.requests_sent == 4
    assert second.requests_sent == 3
    assert server.requests_received == 7


def test_open_silent_times_out() -> None:
    with servers.serving(servers.silent) as server:
        result = run_load(
            LoadSpec(
                url=server.url,
                connections=2,
                duration_seconds=1.0,
                rate_per_second=50.0,
                timeout_seconds=0.2,
            )
        )
    # connections x duration / timeout = 10, less at most one round (one per
    # connection) still waiting at the stop.
    assert 8 <= result.errors["timeout"] <= 10
    assert result.errors_total == result.errors["timeout"]
    assert result.requests_total == 0
    assert result.latency.count == 0
    assert result.requests_unsent is not None
    assert result.requests_scheduled is not None
    # 50/s for 1 s schedules about 51 sends, and at most 12 were written.
    assert result.requests_unsent >= 39
    assert result.requests_unsent == result.requests_scheduled - result.requests_sent
