"""Bad input to the audit: one clear message, the documented exit code, nothing left.

Each case checks the message names the value and the fix, that the exit code is the
one in hyperlane.exitcodes, that no output directory appears, and that no container
the audit started is still there.
"""

from __future__ import annotations

import io
import signal
import subprocess
import tarfile
import time
from pathlib import Path

import docker
import pytest

from hyperlane.exitcodes import ExitCode
from tests.conftest import build_image
from tests.integration.cli import HYPERLANE, OWNER_LABEL, run_hyperlane

pytestmark = pytest.mark.integration

EXITING_CONTAINERFILE = """\
FROM {base}
EXPOSE 8080
CMD ["sh", "-c", "echo 'config file /etc/app.conf missing'; exit 3"]
"""


def _owned_containers(client: docker.DockerClient) -> list[str]:
    # The low-level list returns names without inspecting each container, which
    # would fail for one that the audit removes in the meantime.
    entries = client.api.containers(all=True, filters={"label": OWNER_LABEL})
    return [str(name).lstrip("/") for entry in entries for name in entry["Names"]]


def _assert_nothing_left(
    out_dir: Path, tmp_path: Path, client: docker.DockerClient
) -> None:
    """Assert that the failed audit left no output, staging files or containers."""
    assert not out_dir.exists()
    assert list(tmp_path.iterdir()) == []
    assert _owned_containers(client) == []


@pytest.fixture(scope="session")
def exiting_image(engine_client: docker.DockerClient, busybox_image: str) -> str:
    """An image whose command exits at once with code 3."""
    text = EXITING_CONTAINERFILE.format(base=busybox_image).encode()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        info = tarfile.TarInfo("Containerfile")
        info.size = len(text)
        archive.addfile(info, io.BytesIO(text))
    tag = "localhost/hyperlane-test-exits:latest"
    build_image(engine_client, tag, buffer.getvalue(), "Containerfile")
    return tag


def test_unknown_image(
    engine_name: str, engine_client: docker.DockerClient, tmp_path: Path
) -> None:
    out_dir = tmp_path / "report"
    result = run_hyperlane(
        "audit",
        "localhost/no-such-image:1",
        "--engine",
        engine_name,
        "--out",
        str(out_dir),
    )
    assert result.returncode == ExitCode.IMAGE_INVALID, result.stderr
    assert "'localhost/no-such-image:1' not found" in result.stderr
    assert "no registry is contacted" in result.stderr
    _assert_nothing_left(out_dir, tmp_path, engine_client)


def test_port_nothing_listens_on(
    engine_name: str, engine_client: docker.DockerClient, tmp_path: Path
) -> None:
    out_dir = tmp_path / "report"
    result = run_hyperlane(
        "audit",
        "--engine",
        engine_name,
        "--port",
        "9999",
        "--start-timeout",
        "3s",
        "--out",
        str(out_dir),
    )
    assert result.returncode == ExitCode.SERVICE_NOT_READY, result.stderr
    assert "no 2xx response on port 9999" in result.stderr
    assert "nothing answered" in result.stderr
    assert "--port" in result.stderr
    _assert_nothing_left(out_dir, tmp_path, engine_client)


def test_engine_not_running(tmp_path: Path) -> None:
    out_dir = tmp_path / "report"
    missing_socket = tmp_path / "no-engine.sock"
    result = run_hyperlane(
        "audit",
        "--engine",
        "docker",
        "--out",
        str(out_dir),
        env={"DOCKER_HOST": f"unix://{missing_socket}"},
    )
    assert result.returncode == ExitCode.ENGINE_UNAVAILABLE, result.stderr
    assert str(missing_socket) in result.stderr
    assert "Start dockerd" in result.stderr
    assert not out_dir.exists()


def test_container_exits_at_once(
    engine_name: str,
    engine_client: docker.DockerClient,
    exiting_image: str,
    tmp_path: Path,
) -> None:
    out_dir = tmp_path / "report"
    result = run_hyperlane(
        "audit",
        exiting_image,
        "--engine",
        engine_name,
        "--out",
        str(out_dir),
        "--start-timeout",
        "20s",
    )
    assert result.returncode == ExitCode.SERVICE_NOT_READY, result.stderr
    assert "exited with code 3" in result.stderr
    assert "config file /etc/app.conf missing" in result.stderr
    assert not out_dir.exists()
    assert _owned_containers(engine_client) == []


