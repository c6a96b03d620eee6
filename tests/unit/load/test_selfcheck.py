"""Self-check warnings: generator CPU saturated, open model behind its rate."""

from __future__ import annotations

import logging
import time

import pytest

from hyperlane.load import LoadSpec, run_load
from hyperlane.load.selfcheck import SelfCheck
from tests.unit.load import servers


def test_cpu_saturated_warned(caplog: pytest.LogCaptureFixture) -> None:
    # A CPU clock that runs as fast as the wall clock means one busy core.
    with (
        servers.serving(servers.keep_alive) as server,
        caplog.at_level(logging.WARNING, logger="hyperlane.load"),
    ):
        result = run_load(
            LoadSpec(url=server.url, connections=1, duration_seconds=1.2),
            cpu_clock=time.perf_counter,
        )
    saturated = [text for text in result.warnings if "CPU saturated" in text]
    assert len(saturated) == 1
    logged = [
        record for record in caplog.records if "CPU saturated" in record.getMessage()
    ]
    assert len(logged) == 1
    assert result.generator_cpu_seconds >= 1.1


def test_idle_run_no_warnings() -> None:
    with servers.serving(servers.keep_alive) as server:
        result = run_load(
            LoadSpec(
                url=server.url,
                connections=2,
                duration_seconds=0.8,
                rate_per_second=50.0,
            )
        )
    assert result.warnings == []
    assert result.generator_cpu_seconds < 0.5


def test_cpu_short_span_ignored() -> None:
    now = [0.0]
    check = SelfCheck(lambda: now[0], 0)
    now[0] = 0.3
    check.check_cpu(300_000_000)
    assert check.warnings == []


def test_rate_warning_once() -> None:
    check = SelfCheck(lambda: 0.0, 0)
    check.check_rate(scheduled=1000, unsent=9, late=40)
    assert check.warnings == []
    check.check_rate(scheduled=1000, unsent=20, late=0)
    check.check_rate(scheduled=1000, unsent=30, late=0)
    assert len(check.warnings) == 1
    assert "20 of 1000" in check.warnings[0]


def test_rate_late_share_warned() -> None:
    check = SelfCheck(lambda: 0.0, 0)
    check.check_rate(scheduled=100, unsent=0, late=6)
    assert len(check.warnings) == 1


def test_rate_few_late_ignored() -> None:
    # 4 of 40 is 10 %, but a handful of late sends is scheduling noise.
    check = SelfCheck(lambda: 0.0, 0)
    check.check_rate(scheduled=40, unsent=0, late=4)
    assert check.warnings == []
