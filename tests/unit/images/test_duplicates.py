"""Duplicate contents of hand-built layers, checked against hand-counted figures."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import jsonschema
import xxhash

from hyperlane.images import ImageAnalysis, analyze_archive
from hyperlane.images.duplicates import DuplicateCopy
from tests.unit.images.builders import (
    Entry,
    Owned,
    SparseFile,
    detailed_archive,
    directory,
    file,
    hardlink,
    owned,
)

SCHEMA = Path(__file__).resolve().parents[3] / "docs/schema/report.schema.json"

DATA = b"d" * 4096


def analyze(
    tmp_path: Path, *layers: Sequence[Entry | Owned | SparseFile]
) -> ImageAnalysis:
    return analyze_archive(detailed_archive(tmp_path / "image.tar", layers))


def copies(result: ImageAnalysis) -> list[list[tuple[int, str, bool]]]:
    return [
        [(copy.layer_index, copy.path, copy.visible) for copy in group.copies]
        for group in result.duplicates.groups
    ]


def test_hard_links_are_one_copy(tmp_path: Path) -> None:
    result = analyze(
        tmp_path,
        [
            directory("bin"),
            file("bin/tool", DATA),
            hardlink("bin/alias", "bin/tool"),
            hardlink("bin/other", "bin/tool"),
        ],
    )
    assert result.duplicates.groups == []
    assert result.duplicates.group_count == 0
    assert result.duplicates.duplicate_bytes == 0
    assert result.files_total == 3


def test_same_file_in_two_layers(tmp_path: Path) -> None:
    result = analyze(tmp_path, [file("app/data", DATA)], [file("app/data", DATA)])
    group = result.duplicates.groups[0]
    assert group.xxh3_128 == xxhash.xxh3_128_hexdigest(DATA)
    assert group.size_bytes == 4096
    assert group.wasted_bytes == 4096
    assert copies(result) == [[(0, "app/data", False), (1, "app/data", True)]]
    assert result.duplicates.duplicate_bytes == 4096
    assert result.duplicates.visible_duplicate_bytes == 0
    assert result.duplicates.hidden_duplicate_bytes == 4096


def test_copies_visible_in_final_tree(tmp_path: Path) -> None:
    result = analyze(
        tmp_path,
        [file("a", DATA), file("b", DATA)],
        [file("c", DATA)],
    )
    assert copies(result) == [[(0, "a", True), (0, "b", True), (1, "c", True)]]
    assert result.duplicates.duplicate_bytes == 2 * 4096
    assert result.duplicates.visible_duplicate_bytes == 2 * 4096
    assert result.duplicates.hidden_duplicate_bytes == 0


def test_deleted_copy_is_hidden(tmp_path: Path) -> None:
    result = analyze(
        tmp_path,
        [file("a", DATA), file("b", DATA)],
        [file(".wh.a", b""), file("c", DATA)],
    )
    assert copies(result) == [[(0, "a", False), (0, "b", True), (1, "c", True)]]
    assert result.duplicates.duplicate_bytes == 2 * 4096
    assert result.duplicates.visible_duplicate_bytes == 4096
    assert result.duplicates.hidden_duplicate_bytes == 4096


def test_all_copies_hidden(tmp_path: Path) -> None:
    # The content is gone from the final tree, so both extra copies are hidden.
    result = analyze(
        tmp_path,
        [file("tmp/x", DATA), file("tmp/y", DATA), file("tmp/z", DATA)],
        [file(".wh.tmp", b"")],
    )
    assert result.duplicates.duplicate_bytes == 2 * 4096
    assert result.duplicates.visible_duplicate_bytes == 0
    assert result.duplicates.hidden_duplicate_bytes == 2 * 4096


def test_hard_link_keeps_copy_visible(tmp_path: Path) -> None:
    result = analyze(
        tmp_path,
        [file("a", DATA), hardlink("keep", "a"), file("b", DATA)],
        [file(".wh.a", b"")],
    )
    # "a" is deleted, but "keep" still shows the content that "a" stored.
    assert copies(result) == [[(0, "a", True), (0, "b", True)]]
    assert result.duplicates.visible_duplicate_bytes == 4096
    assert result.duplicates.hidden_duplicate_bytes == 0


def test_empty_and_sparse_files_skipped(tmp_path: Path) -> None:
    sparse = SparseFile("big", 1 << 20, ((0, b"head"),))
    result = analyze(
        tmp_path,
        [file("empty-1", b""), file("empty-2", b""), sparse],
        [SparseFile("big-copy", 1 << 20, ((0, b"head"),))],
    )
    assert result.duplicates.group_count == 0
    assert result.duplicates.duplicate_bytes == 0


def test_groups_sorted_and_limited(tmp_path: Path) -> None:
    # 25 contents of 1..25 bytes, each stored twice, plus one stored 3 times.
    lower = [file(f"lower/{size}", bytes([size]) * size) for size in range(1, 26)]
    upper = [file(f"upper/{size}", bytes([size]) * size) for size in range(1, 26)]
    upper.append(file("upper/third-3", bytes([3]) * 3))
    result = analyze(tmp_path, lower, upper)
    report = result.duplicates
    assert report.group_count == 25
    assert len(report.groups) == 20
    wasted = [group.wasted_bytes for group in report.groups]
    assert wasted == list(range(25, 5, -1))
    assert report.duplicate_bytes == sum(range(1, 26)) + 3
    assert report.visible_duplicate_bytes == report.duplicate_bytes


def test_equal_waste_ordered_by_digest(tmp_path: Path) -> None:
    result = analyze(
        tmp_path,
        [file("a1", b"a" * 10), file("b1", b"b" * 10)],
        [file("a2", b"a" * 10), file("b2", b"b" * 10)],
    )
    digests = [group.xxh3_128 for group in result.duplicates.groups]
    assert digests == sorted(digests)
    assert len(digests) == 2


def test_report_is_json(tmp_path: Path) -> None:
    result = analyze(tmp_path, [file("a", DATA)], [file("b", DATA)])
    document = json.loads(json.dumps(result.to_dict()))
    assert document["duplicates"]["duplicate_bytes"] == 4096
    assert document["duplicates"]["groups"][0]["copies"][1] == {
        "layer_index": 1,
        "path": "b",
        "visible": True,
    }
    assert result.duplicates.groups[0].copies[0].to_dict() == {
        "layer_index": 0,
        "path": "a",
        "visible": True,
    }
    assert isinstance(result.duplicates.groups[0].copies[0], DuplicateCopy)


def test_findings_match_schema(tmp_path: Path) -> None:
    result = analyze(
        tmp_path,
        [file("a", DATA), file("var/cache/apk/index", b"i" * 9)],
        [
            owned(file("a", DATA), 0o600),
            file("b", DATA),
            file("var/cache/.wh.apk", b""),
        ],
        [SparseFile("big", 1 << 20, ((0, b"head"),))],
    )
    schema = json.loads(SCHEMA.read_text())
    image_schema = schema["properties"]["image"]
    image = {**result.to_dict(), "engine_size_bytes": None}
    # The image object's schema refers to the report's $defs, so it is checked
    # inside a document that has them.
    jsonschema.validate(
        {"image": image},
        {
            "$defs": schema["$defs"],
            "type": "object",
            "properties": {"image": image_schema},
        },
    )
    assert result.duplicates.group_count == 1
    assert result.metadata_changes.files == 1
    assert result.junk.hidden_bytes == 9
    assert result.largest_files[0].sparse is True
