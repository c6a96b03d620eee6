"""The SLO search on a real container whose CPU need is known.

The burner image's server spins for 2 ms of CPU per request, so at 100 requests/s
it needs 0.2 cores plus what parsing costs. The search runs on the Docker Engine
only: each search takes about a minute of trials, and the cgroup readers and
limits it uses are the same that the Podman tests of the metrics cover.
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import docker.errors
import pytest

from tests.conftest import ENGINE_SOCKETS, unique_name
from tests.integration.cli import OWNER_LABEL, run_hyperlane
from tests.integration.sizing.images import (
    BURN_SECONDS,
    SERVER_PORT,
    burner_image,
    python_rootfs,
)

RATE_PER_SECOND = 100.0
NEED_CORES = BURN_SECONDS * RATE_PER_SECOND
LATENCY_TARGET_SECONDS = 0.025
SEARCH_FLAGS = (
    "--strategy",
    "slo",
    "--engine",
    "docker",
    "--slo-rate",
    f"{RATE_PER_SECOND:g}",
    "--slo-latency",
    "25ms",
    "--slo-trial-duration",
    "6s",
    "--slo-warmup",
    "1s",
)


@pytest.fixture(scope="module")
def docker_client() -> Iterator[docker.DockerClient]:
    client = docker.DockerClient(base_url=ENGINE_SOCKETS["docker"], timeout=120)
    try:
        client.ping()
    except docker.errors.DockerException as error:
        pytest.fail(f"docker is not answering; run scripts/setup.sh: {error}")
    yield client
    client.close()


@pytest.fixture(scope="module")
def burner(docker_client: docker.DockerClient) -> str:
    return burner_image(docker_client, python_rootfs())


@pytest.fixture(scope="module")
def search(burner: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The JSON document and deploy directory of one search, shared by the tests."""
    out = tmp_path_factory.mktemp("slo") / "deploy"
    finished = run_hyperlane(
        "rightsize",
        *SEARCH_FLAGS,
        "--image",
        burner,
        "--out",
        str(out),
        "--json",
        timeout_seconds=600,
    )
    assert finished.returncode == 0, finished.stderr[-3000:]
    document: dict[str, Any] = json.loads(finished.stdout)
    document["_out"] = str(out)
    return document


def _containers_left(client: docker.DockerClient, name_part: str) -> list[str]:
    return [
        str(container.name)
        for container in client.containers.list(
            all=True, filters={"label": OWNER_LABEL}
        )
        if name_part in str(container.name)
    ]


def test_slo_limit_near_known_need(
    search: dict[str, Any], docker_client: docker.DockerClient
) -> None:
    slo = search["slo"]
    assert slo["status"] == "ok"
    baseline = slo["trials"][0]
    assert baseline["purpose"] == "baseline"
    assert baseline["passed"]
    # The server burns what it should: the baseline's cgroup CPU is the need.
    used = baseline["measurement"]["cpu_used_cores"]
    assert NEED_CORES * 0.95 <= used <= NEED_CORES * 1.2

    passing = slo["cpu_passing_cores"]
    assert NEED_CORES * 0.8 <= passing <= NEED_CORES * 1.2
    failing = slo["cpu_failing_cores"]
    assert failing is not None
    assert failing < passing
    # Every search trial below the need failed; the recommendation adds the
    # stated margin to the smallest passing limit.
    for trial in slo["trials"]:
        if trial["purpose"] == "search" and trial["limits"]["cpu_cores"] < NEED_CORES:
            assert not trial["passed"], trial["reason"]
    assert slo["cpu_limit_millicores"] >= round(passing * 1000)
    assert slo["cpu_limit_cores"] <= passing * 1.1 + 0.01 + 1e-9 or any(
        trial["purpose"] == "verify" and not trial["passed"] for trial in slo["trials"]
    )
    verify = slo["trials"][-1]
    assert verify["purpose"] == "verify"
    assert verify["passed"]
    assert verify["limits"]["memory_bytes"] == slo["memory_limit_bytes"]
    assert _containers_left(docker_client, "hyperlane-slo-") == []


