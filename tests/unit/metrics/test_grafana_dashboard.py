"""The Grafana dashboard queries only metrics that `hyperlane monitor` exports."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hyperlane.metrics.exporter import EXPORTED_METRIC_NAMES

DASHBOARD = Path(__file__).parents[3] / "docs" / "grafana" / "hyperlane-containers.json"
# A metric name in PromQL: a word of this exporter's prefixes. Label values and
# legend templates sit inside quotes or braces, which are removed first.
METRIC_NAME = re.compile(r"\b(?:container|hyperlane)_[a-z_]+\b")


def expressions(node: Any) -> Iterator[str]:
    """Yield every "expr" string and templating query in the dashboard."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("expr", "definition") and isinstance(value, str):
                yield value
            else:
                yield from expressions(value)
    elif isinstance(node, list):
        for item in node:
            yield from expressions(item)


def metric_names(expression: str) -> set[str]:
    without_strings = re.sub(r'"[^"]*"', '""', expression)
    return set(METRIC_NAME.findall(without_strings))


def test_dashboard_is_json() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "hyperlane-containers"
    assert len(dashboard["panels"]) == 6


def test_dashboard_names_exported_metrics() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    found = list(expressions(dashboard))
    assert len(found) >= 10
    for expression in found:
        names = metric_names(expression)
        assert names, expression
        assert names <= EXPORTED_METRIC_NAMES, expression


def test_dashboard_covers_panels() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    used = set().union(*(metric_names(e) for e in expressions(dashboard)))
    for name in (
        "container_cpu_usage_seconds_total",
        "container_cpu_cfs_throttled_periods_total",
        "container_memory_working_set_bytes",
        "container_spec_memory_limit_bytes",
        "container_network_receive_bytes_total",
        "container_fs_reads_bytes_total",
        "container_oom_events_total",
    ):
        assert name in used, name
