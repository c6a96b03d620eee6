"""`hyperlane monitor` while containers start, stop and restart, on both engines.

Each test runs the monitor as a subprocess, as a user would, and reads its
/metrics page and its recording.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import docker
import pytest
from docker.models.containers import Container
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample as PrometheusSample

from hyperlane.metrics.recording import read_recording
from tests.conftest import unique_name
from tests.integration.cli import HYPERLANE
from tests.integration.monitor.waiting import free_port, wait_for

pytestmark = pytest.mark.integration

# The first run fills /dev/shm (tmpfs, charged to the memory cgroup) past the
# 16 MiB limit, so the kernel OOM-kills dd. The run frees the file, stays up for
# 2 s and exits 1, so the restart policy starts a second run, which finds the
# marker in the container's writable layer and sleeps.
OOM_SCRIPT = (
    "if [ -e /oom-marker ]; then exec sleep 3600; fi; "
    "touch /oom-marker; sleep 1; "
    "dd if=/dev/zero of=/dev/shm/fill bs=1M count=64; "
    "rm -f /dev/shm/fill; sleep 2; exit 1"
)
MEMORY_LIMIT_BYTES = 16 * 2**20


def scrape(url: str) -> dict[str, list[PrometheusSample]]:
    with urllib.request.urlopen(url, timeout=2) as response:
        text = response.read().decode()
    return {
        family.name: list(family.samples)
        for family in text_string_to_metric_families(text)
    }


def values(url: str, family: str, name: str) -> list[float]:
    return [
        sample.value
        for sample in scrape(url).get(family, [])
        if sample.labels.get("name") == name
    ]


@contextmanager
def monitor(
    engine_name: str, label: str, listen: str, *options: str
) -> Iterator[subprocess.Popen[str]]:
    """Run hyperlane monitor until the block ends, then stop it with SIGINT."""
    process = subprocess.Popen(
        [
            HYPERLANE,
            "monitor",
            "--engine",
            engine_name,
            "--label",
            label,
            "--listen",
            listen,
            "--interval",
            "0.2s",
            *options,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        yield process
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=30)
        assert process.returncode == 0, stderr
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()


@pytest.fixture
def label() -> str:
    return f"io.hyperlane.test-edges={uuid.uuid4().hex[:10]}"


def run_sleeper(
    client: docker.DockerClient, image: str, label: str, prefix: str
) -> Container:
    key, value = label.split("=")
    container: Container = client.containers.run(
        image,
        ["sleep", "3600"],
        name=unique_name(prefix),
        detach=True,
        labels={key: value},
    )
    return container


def test_monitor_late_start_and_stop(
    engine_name: str,
    engine_client: docker.DockerClient,
    busybox_image: str,
    reap: list[Container],
    label: str,
    tmp_path: Path,
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}/metrics"
    recording = tmp_path / "run.jsonl"
    early = run_sleeper(engine_client, busybox_image, label, "hl-edges-early")
    reap.append(early)
    with monitor(engine_name, label, f"127.0.0.1:{port}", "--record", str(recording)):
        wait_for(
            lambda: bool(values(url, "container_last_seen", str(early.name))),
            20,
            "the monitor to export the container started before it",
        )
        late = run_sleeper(engine_client, busybox_image, label, "hl-edges-late")
        reap.append(late)
        wait_for(
            lambda: bool(values(url, "container_last_seen", str(late.name))),
            10,
            "the next refresh to export the container started after the monitor",
        )
        early.stop(timeout=0)
        wait_for(
            lambda: not values(url, "container_last_seen", str(early.name)),
            10,
            "the stopped container to leave /metrics",
        )
        assert values(url, "container_last_seen", str(late.name))
    header, pairs = read_recording(recording)
    names = [container.name for container, _ in pairs]
    assert header.schema_version == "1.1"
    assert names.count(str(early.name)) >= 2
    assert names.count(str(late.name)) >= 2


def test_monitor_api_source_on_ipv6(
    engine_name: str,
    engine_client: docker.DockerClient,
    busybox_image: str,
    reap: list[Container],
    label: str,
) -> None:
    if not socket.has_ipv6:
        pytest.skip("Python was built without IPv6")
    try:
        port = free_port(socket.AF_INET6)
    except OSError as error:
        pytest.skip(f"IPv6 loopback ::1 is unavailable: {error}")
    url = f"http://[::1]:{port}/metrics"
    container = run_sleeper(engine_client, busybox_image, label, "hl-edges-api")
    reap.append(container)
    with monitor(engine_name, label, f"[::1]:{port}", "--metrics-source", "api"):

        def exported() -> bool:
            return bool(
                values(url, "hyperlane_sample_source_info", str(container.name))
            )

        wait_for(exported, 20, "the monitor to serve /metrics on [::1]")
        sources = [
            sample.labels["source"]
            for sample in scrape(url)["hyperlane_sample_source_info"]
            if sample.labels.get("name") == container.name
        ]
        assert sources == ["api"]
        assert values(url, "container_cpu_usage_seconds", str(container.name))


def test_monitor_oom_kill_survives_restart(
    engine_name: str,
    engine_client: docker.DockerClient,
    busybox_image: str,
    reap: list[Container],
    label: str,
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}/metrics"
    key, value = label.split("=")
    name = unique_name("hl-edges-oom")
    with monitor(engine_name, label, f"127.0.0.1:{port}"):
        container: Container = engine_client.containers.run(
            busybox_image,
            ["sh", "-c", OOM_SCRIPT],
            name=name,
            detach=True,
            labels={key: value},
            mem_limit=MEMORY_LIMIT_BYTES,
            memswap_limit=MEMORY_LIMIT_BYTES,
            shm_size="64m",
            restart_policy={"Name": "on-failure", "MaximumRetryCount": 2},
        )
        reap.append(container)
        wait_for(
            lambda: bool(values(url, "container_last_seen", name)),
            20,
            "the monitor to export the first run",
        )

        def restarted() -> bool:
            container.reload()
            return bool(container.attrs["RestartCount"] >= 1) and bool(
                container.attrs["State"]["Running"]
            )

        wait_for(restarted, 30, "the restart policy to start the second run")

        def second_run_sampled() -> bool:
            # The monitor reopens the reader for the new pid at a refresh, and
            # until then serves the first run's snapshot with the new total.
            counts = values(url, "container_oom_events", name)
            return bool(counts) and counts[0] >= 1

        wait_for(second_run_sampled, 10, "container_oom_events_total >= 1")
        time.sleep(1)
        counts = values(url, "container_oom_events", name)
        container.reload()
    # The second run sleeps, so the total read above is the one after the restart.
    assert container.attrs["RestartCount"] == 1
    assert container.attrs["State"]["Running"] is True
    assert len(counts) == 1
    assert counts[0] >= 1
