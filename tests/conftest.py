"""Shared fixtures: real engine clients and small images built from busybox.

Integration tests talk to the Docker and Podman sockets that scripts/setup.sh starts.
Images are built once per test session from ``scratch`` and Debian's busybox-static,
because no registry can be reached from the test machines.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import tarfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import docker
import docker.errors
import pytest
from docker.models.containers import Container

from hyperlane.engines.engine import process_runs

ENGINE_SOCKETS = {
    "docker": "unix:///var/run/docker.sock",
    "podman": "unix:///run/podman/podman.sock",
}
BUSYBOX_PATH = Path("/bin/busybox")
# One empty file per running test session, named by its pid.
SESSIONS_DIRECTORY = Path("/tmp/hyperlane-test-sessions")
BUSYBOX_CONTAINERFILE = """\
FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
"""


def _busybox_context() -> bytes:
    """Return a gzip-free tar build context holding busybox and its Containerfile."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        archive.add(BUSYBOX_PATH, arcname="busybox")
        text = BUSYBOX_CONTAINERFILE.encode()
        info = tarfile.TarInfo("Containerfile")
        info.size = len(text)
        archive.addfile(info, io.BytesIO(text))
    return buffer.getvalue()


def build_image(
    client: docker.DockerClient, tag: str, context_tar: bytes, dockerfile: str
) -> str:
    """Build an image from an uncompressed tar context and return its id."""
    image, _ = client.images.build(
        fileobj=io.BytesIO(context_tar),
        custom_context=True,
        dockerfile=dockerfile,
        tag=tag,
        rm=True,
        forcerm=True,
    )
    assert image.id is not None
    return image.id


def _other_session_running() -> bool:
    """Register this test session and return whether another one is still running."""
    SESSIONS_DIRECTORY.mkdir(parents=True, exist_ok=True)
    (SESSIONS_DIRECTORY / str(os.getpid())).touch()
    for entry in SESSIONS_DIRECTORY.iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            os.kill(int(entry.name), 0)
        except ProcessLookupError:
            entry.unlink(missing_ok=True)
            continue
        except PermissionError:
            pass
        return True
    return False


def _remove_stale_containers(client: docker.DockerClient) -> None:
    """Remove containers that an earlier, killed test run left behind.

    Tests assert that no Hyperlane container exists after a command, so a leftover
    from another run would fail them for a reason unrelated to the code under test.
    While another test session runs on the same engines, its containers are not
    leftovers, so nothing is removed. Nor is a container whose creating command
    still runs, such as a user's audit on the same machine.
    """
    if _other_session_running():
        return
    stale = client.containers.list(
        all=True, filters={"label": "io.hyperlane.owner=hyperlane"}
    )
    for container in stale:
        if _creator_alive(container.labels.get("io.hyperlane.pid")):
            # A hyperlane command that still runs, a user's or a test's own.
            continue
        with contextlib.suppress(docker.errors.NotFound):
            container.remove(force=True)


def _creator_alive(pid_text: str | None) -> bool:
    """Return whether the process that a container's pid label names still runs."""
    return pid_text is not None and pid_text.isdigit() and process_runs(int(pid_text))


@pytest.fixture(scope="session", params=sorted(ENGINE_SOCKETS))
def engine_name(request: pytest.FixtureRequest) -> str:
    """Name of a real engine, once for Docker and once for Podman."""
    name: str = request.param
    return name


@pytest.fixture(scope="session")
def engine_client(engine_name: str) -> Iterator[docker.DockerClient]:
    """A Docker SDK client connected to the engine's socket."""
    client = docker.DockerClient(base_url=ENGINE_SOCKETS[engine_name], timeout=120)
    try:
        client.ping()
    except docker.errors.DockerException as error:
        pytest.fail(f"{engine_name} is not answering; run scripts/setup.sh: {error}")
    _remove_stale_containers(client)
    yield client
    client.close()
    (SESSIONS_DIRECTORY / str(os.getpid())).unlink(missing_ok=True)


@pytest.fixture(scope="session")
def busybox_image(engine_client: docker.DockerClient) -> str:
    """Tag of a busybox image built from scratch in the engine, once per session."""
    if shutil.which("busybox") is None and not BUSYBOX_PATH.exists():
        pytest.fail("busybox-static is missing; run scripts/setup.sh")
    tag = "localhost/hyperlane-test-busybox:latest"
    build_image(engine_client, tag, _busybox_context(), "Containerfile")
    return tag


@pytest.fixture
def reap(engine_client: docker.DockerClient) -> Iterator[list[Container]]:
    """A list that tests append containers to; each is removed when the test ends."""
    containers: list[Container] = []
    yield containers
    for container in containers:
        with contextlib.suppress(docker.errors.NotFound):
            container.remove(force=True)


def unique_name(prefix: str) -> str:
    """Return a container name that no other test run uses."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"