def test_slo_deploy_files_carry_limits(search: dict[str, Any]) -> None:
    out = Path(search["_out"]) / "deploy"
    names = sorted(path.name for path in out.iterdir())
    assert "docker-run.sh" in names
    assert "kubernetes.yaml" in names
    report = json.loads((out.parent / "report.json").read_text())
    assert report["slo"] == search["slo"]
    assert report["deploy"]["files"][0].startswith("deploy/")
    millicores = search["slo"]["cpu_limit_millicores"]
    script = (out / "docker-run.sh").read_text()
    assert f"--cpus {millicores / 1000:g}" in script
    kubernetes = (out / "kubernetes.yaml").read_text()
    assert f"cpu: {millicores}m" in kubernetes


def _wait_ready(url: str, deadline_seconds: float) -> None:
    while True:
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            if time.monotonic() > deadline_seconds:
                raise
        time.sleep(0.1)


def test_slo_holds_on_rerun_under_limits(
    search: dict[str, Any],
    burner: str,
    docker_client: docker.DockerClient,
) -> None:
    nano_cpus = search["slo"]["cpu_limit_millicores"] * 1_000_000
    memory_bytes = search["slo"]["memory_limit_bytes"]
    # The engine picks the host port, so that parallel sessions do not collide.
    options: dict[str, Any] = {
        "name": unique_name("hyperlane-test-slo-rerun"),
        "labels": {"io.hyperlane.owner": "hyperlane"},
        "nano_cpus": nano_cpus,
        "mem_limit": memory_bytes,
        "ports": {f"{SERVER_PORT}/tcp": ("127.0.0.1", None)},
    }
    container = docker_client.containers.run(burner, detach=True, **options)
    try:
        container.reload()
        assert container.attrs["HostConfig"]["NanoCpus"] == nano_cpus
        assert container.attrs["HostConfig"]["Memory"] == memory_bytes
        port = container.attrs["NetworkSettings"]["Ports"][f"{SERVER_PORT}/tcp"][0][
            "HostPort"
        ]
        url = f"http://127.0.0.1:{port}/"
        _wait_ready(url, time.monotonic() + 30)

        finished = run_hyperlane(
            "load",
            url,
            "--rate",
            f"{RATE_PER_SECOND:g}",
            "--duration",
            "8s",
            "--connections",
            "32",
            "--json",
        )
        assert finished.returncode == 0, finished.stderr[-2000:]
        result = json.loads(finished.stdout)["load"]
        assert result["model"] == "open"
        assert result["latency"]["p99_seconds"] <= LATENCY_TARGET_SECONDS
        assert result["errors_total"] == 0
        assert result["requests_total"] >= RATE_PER_SECOND * 8 * 0.95
        container.reload()
        assert container.attrs["State"]["OOMKilled"] is False
    finally:
        container.remove(force=True)


def test_slo_unmet_exits_3_writes_nothing(
    burner: str, tmp_path: Path, docker_client: docker.DockerClient
) -> None:
    out = tmp_path / "deploy"
    finished = run_hyperlane(
        "rightsize",
        *SEARCH_FLAGS,
        "--slo-cpu-max",
        "100m",
        "--image",
        burner,
        "--out",
        str(out),
        "--json",
        timeout_seconds=120,
    )
    assert finished.returncode == 3, finished.stderr[-2000:]
    document = json.loads(finished.stdout)
    assert document["slo"]["status"] == "slo_not_met"
    assert len(document["slo"]["trials"]) == 1
    assert document["recommendation"] is None
    assert "not met even at the largest CPU limit 0.1 cores" in finished.stderr
    assert not out.exists()
    assert _containers_left(docker_client, "hyperlane-slo-") == []


def test_slo_bad_input_exit_codes(burner: str) -> None:
    missing_rate = run_hyperlane(
        "rightsize", "--strategy", "slo", "--engine", "docker", "--image", burner
    )
    assert missing_rate.returncode == 2
    assert "--slo-rate" in missing_rate.stderr

    missing_image = run_hyperlane(
        "rightsize", *SEARCH_FLAGS, "--image", "localhost/hyperlane-no-such:1"
    )
    assert missing_image.returncode == 5
    assert "localhost/hyperlane-no-such:1" in missing_image.stderr

    no_image = run_hyperlane("rightsize", *SEARCH_FLAGS)
    assert no_image.returncode == 2
    assert "--image" in no_image.stderr
