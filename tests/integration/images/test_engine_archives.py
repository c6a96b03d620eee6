"""Analyze images that the real engines build and save, against engine-side oracles."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import subprocess
import tarfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, cast

import docker
import docker.errors
import pytest
from docker.models.containers import Container

from hyperlane.errors import UsageError
from hyperlane.images import ImageAnalysis, analyze_archive
from hyperlane.images.archive import stack_archive
from tests.conftest import unique_name

pytestmark = pytest.mark.integration

# One layer writes a file and a directory with a hard link, the next deletes both,
# and the last overwrites another file.
CONTAINERFILE = """\
FROM {base}
RUN mkdir -p /data/dir && dd if=/dev/zero of=/data/gone.bin bs=1024 count=48 \
 && echo first > /data/over.txt && echo one > /data/dir/one \
 && echo two > /data/dir/two && ln /data/dir/one /data/dir/link
RUN rm /data/gone.bin && rm -rf /data/dir
RUN echo second-and-longer > /data/over.txt
"""


def _context(base: str) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        text = CONTAINERFILE.format(base=base).encode()
        info = tarfile.TarInfo("Containerfile")
        info.size = len(text)
        archive.addfile(info, io.BytesIO(text))
    return buffer.getvalue()


@pytest.fixture(scope="module")
def layered_image(
    engine_client: docker.DockerClient, busybox_image: str
) -> Iterator[str]:
    """Tag of an image whose layers delete and overwrite files, removed afterwards."""
    tag = f"localhost/{unique_name('hyperlane-images')}:latest"
    # No build step needs a network, so the RUN containers get none.
    engine_client.images.build(
        fileobj=io.BytesIO(_context(busybox_image)),
        custom_context=True,
        dockerfile="Containerfile",
        tag=tag,
        rm=True,
        forcerm=True,
        network_mode="none",
    )
    yield tag
    with contextlib.suppress(docker.errors.NotFound):
        engine_client.images.remove(tag, force=True)


@pytest.fixture(scope="module")
def saved_archive(
    engine_client: docker.DockerClient,
    layered_image: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Path:
    path = tmp_path_factory.mktemp("archive") / "image.tar"
    with path.open("wb") as output:
        for chunk in engine_client.images.get(layered_image).save(named=True):
            output.write(chunk)
    return path


def _regular_bytes(stream: IO[bytes]) -> int:
    """Sum the sizes of regular-file members of an uncompressed tar stream."""
    total = 0
    with tarfile.open(fileobj=stream, mode="r|") as archive:
        for member in archive:
            if member.isreg():
                total += member.size
    return total


def _layer_regular_bytes(archive_path: Path) -> int:
    """Sum regular-file bytes over every layer tar that a docker-archive lists."""
    total = 0
    with tarfile.open(archive_path) as archive:
        manifest_file = archive.extractfile("manifest.json")
        assert manifest_file is not None
        manifest = json.load(manifest_file)
        for layer_name in manifest[0]["Layers"]:
            layer = archive.extractfile(layer_name)
            assert layer is not None
            total += _regular_bytes(layer)
    return total


class _ChunkReader(io.RawIOBase):
    """A readable stream over an iterator of byte chunks."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._pending = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        while not self._pending:
            self._pending = next(self._chunks, b"")
            if not self._pending:
                return 0
        size = min(len(buffer), len(self._pending))
        buffer[:size] = self._pending[:size]
        self._pending = self._pending[size:]
        return size


def _export_regular_bytes(
    client: docker.DockerClient, tag: str, reap: list[Container]
) -> int:
    container = client.containers.create(tag, ["true"], name=unique_name("hl-images"))
    reap.append(container)
    # The stubs type export() as str, but the SDK yields chunks of bytes.
    chunks = cast(Iterable[bytes], container.export())
    stream = io.BufferedReader(_ChunkReader(iter(chunks)))
    return _regular_bytes(stream)


