"""``hyperlane image`` on an engine reference and on that image's saved archive."""

from __future__ import annotations

import json
from pathlib import Path

import docker
import pytest

from hyperlane.exitcodes import ExitCode
from tests.integration.cli import run_hyperlane

pytestmark = pytest.mark.integration


def test_engine_and_archive_agree(
    engine_name: str,
    engine_client: docker.DockerClient,
    busybox_image: str,
    tmp_path: Path,
) -> None:
    archive = tmp_path / "busybox.tar"
    with archive.open("wb") as output:
        for chunk in engine_client.images.get(busybox_image).save(named=True):
            output.write(chunk)

    from_engine = run_hyperlane(
        "image", f"engine:{busybox_image}", "--engine", engine_name, "--json"
    )
    from_archive = run_hyperlane("image", f"docker-archive:{archive}", "--json")
    detected = run_hyperlane("image", str(archive), "--json")

    assert from_engine.returncode == 0, from_engine.stderr
    assert from_archive.returncode == 0, from_archive.stderr
    assert detected.returncode == 0, detected.stderr
    engine_image = json.loads(from_engine.stdout)["image"]
    archive_image = json.loads(from_archive.stdout)["image"]
    assert json.loads(detected.stdout)["source"]["kind"] == "docker-archive"
    for key in ("total_size_bytes", "visible_bytes", "hidden_bytes", "files_total"):
        assert engine_image[key] == archive_image[key], key
    assert json.loads(from_engine.stdout)["engine"]["name"] == engine_name


def test_missing_archive(tmp_path: Path) -> None:
    missing = tmp_path / "absent.tar"
    result = run_hyperlane("image", f"docker-archive:{missing}")
    assert result.returncode in (ExitCode.IMAGE_INVALID, ExitCode.USAGE_ERROR)
    assert str(missing) in result.stderr


def test_unknown_engine_image(engine_name: str) -> None:
    result = run_hyperlane(
        "image", "engine:localhost/no-such-image:2", "--engine", engine_name
    )
    assert result.returncode == ExitCode.IMAGE_INVALID, result.stderr
    assert "'localhost/no-such-image:2' not found" in result.stderr
