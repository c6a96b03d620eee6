"""Scenario files and thresholds."""

from __future__ import annotations

from pathlib import Path

import pytest

from hyperlane.errors import ThresholdFailed, UsageError
from hyperlane.load import LoadSpec, run_load
from hyperlane.load.config import spec_from_settings
from hyperlane.load.scenario import (
    check_thresholds,
    evaluate_thresholds,
    failed_thresholds,
    load_scenario,
    parse_threshold,
)
from hyperlane.settings import LoadSettings
from tests.unit.load import servers

SCENARIO = """
warmup = "200ms"
thresholds = ["p99 < 2s", "error_rate < 0.1%", "rate > 1"]

[headers]
X-Run = "scenario"

[[requests]]
name = "home"
path = "/"
weight = 3
thresholds = ["max < 5s"]

[[requests]]
name = "order"
method = "POST"
path = "/orders"
body_file = "order.json"
headers = { Content-Type = "application/json" }
"""


@pytest.mark.parametrize(
    ("text", "metric", "limit"),
    [
        ("p99 < 50ms", "p99", 0.05),
        ("p99.9<=1s", "p999", 1.0),
        ("max < 250us", "max", 0.00025),
        ("error_rate < 0.1%", "error_rate", 0.001),
        ("error_rate < 0.02", "error_rate", 0.02),
        ("rate >= 100/s", "rate", 100.0),
    ],
)
def test_threshold_parsed(text: str, metric: str, limit: float) -> None:
    threshold = parse_threshold(text)
    assert threshold.metric == metric
    assert threshold.limit == pytest.approx(limit)


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("p99 < 50", "time unit"),
        ("p98 < 50ms", "p99"),
        ("error_rate < 1ms", "error_rate"),
        ("rate > 5ms", "rate"),
        ("p99 = 5ms", "Invalid threshold"),
    ],
)
def test_threshold_invalid_rejected(text: str, named: str) -> None:
    with pytest.raises(UsageError) as raised:
        parse_threshold(text)
    assert named in str(raised.value)


def test_thresholds_evaluated() -> None:
    with servers.serving(servers.delayed(0.02)) as server:
        result = run_load(LoadSpec(url=server.url, connections=1, requests=5))
    thresholds = [parse_threshold("p50 > 15ms"), parse_threshold("p50 < 10ms")]
    outcomes = evaluate_thresholds(thresholds, result)
    assert [outcome.passed for outcome in outcomes] == [True, False]
    assert outcomes[0].value is not None
    assert 0.02 <= outcomes[0].value < 0.05
    failed = failed_thresholds(thresholds, result)
    assert [outcome.expression for outcome in failed] == ["p50 < 10ms"]
    with pytest.raises(ThresholdFailed) as raised:
        check_thresholds(thresholds, result)
    assert "p50 < 10ms" in str(raised.value)


def test_threshold_no_samples_fails() -> None:
    url = f"http://127.0.0.1:{servers.unused_port()}/"
    result = run_load(LoadSpec(url=url, connections=1, requests=2))
    latency, error_rate = evaluate_thresholds(
        [parse_threshold("p99 < 10s"), parse_threshold("error_rate < 100%")], result
    )
    assert latency.passed is False
    assert latency.value is None
    assert "no samples" in latency.message
    # Every request failed, so the error rate has samples and is 1.
    assert error_rate.value == 1.0
    assert error_rate.passed is False


def test_threshold_unknown_endpoint() -> None:
    with servers.serving(servers.keep_alive) as server:
        result = run_load(LoadSpec(url=server.url, connections=1, requests=2))
    (outcome,) = evaluate_thresholds([parse_threshold("p99 < 1s", "nope")], result)
    assert outcome.passed is False
    assert "no endpoint named 'nope'" in outcome.message


def test_scenario_file_run(tmp_path: Path) -> None:
    (tmp_path / "order.json").write_bytes(b'{"sku": "A-1"}')
    path = tmp_path / "load.toml"
    path.write_text(SCENARIO, encoding="utf-8")
    scenario = load_scenario(path)
    with servers.serving(servers.keep_alive) as server:
        spec = scenario.apply(
            LoadSpec(url=server.url, connections=2, duration_seconds=0.7)
        )
        result = run_load(spec)
    assert spec.warmup_seconds == 0.2
    orders = [
        body
        for head, body in zip(server.request_heads, server.request_bodies, strict=True)
        if head.startswith(b"POST /orders ")
    ]
    assert orders
    assert set(orders) == {b'{"sku": "A-1"}'}
    assert all(b"\r\nX-Run: scenario\r\n" in head for head in server.request_heads)
    home, order = result.endpoints
    # Smooth weighted round-robin keeps a 3:1 mix within one request per cycle.
    assert abs(home.requests_sent - 3 * order.requests_sent) <= 4
    expressions = [threshold.expression for threshold in scenario.thresholds]
    assert expressions == ["p99 < 2s", "error_rate < 0.1%", "rate > 1", "max < 5s"]
    assert scenario.thresholds[3].endpoint == "home"
    check_thresholds(scenario.thresholds, result)


def test_scenario_stages_parsed(tmp_path: Path) -> None:
    path = tmp_path / "ramp.toml"
    path.write_text(
        '[[stages]]\nduration = "2s"\nrate = 50\n\n'
        '[[stages]]\nduration = "500ms"\nrate = 0\n\n'
        '[[requests]]\npath = "/"\n',
        encoding="utf-8",
    )
    scenario = load_scenario(path)
    assert [stage.duration_seconds for stage in scenario.stages] == [2.0, 0.5]
    assert [stage.target_rate_per_second for stage in scenario.stages] == [50.0, 0.0]
    assert scenario.endpoints[0].name == "GET /"


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ('warmpu = "1s"\n[[requests]]\npath = "/"\n', "warmup"),
        ('thresholds = ["p99 < 1s"]\n', "[[requests]]"),
        ('[[requests]]\npath = "/"\nbody_file = "missing.bin"\n', "body_file"),
        ('[[requests]]\npath = "/"\nbody = "a"\nbody_file = "b"\n', "both"),
        ('[[requests]]\nweight = "heavy"\n', "weight"),
        ('[[stages]]\nrate = 5\n[[requests]]\npath = "/"\n', "duration and rate"),
        ("[[requests]\n", "TOML"),
    ],
)
def test_scenario_invalid_rejected(tmp_path: Path, text: str, named: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(UsageError) as raised:
        load_scenario(path)
    assert named in str(raised.value)


def test_scenario_missing_file(tmp_path: Path) -> None:
    with pytest.raises(UsageError) as raised:
        load_scenario(tmp_path / "absent.toml")
    assert "absent.toml" in str(raised.value)


def test_settings_scenario_applied(tmp_path: Path) -> None:
    path = tmp_path / "mix.toml"
    path.write_text(
        'warmup = "1s"\n[[requests]]\nname = "a"\npath = "/a"\n', encoding="utf-8"
    )
    settings = LoadSettings(scenario=path, duration=5.0, connections=3)
    spec = spec_from_settings(settings, "http://127.0.0.1:8080/")
    assert [endpoint.path for endpoint in spec.endpoints] == ["/a"]
    assert spec.warmup_seconds == 1.0
    assert spec.connections == 3
    assert spec.duration_seconds == 5.0


def test_settings_plain_spec() -> None:
    spec = spec_from_settings(LoadSettings(rate=20.0), "https://127.0.0.1:8443/x")
    assert spec.rate_per_second == 20.0
    assert spec.endpoints == ()
    assert spec.body == b""
    assert spec.insecure is False