def test_total_size_matches_engine(
    engine_name: str,
    engine_client: docker.DockerClient,
    layered_image: str,
    saved_archive: Path,
) -> None:
    result = analyze_archive(saved_archive)
    engine_size = engine_client.images.get(layered_image).attrs["Size"]
    if engine_name == "docker":
        # Docker 20.10 (overlay2) sums the content bytes of each layer's diff.
        assert result.total_size_bytes == engine_size
        return
    # Podman 4.3 sums each layer's uncompressed tar length and the image's stored
    # metadata: the config blob, the manifest (stored twice) and signatures.
    tar_bytes = sum(layer.tar_bytes for layer in result.layers)
    metadata_bytes = engine_size - tar_bytes - result.config_bytes
    assert metadata_bytes > 0
    assert metadata_bytes < 16 * 1024


def test_hidden_bytes_match_export(
    engine_client: docker.DockerClient,
    layered_image: str,
    saved_archive: Path,
    reap: list[Container],
) -> None:
    result = analyze_archive(saved_archive)
    shipped = _layer_regular_bytes(saved_archive)
    visible = _export_regular_bytes(engine_client, layered_image, reap)
    assert result.hidden_bytes == shipped - visible
    assert result.visible_bytes == visible


def test_layer_figures(saved_archive: Path) -> None:
    result = analyze_archive(saved_archive)
    writer, deleter, overwriter = result.layers[-3:]
    # dd wrote 48 KiB; "first\n", "one\n" and "two\n" are 6 + 4 + 4 bytes.
    assert writer.hidden_bytes == 48 * 1024 + 6 + 4 + 4
    assert writer.regular_file_bytes == 48 * 1024 + 6 + 4 + 4
    # gone.bin, dir/one, dir/two and the dir/link hard link.
    assert deleter.files_removed == 4
    assert overwriter.files_modified == 1
    assert overwriter.regular_file_bytes == len("second-and-longer\n")
    assert result.reference is not None
    assert result.reference.endswith(":latest")


