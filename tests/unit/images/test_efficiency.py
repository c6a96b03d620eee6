"""dive 0.13.1's efficiency figures of hand-built layers, against hand-counted values.

dive visits the leaves of each layer's own tree: a path counts once per layer that
has a leaf there, and a whiteout counts the size of the directory it hides (0 for
a file). tests/integration/images/test_dive_compare.py runs the real dive on
archives like these.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from hyperlane.images import ImageAnalysis, analyze_archive
from hyperlane.images.efficiency import (
    INEFFICIENT_FILES_LISTED,
    DiveEfficiency,
    InefficientFile,
)
from tests.unit.images.builders import (
    Entry,
    detailed_archive,
    directory,
    docker_archive,
    file,
    hardlink,
    layer_tar,
    owned,
    symlink,
)


def analyze(tmp_path: Path, *layers: list[Entry]) -> ImageAnalysis:
    tars = [layer_tar(entries) for entries in layers]
    return analyze_archive(docker_archive(tmp_path / "image.tar", tars))


def listed(dive: DiveEfficiency) -> list[tuple[str, int, int]]:
    return [
        (item.path, item.count, item.cumulative_bytes)
        for item in dive.inefficient_files
    ]


def test_rewritten_file_counts_both_copies(tmp_path: Path) -> None:
    result = analyze(
        tmp_path,
        [directory("a"), file("a/f", b"x" * 100)],
        [directory("a"), file("a/f", b"y" * 30)],
    )
    dive = result.dive
    # Visits of /a/f: 100 and 30, so its smallest is 30 of 130.
    assert dive.efficiency == 30 / 130
    assert dive.wasted_bytes == 130
    assert listed(dive) == [("/a/f", 2, 130)]
    assert dive.inefficient_file_count == 1
    assert dive.size_bytes == 130
    assert dive.user_size_bytes == 30
    assert dive.user_wasted_percent == 130 / 30 * 100
    # Only the lower copy is hidden from the final file system.
    assert result.hidden_bytes == 100


def test_deleted_file_counts_zero_bytes(tmp_path: Path) -> None:
    result = analyze(
        tmp_path,
        [directory("a"), file("a/f", b"x" * 100), file("keep", b"k" * 10)],
        [directory("a"), file("a/.wh.f", b"")],
    )
    dive = result.dive
    # /a/f: 100, then 0 for the whiteout. /keep: 10. Smallest visits 0 + 10 of 110.
    assert dive.efficiency == 10 / 110
    assert dive.wasted_bytes == 100
    assert listed(dive) == [("/a/f", 2, 100)]
    assert dive.user_size_bytes == 0
    # dive divides by zero user bytes and prints +Inf.
    assert dive.user_wasted_percent is None
    assert result.hidden_bytes == 100


def test_deleted_directory_not_wasted(tmp_path: Path) -> None:
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
    dive = result.dive
    # /d has children in layer 0, so it is no leaf there. The whiteout is its only
    # visit, with the 12 bytes under it, and a single visit is never waste.
    assert dive.efficiency == 1.0
    assert dive.wasted_bytes == 0
    assert dive.inefficient_file_count == 0
    assert dive.inefficient_files == []
    assert result.hidden_bytes == 12


def test_deleted_empty_directory_counts_subtree(tmp_path: Path) -> None:
    result = analyze(
        tmp_path,
        [directory("d")],
        [directory("d"), file("d/f", b"x" * 60)],
        [file(".wh.d", b"")],
    )
    dive = result.dive
    # /d is an empty leaf in layer 0 (0 bytes), then the whiteout counts the 60
    # bytes under it. /d/f counts 60 once. Smallest visits 0 + 60 of 120.
    assert dive.efficiency == 60 / 120
    assert dive.wasted_bytes == 60
    assert listed(dive) == [("/d", 2, 60)]
    assert result.hidden_bytes == 60


def test_implied_directory_whiteout_counts_zero(tmp_path: Path) -> None:
    result = analyze(
        tmp_path,
        [directory("d"), directory("d/e"), file("d/e/f", b"x" * 60)],
        # No member for d or d/e, so dive gives both an empty, non-directory header.
        [file("d/e/g", b"y" * 5)],
        [file(".wh.d", b""), file("d2", b"k")],
        [file("d", b"n" * 9)],
    )
    dive = result.dive
    # /d: 0 for the whiteout, then 9. Smallest visits 60 + 5 + 0 + 1 of 75.
    assert dive.efficiency == 66 / 75
    assert dive.wasted_bytes == 9
    assert listed(dive) == [("/d", 2, 9)]
    # The whiteout hides 60 + 5 bytes of the final file system.
    assert result.hidden_bytes == 65


def test_opaque_directory_ignored(tmp_path: Path) -> None:
    result = analyze(
        tmp_path,
        [directory("d"), file("d/f", b"x" * 100), file("d/h", b"h" * 4)],
        [
            directory("d"),
            file("d/.wh..wh..opq", b""),
            file("d/g", b"y" * 7),
            file("d/h", b"i" * 2),
        ],
    )
    dive = result.dive
    # The marker hides d/f, which dive still counts once. Only d/h, written in
    # both layers, is inefficient: 4 + 2 bytes, smallest 2.
    assert dive.efficiency == (100 + 2 + 7) / (100 + 6 + 7)
    assert dive.wasted_bytes == 6
    assert listed(dive) == [("/d/h", 2, 6)]
    assert result.hidden_bytes == 104


def test_hard_links_count_per_path(tmp_path: Path) -> None:
    result = analyze(
        tmp_path,
        [file("a", b"x" * 40), hardlink("b", "a")],
        [file("a", b"z" * 40)],
        [file("b", b"q" * 8)],
    )
    dive = result.dive
    # A hard link's header has size 0. /a: 40 + 40, smallest 40; /b: 0 + 8,
    # smallest 0.
    assert dive.efficiency == 40 / 88
    assert dive.wasted_bytes == 88
    assert listed(dive) == [("/a", 2, 80), ("/b", 2, 8)]
    assert dive.user_size_bytes == 48
    # The content of layer 0 stays visible through b until layer 2.
    assert result.hidden_bytes == 40


def test_chmod_only_change(tmp_path: Path) -> None:
    tool = file("bin/tool", b"t" * 1000)
    path = detailed_archive(
        tmp_path / "image.tar",
        [[owned(tool, 0o755)], [owned(tool, 0o700)]],
    )
    result = analyze_archive(path)
    dive = result.dive
    # The same 1000 bytes twice: smallest 1000 of 2000.
    assert dive.efficiency == 0.5
    assert dive.wasted_bytes == 2000
    assert listed(dive) == [("/bin/tool", 2, 2000)]
    assert dive.user_wasted_percent == 200.0
    assert result.hidden_bytes == 1000


def test_empty_image(tmp_path: Path) -> None:
    result = analyze(tmp_path)
    dive = result.dive
    assert dive.efficiency == 1.0
    assert dive.wasted_bytes == 0
    assert dive.size_bytes == 0
    assert dive.user_size_bytes == 0
    assert dive.user_wasted_percent is None
    assert dive.inefficient_file_count == 0


def test_layers_without_entries(tmp_path: Path) -> None:
    dive = analyze(tmp_path, [], []).dive
    assert dive.efficiency == 1.0
    assert dive.wasted_bytes == 0
    assert dive.user_wasted_percent is None


def test_empty_directories_listed_with_zero_bytes(tmp_path: Path) -> None:
    dive = analyze(
        tmp_path,
        [directory("tmp"), file("x", b"1")],
        [directory("tmp"), symlink("link", "x"), file("y", b"22")],
    ).dive
    # /tmp is a leaf in both layers, so dive lists it with 0 bytes.
    assert listed(dive) == [("/tmp", 2, 0)]
    assert dive.wasted_bytes == 0
    assert dive.efficiency == 1.0
    # A symlink's header size is 0, so layer 1 has the 2 bytes of y only.
    assert dive.user_size_bytes == 2
    assert dive.user_wasted_percent == 0.0


def test_missing_whiteout_target_aborts_layer(tmp_path: Path) -> None:
    dive = analyze(
        tmp_path,
        [file("b", b"x" * 10)],
        # ".wh.zz" sorts before "b", and no lower layer has zz.
        [file(".wh.zz", b""), file("b", b"y" * 3), file("zzz", b"q" * 5)],
    ).dive
    # dive stops visiting layer 1 at the whiteout: the rewrite of b is not counted,
    # and /zz keeps a smallest visit of -1. Smallest visits 10 - 1 of 10.
    assert dive.efficiency == 9 / 10
    assert dive.wasted_bytes == 0
    assert dive.inefficient_file_count == 0
    assert dive.user_wasted_percent == 0.0


@pytest.mark.parametrize(
    ("name", "efficiency", "expected"),
    [
        # "-a" sorts before ".wh.-a": layer 1 adds -a/g, then removes -a, so the
        # whiteout in layer 2 misses and aborts that layer before it reaches k.
        ("-a", 1.0, []),
        # "a" sorts after ".wh.a": layer 1 removes a, then adds a/g, which the
        # whiteout in layer 2 counts. /a: 20 + 3; /k: 5 + 6.
        ("a", 31 / 57, [("/a", 2, 23), ("/k", 2, 11)]),
    ],
)
def test_whiteout_order_within_layer(
    tmp_path: Path, name: str, efficiency: float, expected: list[tuple[str, int, int]]
) -> None:
    dive = analyze(
        tmp_path,
        [directory(name), file(f"{name}/f", b"x" * 20), file("k", b"k" * 5)],
        [file(f".wh.{name}", b""), directory(name), file(f"{name}/g", b"y" * 3)],
        [file(f".wh.{name}", b""), file("k", b"m" * 6)],
    ).dive
    assert dive.efficiency == efficiency
    assert listed(dive) == expected


def test_whiteout_in_first_layer(tmp_path: Path) -> None:
    dive = analyze(
        tmp_path,
        [file("a", b"x" * 4), file(".wh.zz", b""), file("b", b"p")],
        [file("a", b"y")],
    ).dive
    # The whiteout aborts layer 0 before a and b; /zz counts -1 and /a 1.
    assert dive.efficiency == 0.0
    assert dive.wasted_bytes == 0
    assert dive.size_bytes == 6


def test_inefficient_files_largest_first(tmp_path: Path) -> None:
    count = INEFFICIENT_FILES_LISTED + 5
    lower = [file(f"f{index:02d}", b"a" * (index + 1)) for index in range(count)]
    upper = [file(f"f{index:02d}", b"b") for index in range(count)]
    dive = analyze(tmp_path, lower, upper).dive
    assert dive.inefficient_file_count == count
    assert len(dive.inefficient_files) == INEFFICIENT_FILES_LISTED
    # f24 has 25 + 1 bytes, the largest, and f05 is the 20th.
    assert dive.inefficient_files[0] == InefficientFile("/f24", 2, 26)
    assert dive.inefficient_files[-1] == InefficientFile("/f05", 2, 7)
    assert dive.wasted_bytes == sum(index + 2 for index in range(count))


def test_ties_ordered_by_path(tmp_path: Path) -> None:
    dive = analyze(
        tmp_path,
        [file("b", b"1"), file("a", b"2")],
        [file("b", b"3"), file("a", b"4")],
    ).dive
    assert listed(dive) == [("/a", 2, 2), ("/b", 2, 2)]


def test_analysis_dict_holds_dive(tmp_path: Path) -> None:
    result = analyze(tmp_path, [file("f", b"x" * 3)], [file("f", b"y")])
    document = result.to_dict()["dive"]
    assert document == result.dive.to_dict()
    assert document["inefficient_files"] == [
        {"path": "/f", "count": 2, "cumulative_bytes": 4}
    ]
    assert document["user_wasted_percent"] == 400.0


def test_worked_example(tmp_path: Path) -> None:
    """The three layers of the dive section of docs/image.md."""
    result = analyze(
        tmp_path,
        [
            directory("app"),
            file("app/conf", b"c" * 100),
            directory("app/data"),
            file("app/data/a", b"a" * 500),
            file("app/data/b", b"b" * 300),
            file("app/log", b"l" * 40),
        ],
        [directory("app"), file("app/conf", b"C" * 120), file("app/.wh.log", b"")],
        [directory("app"), file("app/.wh.data", b""), directory("app/cache")],
    )
    dive = result.dive
    assert dive.efficiency == 1700 / 1860
    assert dive.wasted_bytes == 260
    assert listed(dive) == [("/app/conf", 2, 220), ("/app/log", 2, 40)]
    assert dive.size_bytes == 1060
    assert dive.user_size_bytes == 120
    assert dive.user_wasted_percent == 260 / 120 * 100
    assert result.hidden_bytes == 940
