"""Plain blobs read in place while a second thread computes their digests."""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import pytest

from hyperlane.errors import ImageInvalid
from hyperlane.images import ImageAnalysis, analyze_archive
from hyperlane.images.archive import stack_archive
from hyperlane.images.digests import BlobRegion, DigestWorker
from tests.unit.images.builders import (
    docker_archive_members,
    file,
    image_config,
    layer_tar,
    oci_archive_members,
    sha256,
    symlink,
    write_directory,
    write_tar,
)

# Blobs from one read (1 MiB) up are read in place with a digest thread. Random
# bytes keep the blob from compressing into one read when it is gzipped.
_RANDOM = random.Random(7)
BIG = _RANDOM.randbytes(3 << 20)
# The lower layer contains 3 MiB of content and many small files, so the parser
# crosses read boundaries inside a file and between headers.
LOWER = layer_tar(
    [
        file("data/big", BIG),
        *(file(f"etc/file-{index}", b"x" * (index % 700)) for index in range(3000)),
        file("etc/keep", b"k" * 9),
    ]
)
UPPER = layer_tar([file("data/big", b"small"), symlink("bin/alias", "../data/big")])
ESCAPING = layer_tar([file("../outside", b"o")])


def figures(result: ImageAnalysis) -> dict[str, Any]:
    """Return every figure of RESULT that does not depend on the compression."""
    document = result.to_dict()
    return {
        "layers": document["layers"],
        "hidden_bytes": document["hidden_bytes"],
        "visible_bytes": document["visible_bytes"],
        "files_total": document["files_total"],
        "dive": document["dive"],
        "duplicates": document["duplicates"],
        "metadata_changes": document["metadata_changes"],
        "junk": document["junk"],
        "largest_files": document["largest_files"],
    }


@pytest.fixture
def submitted(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record the blob names that go to the digest thread."""
    names: list[str] = []
    original = DigestWorker.submit

    def spy(
        self: DigestWorker, region: BlobRegion, blob_name: str, archive: str
    ) -> Any:
        names.append(blob_name)
        return original(self, region, blob_name, archive)

    monkeypatch.setattr(DigestWorker, "submit", spy)
    return names


def test_in_place_equals_streamed(tmp_path: Path, submitted: list[str]) -> None:
    plain = write_tar(tmp_path / "plain.tar", docker_archive_members([LOWER, UPPER]))
    gzipped = write_tar(
        tmp_path / "gzip.tar", oci_archive_members([LOWER, UPPER], "gzip")
    )

    in_place = analyze_archive(plain)
    assert submitted == [f"{0:064x}/layer.tar"]
    streamed = analyze_archive(gzipped)
    assert submitted == [f"{0:064x}/layer.tar"]

    assert figures(in_place) == figures(streamed)
    assert [layer.diff_id for layer in in_place.layers] == [
        sha256(LOWER),
        sha256(UPPER),
    ]
    assert in_place.layers[0].tar_bytes == len(LOWER)
    assert in_place.layers[0].hidden_bytes == len(BIG)
    assert in_place.pull.layers[0].compressed is False


def test_directory_blob_in_place(tmp_path: Path, submitted: list[str]) -> None:
    root = write_directory(tmp_path / "layout", oci_archive_members([LOWER, UPPER]))
    result = analyze_archive(root)
    assert submitted == ["blobs/sha256/" + sha256(LOWER)[7:]]
    assert result.layers[0].diff_id == sha256(LOWER)
    assert result.hidden_bytes == len(BIG)


def test_in_place_diff_id_mismatch(tmp_path: Path, submitted: list[str]) -> None:
    config = image_config([UPPER, UPPER])
    members = docker_archive_members([LOWER, UPPER], config=config)
    path = write_tar(tmp_path / "image.tar", members)
    with pytest.raises(ImageInvalid, match="diff_id") as caught:
        analyze_archive(path)
    assert f"{0:064x}/layer.tar" in str(caught.value)
    assert submitted
    with pytest.raises(ImageInvalid, match="diff_id"):
        stack_archive(path)


def test_in_place_blob_digest_mismatch(tmp_path: Path) -> None:
    root = write_directory(tmp_path / "layout", oci_archive_members([LOWER, UPPER]))
    blob = root / "blobs" / "sha256" / sha256(LOWER)[7:]
    data = bytearray(blob.read_bytes())
    # A byte of data/big's content, so the tar still parses.
    data[4096] ^= 0xFF
    blob.write_bytes(bytes(data))
    with pytest.raises(ImageInvalid, match="blob digest") as caught:
        analyze_archive(root)
    assert sha256(LOWER)[7:] in str(caught.value)


def test_lower_digest_reported_first(tmp_path: Path) -> None:
    # The lower layer's digest is still being computed when the upper layer fails.
    # The mismatch of the lower layer is the error, as when layers were checked
    # one after the other.
    config = image_config([UPPER, ESCAPING])
    members = docker_archive_members([LOWER, ESCAPING], config=config)
    with pytest.raises(ImageInvalid, match="diff_id") as caught:
        analyze_archive(write_tar(tmp_path / "image.tar", members))
    assert f"{0:064x}/layer.tar" in str(caught.value)


def test_upper_error_after_good_digest(tmp_path: Path) -> None:
    members = docker_archive_members([LOWER, ESCAPING])
    with pytest.raises(ImageInvalid, match="outside the root") as caught:
        analyze_archive(write_tar(tmp_path / "image.tar", members))
    assert f"{1:064x}/layer.tar" in str(caught.value)


def test_region_past_file_end(tmp_path: Path) -> None:
    path = tmp_path / "short"
    path.write_bytes(b"a" * 1000)
    descriptor = os.open(path, os.O_RDONLY)
    try:
        with DigestWorker() as digests:
            pending = digests.submit(BlobRegion(descriptor, 0, 5000), "blob", "x.tar")
            with pytest.raises(ImageInvalid, match="unexpected end of data") as caught:
                pending.wait()
    finally:
        os.close(descriptor)
    assert "'blob' in 'x.tar' cannot be read" in str(caught.value)


def test_region_digest(tmp_path: Path) -> None:
    path = tmp_path / "blob"
    path.write_bytes(b"head" + BIG + b"tail")
    descriptor = os.open(path, os.O_RDONLY)
    try:
        with DigestWorker() as digests:
            pending = digests.submit(BlobRegion(descriptor, 4, len(BIG)), "b", "x")
            assert pending.wait() == sha256(BIG)
        # A digest computed before the block ends stays available.
        assert pending.wait() == sha256(BIG)
    finally:
        os.close(descriptor)


def open_descriptors() -> int:
    return sum(1 for _ in Path("/proc/self/fd").iterdir())


def test_close_cancels_and_closes(tmp_path: Path) -> None:
    path = tmp_path / "blob"
    path.write_bytes(BIG)
    descriptor = os.open(path, os.O_RDONLY)
    before = open_descriptors()
    try:
        with DigestWorker() as digests:
            pending = [
                digests.submit(BlobRegion(descriptor, 0, len(BIG)), f"b{i}", "x")
                for i in range(20)
            ]
        # The copies of the descriptor are closed, computed or cancelled.
        assert open_descriptors() == before
        outcomes = []
        for item in pending:
            try:
                outcomes.append(item.wait())
            except ImageInvalid as error:
                outcomes.append(str(error))
        assert any("cancelled" in outcome for outcome in outcomes)
    finally:
        os.close(descriptor)
