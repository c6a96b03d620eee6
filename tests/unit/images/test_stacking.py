"""Stacking figures of hand-built layers, each checked against hand-counted values."""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest

from hyperlane.errors import ImageInvalid
from hyperlane.images import ImageAnalysis, analyze_archive
from tests.unit.images.builders import (
    Entry,
    directory,
    docker_archive,
    file,
    hardlink,
    layer_tar,
    symlink,
)


def analyze(tmp_path: Path, *layers: list[Entry]) -> ImageAnalysis:
    tars = [layer_tar(entries) for entries in layers]
    return analyze_archive(docker_archive(tmp_path / "image.tar", tars))


def test_whiteout_deletes_file(tmp_path: Path) -> None:
    result = analyze(
        tmp_path,
        [file("a", b"x" * 100), file("b", b"y" * 10)],
        [file(".wh.a", b"")],
    )
    assert result.layers[0].hidden_bytes == 100
    assert result.layers[1].files_removed == 1
    assert result.layers[1].files_added == 0
    assert result.visible_bytes == 10
    assert result.files_total == 1
    assert result.hidden_percent == pytest.approx(100 * 100 / 110)


def test_whiteout_deletes_directory(tmp_path: Path) -> None:
    result = analyze(
        tmp_path,
        [
            directory("d"),
            file("d/x", b"1" * 5),
            directory("d/sub"),
            file("d/sub/y", b"2" * 7),
            file("z", b"3" * 3),
        ],
        [file(".wh.d", b"")],
    )
    assert result.layers[0].hidden_bytes == 12
    assert result.layers[1].files_removed == 2
    assert result.files_total == 1
    assert result.visible_bytes == 3


@pytest.mark.parametrize("marker_first", [True, False])
def test_opaque_hides_lower(tmp_path: Path, marker_first: bool) -> None:
    upper = [directory("d"), file("d/.wh..wh..opq", b""), file("d/n", b"4" * 4)]
    if not marker_first:
        upper = [directory("d"), file("d/n", b"4" * 4), file("d/.wh..wh..opq", b"")]
    result = analyze(
        tmp_path,
        [directory("d"), file("d/x", b"5" * 5), file("d/y", b"6" * 6)],
        upper,
    )
    assert result.layers[0].hidden_bytes == 11
    assert result.layers[1].files_removed == 2
    assert result.layers[1].files_added == 1
    assert result.layers[1].hidden_bytes == 0
    assert result.files_total == 1
    assert result.visible_bytes == 4


def test_opaque_hides_nested_lower(tmp_path: Path) -> None:
    result = analyze(
        tmp_path,
        [file("d/sub/old", b"o" * 9)],
        [file("d/.wh..wh..opq", b""), file("d/sub/new", b"n" * 2)],
    )
    assert result.layers[0].hidden_bytes == 9
    assert result.layers[1].files_removed == 1
    assert result.files_total == 1


def test_whiteout_without_target(tmp_path: Path) -> None:
    result = analyze(
        tmp_path,
        [file("a", b"a" * 8)],
        [file(".wh.missing", b""), file("dir/.wh.gone", b"")],
    )
    assert result.layers[1].files_removed == 0
    assert result.layers[0].hidden_bytes == 0
    assert result.layers[1].entries == 2
    assert result.files_total == 1


def test_whiteout_spares_same_layer(tmp_path: Path) -> None:
    result = analyze(tmp_path, [file("a", b"a" * 3), file(".wh.a", b"")])
    assert result.files_total == 1
    assert result.hidden_bytes == 0


def test_overwrite_hides_lower(tmp_path: Path) -> None:
    result = analyze(tmp_path, [file("f", b"f" * 50)], [file("f", b"g" * 20)])
    assert result.layers[0].hidden_bytes == 50
    assert result.layers[1].files_modified == 1
    assert result.layers[1].files_added == 0
    assert result.visible_bytes == 20
    assert result.total_size_bytes == 70