def _start_audit_until_load(
    engine_name: str, engine_client: docker.DockerClient, out_dir: Path
) -> tuple[subprocess.Popen[str], str]:
    """Start a 60 s audit; return it and its load container's name once that runs."""
    process = subprocess.Popen(
        [
            HYPERLANE,
            "audit",
            "--engine",
            engine_name,
            "--out",
            str(out_dir),
            "--duration",
            "60s",
            "--starts",
            "1",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        loads = [
            name for name in _owned_containers(engine_client) if name.endswith("-load")
        ]
        if loads:
            return process, loads[0]
        if process.poll() is not None:
            _, stderr = process.communicate()
            pytest.fail(f"the audit ended before its load: {stderr}")
        time.sleep(0.2)
    process.kill()
    process.communicate()
    pytest.fail("the audit never started its load container")


@pytest.mark.parametrize("signal_number", [signal.SIGINT, signal.SIGTERM])
def test_interrupt_removes_containers(
    engine_name: str,
    engine_client: docker.DockerClient,
    tmp_path: Path,
    signal_number: signal.Signals,
) -> None:
    out_dir = tmp_path / "report"
    process, _ = _start_audit_until_load(engine_name, engine_client, out_dir)
    try:
        time.sleep(1.0)
        # A second signal soon after the first must not cut the clean-up short.
        process.send_signal(signal_number)
        time.sleep(0.05)
        process.send_signal(signal_number)
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == ExitCode.INTERRUPTED, stderr
    assert "interrupted" in stderr
    _assert_nothing_left(out_dir, tmp_path, engine_client)


def test_load_container_removed(
    engine_name: str, engine_client: docker.DockerClient, tmp_path: Path
) -> None:
    out_dir = tmp_path / "report"
    process, load_name = _start_audit_until_load(engine_name, engine_client, out_dir)
    try:
        time.sleep(1.0)
        engine_client.containers.get(load_name).remove(force=True)
        stdout, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == ExitCode.SERVICE_NOT_READY, stderr
    assert "was removed during the load" in stderr
    assert stdout == ""
    _assert_nothing_left(out_dir, tmp_path, engine_client)


def test_load_without_success(
    engine_name: str, engine_client: docker.DockerClient, tmp_path: Path
) -> None:
    out_dir = tmp_path / "report"
    result = run_hyperlane(
        "audit",
        "--engine",
        engine_name,
        "--out",
        str(out_dir),
        "--starts",
        "1",
        "--duration",
        "1s",
        "--timeout",
        "1us",
    )
    assert result.returncode == ExitCode.SERVICE_NOT_READY, result.stderr
    assert "no request to http://127.0.0.1:" in result.stderr
    assert "timeout" in result.stderr
    _assert_nothing_left(out_dir, tmp_path, engine_client)


def test_start_deadline_enforced(
    engine_name: str, engine_client: docker.DockerClient, tmp_path: Path
) -> None:
    out_dir = tmp_path / "report"
    result = run_hyperlane(
        "audit",
        "--engine",
        engine_name,
        "--out",
        str(out_dir),
        "--start-timeout",
        "1us",
    )
    assert result.returncode == ExitCode.SERVICE_NOT_READY, result.stderr
    assert "within --start-timeout" in result.stderr
    assert not out_dir.exists()
    assert _owned_containers(engine_client) == []


def test_invalid_reference(engine_name: str, tmp_path: Path) -> None:
    result = run_hyperlane(
        "audit", "Bad Image!!", "--engine", engine_name, "--out", str(tmp_path / "r")
    )
    assert result.returncode == ExitCode.USAGE_ERROR, result.stderr
    assert "invalid image reference 'Bad Image!!'" in result.stderr


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        (("--duration", "3x"), "invalid value '3x' for --duration"),
        (("--connections", "0"), "invalid value '0' for --connections"),
        (("--engine", "kubernetes"), "invalid value 'kubernetes' for --engine"),
        (("--metrics-source", "proc"), "invalid value 'proc' for --metrics-source"),
        (("--workers", "0"), "invalid value '0' for --workers"),
        (("--path", "/a b"), "invalid value '/a b' for --path"),
        (("--memory-floor", "5Mi"), "invalid value '5Mi' for --memory-floor"),
    ],
    ids=[
        "duration",
        "connections",
        "engine",
        "metrics-source",
        "workers",
        "path",
        "memory-floor",
    ],
)
def test_invalid_flag(
    arguments: tuple[str, ...], expected: str, tmp_path: Path
) -> None:
    out_dir = tmp_path / "report"
    result = run_hyperlane("audit", "--out", str(out_dir), *arguments)
    assert result.returncode == ExitCode.USAGE_ERROR, result.stderr
    assert expected in result.stderr
    assert not out_dir.exists()


def test_occupied_output_directory(tmp_path: Path) -> None:
    out_dir = tmp_path / "mine"
    out_dir.mkdir()
    (out_dir / "notes.txt").write_text("keep me")
    result = run_hyperlane("audit", "--out", str(out_dir))
    assert result.returncode == ExitCode.USAGE_ERROR, result.stderr
    assert "is not empty" in result.stderr
    assert (out_dir / "notes.txt").read_text() == "keep me"


def test_image_without_a_command(
    engine_name: str,
    engine_client: docker.DockerClient,
    busybox_image: str,
    tmp_path: Path,
) -> None:
    # The busybox test image has neither CMD nor ENTRYPOINT.
    out_dir = tmp_path / "report"
    result = run_hyperlane(
        "audit",
        busybox_image,
        "--engine",
        engine_name,
        "--port",
        "8080",
        "--out",
        str(out_dir),
    )
    assert result.returncode == ExitCode.IMAGE_INVALID, result.stderr
    assert busybox_image in result.stderr
    assert "give the image a command (CMD or ENTRYPOINT)" in result.stderr
    _assert_nothing_left(out_dir, tmp_path, engine_client)
