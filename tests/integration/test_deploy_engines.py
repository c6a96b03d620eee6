"""Deploy files run by the engines' own tools: `podman kube play` and docker-compose.

Each test builds a busybox httpd image in the engine it needs, starts the generated
file and reads the limits in force with inspect. Podman's kube play needs the image
in Podman's own store under the name that kubernetes.yaml gives.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import socket
import subprocess
import tarfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import docker.errors
import pytest

from hyperlane.report.deploy import write_deploy_files
from hyperlane.sizing import Recommendation, recommend
from tests.conftest import BUSYBOX_PATH, ENGINE_SOCKETS, build_image, unique_name

pytestmark = pytest.mark.integration

MIB = 2**20
COMMAND_TIMEOUT_SECONDS = 120
HTTP_WAIT_SECONDS = 15
PAGE = b"deploy-ok\n"


@pytest.fixture
def recommendation() -> Recommendation:
    # p95 of 100 samples at 137m is 137m, and peak 120 MiB * 1.15 = 138 MiB.
    return recommend([0.137] * 100, [120 * MIB] * 100, 120.0)


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that no socket is bound to at this moment."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def httpd_context(port: int) -> bytes:
    """Return a tar build context of a busybox image whose httpd serves PAGE."""
    containerfile = (
        "FROM scratch\n"
        "COPY busybox /bin/busybox\n"
        'RUN ["/bin/busybox", "--install", "-s", "/bin"]\n'
        "COPY index.html /www/index.html\n"
        f'CMD ["httpd", "-f", "-p", "{port}", "-h", "/www"]\n'
    )
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        archive.add(BUSYBOX_PATH, arcname="busybox")
        for name, data in [
            ("Containerfile", containerfile.encode()),
            ("index.html", PAGE),
        ]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@contextlib.contextmanager
def httpd_image(engine: str, port: int) -> Iterator[str]:
    """Build the httpd image in one engine, yield its tag and remove it afterwards."""
    client = docker.DockerClient(base_url=ENGINE_SOCKETS[engine], timeout=120)
    tag = f"localhost/{unique_name('hyperlane-deploy')}:1"
    try:
        build_image(client, tag, httpd_context(port), "Containerfile")
        yield tag
    finally:
        with contextlib.suppress(docker.errors.ImageNotFound):
            client.images.remove(tag, force=True)
        client.close()


def run_tool(arguments: list[str], **environment: str) -> str:
    """Run a command line tool, fail the test with its stderr, and return stdout."""
    result = subprocess.run(
        arguments,
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_SECONDS,
        check=False,
        env={**os.environ, **environment},
    )
    assert result.returncode == 0, f"{arguments} failed: {result.stderr}"
    return result.stdout


def inspect_podman(container_id: str) -> dict[str, Any]:
    output = run_tool(["podman", "inspect", container_id])
    [document] = json.loads(output)
    assert isinstance(document, dict)
    return document


def wait_for_page(url: str) -> bytes:
    deadline = time.monotonic() + HTTP_WAIT_SECONDS
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                body: bytes = response.read()
                return body
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


# podman kube play


def test_kube_play_applies_limits(
    tmp_path: Path, recommendation: Recommendation
) -> None:
    if shutil.which("podman") is None:
        pytest.fail("podman is missing; run scripts/setup.sh")
    port = free_port()
    name = unique_name("hl-kube")
    with httpd_image("podman", port) as tag:
        write_deploy_files(
            tmp_path,
            tag,
            port,
            recommendation,
            name=name,
            probe_path="/index.html",
            cpu_limit_millicores=500,
        )
        kubernetes = tmp_path / "kubernetes.yaml"
        try:
            output = run_tool(["podman", "kube", "play", str(kubernetes)])
            # kube play prints "Pod:" and "Container:", each followed by ids.
            lines = output.split()
            container_id = lines[lines.index("Container:") + 1]
            document = inspect_podman(container_id)
            page = run_tool(
                [
                    "podman",
                    "exec",
                    container_id,
                    "wget",
                    "-q",
                    "-O",
                    "-",
                    f"http://127.0.0.1:{port}/",
                ]
            )
        finally:
            run_tool(["podman", "kube", "down", str(kubernetes)])

    host_config = document["HostConfig"]
    assert document["State"]["Status"] == "running"
    assert page.encode() == PAGE
    # 500m is a quota of half of each CFS period.
    assert host_config["CpuPeriod"] > 0
    assert host_config["CpuQuota"] * 1000 // host_config["CpuPeriod"] == 500
    assert host_config["Memory"] == 138 * MIB
    assert host_config["MemoryReservation"] == 138 * MIB
    # Podman 4.3 turns the liveness probe into a healthcheck, which it runs from
    # systemd timers. This machine has no systemd, so only the definition is
    # checked, not a probe result.
    healthcheck = document["Config"]["Healthcheck"]
    assert f"http://localhost:{port}/index.html" in healthcheck["Test"]
    assert healthcheck["Interval"] == 10 * 10**9


def test_kube_down_removes_pod(tmp_path: Path, recommendation: Recommendation) -> None:
    name = unique_name("hl-kube")
    with httpd_image("podman", free_port()) as tag:
        write_deploy_files(tmp_path, tag, None, recommendation, name=name)
        kubernetes = tmp_path / "kubernetes.yaml"
        try:
            run_tool(["podman", "kube", "play", str(kubernetes)])
        finally:
            run_tool(["podman", "kube", "down", str(kubernetes)])
        pods = run_tool(["podman", "pod", "ps", "--format", "{{.Name}}"])
    assert not [pod for pod in pods.split() if pod.startswith(name)]


# docker-compose 1.29 on Docker


@pytest.fixture(scope="module")
def docker_compose() -> str:
    path = shutil.which("docker-compose")
    if path is None:
        pytest.fail(
            "docker-compose is missing; run scripts/setup.sh, which installs "
            "Debian's docker-compose package"
        )
    return path


@pytest.mark.parametrize(
    ("cpu_limit_millicores", "nano_cpus"), [(2000, 2_000_000_000), (None, 0)]
)
def test_compose_applies_limits(
    tmp_path: Path,
    recommendation: Recommendation,
    docker_compose: str,
    cpu_limit_millicores: int | None,
    nano_cpus: int,
) -> None:
    port = free_port()
    project = unique_name("hlcompose").replace("-", "")
    client = docker.DockerClient(base_url=ENGINE_SOCKETS["docker"], timeout=120)
    compose = [docker_compose, "--project-name", project, "--file"]
    host = {"DOCKER_HOST": ENGINE_SOCKETS["docker"]}
    with httpd_image("docker", port) as tag:
        write_deploy_files(
            tmp_path,
            tag,
            port,
            recommendation,
            name="web",
            cpu_limit_millicores=cpu_limit_millicores,
        )
        compose.append(str(tmp_path / "compose.yaml"))
        try:
            run_tool([*compose, "up", "--detach"], **host)
            containers = client.containers.list(
                all=True, filters={"label": f"com.docker.compose.project={project}"}
            )
            assert len(containers) == 1
            host_config = containers[0].attrs["HostConfig"]
            page = wait_for_page(f"http://127.0.0.1:{port}/")
        finally:
            run_tool([*compose, "down", "--remove-orphans"], **host)
            left = client.containers.list(
                all=True, filters={"label": f"com.docker.compose.project={project}"}
            )
            client.close()

    assert page == PAGE
    assert left == []
    assert host_config["NanoCpus"] == nano_cpus
    assert host_config["Memory"] == 138 * MIB
    assert host_config["MemoryReservation"] == 138 * MIB
    # round(1024 * 0.137) = 140.
    assert host_config["CpuShares"] == 140
    bindings = host_config["PortBindings"][f"{port}/tcp"]
    assert bindings == [{"HostIp": "127.0.0.1", "HostPort": str(port)}]
