"""CFS throttling analysis and runtime hints on hand-made figures."""

from __future__ import annotations

import pytest

from hyperlane.metrics.sample import Sample
from hyperlane.sizing.hints import runtime_hints
from hyperlane.sizing.policy import MIB
from hyperlane.sizing.throttling import analyse_throttling
from hyperlane.sizing.usage import usage_from_samples
from tests.unit.sizing.test_strategies import make_series


def throttled_series(
    throttled_per_interval: int, throttled_seconds: float
) -> list[Sample]:
    count = 61
    return make_series(
        [0.5] * 60,
        [100 * MIB] * count,
        cpu_cfs_periods_total=[index * 10 for index in range(count)],
        cpu_cfs_throttled_periods_total=[
            index * throttled_per_interval for index in range(count)
        ],
        cpu_cfs_throttled_seconds_total=[
            index * throttled_seconds for index in range(count)
        ],
    )


def test_throttling_above_threshold_suggests_limit() -> None:
    usage = usage_from_samples("app", throttled_series(2, 0.25), cpu_limit_cores=0.5)
    report = analyse_throttling(usage, 0.05)
    assert report.throttled_share == pytest.approx(0.2)
    assert report.exceeded is True
    # Needed per interval = 0.5 cores used + 0.25 s throttled per second.
    assert report.suggested_cpu_limit_cores == pytest.approx(0.75)
    assert report.limit_below_need is True
    assert "20.0%" in report.sentences[0]
    assert "750m" in report.sentences[1]
    assert "below the 750m" in report.sentences[2]


def test_throttling_within_threshold() -> None:
    usage = usage_from_samples("app", throttled_series(0, 0.0), cpu_limit_cores=1.0)
    report = analyse_throttling(usage, 0.05)
    assert report.throttled_share == 0.0
    assert report.exceeded is False
    assert report.limit_below_need is False
    assert len(report.sentences) == 1


def test_throttling_without_quota() -> None:
    usage = usage_from_samples("app", make_series([0.5] * 5, [MIB] * 6))
    report = analyse_throttling(usage, 0.05)
    assert report.throttled_share is None
    assert report.exceeded is False
    assert "without a CPU limit" in report.sentences[0]


def test_hint_gomaxprocs_above_cpu() -> None:
    hints = runtime_hints(["GOMAXPROCS=8"], [], 1.5, None)
    assert hints == [
        "GOMAXPROCS=8 runs Go code on more threads than the 1500m of CPU, which a "
        "CPU quota then throttles; set GOMAXPROCS=2."
    ]


def test_hint_jvm_xmx_fills_limit() -> None:
    hints = runtime_hints(
        ["JAVA_TOOL_OPTIONS=-Xmx900m"], ["java", "-jar", "app.jar"], None, 1024 * MIB
    )
    assert len(hints) == 1
    assert "-Xmx900m is 88% of the 1024 MiB memory limit" in hints[0]
    assert "at most 768m" in hints[0]


def test_hint_jvm_max_ram_percentage() -> None:
    hints = runtime_hints(
        [], ["sh", "-c", "java -XX:MaxRAMPercentage=90 -jar app.jar"], None, 512 * MIB
    )
    assert len(hints) == 1
    assert "461 MiB heap" in hints[0]
    assert "use 75 or less" in hints[0]


def test_hint_gunicorn_workers_above_cpu() -> None:
    hints = runtime_hints([], ["gunicorn", "--workers", "9", "app:app"], 0.5, None)
    assert len(hints) == 1
    assert "gunicorn runs 9 workers" in hints[0]
    assert "(2 x 1 cores) + 1 = 3" in hints[0]


def test_hint_uvicorn_workers_within_cpu() -> None:
    hints = runtime_hints([], ["uvicorn", "app:app", "--workers=4"], 2.0, None)
    assert hints == [
        "uvicorn runs 4 workers on 2000m of CPU, within (2 x 2 cores) + 1 = 5."
    ]


def test_hint_node_old_space_above_limit() -> None:
    hints = runtime_hints(
        ["NODE_OPTIONS=--max-old-space-size=4096"], ["node", "server.js"], None, 2**31
    )
    assert len(hints) == 1
    assert "4096 MiB of the 2048 MiB memory limit" in hints[0]
    assert "at most 1536" in hints[0]


def test_hints_none_without_runtime_settings() -> None:
    assert runtime_hints(["PATH=/bin"], ["/bin/httpd", "-f"], 0.5, 100 * MIB) == []
