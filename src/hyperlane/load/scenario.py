"""TOML scenario files: weighted requests, stages, warm-up and thresholds.

A scenario describes what to send. The URL given with it supplies the scheme, host
and port, and the load flags supply connections, duration and rate::

    warmup = "2s"
    think_time = "0s"
    thresholds = ["p99 < 50ms", "error_rate < 0.1%", "rate > 90"]

    [headers]
    Accept = "application/json"

    [[stages]]
    duration = "10s"
    rate = 200

    [[requests]]
    name = "home"
    path = "/"
    weight = 3
    thresholds = ["p99 < 20ms"]

    [[requests]]
    name = "order"
    method = "POST"
    path = "/orders"
    body_file = "order.json"
    headers = { Content-Type = "application/json" }
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import tomllib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from hyperlane.errors import ThresholdFailed, UsageError
from hyperlane.load.latency import LatencySummary
from hyperlane.load.result import EndpointResult, LoadResult
from hyperlane.load.spec import Endpoint, LoadSpec, Stage
from hyperlane.units import parse_duration_seconds

Metric = Literal["p50", "p90", "p99", "p999", "max", "error_rate", "rate"]
Operator = Literal["<", "<=", ">", ">="]

_LATENCY_METRICS = {
    "p50": "p50_seconds",
    "p90": "p90_seconds",
    "p99": "p99_seconds",
    "p999": "p999_seconds",
    "max": "max_seconds",
}
_METRIC_ALIASES = {"p99.9": "p999"}
_TIME_UNITS_SECONDS = {"us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0}
_THRESHOLD = re.compile(
    r"^\s*(?P<metric>[a-z_0-9.]+)\s*(?P<operator><=|>=|<|>)\s*"
    r"(?P<number>\d+(?:\.\d*)?|\.\d+)\s*(?P<unit>[a-zµ%/]*)\s*$"
)
_TOP_KEYS = ("warmup", "think_time", "headers", "stages", "requests", "thresholds")
_STAGE_KEYS = ("duration", "rate")
_REQUEST_KEYS = (
    "name",
    "path",
    "method",
    "weight",
    "headers",
    "body",
    "body_file",
    "thresholds",
)


@dataclass(frozen=True)
class Threshold:
    """One pass condition on a figure of the result, such as ``p99 < 50ms``."""

    expression: str
    """The condition as written."""
    metric: Metric
    """Latency percentile or max (seconds), error_rate (fraction) or rate
    (completed requests per second)."""
    operator: Operator
    limit: float
    """Bound in the metric's unit: seconds, a fraction from 0 to 1, or requests per
    second."""
    endpoint: str | None = None
    """Endpoint name whose figures are checked, or None for the whole run."""


@dataclass(frozen=True)
class ThresholdOutcome:
    """Evaluation of one threshold against one result."""

    expression: str
    """The threshold as written, prefixed with its endpoint name if it has one."""
    value: float | None
    """Measured value in the metric's unit, None when the metric has no samples."""
    passed: bool
    """False when the condition is false or the metric has no samples."""
    message: str
    """One sentence that states the condition, the measured value and the verdict."""

    def to_dict(self) -> dict[str, Any]:
        """Return the fields as a JSON-ready dict."""
        return asdict(self)


@dataclass(frozen=True)
class Scenario:
    """A parsed scenario file."""

    endpoints: tuple[Endpoint, ...]
    """Requests to mix by weight."""
    stages: tuple[Stage, ...] = ()
    """Rate stages of the open model, empty to keep a constant rate or none."""
    warmup_seconds: float = 0.0
    """Start of the run left out of the figures."""
    think_time_seconds: float | None = None
    """Closed-model think time, None to keep the spec's."""
    headers: tuple[tuple[str, str], ...] = ()
    """Headers added to every request."""
    thresholds: tuple[Threshold, ...] = ()
    """Conditions on the whole run and on single endpoints."""

    def apply(self, spec: LoadSpec) -> LoadSpec:
        """Return ``spec`` with this scenario's requests, stages and warm-up."""
        changes: dict[str, Any] = {
            "endpoints": self.endpoints,
            "headers": spec.headers + self.headers,
            "warmup_seconds": self.warmup_seconds,
        }
        if self.stages:
            changes["stages"] = self.stages
        if self.think_time_seconds is not None:
            changes["think_time_seconds"] = self.think_time_seconds
        return dataclasses.replace(spec, **changes)


