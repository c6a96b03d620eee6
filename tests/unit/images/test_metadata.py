"""Metadata-only rewrites in hand-built layers, checked against hand-counted figures."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from hyperlane.images import ImageAnalysis, analyze_archive
from hyperlane.images.metadata import MetadataLayer
from tests.unit.images.builders import (
    Entry,
    Owned,
    SparseFile,
    detailed_archive,
    directory,
    file,
    hardlink,
    owned,
    symlink,
)

APP = b"a" * 100
LIB = b"l" * 50


def analyze(
    tmp_path: Path, *layers: Sequence[Entry | Owned | SparseFile]
) -> ImageAnalysis:
    return analyze_archive(detailed_archive(tmp_path / "image.tar", layers))


BASE = [
    directory("app"),
    file("app/main", APP),
    file("app/lib", LIB),
    hardlink("app/main-link", "app/main"),
    symlink("app/current", "main"),
]


def test_chown_only_layer(tmp_path: Path) -> None:
    # What `chown -R 1000:1000 /app` leaves in the next layer: every file again.
    chown = [
        owned(directory("app"), 0o755, 1000, 1000),
        owned(file("app/main", APP), 0o644, 1000, 1000),
        owned(file("app/lib", LIB), 0o644, 1000, 1000),
        owned(hardlink("app/main-link", "app/main"), 0o644, 1000, 1000),
    ]
    result = analyze(tmp_path, BASE, chown)
    assert result.metadata_changes.layers == [
        MetadataLayer(
            layer_index=1,
            files=2,
            copied_bytes=150,
            changed=["uid", "gid"],
            example_paths=["app/main", "app/lib"],
        )
    ]
    assert result.metadata_changes.files == 2
    assert result.metadata_changes.copied_bytes == 150


def test_chmod_only_layer(tmp_path: Path) -> None:
    result = analyze(tmp_path, BASE, [owned(file("app/main", APP), 0o600)])
    layer = result.metadata_changes.layers[0]
    assert layer.layer_index == 1
    assert layer.files == 1
    assert layer.copied_bytes == 100
    assert layer.changed == ["mode"]


def test_all_fields_changed(tmp_path: Path) -> None:
    result = analyze(tmp_path, BASE, [owned(file("app/lib", LIB), 0o600, 7, 8)])
    assert result.metadata_changes.layers[0].changed == ["mode", "uid", "gid"]


def test_empty_file_not_counted(tmp_path: Path) -> None:
    # dpkg's lock files are empty, so a mode change on them copies nothing.
    result = analyze(
        tmp_path,
        [file("var/lib/dpkg/lock", b"")],
        [owned(file("var/lib/dpkg/lock", b""), 0o640)],
    )
    assert result.metadata_changes.layers == []
    assert result.metadata_changes.files == 0


def test_new_content_not_counted(tmp_path: Path) -> None:
    result = analyze(tmp_path, BASE, [owned(file("app/main", b"b" * 100), 0o600)])
    assert result.metadata_changes.layers == []
    assert result.metadata_changes.files == 0
    assert result.metadata_changes.copied_bytes == 0


def test_same_metadata_not_counted(tmp_path: Path) -> None:
    # A plain re-add is a duplicate, not a metadata change.
    result = analyze(tmp_path, BASE, [file("app/main", APP)])
    assert result.metadata_changes.layers == []
    assert result.duplicates.duplicate_bytes == 100


def test_lower_hard_link_resolved(tmp_path: Path) -> None:
    # The lower "app/main-link" shares app/main's record, so its mode is 0o644.
    result = analyze(tmp_path, BASE, [owned(file("app/main-link", APP), 0o700)])
    layer = result.metadata_changes.layers[0]
    assert layer.example_paths == ["app/main-link"]
    assert layer.changed == ["mode"]


def test_deleted_then_added_not_counted(tmp_path: Path) -> None:
    result = analyze(
        tmp_path,
        BASE,
        [directory("app"), file("app/.wh.main", b"")],
        [owned(file("app/main", APP), 0o600)],
    )
    assert result.metadata_changes.layers == []


def test_opaque_directory_between(tmp_path: Path) -> None:
    result = analyze(
        tmp_path,
        BASE,
        [directory("app"), file("app/.wh..wh..opq", b""), file("app/new", b"n")],
        [owned(file("app/lib", LIB), 0o600)],
    )
    assert result.metadata_changes.layers == []


def test_whiteout_in_same_layer(tmp_path: Path) -> None:
    # The layer's own whiteout does not change what the lower layers had.
    result = analyze(
        tmp_path,
        BASE,
        [
            owned(directory("app"), 0o755, 5, 5),
            file("app/.wh.lib", b""),
            owned(file("app/main", APP), 0o644, 5, 5),
        ],
    )
    assert result.metadata_changes.files == 1
    assert result.metadata_changes.layers[0].example_paths == ["app/main"]


def test_layers_reported_separately(tmp_path: Path) -> None:
    result = analyze(
        tmp_path,
        BASE,
        [owned(file("app/main", APP), 0o600)],
        [file("other", b"o")],
        [owned(file("app/main", APP), 0o600, 3, 3), owned(file("app/lib", LIB), 0o640)],
    )
    figures = [
        (layer.layer_index, layer.files, layer.copied_bytes, layer.changed)
        for layer in result.metadata_changes.layers
    ]
    assert figures == [(1, 1, 100, ["mode"]), (3, 2, 150, ["mode", "uid", "gid"])]
    assert result.metadata_changes.files == 3
    assert result.metadata_changes.copied_bytes == 250


def test_example_paths_limited(tmp_path: Path) -> None:
    lower = [file(f"f{index}", bytes([index]) * (index + 1)) for index in range(8)]
    upper = [
        owned(file(f"f{index}", bytes([index]) * (index + 1)), 0o600)
        for index in range(8)
    ]
    result = analyze(tmp_path, lower, upper)
    layer = result.metadata_changes.layers[0]
    assert layer.files == 8
    assert layer.copied_bytes == sum(range(1, 9))
    assert layer.example_paths == ["f7", "f6", "f5", "f4", "f3"]
