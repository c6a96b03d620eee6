"""`hyperlane monitor` scraped by a real Prometheus, on both engines.

Two busybox containers run per engine: one burns CPU under a 0.5 CPU quota and one
sleeps. The monitor exports them on a loopback port and records them, and Debian's
prometheus binary (not its system service) scrapes it every second.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest
from docker.models.containers import Container

from hyperlane.metrics.recording import read_recording
from tests.conftest import unique_name
from tests.integration.cli import HYPERLANE
from tests.integration.monitor.waiting import free_port, wait_for

pytestmark = pytest.mark.integration

NANO_CPUS = 500_000_000
BUSY_LOOP = ["sh", "-c", "while :; do :; done"]
SCRAPE_SECONDS = 9.0


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


def query(prometheus_port: int, promql: str) -> list[dict[str, Any]]:
    url = f"http://127.0.0.1:{prometheus_port}/api/v1/query?" + urllib.parse.urlencode(
        {"query": promql}
    )
    document = get_json(url)
    assert document["status"] == "success", document
    result: list[dict[str, Any]] = document["data"]["result"]
    return result


@pytest.fixture
def containers(
    engine_client: docker.DockerClient, busybox_image: str, reap: list[Container]
) -> tuple[str, Container, Container]:
    """Start the burner and the idle container with a label unique to this test."""
    label = f"io.hyperlane.test-monitor={uuid.uuid4().hex[:10]}"
    key, value = label.split("=")
    burner = engine_client.containers.run(
        busybox_image,
        BUSY_LOOP,
        name=unique_name("hl-monitor-burn"),
        detach=True,
        nano_cpus=NANO_CPUS,
        labels={key: value},
    )
    reap.append(burner)
    idle = engine_client.containers.run(
        busybox_image,
        ["sleep", "3600"],
        name=unique_name("hl-monitor-idle"),
        detach=True,
        labels={key: value},
    )
    reap.append(idle)
    return label, burner, idle


@pytest.fixture
def prometheus_binary() -> str:
    path = shutil.which("prometheus")
    if path is None:
        pytest.fail("prometheus is missing; run scripts/setup.sh")
    return path


def start_prometheus(
    binary: str, directory: Path, target_port: int, port: int
) -> subprocess.Popen[bytes]:
    config = directory / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        "scrape_configs:\n  - job_name: hyperlane\n"
        f"    static_configs:\n      - targets: ['127.0.0.1:{target_port}']\n"
    )
    # The child keeps its own copy of the log's descriptor.
    with (directory / "prometheus.log").open("wb") as log:
        return subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={directory / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )


@pytest.fixture
def monitor_run(
    engine_name: str,
    containers: tuple[str, Container, Container],
    prometheus_binary: str,
    tmp_path: Path,
) -> Iterator[dict[str, Any]]:
    label, burner, idle = containers
    exporter_port = free_port()
    prometheus_port = free_port()
    recording = tmp_path / "run.jsonl.zst"
    monitor = subprocess.Popen(
        [
            HYPERLANE,
            "monitor",
            "--engine",
            engine_name,
            "--label",
            label,
            "--listen",
            f"127.0.0.1:{exporter_port}",
            "--interval",
            "0.5s",
            "--record",
            str(recording),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    prometheus = start_prometheus(
        prometheus_binary, tmp_path, exporter_port, prometheus_port
    )
    try:
        metrics_url = f"http://127.0.0.1:{exporter_port}/metrics"

        def both_exported() -> bool:
            with urllib.request.urlopen(metrics_url, timeout=2) as response:
                text = response.read().decode()
            return str(burner.name) in text and str(idle.name) in text

        wait_for(both_exported, 20, "the monitor to export both containers")

        def scraped_enough() -> bool:
            result = query(
                prometheus_port,
                f'count_over_time(container_last_seen{{name="{burner.name}"}}[1m])',
            )
            return bool(result) and float(result[0]["value"][1]) >= SCRAPE_SECONDS

        wait_for(scraped_enough, 30, "Prometheus to scrape the monitor")
        results = {
            "cpu_rate": query(
                prometheus_port,
                f'rate(container_cpu_usage_seconds_total{{name="{burner.name}"}}[5s])',
            ),
            "quota": query(
                prometheus_port, f'container_spec_cpu_quota{{name="{burner.name}"}}'
            ),
            "source": query(prometheus_port, "hyperlane_sample_source_info"),
        }
        monitor.send_signal(signal.SIGINT)
        stdout, stderr = monitor.communicate(timeout=20)
        for name in (burner.name, idle.name):
            selector = f'container_memory_working_set_bytes{{name="{name}"}}'
            results[f"max_ws_{name}"] = query(
                prometheus_port, f"max_over_time({selector}[1m])"
            )
            # The raw samples carry the monitor's own timestamps.
            results[f"raw_ws_{name}"] = query(prometheus_port, f"{selector}[1m]")
        yield {
            "engine_name": engine_name,
            "burner": burner,
            "idle": idle,
            "returncode": monitor.returncode,
            "stdout": stdout,
            "stderr": stderr,
            "recording": recording,
            **results,
        }
    finally:
        if monitor.poll() is None:
            monitor.kill()
            monitor.communicate()
        prometheus.terminate()
        try:
            prometheus.wait(timeout=20)
        except subprocess.TimeoutExpired:
            prometheus.kill()
            prometheus.wait()


def test_monitor_with_prometheus(monitor_run: dict[str, Any]) -> None:
    burner = monitor_run["burner"]
    idle = monitor_run["idle"]
    assert monitor_run["returncode"] == 0, monitor_run["stderr"]
    assert "interrupted" in monitor_run["stdout"]

    cpu_rate = monitor_run["cpu_rate"]
    assert len(cpu_rate) == 1, cpu_rate
    labels = cpu_rate[0]["metric"]
    assert labels["name"] == burner.name
    assert labels["image"] == "localhost/hyperlane-test-busybox:latest"
    assert burner.id in labels["id"]
    assert float(cpu_rate[0]["value"][1]) == pytest.approx(0.5, abs=0.1)
    assert float(monitor_run["quota"][0]["value"][1]) == 50_000
    sources = {
        item["metric"]["name"]: item["metric"]["source"]
        for item in monitor_run["source"]
    }
    assert sources[burner.name] in ("cgroup-v1", "cgroup-v2")
    assert sources[idle.name] == sources[burner.name]

    header, pairs = read_recording(monitor_run["recording"])
    assert header.engine["name"] == monitor_run["engine_name"]
    for container in (burner, idle):
        raw = monitor_run[f"raw_ws_{container.name}"]
        first_scraped = min(float(point[0]) for point in raw[0]["values"])
        # Readings taken before Prometheus first scraped (the container's start)
        # are in the recording only.
        readings = [
            sample.memory_working_set_bytes
            for recorded, sample in pairs
            if recorded.name == container.name
            and sample.memory_working_set_bytes is not None
            and header.unix_seconds(sample) >= first_scraped - 0.001
        ]
        assert len(readings) >= SCRAPE_SECONDS
        prometheus_max = monitor_run[f"max_ws_{container.name}"]
        assert len(prometheus_max) == 1, prometheus_max
        # Prometheus keeps about every second reading, so it may miss a peak.
        assert float(prometheus_max[0]["value"][1]) == pytest.approx(
            max(readings), rel=0.05
        )

    burner_samples = [s for c, s in pairs if c.name == burner.name]
    elapsed = burner_samples[-1].timestamp_seconds - burner_samples[0].timestamp_seconds
    used = (
        burner_samples[-1].cpu_usage_seconds_total
        - burner_samples[0].cpu_usage_seconds_total
    )
    assert used / elapsed == pytest.approx(0.5, abs=0.1)
