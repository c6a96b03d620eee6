"""Parsing of image source arguments."""

from __future__ import annotations

from pathlib import Path

import pytest

from hyperlane.errors import UsageError
from hyperlane.images import ImageSource, parse_source
from tests.unit.images.builders import (
    docker_archive_members,
    file,
    layer_tar,
    oci_archive_members,
    write_directory,
    write_tar,
)

LAYER = layer_tar([file("a", b"a")])


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("docker-archive:/tmp/x.tar", ImageSource("docker-archive", "/tmp/x.tar")),
        ("oci-archive:x.tar", ImageSource("oci-archive", "x.tar")),
        ("oci:/srv/layout", ImageSource("oci", "/srv/layout")),
        ("engine:busybox:1.36", ImageSource("engine", "busybox:1.36")),
        ("busybox", ImageSource("engine", "busybox")),
        ("busybox:latest", ImageSource("engine", "busybox:latest")),
        (
            "localhost:5000/team/app:v1",
            ImageSource("engine", "localhost:5000/team/app:v1"),
        ),
        (
            "app@sha256:" + "a" * 64,
            ImageSource("engine", "app@sha256:" + "a" * 64),
        ),
    ],
)
def test_parse_prefixes(text: str, expected: ImageSource) -> None:
    assert parse_source(text) == expected


@pytest.mark.parametrize("text", ["docker://busybox", "dir:/tmp/x", "tarball:/a/b.tar"])
def test_parse_unknown_prefix(text: str) -> None:
    with pytest.raises(UsageError, match="unknown prefix"):
        parse_source(text)


@pytest.mark.parametrize("text", ["", "oci:", "engine:"])
def test_parse_empty(text: str) -> None:
    with pytest.raises(UsageError):
        parse_source(text)


def test_parse_detects_content(tmp_path: Path) -> None:
    # File names that hint at the wrong kind prove that the content decides.
    docker = write_tar(tmp_path / "oci.tar", docker_archive_members([LAYER]))
    oci = write_tar(tmp_path / "docker.tar", oci_archive_members([LAYER]))
    layout = write_directory(tmp_path / "layout", oci_archive_members([LAYER]))
    assert parse_source(str(docker)).kind == "docker-archive"
    assert parse_source(str(oci)).kind == "oci-archive"
    assert parse_source(str(layout)).kind == "oci"
    assert parse_source(str(layout)).value == str(layout)
