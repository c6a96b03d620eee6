"""Largest visible files of hand-built layers, checked against hand-counted sizes."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from hyperlane.images import ImageAnalysis, analyze_archive
from hyperlane.images.largest import LargeFile
from tests.unit.images.builders import (
    Entry,
    Owned,
    SparseFile,
    detailed_archive,
    file,
    hardlink,
    symlink,
)


def analyze(
    tmp_path: Path, *layers: Sequence[Entry | Owned | SparseFile]
) -> ImageAnalysis:
    return analyze_archive(detailed_archive(tmp_path / "image.tar", layers))


def rows(result: ImageAnalysis) -> list[tuple[str, int, int]]:
    return [(f.path, f.size_bytes, f.layer_index) for f in result.largest_files]


def test_largest_first_with_layers(tmp_path: Path) -> None:
    result = analyze(
        tmp_path,
        [file("bin/tool", b"t" * 300), file("etc/conf", b"c" * 20)],
        [file("app/data", b"d" * 500), symlink("bin/alias", "tool")],
    )
    assert rows(result) == [
        ("app/data", 500, 1),
        ("bin/tool", 300, 0),
        ("etc/conf", 20, 0),
    ]


def test_hard_links_listed_once(tmp_path: Path) -> None:
    result = analyze(
        tmp_path,
        [file("usr/bin/tool", b"t" * 300)],
        [hardlink("usr/bin/a-link", "usr/bin/tool"), hardlink("z", "usr/bin/tool")],
    )
    # The link in layer 1 shares the content that layer 0 wrote.
    assert result.largest_files == [
        LargeFile(
            path="usr/bin/a-link",
            size_bytes=300,
            layer_index=0,
            sparse=False,
            hard_links=["usr/bin/tool", "z"],
        )
    ]


def test_overwritten_file_shows_upper(tmp_path: Path) -> None:
    result = analyze(
        tmp_path,
        [file("app/data", b"d" * 500), file("app/gone", b"g" * 900)],
        [file("app/data", b"e" * 40), file("app/.wh.gone", b"")],
    )
    assert rows(result) == [("app/data", 40, 1)]


def test_sparse_file_apparent_size(tmp_path: Path) -> None:
    sparse = SparseFile("var/lib/db/big", 1 << 30, ((0, b"head"), (1 << 29, b"mid")))
    result = analyze(tmp_path, [sparse, file("small", b"s" * 10)])
    big = result.largest_files[0]
    assert big.path == "var/lib/db/big"
    assert big.size_bytes == 1 << 30
    assert big.sparse is True
    assert result.largest_files[1].sparse is False
    assert result.visible_bytes == (1 << 30) + 10


def test_limit_and_tie_order(tmp_path: Path) -> None:
    files = [file(f"f{index:02d}", b"x" * (index + 1)) for index in range(25)]
    files += [file("tie-b", b"y" * 25), file("tie-a", b"z" * 25)]
    result = analyze(tmp_path, files)
    assert len(result.largest_files) == 20
    assert [f.path for f in result.largest_files[:3]] == ["f24", "tie-a", "tie-b"]
    assert result.largest_files[-1].size_bytes == 8


def test_empty_image(tmp_path: Path) -> None:
    result = analyze(tmp_path, [symlink("bin/sh", "busybox")])
    assert result.largest_files == []