def test_oci_archive_matches(
    engine_name: str, layered_image: str, saved_archive: Path, tmp_path: Path
) -> None:
    if engine_name != "podman":
        pytest.skip("only the podman CLI writes oci-archive from this engine's store")
    oci_path = tmp_path / "image-oci.tar"
    subprocess.run(
        [
            "podman",
            "save",
            "--format",
            "oci-archive",
            "-o",
            str(oci_path),
            layered_image,
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    docker_result = analyze_archive(saved_archive)
    oci_result = analyze_archive(oci_path)
    assert _figures(oci_result) == _figures(docker_result)
    assert oci_result.total_size_bytes == docker_result.total_size_bytes
    assert oci_result.hidden_bytes == docker_result.hidden_bytes
    assert oci_result.visible_bytes == docker_result.visible_bytes
    assert oci_result.files_total == docker_result.files_total


def _figures(result: ImageAnalysis) -> list[tuple[object, ...]]:
    return [
        (
            layer.diff_id,
            layer.size_bytes,
            layer.regular_file_bytes,
            layer.files_added,
            layer.files_modified,
            layer.files_removed,
            layer.hidden_bytes,
            layer.entries,
            layer.tar_bytes,
        )
        for layer in result.layers
    ]


def _podman(*arguments: str) -> subprocess.CompletedProcess[str]:
    """Run the podman CLI, which shares its image store with the Podman service."""
    return subprocess.run(
        ["podman", *arguments],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_podman_oci_dir_matches(
    engine_name: str,
    layered_image: str,
    saved_archive: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    if engine_name != "podman":
        pytest.skip("only the podman CLI writes an OCI layout from this engine's store")
    layout = tmp_path / "layout"
    _podman("save", "--format", "oci-dir", "-o", str(layout), layered_image)
    assert (layout / "oci-layout").is_file()
    docker_result = analyze_archive(saved_archive)
    with caplog.at_level(logging.WARNING):
        oci_result = analyze_archive(layout)
    # Podman's media types name the compression that the blobs have.
    assert [r.getMessage() for r in caplog.records] == []
    assert _figures(oci_result) == _figures(docker_result)
    assert oci_result.files_total == docker_result.files_total
    assert oci_result.visible_bytes == docker_result.visible_bytes
    assert _visible_paths(layout) == _visible_paths(saved_archive)


def _visible_paths(path: Path) -> list[tuple[str, int]]:
    return [
        (found.path, found.content.size_bytes)
        for found in stack_archive(path).visible_files()
    ]


def _layer_media_types(layout: Path) -> list[str]:
    """Return the layer media types of the only image in an OCI layout directory."""
    index = json.loads((layout / "index.json").read_text())
    digest = index["manifests"][0]["digest"].removeprefix("sha256:")
    manifest = json.loads((layout / "blobs" / "sha256" / digest).read_text())
    return [layer["mediaType"] for layer in manifest["layers"]]


def test_podman_zstd_layout_matches(
    engine_name: str,
    layered_image: str,
    saved_archive: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    if engine_name != "podman":
        pytest.skip("only the podman CLI pushes to an OCI layout from this store")
    layout = tmp_path / "zstd-layout"
    _podman("push", "--compression-format", "zstd", layered_image, f"oci:{layout}")
    media_types = _layer_media_types(layout)
    assert media_types
    assert all(t == "application/vnd.oci.image.layer.v1.tar+zstd" for t in media_types)
    docker_result = analyze_archive(saved_archive)
    with caplog.at_level(logging.WARNING):
        zstd_result = analyze_archive(layout)
    assert [r.getMessage() for r in caplog.records] == []
    # Same uncompressed tars, so every figure but the blob sizes agrees.
    assert _figures(zstd_result) == _figures(docker_result)
    assert zstd_result.hidden_bytes == docker_result.hidden_bytes
    assert _visible_paths(layout) == _visible_paths(saved_archive)


# The platforms that multi_platform_layout builds one image for.
INDEX_PLATFORMS = ["linux/arm64", "linux/amd64", "linux/arm/v7"]
PLATFORM_FILE_TEXT = b"same content on every platform\n"


@pytest.fixture(scope="module")
def multi_platform_layout(
    engine_name: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Path]:
    """An OCI layout of a podman manifest list with one image per platform.

    The images copy one file FROM scratch and run nothing, so building them for
    other architectures needs no emulator.
    """
    if engine_name != "podman":
        pytest.skip("only the podman CLI builds manifest lists here")
    tmp_path = tmp_path_factory.mktemp("platforms")
    context = tmp_path / "context"
    context.mkdir()
    (context / "Containerfile").write_text("FROM scratch\nCOPY file /file\n")
    (context / "file").write_bytes(PLATFORM_FILE_TEXT)
    list_name = f"localhost/{unique_name('hl-platforms')}:1"
    tags: list[str] = []
    layout = tmp_path / "layout"
    try:
        _podman("manifest", "create", list_name)
        for platform in INDEX_PLATFORMS:
            tag = f"localhost/{unique_name('hl-platform')}:1"
            tags.append(tag)
            # Without --no-cache, podman 4.3 reuses the first image for every
            # platform.
            _podman(
                "build",
                "-q",
                "--no-cache",
                "--platform",
                platform,
                "-t",
                tag,
                str(context),
            )
            _podman("manifest", "add", list_name, f"containers-storage:{tag}")
        _podman("manifest", "push", "-q", "--all", list_name, f"oci:{layout}")
        yield layout
    finally:
        subprocess.run(
            ["podman", "manifest", "rm", list_name],
            capture_output=True,
            timeout=60,
            check=False,
        )
        if tags:
            subprocess.run(
                ["podman", "rmi", "-f", *tags],
                capture_output=True,
                timeout=60,
                check=False,
            )


@pytest.mark.parametrize(
    ("platform", "architecture"),
    [
        (None, "amd64"),
        ("linux/amd64", "amd64"),
        ("linux/arm64", "arm64"),
        ("linux/arm64/v8", "arm64"),
        ("linux/arm/v7", "arm"),
        ("linux/arm", "arm"),
    ],
)
def test_podman_multi_platform_index(
    multi_platform_layout: Path, platform: str | None, architecture: str
) -> None:
    result = analyze_archive(multi_platform_layout, platform=platform)
    assert result.architecture == architecture
    assert result.files_total == 1
    assert result.total_size_bytes == len(PLATFORM_FILE_TEXT)
    assert [layer.files_added for layer in result.layers] == [1]
    visible = stack_archive(multi_platform_layout, platform=platform).visible_files()
    assert [(found.path, found.content.size_bytes) for found in visible] == [
        ("file", len(PLATFORM_FILE_TEXT))
    ]


def test_podman_index_unknown_platform(multi_platform_layout: Path) -> None:
    with pytest.raises(UsageError) as caught:
        analyze_archive(multi_platform_layout, platform="linux/s390x")
    assert str(caught.value) == (
        f"{str(multi_platform_layout)!r} has no image for platform 'linux/s390x'; "
        "pass one of the platforms it has: linux/amd64, linux/arm/v7, linux/arm64"
    )


RECREATE_CONTAINERFILE = """\
FROM {base}
RUN mkdir -p /d/sub && echo old > /d/old && echo sub > /d/sub/old \
 && echo new1 > /d/new
RUN rm -rf /d && mkdir -p /d/sub && echo new2-longer > /d/new && echo x > /d/sub/x
"""


@pytest.fixture(scope="module")
def recreated_archive(
    engine_client: docker.DockerClient,
    busybox_image: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Path]:
    """A saved image whose last layer deletes /d and creates it again."""
    tag = f"localhost/{unique_name('hyperlane-recreate')}:latest"
    context = io.BytesIO()
    with tarfile.open(fileobj=context, mode="w") as archive:
        text = RECREATE_CONTAINERFILE.format(base=busybox_image).encode()
        info = tarfile.TarInfo("Containerfile")
        info.size = len(text)
        archive.addfile(info, io.BytesIO(text))
    engine_client.images.build(
        fileobj=io.BytesIO(context.getvalue()),
        custom_context=True,
        dockerfile="Containerfile",
        tag=tag,
        rm=True,
        forcerm=True,
        network_mode="none",
    )
    path = tmp_path_factory.mktemp("recreate") / "image.tar"
    try:
        with path.open("wb") as output:
            for chunk in engine_client.images.get(tag).save(named=True):
                output.write(chunk)
        yield path
    finally:
        with contextlib.suppress(docker.errors.NotFound):
            engine_client.images.remove(tag, force=True)


def test_recreated_directory_counts(recreated_archive: Path) -> None:
    # Docker 20.10 (overlay2) and Podman 4.3 write the last layer as d/, an opaque
    # marker d/.wh..wh..opq, then the new entries.
    result = analyze_archive(recreated_archive)
    writer, recreator = result.layers[-2:]
    # "old\n", "sub\n" and "new1\n" are 4 + 4 + 5 bytes, all hidden afterwards.
    assert writer.regular_file_bytes == 13
    assert writer.hidden_bytes == 13
    assert writer.files_added == 3
    # d/new modifies a lower path, d/sub/x adds one, d/old and d/sub/old go.
    assert recreator.files_added == 1
    assert recreator.files_modified == 1
    assert recreator.files_removed == 2
    assert recreator.regular_file_bytes == len("new2-longer\n") + len("x\n")
    assert recreator.hidden_bytes == 0
    visible = {
        found.path: found.content.size_bytes
        for found in stack_archive(recreated_archive).visible_files()
        if found.path.startswith("d/")
    }
    assert visible == {"d/new": 12, "d/sub/x": 2}