def test_hardlink_counts_once(tmp_path: Path) -> None:
    result = analyze(tmp_path, [file("f", b"h" * 30), hardlink("h", "f")])
    assert result.layers[0].regular_file_bytes == 30
    assert result.layers[0].size_bytes == 30
    assert result.layers[0].files_added == 2
    assert result.files_total == 2
    assert result.visible_bytes == 30


def test_hardlink_keeps_content(tmp_path: Path) -> None:
    result = analyze(
        tmp_path, [file("f", b"h" * 30), hardlink("h", "f")], [file(".wh.f", b"")]
    )
    assert result.layers[0].hidden_bytes == 0
    assert result.layers[1].files_removed == 1
    assert result.visible_bytes == 30


def test_hardlink_to_lower(tmp_path: Path) -> None:
    result = analyze(
        tmp_path,
        [file("f", b"h" * 30)],
        [hardlink("g", "f")],
        [file(".wh.f", b""), file(".wh.g", b"")],
    )
    assert result.layers[1].regular_file_bytes == 0
    assert result.layers[1].files_added == 1
    assert result.layers[0].hidden_bytes == 30
    assert result.layers[2].files_removed == 2
    assert result.files_total == 0


def test_hardlink_missing_target(tmp_path: Path) -> None:
    with pytest.raises(ImageInvalid, match="hard link"):
        analyze(tmp_path, [hardlink("g", "nowhere")])


def test_symlink_counts_target(tmp_path: Path) -> None:
    result = analyze(tmp_path, [symlink("s", "target/path"), file("r", b"r" * 4)])
    assert result.layers[0].size_bytes == len("target/path") + 4
    assert result.layers[0].regular_file_bytes == 4
    assert result.files_total == 2
    assert result.visible_bytes == 4


def test_directory_replaced_by_file(tmp_path: Path) -> None:
    result = analyze(
        tmp_path,
        [directory("d"), file("d/a", b"a" * 4), file("d/b", b"b" * 5)],
        [file("d", b"f" * 3)],
    )
    assert result.layers[1].files_modified == 1
    assert result.layers[1].files_removed == 2
    assert result.layers[0].hidden_bytes == 9
    assert result.files_total == 1
    assert result.visible_bytes == 3


def test_file_replaced_by_directory(tmp_path: Path) -> None:
    result = analyze(
        tmp_path,
        [file("p", b"p" * 8)],
        [directory("p"), file("p/q", b"q" * 2)],
    )
    assert result.layers[1].files_removed == 1
    assert result.layers[1].files_added == 1
    assert result.layers[0].hidden_bytes == 8
    assert result.visible_bytes == 2


def test_pax_global_header(tmp_path: Path) -> None:
    # `git archive` starts its tars with a global header that carries the commit.
    lower = layer_tar(
        [file("a", b"a" * 6)], global_headers={"comment": "0123456789abcdef"}
    )
    upper = layer_tar([file("a", b"b" * 2)])
    result = analyze_archive(docker_archive(tmp_path / "image.tar", [lower, upper]))
    assert result.layers[0].entries == 1
    assert result.layers[0].hidden_bytes == 6
    assert result.layers[1].files_modified == 1


@pytest.mark.parametrize("tar_format", [tarfile.PAX_FORMAT, tarfile.GNU_FORMAT])
def test_long_names(tmp_path: Path, tar_format: int) -> None:
    name = "/".join(["segment" * 6] * 6) + "/leaf"
    assert len(name) > 255
    lower = layer_tar([file(name, b"l" * 7)], tar_format=tar_format)
    upper = layer_tar([file(name, b"m" * 1)], tar_format=tar_format)
    result = analyze_archive(docker_archive(tmp_path / "image.tar", [lower, upper]))
    assert result.layers[1].files_modified == 1
    assert result.layers[0].hidden_bytes == 7