def parse_threshold(expression: str, endpoint: str | None = None) -> Threshold:
    """Parse ``p99 < 50ms``, ``error_rate < 0.1%`` or ``rate >= 100``.

    Latency metrics (p50, p90, p99, p999 or p99.9, max) need a time unit: us, ms
    or s. error_rate takes a fraction or a percentage. rate takes completed requests
    per second, with an optional ``/s``. Raises UsageError for anything else.
    """
    hint = "Write it as 'p99 < 50ms', 'error_rate < 0.1%' or 'rate > 100'."
    match = _THRESHOLD.match(expression)
    if match is None:
        raise UsageError(f"Invalid threshold {expression!r}. {hint}")
    name = _METRIC_ALIASES.get(match["metric"], match["metric"])
    number = float(match["number"])
    unit = match["unit"]
    operator: Operator = match["operator"]  # type: ignore[assignment]
    if name in _LATENCY_METRICS:
        if unit not in _TIME_UNITS_SECONDS:
            raise UsageError(
                f"Invalid threshold {expression!r}: {name} needs a time unit (us, "
                f"ms or s), such as '{name} < 50ms'."
            )
        limit = number * _TIME_UNITS_SECONDS[unit]
    elif name == "error_rate":
        if unit not in ("", "%"):
            raise UsageError(
                f"Invalid threshold {expression!r}: error_rate takes a fraction or "
                "a percentage, such as 'error_rate < 0.1%'."
            )
        limit = number / 100 if unit == "%" else number
    elif name == "rate":
        if unit not in ("", "/s"):
            raise UsageError(
                f"Invalid threshold {expression!r}: rate takes requests per second, "
                "such as 'rate > 100'."
            )
        limit = number
    else:
        known = [*_LATENCY_METRICS, "error_rate", "rate"]
        close = difflib.get_close_matches(name, known, n=1)
        suggestion = f" Did you mean {close[0]!r}?" if close else ""
        raise UsageError(
            f"Invalid threshold {expression!r}: unknown metric {name!r}.{suggestion} "
            f"Known metrics: {', '.join(known)}."
        )
    metric: Metric = name  # type: ignore[assignment]
    return Threshold(expression.strip(), metric, operator, limit, endpoint)


def _holds(value: float, operator: Operator, limit: float) -> bool:
    if operator == "<":
        return value < limit
    if operator == "<=":
        return value <= limit
    if operator == ">":
        return value > limit
    return value >= limit


def _metric_value(
    threshold: Threshold, figures: LoadResult | EndpointResult
) -> float | None:
    if threshold.metric in _LATENCY_METRICS:
        latency: LatencySummary = figures.latency
        value: float | None = getattr(latency, _LATENCY_METRICS[threshold.metric])
        return value
    if threshold.metric == "error_rate":
        finished = figures.requests_total + figures.errors_total
        return figures.errors_total / finished if finished else None
    return figures.requests_per_second


def _no_samples_message(label: str, threshold: Threshold) -> str:
    if threshold.metric == "error_rate":
        cause = "no request completed or failed"
    else:
        cause = "no request completed within the timeout"
    return (
        f"Threshold {label!r} failed: {threshold.metric} has no samples because "
        f"{cause}, so it cannot pass. Check that the service answers."
    )


