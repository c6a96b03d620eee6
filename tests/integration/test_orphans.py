"""Containers of killed hyperlane commands are removed, and a live command's kept."""

from __future__ import annotations

import os
import subprocess
from typing import Any

import docker
import docker.errors
from docker.models.containers import Container

from hyperlane.engines import connect
from hyperlane.engines.engine import CONTAINER_LABEL, PROCESS_LABEL
from tests.conftest import unique_name


def _dead_pid() -> int:
    """Return the id of a process that has exited and been reaped."""
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def _labelled(
    client: docker.DockerClient, image: str, reap: list[Container], pid: str
) -> Container:
    labels: dict[str, Any] = {CONTAINER_LABEL: "hyperlane", PROCESS_LABEL: pid}
    container = client.containers.create(
        image, ["sleep", "60"], name=unique_name("hl-orphan"), labels=labels
    )
    reap.append(container)
    return container


def _exists(client: docker.DockerClient, container: Container) -> bool:
    try:
        client.containers.get(str(container.id))
    except docker.errors.NotFound:
        return False
    return True


def test_remove_orphans_keeps_live_creators(
    engine_name: str,
    engine_client: docker.DockerClient,
    busybox_image: str,
    reap: list[Container],
) -> None:
    orphan = _labelled(engine_client, busybox_image, reap, str(_dead_pid()))
    live = _labelled(engine_client, busybox_image, reap, str(os.getpid()))
    unlabelled = _labelled(engine_client, busybox_image, reap, "")

    engine = connect(engine_name)
    try:
        removed = engine.remove_orphans()
    finally:
        engine.close()

    assert removed >= 1
    assert not _exists(engine_client, orphan)
    assert _exists(engine_client, live)
    assert _exists(engine_client, unlabelled)
