"""Engine discovery without a running engine: candidate order and failures."""

from pathlib import Path

import pytest

from hyperlane.engines.connect import candidate_urls, connect
from hyperlane.errors import EngineUnavailable, UsageError


def test_auto_tries_docker_host_first() -> None:
    urls = candidate_urls("auto", {"DOCKER_HOST": "tcp://127.0.0.1:1"})
    assert urls[0] == "tcp://127.0.0.1:1"


def test_podman_uses_container_host() -> None:
    urls = candidate_urls("podman", {"CONTAINER_HOST": "unix:///tmp/p.sock"})
    assert urls == ["unix:///tmp/p.sock"]


def test_unknown_engine_rejected() -> None:
    with pytest.raises(UsageError, match="'containerd'"):
        candidate_urls("containerd", {})


def test_missing_socket_names_address(tmp_path: Path) -> None:
    socket = tmp_path / "absent.sock"
    with pytest.raises(EngineUnavailable) as caught:
        connect("docker", {"DOCKER_HOST": f"unix://{socket}"})
    assert str(socket) in str(caught.value)
    assert "Start dockerd" in str(caught.value)