def evaluate_threshold(threshold: Threshold, result: LoadResult) -> ThresholdOutcome:
    """Evaluate one threshold. A metric without samples fails it."""
    label = threshold.expression
    figures: LoadResult | EndpointResult = result
    if threshold.endpoint is not None:
        label = f"{threshold.endpoint}: {threshold.expression}"
        found = [ep for ep in result.endpoints if ep.name == threshold.endpoint]
        if not found:
            return ThresholdOutcome(
                label,
                None,
                False,
                f"Threshold {label!r} failed: the result has no endpoint named "
                f"{threshold.endpoint!r}.",
            )
        figures = found[0]
    value = _metric_value(threshold, figures)
    if value is None:
        return ThresholdOutcome(
            label, None, False, _no_samples_message(label, threshold)
        )
    passed = _holds(value, threshold.operator, threshold.limit)
    verdict = "passed" if passed else "failed"
    return ThresholdOutcome(
        label,
        value,
        passed,
        f"Threshold {label!r} {verdict}: {threshold.metric} was {value:.6g}, "
        f"limit {threshold.operator} {threshold.limit:.6g}.",
    )


def evaluate_thresholds(
    thresholds: tuple[Threshold, ...] | list[Threshold], result: LoadResult
) -> list[ThresholdOutcome]:
    """Evaluate every threshold against ``result``, in order."""
    return [evaluate_threshold(threshold, result) for threshold in thresholds]


def failed_thresholds(
    thresholds: tuple[Threshold, ...] | list[Threshold], result: LoadResult
) -> list[ThresholdOutcome]:
    """Return the outcomes of the thresholds that failed, in order."""
    return [
        outcome
        for outcome in evaluate_thresholds(thresholds, result)
        if not outcome.passed
    ]


def check_thresholds(
    thresholds: tuple[Threshold, ...] | list[Threshold], result: LoadResult
) -> None:
    """Raise ThresholdFailed naming every failed threshold, or return if all pass."""
    failed = failed_thresholds(thresholds, result)
    if failed:
        raise ThresholdFailed(" ".join(outcome.message for outcome in failed))


# Parsing of the file.


def _reject_unknown(table: dict[str, Any], known: tuple[str, ...], where: str) -> None:
    for key in table:
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            suggestion = f" Did you mean {close[0]!r}?" if close else ""
            raise UsageError(
                f"Invalid scenario: unknown key {key!r} in {where}.{suggestion} "
                f"Known keys: {', '.join(known)}."
            )


def _duration(value: object, where: str) -> float:
    try:
        return parse_duration_seconds(value)
    except ValueError as error:
        raise UsageError(f"Invalid scenario {where}: {error}.") from error


def _headers(value: object, where: str) -> tuple[tuple[str, str], ...]:
    if not isinstance(value, dict) or not all(
        isinstance(item, str) for item in value.values()
    ):
        raise UsageError(
            f"Invalid scenario {where} {value!r}: expected a table of strings, such "
            'as { Accept = "application/json" }.'
        )
    return tuple((str(name), str(item)) for name, item in value.items())


def _thresholds(value: object, where: str, endpoint: str | None) -> list[Threshold]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise UsageError(
            f"Invalid scenario {where} {value!r}: expected a list of strings, such "
            'as ["p99 < 50ms"].'
        )
    return [parse_threshold(text, endpoint) for text in value]


def _stage(table: object, index: int) -> Stage:
    where = f"stages[{index}]"
    if not isinstance(table, dict):
        raise UsageError(f"Invalid scenario {where} {table!r}: expected a table.")
    _reject_unknown(table, _STAGE_KEYS, where)
    if "duration" not in table or "rate" not in table:
        raise UsageError(
            f"Invalid scenario {where} {table!r}: a stage needs duration and rate, "
            'such as { duration = "10s", rate = 100 }.'
        )
    rate = table["rate"]
    if isinstance(rate, bool) or not isinstance(rate, int | float):
        raise UsageError(
            f"Invalid scenario {where}.rate {rate!r}: expected requests per second."
        )
    return Stage(_duration(table["duration"], f"{where}.duration"), float(rate))


