"""A real Prometheus server for tests: backfill OpenMetrics text, start, stop.

Uses Debian's prometheus and promtool binaries (scripts/setup.sh installs them),
never the system service. The server listens on a free loopback port, scrapes
nothing and keeps its data in a directory that the test owns.
"""

from __future__ import annotations

import base64
import math
import os
import shutil
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.integration.monitor.waiting import free_port

READY_TIMEOUT_SECONDS = 60.0
STOP_TIMEOUT_SECONDS = 20.0
# No scrape targets: the data comes from backfilled blocks only.
MINIMAL_CONFIG = "global:\n  scrape_interval: 1m\nscrape_configs: []\n"
# A test-only account for servers that require basic authentication. Prometheus'
# web config takes bcrypt hashes only. This one is of BASIC_AUTH_PASSWORD at cost 4
# (the minimum, so each check is fast), made with crypt.crypt() of Python 3.11.
BASIC_AUTH_USER = "reader"
BASIC_AUTH_PASSWORD = "reader-password"
BASIC_AUTH_HASH = "$2b$04$LBwYECEBjV2PpPgO2hRkOul6yvcD6HbLcK4j4r9T2XZb/D.8ddUue"
BASIC_AUTH_WEB_CONFIG = f"basic_auth_users:\n  {BASIC_AUTH_USER}: {BASIC_AUTH_HASH}\n"


@dataclass(frozen=True)
class Series:
    """One time series to write as OpenMetrics: labels and (unix seconds, value)."""

    metric: str
    labels: Mapping[str, str]
    points: Sequence[tuple[int, float]]


def binary(name: str) -> str:
    """Return the path of prometheus or promtool, or fail the test."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is missing; run scripts/setup.sh")
    return path


def openmetrics_text(series: Iterable[Series]) -> str:
    """Render series as OpenMetrics text, one family at a time, ending in # EOF.

    A metric whose name ends in _total is a counter, whose family name in the TYPE
    line has no _total suffix, as OpenMetrics requires. Every other one is a gauge.
    """
    by_metric: dict[str, list[Series]] = {}
    for item in series:
        by_metric.setdefault(item.metric, []).append(item)
    lines = []
    for metric, items in by_metric.items():
        if metric.endswith("_total"):
            lines.append(f"# TYPE {metric.removesuffix('_total')} counter")
        else:
            lines.append(f"# TYPE {metric} gauge")
        for item in items:
            labels = ",".join(
                f'{name}="{value}"' for name, value in sorted(item.labels.items())
            )
            for timestamp_seconds, value in item.points:
                if not math.isfinite(value):
                    raise ValueError(f"{metric}: value {value!r} is not finite")
                lines.append(f"{metric}{{{labels}}} {value!r} {timestamp_seconds}")
    lines.append("# EOF")
    return "\n".join(lines) + "\n"


def backfill(text: str, directory: Path) -> Path:
    """Write text to a file, turn it into TSDB blocks and return the data directory."""
    source = directory / "series.om"
    source.write_text(text, encoding="utf-8")
    data = directory / "data"
    data.mkdir()
    result = subprocess.run(
        [
            binary("promtool"),
            "tsdb",
            "create-blocks-from",
            "openmetrics",
            str(source),
            str(data),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return data


class PrometheusServer:
    """A prometheus process on 127.0.0.1 with its own config and data directory.

    With basic_auth, every HTTP endpoint (/-/ready included) requires
    BASIC_AUTH_USER and BASIC_AUTH_PASSWORD.
    """

    def __init__(self, directory: Path, data: Path, basic_auth: bool = False) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = directory / "prometheus.yml"
        config.write_text(MINIMAL_CONFIG, encoding="utf-8")
        web_flags = []
        self._ready_headers: dict[str, str] = {}
        if basic_auth:
            web_config = directory / "web.yml"
            web_config.write_text(BASIC_AUTH_WEB_CONFIG, encoding="utf-8")
            web_flags = [f"--web.config.file={web_config}"]
            token = f"{BASIC_AUTH_USER}:{BASIC_AUTH_PASSWORD}".encode()
            self._ready_headers["Authorization"] = (
                "Basic " + base64.b64encode(token).decode()
            )
        self.log_path = directory / "prometheus.log"
        # The child keeps its own copy of the log's descriptor.
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [
                    binary("prometheus"),
                    f"--config.file={config}",
                    f"--storage.tsdb.path={data}",
                    # Long enough that backfilled points of the last hours stay.
                    "--storage.tsdb.retention.time=30d",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    *web_flags,
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def wait_ready(self) -> None:
        """Poll /-/ready until it returns 200, or fail with the server's log."""
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            request = urllib.request.Request(
                f"{self.url}/-/ready", headers=self._ready_headers
            )
            try:
                with urllib.request.urlopen(request, timeout=2) as reply:
                    if reply.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.2)
        log = self.log_path.read_text(encoding="utf-8", errors="replace")
        pytest.fail(f"Prometheus on {self.url} did not become ready:\n{log[-3000:]}")

    def stop(self) -> None:
        """Send SIGTERM to the server's process group, then SIGKILL after a wait."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=STOP_TIMEOUT_SECONDS)