@pytest.mark.parametrize("tar_format", [tarfile.PAX_FORMAT, tarfile.GNU_FORMAT])
def test_non_utf8_names(tmp_path: Path, tar_format: int) -> None:
    name = b"caf\xe9/men\xfc".decode("utf-8", "surrogateescape")
    lower = layer_tar([file(name, b"n" * 5)], tar_format=tar_format)
    upper = layer_tar([file(name, b"o" * 3)], tar_format=tar_format)
    result = analyze_archive(docker_archive(tmp_path / "image.tar", [lower, upper]))
    assert result.layers[1].files_modified == 1
    assert result.layers[0].hidden_bytes == 5


def test_dot_slash_prefix(tmp_path: Path) -> None:
    result = analyze(
        tmp_path,
        [directory("./"), file("./a", b"a" * 5), file("./b", b"b" * 1)],
        [file("a", b"c" * 6), file("./.wh.b", b"")],
    )
    assert result.layers[1].files_modified == 1
    assert result.layers[1].files_removed == 1
    assert result.layers[0].hidden_bytes == 6
    assert result.files_total == 1


@pytest.mark.parametrize("name", ["../evil", "a/../../evil", "/../evil"])
def test_escape_rejected(tmp_path: Path, name: str) -> None:
    with pytest.raises(ImageInvalid, match="outside the root"):
        analyze(tmp_path, [file(name, b"e")])


def test_hardlink_escape_rejected(tmp_path: Path) -> None:
    with pytest.raises(ImageInvalid, match="outside the root"):
        analyze(tmp_path, [hardlink("h", "../../etc/passwd")])


def test_inner_dotdot_normalised(tmp_path: Path) -> None:
    result = analyze(tmp_path, [file("a/../b", b"b" * 2)], [file("b", b"c")])
    assert result.layers[1].files_modified == 1


def test_same_path_twice_in_layer(tmp_path: Path) -> None:
    result = analyze(tmp_path, [file("f", b"1" * 4), file("f", b"2" * 2)])
    assert result.layers[0].files_added == 1
    assert result.layers[0].hidden_bytes == 4
    assert result.visible_bytes == 2


def test_empty_image(tmp_path: Path) -> None:
    result = analyze(tmp_path, [directory("d")])
    assert result.hidden_percent == 0.0
    assert result.files_total == 0
    assert result.total_size_bytes == 0


def test_totals_add_up(tmp_path: Path) -> None:
    result = analyze(
        tmp_path,
        [file("a", b"a" * 10), file("b", b"b" * 20), symlink("s", "a")],
        [file("a", b"z" * 3), file(".wh.b", b"")],
    )
    regular = sum(layer.regular_file_bytes for layer in result.layers)
    assert result.visible_bytes + result.hidden_bytes == regular
    assert result.total_size_bytes == 10 + 20 + 1 + 3
    assert result.hidden_bytes == 30


def test_worked_example(tmp_path: Path) -> None:
    # The example in docs/image.md, with the figures counted there by hand.
    result = analyze(
        tmp_path,
        [
            directory("app"),
            file("app/bin", b"b" * 1000),
            file("app/lib.so", b"l" * 500),
            symlink("app/current", "bin"),
            hardlink("app/link", "app/bin"),
        ],
        [
            directory("app"),
            file("app/lib.so", b"m" * 200),
            file("tmp/cache", b"c" * 300),
        ],
        [directory("tmp"), file("tmp/.wh.cache", b"")],
    )
    first, second, third = result.layers
    assert first.size_bytes == 1503
    assert first.regular_file_bytes == 1500
    assert first.files_added == 4
    assert first.hidden_bytes == 500
    assert first.entries == 5
    assert second.size_bytes == 500
    assert second.files_added == 1
    assert second.files_modified == 1
    assert second.hidden_bytes == 300
    assert second.entries == 3
    assert third.files_removed == 1
    assert third.entries == 2
    assert result.total_size_bytes == 2003
    assert result.visible_bytes == 1200
    assert result.hidden_bytes == 800
    assert result.hidden_percent == 40.0
    assert result.files_total == 4
