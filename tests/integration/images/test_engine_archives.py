"""Analyze images that the real engines build and save, against engine-side oracles."""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import tarfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, cast

import docker
import docker.errors
import pytest
from docker.models.containers import Container

from hyperlane.images import ImageAnalysis, analyze_archive
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
