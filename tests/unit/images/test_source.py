"""Parsing of image source arguments."""

from __future__ import annotations

from pathlib import Path

import pytest

from hyperlane.errors import ImageInvalid, UsageError
from hyperlane.images import ImageSource, analyze_archive, parse_source
from tests.unit.images.builders import (
    docker25_archive_members,
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


@pytest.mark.parametrize(
    "text",
    [
        "/nonexistent.tar",
        "./x.tar",
        "../x.tar",
        "~/x.tar",
        "x.tar",
        "x.tar.gz",
        "x.tgz",
        "x.tar.zst",
        "dir/x.oci",
        "/nonexistent/layout",
    ],
)
def test_parse_missing_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str
) -> None:
    # An empty working and home directory, so that no relative path exists.
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(UsageError) as caught:
        parse_source(text)
    message = str(caught.value)
    assert message.startswith(f"file {text!r} not found")
    assert "localhost/app:1" in message


def test_missing_path_hint() -> None:
    # Only text that parses as a reference gets the engine: hint.
    with pytest.raises(UsageError, match=r"engine:app:1\.tar forces"):
        parse_source("app:1.tar")
    with pytest.raises(UsageError) as caught:
        parse_source("/nonexistent.tar")
    assert "engine:" not in str(caught.value)


@pytest.mark.parametrize(
    "text",
    [
        "localhost/app:1.0",
        "registry.example:5000/team/app@sha256:" + "0123abcd" * 8,
        "busybox",
        "app:latest",
        "engine:x.tar",
    ],
)
def test_parse_references(text: str) -> None:
    source = parse_source(text)
    assert source.kind == "engine"
    assert source.value == text.removeprefix("engine:")


@pytest.mark.parametrize(
    ("text", "noun"),
    [
        ("docker-archive:{root}/absent.tar", "file"),
        ("oci-archive:{root}/absent.tar", "file"),
        ("oci:{root}/absent", "directory"),
    ],
)
def test_prefixed_missing_path(tmp_path: Path, text: str, noun: str) -> None:
    source = parse_source(text.format(root=tmp_path))
    with pytest.raises(UsageError) as caught:
        analyze_archive(Path(source.value), kind=source.kind)
    assert str(caught.value).startswith(f"{noun} {source.value!r} not found")


def test_parse_expands_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # os.path.expanduser reads HOME, so this sets the home directory for the test.
    monkeypatch.setenv("HOME", str(tmp_path))
    archive = write_tar(tmp_path / "x.tar", docker_archive_members([LAYER]))
    assert parse_source("~/x.tar") == ImageSource("docker-archive", str(archive))
    assert parse_source("oci-archive:~/x.tar").value == str(archive)


def test_parse_docker25_archive(tmp_path: Path) -> None:
    # manifest.json decides, although the tar is also a complete OCI layout.
    path = write_tar(tmp_path / "image.tar", docker25_archive_members([LAYER]))
    assert parse_source(str(path)) == ImageSource("docker-archive", str(path))


def test_parse_truncated_archive(tmp_path: Path) -> None:
    path = write_tar(tmp_path / "image.tar", docker_archive_members([LAYER]))
    path.write_bytes(path.read_bytes()[:700])
    with pytest.raises(ImageInvalid, match="is truncated or corrupt: it ends inside"):
        parse_source(str(path))