def _body(table: dict[str, Any], where: str, directory: Path) -> bytes:
    if "body" in table and "body_file" in table:
        raise UsageError(
            f"Invalid scenario {where}: it sets both body and body_file. Keep one."
        )
    if "body" in table:
        body = table["body"]
        if not isinstance(body, str):
            raise UsageError(f"Invalid scenario {where}.body {body!r}: expected text.")
        return body.encode("utf-8")
    if "body_file" in table:
        path = directory / str(table["body_file"])
        try:
            return path.read_bytes()
        except OSError as error:
            raise UsageError(
                f"Invalid scenario {where}.body_file {str(path)!r}: {error.strerror}. "
                "Give a path relative to the scenario file."
            ) from error
    return b""


def _request(
    table: object, index: int, directory: Path
) -> tuple[Endpoint, list[Threshold]]:
    where = f"requests[{index}]"
    if not isinstance(table, dict):
        raise UsageError(f"Invalid scenario {where} {table!r}: expected a table.")
    _reject_unknown(table, _REQUEST_KEYS, where)
    path = table.get("path", "/")
    method = table.get("method", "GET")
    name = table.get("name", f"{method} {path}")
    weight = table.get("weight", 1.0)
    for key, item in (("path", path), ("method", method), ("name", name)):
        if not isinstance(item, str):
            raise UsageError(f"Invalid scenario {where}.{key} {item!r}: expected text.")
    if isinstance(weight, bool) or not isinstance(weight, int | float):
        raise UsageError(
            f"Invalid scenario {where}.weight {weight!r}: expected a number above 0."
        )
    headers = _headers(table.get("headers", {}), f"{where}.headers")
    endpoint = Endpoint(
        name=name,
        path=path,
        method=method,
        headers=headers,
        body=_body(table, where, directory),
        weight=float(weight),
    )
    thresholds = _thresholds(table.get("thresholds", []), f"{where}.thresholds", name)
    return endpoint, thresholds


def parse_scenario(document: dict[str, Any], directory: Path) -> Scenario:
    """Build a Scenario from a parsed TOML document, with body files in
    ``directory``."""
    _reject_unknown(document, _TOP_KEYS, "the top level")
    requests = document.get("requests")
    if not isinstance(requests, list) or not requests:
        raise UsageError(
            "Invalid scenario: it has no [[requests]] table. Add at least one, "
            'such as [[requests]] with path = "/".'
        )

    endpoints: list[Endpoint] = []
    thresholds = _thresholds(document.get("thresholds", []), "thresholds", None)
    for index, table in enumerate(requests):
        endpoint, endpoint_thresholds = _request(table, index, directory)
        endpoints.append(endpoint)
        thresholds.extend(endpoint_thresholds)

    stages_value = document.get("stages", [])
    if not isinstance(stages_value, list):
        raise UsageError(
            f"Invalid scenario stages {stages_value!r}: expected [[stages]] tables."
        )
    think_time = document.get("think_time")
    return Scenario(
        endpoints=tuple(endpoints),
        stages=tuple(_stage(table, i) for i, table in enumerate(stages_value)),
        warmup_seconds=_duration(document.get("warmup", 0), "warmup"),
        think_time_seconds=(
            None if think_time is None else _duration(think_time, "think_time")
        ),
        headers=_headers(document.get("headers", {}), "headers"),
        thresholds=tuple(thresholds),
    )


def load_scenario(path: Path) -> Scenario:
    """Read and parse the scenario file at ``path``.

    Raises UsageError when the file is missing, is not TOML or is invalid. The
    spec built from it is validated when the run starts.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise UsageError(
            f"Cannot read scenario file {str(path)!r}: {error.strerror}. Check the "
            "--scenario path."
        ) from error
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise UsageError(
            f"Invalid scenario file {str(path)!r}: {error}. Fix the TOML syntax."
        ) from error
    return parse_scenario(document, path.parent)
