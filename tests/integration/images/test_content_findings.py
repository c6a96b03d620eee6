"""Content findings of an image that the real engines build from busybox."""

from __future__ import annotations

import contextlib
import io
import tarfile
from collections.abc import Iterator
from pathlib import Path

import docker
import docker.errors
import pytest
import xxhash

from hyperlane.images import analyze_archive
from hyperlane.images.metadata import MetadataLayer
from hyperlane.images.pull import METHOD_UPPER_BOUND
from tests.conftest import BUSYBOX_PATH, unique_name

pytestmark = pytest.mark.integration

# The first step writes a 32 KiB file, a copy of it and a .git directory. The
# second only changes the file's mode, so the storage driver copies it again.
CONTAINERFILE = """\
FROM {base}
RUN mkdir -p /data /src/.git && yes abcdefgh | head -c 32768 > /data/a.bin \
 && cp /data/a.bin /data/b.bin && echo ref > /src/.git/HEAD
RUN chmod 600 /data/a.bin
"""
CONTENT = (b"abcdefgh\n" * 4000)[:32768]


def _context(base: str) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        text = CONTAINERFILE.format(base=base).encode()
        info = tarfile.TarInfo("Containerfile")
        info.size = len(text)
        archive.addfile(info, io.BytesIO(text))
    return buffer.getvalue()


@pytest.fixture(scope="module")
def findings_archive(
    engine_client: docker.DockerClient,
    busybox_image: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Path]:
    """A docker-archive of the image that CONTAINERFILE builds, saved by the engine."""
    tag = f"localhost/{unique_name('hyperlane-findings')}:latest"
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
    try:
        path = tmp_path_factory.mktemp("findings") / "image.tar"
        with path.open("wb") as output:
            for chunk in engine_client.images.get(tag).save(named=True):
                output.write(chunk)
        yield path
    finally:
        with contextlib.suppress(docker.errors.NotFound):
            engine_client.images.remove(tag, force=True)


def test_duplicate_and_chmod_layer(findings_archive: Path) -> None:
    result = analyze_archive(findings_archive)
    writer = len(result.layers) - 2
    chmod = len(result.layers) - 1
    groups = [
        group
        for group in result.duplicates.groups
        if group.xxh3_128 == xxhash.xxh3_128_hexdigest(CONTENT)
    ]
    assert len(groups) == 1
    copies = sorted((c.layer_index, c.path, c.visible) for c in groups[0].copies)
    assert copies == [
        (writer, "data/a.bin", False),
        (writer, "data/b.bin", True),
        (chmod, "data/a.bin", True),
    ]
    assert groups[0].wasted_bytes == 2 * 32768
    # No other content of the image is stored twice.
    assert result.duplicates.duplicate_bytes == 2 * 32768
    assert result.duplicates.visible_duplicate_bytes == 32768
    assert result.duplicates.hidden_duplicate_bytes == 32768
    assert result.metadata_changes.layers == [
        MetadataLayer(
            layer_index=chmod,
            files=1,
            copied_bytes=32768,
            changed=["mode"],
            example_paths=["data/a.bin"],
        )
    ]


def test_junk_largest_and_pull(findings_archive: Path) -> None:
    result = analyze_archive(findings_archive)
    vcs = [c for c in result.junk.categories if c.category == "vcs"]
    assert len(vcs) == 1
    assert vcs[0].files == 1
    assert vcs[0].size_bytes == len(b"ref\n")
    assert vcs[0].example_paths == ["src/.git/HEAD"]

    largest = result.largest_files[0]
    assert largest.path == "bin/busybox"
    assert largest.size_bytes == BUSYBOX_PATH.stat().st_size
    assert largest.layer_index == 0

    # `save` writes every layer as a plain tar.
    assert result.pull.method == METHOD_UPPER_BOUND
    tar_bytes = sum(layer.tar_bytes for layer in result.layers)
    assert result.pull.transfer_bytes_estimate == tar_bytes
    assert result.pull.pull_seconds_estimate == pytest.approx(tar_bytes * 8 / 100e6)
