"""`hyperlane top --once --json` against a CPU burner and an idle container.

On each engine a busybox busy loop runs under a 0.5 CPU quota next to an idle
`sleep`. The command runs as a subprocess, as a script would run it, filtered to
the two containers by a label unique to the test.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

import docker
import pytest
from docker.models.containers import Container

from tests.conftest import unique_name
from tests.integration.cli import run_hyperlane

pytestmark = pytest.mark.integration

QUOTA_CORES = 0.5
CORES_TOLERANCE = 0.1
IDLE_MAX_CORES = 0.02
BUSY_LOOP = ["sh", "-c", "while :; do :; done"]
TOP_TIMEOUT_SECONDS = 60
WARM_UP_SECONDS = 1.0


@dataclass(frozen=True)
class Pair:
    """Names and ids of the burner and the idle container."""

    burner_name: str
    burner_id: str
    idle_name: str


def start_pair(
    engine_client: docker.DockerClient,
    image: str,
    label: str,
    reap: list[Container],
) -> Pair:
    """Start the burner and the idle container with the test's label."""
    key, value = label.split("=", 1)
    burner_name = unique_name("hl-top-burn")
    burner = engine_client.containers.run(
        image,
        BUSY_LOOP,
        detach=True,
        name=burner_name,
        nano_cpus=int(QUOTA_CORES * 1e9),
        labels={key: value},
    )
    reap.append(burner)
    idle_name = unique_name("hl-top-idle")
    idle = engine_client.containers.run(
        image, ["sleep", "300"], detach=True, name=idle_name, labels={key: value}
    )
    reap.append(idle)
    # The busy loop runs for a moment before the first sample, so that the start
    # of the shell does not fall into the measured interval.
    time.sleep(WARM_UP_SECONDS)
    return Pair(burner_name=burner_name, burner_id=str(burner.id), idle_name=idle_name)


def run_top_json(engine_name: str, label: str, *extra: str) -> dict[str, Any]:
    result = run_hyperlane(
        "top",
        "--once",
        "--json",
        "--interval",
        "1s",
        "--engine",
        engine_name,
        "--label",
        label,
        *extra,
        timeout_seconds=TOP_TIMEOUT_SECONDS,
    )
    assert result.returncode == 0, result.stderr
    document: dict[str, Any] = json.loads(result.stdout)
    return document


def by_name(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {item["name"]: item for item in document["containers"]}


def test_top_once_json_cgroup(
    engine_name: str,
    engine_client: docker.DockerClient,
    busybox_image: str,
    reap: list[Container],
) -> None:
    label = f"io.hyperlane.test=top-{uuid.uuid4().hex[:10]}"
    pair = start_pair(engine_client, busybox_image, label, reap)

    document = run_top_json(engine_name, label)

    assert document["kind"] == "top"
    assert document["schema_version"]
    assert document["engine"]["name"] == engine_name
    assert document["interval_seconds"] == 1.0
    rows = by_name(document)
    assert sorted(rows) == sorted([pair.burner_name, pair.idle_name])

    burn = rows[pair.burner_name]
    assert burn["image"] == busybox_image
    assert burn["container_id"] == pair.burner_id
    # The engine runs on this host, so auto reads the cgroup files.
    assert burn["source"] in ("cgroup-v1", "cgroup-v2")
    assert burn["interval_seconds"] == pytest.approx(1.0, abs=0.2)
    assert burn["cpu_cores"] == pytest.approx(QUOTA_CORES, abs=CORES_TOLERANCE)
    assert burn["cpu_limit_cores"] == pytest.approx(QUOTA_CORES)
    assert burn["cpu_limit_percent"] == pytest.approx(100.0, abs=20.0)
    assert burn["cpu_cfs_throttled_periods_percent"] > 0
    assert burn["memory_working_set_bytes"] > 0
    assert burn["memory_limit_bytes"] is None
    assert burn["pids"] >= 1

    quiet = rows[pair.idle_name]
    assert quiet["image"] == busybox_image
    assert quiet["source"] == burn["source"]
    assert quiet["cpu_cores"] is not None
    assert quiet["cpu_cores"] < IDLE_MAX_CORES
    assert quiet["cpu_limit_cores"] is None
    assert quiet["cpu_limit_percent"] is None
    assert quiet["cpu_cfs_throttled_periods_percent"] is None
    # The busy loop comes first under the default CPU order.
    assert [item["name"] for item in document["containers"]] == [
        pair.burner_name,
        pair.idle_name,
    ]


def test_top_once_json_api(
    engine_name: str,
    engine_client: docker.DockerClient,
    busybox_image: str,
    reap: list[Container],
) -> None:
    label = f"io.hyperlane.test=top-{uuid.uuid4().hex[:10]}"
    pair = start_pair(engine_client, busybox_image, label, reap)

    document = run_top_json(engine_name, label, "--metrics-source", "api")

    rows = by_name(document)
    assert sorted(rows) == sorted([pair.burner_name, pair.idle_name])
    burn = rows[pair.burner_name]
    assert burn["source"] == "api"
    assert burn["image"] == busybox_image
    # Docker responds to a stats request at the next tick of its 1 s collector,
    # so the second read can end up to one more second later. A full test run
    # keeps both cores busy beside the busy loop, and one such run measured
    # 3.01 s, a collector tick missed once more.
    assert burn["interval_seconds"] >= 0.8
    assert burn["interval_seconds"] <= 3.6
    # The reader stamps each sample with the engine's own reading time, so the
    # late reading of Docker's collector does not skew the rate.
    assert burn["cpu_cores"] == pytest.approx(QUOTA_CORES, abs=CORES_TOLERANCE)
    if engine_name == "docker":
        assert burn["cpu_cfs_throttled_periods_percent"] > 0
    else:
        # Podman 4.3 returns zeros in throttling_data, which the reader drops.
        assert burn["cpu_cfs_throttled_periods_percent"] is None
    quiet = rows[pair.idle_name]
    assert quiet["source"] == "api"
    assert quiet["cpu_cores"] < IDLE_MAX_CORES


def test_top_plain_output_no_ansi(
    engine_name: str,
    engine_client: docker.DockerClient,
    busybox_image: str,
    reap: list[Container],
) -> None:
    label = f"io.hyperlane.test=top-{uuid.uuid4().hex[:10]}"
    pair = start_pair(engine_client, busybox_image, label, reap)

    result = run_hyperlane(
        "top",
        "--once",
        "--interval",
        "0.5s",
        "--engine",
        engine_name,
        "--label",
        label,
        timeout_seconds=TOP_TIMEOUT_SECONDS,
    )

    assert result.returncode == 0, result.stderr
    assert "\x1b[" not in result.stdout
    lines = result.stdout.splitlines()
    assert lines[1].startswith("NAME")
    assert any(line.startswith(pair.burner_name) for line in lines)
    assert any(line.startswith(pair.idle_name) for line in lines)
