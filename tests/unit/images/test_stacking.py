"""Stacking figures of hand-built layers, each checked against hand-counted values."""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
import tracemalloc
from pathlib import Path

import pytest
import xxhash

from hyperlane.errors import ImageInvalid
from hyperlane.images import ImageAnalysis, analyze_archive
from hyperlane.images.archive import stack_archive
from hyperlane.images.entries import EntryKind
from hyperlane.images.stacking import VisibleFile
from tests.unit.images.builders import (
    Entry,
    directory,
    docker_archive,
    file,
    gnu_sparse_layer,
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


def analyze_and_stack(
    tmp_path: Path, *layers: list[Entry]
) -> tuple[ImageAnalysis, list[VisibleFile]]:
    """Analyze a docker-archive of LAYERS and return its final files too."""
    tars = [layer_tar(entries) for entries in layers]
    path = docker_archive(tmp_path / "image.tar", tars)
    return analyze_archive(path), stack_archive(path).visible_files()


def counts(result: ImageAnalysis) -> list[tuple[int, int, int, int]]:
    """Return files added, modified, removed and hidden_bytes of each layer."""
    return [
        (
            layer.files_added,
            layer.files_modified,
            layer.files_removed,
            layer.hidden_bytes,
        )
        for layer in result.layers
    ]


def shown(files: list[VisibleFile]) -> list[tuple[str, int, int, int]]:
    """Return path, entry layer, content layer and content size of each file."""
    return [
        (
            found.path,
            found.entry.layer_index,
            found.content.layer_index,
            found.content.size_bytes,
        )
        for found in files
    ]


def test_whiteout_no_lower_target(tmp_path: Path) -> None:
    result, files = analyze_and_stack(
        tmp_path,
        [file("a", b"a" * 8)],
        [file(".wh.missing", b""), directory("dir"), file("dir/.wh.gone", b"")],
        [file("b", b"b" * 2), file(".wh.c", b"")],
    )
    assert counts(result) == [(1, 0, 0, 0), (0, 0, 0, 0), (1, 0, 0, 0)]
    assert [layer.entries for layer in result.layers] == [1, 3, 2]
    assert result.files_total == 2
    assert result.visible_bytes == 10
    assert result.hidden_bytes == 0
    assert shown(files) == [("a", 0, 0, 8), ("b", 2, 2, 2)]


def test_pax_global_header_figures(tmp_path: Path) -> None:
    lower = layer_tar(
        [file("a", b"a" * 6), file("b", b"b" * 4)],
        global_headers={"comment": "0123456789abcdef"},
    )
    assert lower[156:157] == tarfile.XGLTYPE
    upper = layer_tar([file("a", b"c" * 2)])
    path = docker_archive(tmp_path / "image.tar", [lower, upper])
    result = analyze_archive(path)
    assert counts(result) == [(2, 0, 0, 6), (0, 1, 0, 0)]
    assert [layer.entries for layer in result.layers] == [2, 1]
    assert result.files_total == 2
    assert result.visible_bytes == 6
    assert shown(stack_archive(path).visible_files()) == [
        ("a", 1, 1, 2),
        ("b", 0, 0, 4),
    ]


def test_git_archive_layer(tmp_path: Path) -> None:
    # A layer written by `git archive`, which starts with a PAX global header that
    # stores the commit id.
    repository = tmp_path / "repository"
    repository.mkdir()
    (repository / "app.py").write_bytes(b"print('hi')\n")
    (repository / "lib").mkdir()
    (repository / "lib" / "util.py").write_bytes(b"x = 1\n")
    environment = {
        "GIT_AUTHOR_NAME": "test",
        "GIT_AUTHOR_EMAIL": "test@example.test",
        "GIT_COMMITTER_NAME": "test",
        "GIT_COMMITTER_EMAIL": "test@example.test",
        "GIT_CONFIG_GLOBAL": "/dev/null",
        "GIT_CONFIG_NOSYSTEM": "1",
        "PATH": "/usr/bin:/bin",
    }

    for command in (
        ["git", "init", "-q"],
        ["git", "add", "."],
        ["git", "commit", "-q", "-m", "first"],
    ):
        subprocess.run(command, cwd=repository, env=environment, check=True, timeout=30)
    tar = subprocess.run(
        ["git", "archive", "--format=tar", "HEAD"],
        cwd=repository,
        env=environment,
        check=True,
        capture_output=True,
        timeout=30,
    ).stdout
    assert tar[156:157] == tarfile.XGLTYPE

    upper = layer_tar([file("app.py", b"print('bye')\n")])
    path = docker_archive(tmp_path / "image.tar", [tar, upper])
    result = analyze_archive(path)
    # The members are app.py, lib/ and lib/util.py. The global header is not one.
    assert [layer.entries for layer in result.layers] == [3, 1]
    assert counts(result) == [(2, 0, 0, 12), (0, 1, 0, 0)]
    assert result.files_total == 2
    assert result.visible_bytes == 13 + 6
    assert shown(stack_archive(path).visible_files()) == [
        ("app.py", 1, 1, 13),
        ("lib/util.py", 0, 0, 6),
    ]


def test_three_hardlinks_one_rewritten(tmp_path: Path) -> None:
    result, files = analyze_and_stack(
        tmp_path,
        [file("f", b"o" * 30), hardlink("g", "f"), hardlink("h", "f")],
        [file("g", b"n" * 5)],
    )
    # f and h still show the old content, so none of its 30 bytes is hidden.
    assert counts(result) == [(3, 0, 0, 0), (0, 1, 0, 0)]
    assert [layer.regular_file_bytes for layer in result.layers] == [30, 5]
    assert result.files_total == 3
    assert result.visible_bytes == 35
    assert result.hidden_bytes == 0
    by_path = {found.path: found for found in files}
    for old_name in ("f", "h"):
        assert by_path[old_name].content.path == "f"
        assert by_path[old_name].content.layer_index == 0
        assert by_path[old_name].content.size_bytes == 30
        expected = xxhash.xxh3_128_digest(b"o" * 30)
        assert by_path[old_name].content.content_xxh3_128 == expected
    assert by_path["h"].entry.kind is EntryKind.HARDLINK
    assert by_path["g"].entry.kind is EntryKind.FILE
    assert by_path["g"].content.layer_index == 1
    assert by_path["g"].content.content_xxh3_128 == xxhash.xxh3_128_digest(b"n" * 5)


def test_all_hardlinks_rewritten(tmp_path: Path) -> None:
    result, files = analyze_and_stack(
        tmp_path,
        [file("f", b"o" * 30), hardlink("g", "f"), hardlink("h", "f")],
        [file("g", b"n" * 5), file("h", b"m" * 3)],
        [file(".wh.f", b"")],
    )
    # Once no path shows the old content, its 30 bytes count as hidden.
    assert counts(result) == [(3, 0, 0, 30), (0, 2, 0, 0), (0, 0, 1, 0)]
    assert result.files_total == 2
    assert result.visible_bytes == 8
    assert shown(files) == [("g", 1, 1, 5), ("h", 1, 1, 3)]


def test_hardlink_to_lower_visible(tmp_path: Path) -> None:
    result, files = analyze_and_stack(
        tmp_path,
        [directory("usr"), file("usr/bin", b"b" * 30)],
        [hardlink("usr/alias", "usr/bin")],
        [file("usr/bin", b"c" * 4)],
    )
    # usr/alias keeps the lower content after usr/bin is rewritten.
    assert counts(result) == [(1, 0, 0, 0), (1, 0, 0, 0), (0, 1, 0, 0)]
    assert [layer.regular_file_bytes for layer in result.layers] == [30, 0, 4]
    assert result.files_total == 2
    assert result.visible_bytes == 34
    assert shown(files) == [("usr/alias", 1, 0, 30), ("usr/bin", 2, 2, 4)]
    assert files[0].entry.link_target == "usr/bin"


def test_sparse_gnu_header(tmp_path: Path) -> None:
    # An old-GNU sparse file with a 1 TiB apparent size and 517 stored bytes.
    apparent_bytes = 1 << 40
    tar = gnu_sparse_layer(
        "var/log/lastlog",
        apparent_bytes,
        [(0, b"h" * 512), (apparent_bytes - 5, b"tail!")],
        after=[file("etc/motd", b"m" * 3)],
    )
    path = docker_archive(tmp_path / "image.tar", [tar])

    tracemalloc.start()
    try:
        result = analyze_archive(path)
        _, peak_bytes = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # About 1 MiB of read buffers; reading the content would need 1 TiB.
    assert peak_bytes < 16 * 1024 * 1024

    assert result.sparse_files == ["var/log/lastlog"]
    assert result.layers[0].regular_file_bytes == apparent_bytes + 3
    assert result.layers[0].size_bytes == apparent_bytes + 3
    assert result.layers[0].files_added == 2
    assert result.files_total == 2
    assert result.visible_bytes == apparent_bytes + 3
    assert result.hidden_bytes == 0

    files = stack_archive(path).visible_files()
    assert shown(files) == [("etc/motd", 0, 0, 3), ("var/log/lastlog", 0, 0, 1 << 40)]
    lastlog = files[1].entry
    assert lastlog.sparse
    assert lastlog.kind is EntryKind.FILE
    assert lastlog.content_xxh3_128 is None
    assert not files[0].entry.sparse


def test_sparse_hidden_by_upper(tmp_path: Path) -> None:
    apparent_bytes = 1 << 36
    lower = gnu_sparse_layer("lastlog", apparent_bytes, [(0, b"x" * 10)])
    upper = layer_tar([file(".wh.lastlog", b"")])
    result = analyze_archive(docker_archive(tmp_path / "image.tar", [lower, upper]))
    assert counts(result) == [(1, 0, 0, apparent_bytes), (0, 0, 1, 0)]
    assert result.sparse_files == ["lastlog"]
    assert result.files_total == 0
    assert result.visible_bytes == 0


def _seek_data_works(path: Path) -> bool:
    """Return whether the file system reports holes, so GNU tar can find them."""
    with path.open("rb") as reader:
        try:
            return os.lseek(reader.fileno(), 0, os.SEEK_DATA) > 0
        except OSError:
            return False


@pytest.mark.parametrize("tar_format", ["gnu", "posix"])
def test_sparse_gnu_tar(tmp_path: Path, tar_format: str) -> None:
    # GNU tar writes old-GNU sparse headers with --format=gnu and PAX
    # GNU.sparse 1.0 headers with --format=posix.
    tar_program = shutil.which("tar")
    if tar_program is None:
        pytest.skip("GNU tar is not installed")

    root = tmp_path / "root"
    (root / "var" / "log").mkdir(parents=True)
    lastlog = root / "var" / "log" / "lastlog"
    apparent_bytes = 8 << 30
    with lastlog.open("wb") as writer:
        writer.truncate(apparent_bytes)
        writer.seek(1 << 30)
        writer.write(b"record")
    if not _seek_data_works(lastlog):
        pytest.skip(f"the file system under {tmp_path} does not report holes")

    layer = tmp_path / "layer.tar"
    subprocess.run(
        [
            tar_program,
            "--sparse",
            "--hole-detection=seek",
            f"--format={tar_format}",
            "-C",
            str(root),
            "-cf",
            str(layer),
            "var/log/lastlog",
        ],
        check=True,
        timeout=60,
    )
    assert layer.stat().st_size < 1024 * 1024

    path = docker_archive(tmp_path / "image.tar", [layer.read_bytes()])
    result = analyze_archive(path)
    assert result.sparse_files == ["var/log/lastlog"]
    assert result.layers[0].regular_file_bytes == apparent_bytes
    assert result.files_total == 1
    assert result.visible_bytes == apparent_bytes
    files = stack_archive(path).visible_files()
    assert shown(files) == [("var/log/lastlog", 0, 0, apparent_bytes)]
    assert files[0].entry.sparse


@pytest.mark.parametrize("tar_format", [tarfile.PAX_FORMAT, tarfile.GNU_FORMAT])
def test_long_names_visible(tmp_path: Path, tar_format: int) -> None:
    name = "/".join(["segment" * 6] * 6) + "/leaf"
    lower = layer_tar([file(name, b"l" * 7), file("short", b"s")], tar_format)
    upper = layer_tar([file(name, b"m" * 1)], tar_format)
    path = docker_archive(tmp_path / "image.tar", [lower, upper])
    result = analyze_archive(path)
    assert counts(result) == [(2, 0, 0, 7), (0, 1, 0, 0)]
    assert result.files_total == 2
    assert result.visible_bytes == 2
    assert shown(stack_archive(path).visible_files()) == [
        (name, 1, 1, 1),
        ("short", 0, 0, 1),
    ]


@pytest.mark.parametrize("tar_format", [tarfile.PAX_FORMAT, tarfile.GNU_FORMAT])
def test_non_utf8_names_visible(tmp_path: Path, tar_format: int) -> None:
    name = b"caf\xe9/men\xfc".decode("utf-8", "surrogateescape")
    lower = layer_tar([file(name, b"n" * 5), file("plain", b"p" * 2)], tar_format)
    upper = layer_tar([file(name, b"o" * 3)], tar_format)
    path = docker_archive(tmp_path / "image.tar", [lower, upper])
    result = analyze_archive(path)
    assert counts(result) == [(2, 0, 0, 5), (0, 1, 0, 0)]
    assert result.files_total == 2
    assert result.visible_bytes == 5
    files = stack_archive(path).visible_files()
    assert shown(files) == [(name, 1, 1, 3), ("plain", 0, 0, 2)]
    assert files[0].path.encode("utf-8", "surrogateescape") == b"caf\xe9/men\xfc"


def test_directory_replaced_by_file_visible(tmp_path: Path) -> None:
    result, files = analyze_and_stack(
        tmp_path,
        [directory("d"), file("d/a", b"a" * 4), directory("d/s"), file("d/s/b", b"b")],
        [file("d", b"f" * 3)],
    )
    # d itself counts as modified and its 2 files as removed.
    assert counts(result) == [(2, 0, 0, 5), (0, 1, 2, 0)]
    assert result.files_total == 1
    assert result.visible_bytes == 3
    assert shown(files) == [("d", 1, 1, 3)]


def test_file_replaced_by_directory_visible(tmp_path: Path) -> None:
    result, files = analyze_and_stack(
        tmp_path,
        [file("p", b"p" * 8), file("q", b"q")],
        [directory("p"), file("p/x", b"x" * 2), file("p/y", b"y" * 3)],
    )
    # The file p counts as removed, and p/x and p/y are new paths.
    assert counts(result) == [(2, 0, 0, 8), (2, 0, 1, 0)]
    assert result.files_total == 3
    assert result.visible_bytes == 6
    assert shown(files) == [("p/x", 1, 1, 2), ("p/y", 1, 1, 3), ("q", 0, 0, 1)]


RECREATED_LAYERS = {
    # Docker 20.10 (overlay2) and Podman 4.3 write `rm -rf /d && mkdir /d` as the
    # directory, an opaque marker, then the new entries. The marker may come last.
    "opaque-first": [
        directory("d"),
        file("d/.wh..wh..opq", b""),
        file("d/new", b"n" * 2),
        directory("d/sub"),
        file("d/sub/x", b"x"),
    ],
    "opaque-last": [
        directory("d"),
        file("d/new", b"n" * 2),
        directory("d/sub"),
        file("d/sub/x", b"x"),
        file("d/.wh..wh..opq", b""),
    ],
    # The same change written as a whiteout of d and a new d.
    "whiteout-first": [
        file(".wh.d", b""),
        directory("d"),
        file("d/new", b"n" * 2),
        directory("d/sub"),
        file("d/sub/x", b"x"),
    ],
    "whiteout-last": [
        directory("d"),
        file("d/new", b"n" * 2),
        directory("d/sub"),
        file("d/sub/x", b"x"),
        file(".wh.d", b""),
    ],
}


@pytest.mark.parametrize("order", list(RECREATED_LAYERS))
def test_directory_deleted_and_recreated(tmp_path: Path, order: str) -> None:
    result, files = analyze_and_stack(
        tmp_path,
        [
            directory("d"),
            file("d/old", b"o" * 10),
            directory("d/sub"),
            file("d/sub/old", b"s" * 20),
            file("d/new", b"w" * 30),
            file("keep", b"k" * 4),
        ],
        RECREATED_LAYERS[order],
    )
    # Wherever the marker sits, d/new modifies a lower path, d/sub/x adds one and
    # d/old and d/sub/old are removed.
    assert counts(result) == [(4, 0, 0, 60), (1, 1, 2, 0)]
    assert result.files_total == 3
    assert result.visible_bytes == 7
    assert result.hidden_bytes == 60
    assert shown(files) == [
        ("d/new", 1, 1, 2),
        ("d/sub/x", 1, 1, 1),
        ("keep", 0, 0, 4),
    ]


def test_opaque_directory_visible(tmp_path: Path) -> None:
    result, files = analyze_and_stack(
        tmp_path,
        [directory("etc"), file("etc/a", b"a" * 5), file("etc/b", b"b" * 6)],
        [file("etc/c", b"c" * 7)],
        [directory("etc"), file("etc/.wh..wh..opq", b""), file("etc/d", b"d")],
    )
    assert counts(result) == [(2, 0, 0, 11), (1, 0, 0, 7), (1, 0, 3, 0)]
    assert result.files_total == 1
    assert result.visible_bytes == 1
    assert shown(files) == [("etc/d", 2, 2, 1)]


@pytest.mark.parametrize(
    ("name", "target"),
    [
        ("etc/localtime", "/usr/share/zoneinfo/UTC"),
        ("usr/lib/os-release", "../../etc/os-release"),
        ("a/b/c", "/../x"),
        ("link", "/"),
        ("empty", ""),
    ],
)
def test_symlink_inside_root(tmp_path: Path, name: str, target: str) -> None:
    result, files = analyze_and_stack(tmp_path, [symlink(name, target)])
    assert result.files_total == 1
    assert result.layers[0].size_bytes == len(target)
    assert [(found.path, found.entry.link_target) for found in files] == [
        (name, target)
    ]


@pytest.mark.parametrize(
    ("name", "target"),
    [("link", "/../etc"), ("link", ".."), ("a/link", "../../etc"), ("a/l", "/../..")],
)
def test_symlink_escape_rejected(tmp_path: Path, name: str, target: str) -> None:
    with pytest.raises(ImageInvalid) as caught:
        analyze(tmp_path, [symlink(name, target)])
    assert f"outside the root: 'symlink {name} -> {target}'" in str(caught.value)
