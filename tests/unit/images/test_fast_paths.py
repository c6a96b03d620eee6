"""Fast paths of the image analysis, checked against the slower code they replace."""

from __future__ import annotations

import io
import os
import random
import sys
import tarfile
from itertools import product
from pathlib import Path

import pytest

from hyperlane.images import analyze_archive
from hyperlane.images.archive import _MemberData
from hyperlane.images.efficiency import compute_dive_efficiency
from hyperlane.images.entries import EntryKind, LayerEntry
from hyperlane.images.junk import (
    JUNK_RULES,
    JunkRule,
    _rule_index,
    _RuleMatcher,
    compile_rules,
)
from hyperlane.images.layers import _unsigned_checksum
from hyperlane.images.metadata import _Tree
from tests.unit.images.builders import Entry, detailed_archive, directory, file


def test_checksum_matches_byte_sum() -> None:
    generator = random.Random(7)
    headers = [bytes(512), b"\xff" * 512]
    headers += [generator.randbytes(512) for _ in range(500)]
    for header in headers:
        expected = 256 + sum(header[:148]) + sum(header[156:])
        assert _unsigned_checksum(header) == expected


def test_checksum_matches_tarfile() -> None:
    member = tarfile.TarInfo("usr/share/doc/example/changelog.gz")
    member.size = 12345
    header = member.tobuf(tarfile.GNU_FORMAT)
    assert _unsigned_checksum(header) == int(header[148:154], 8)


def _junk_paths() -> list[str]:
    parts = [
        "usr", "share", "doc", "locale", "de", ".git", "site-packages",
        "node_modules", "tests", "test", "__pycache__", "x.pyc", "lib.a",
        "include", "root", ".cache", "pip", "var", "cache", "apt", "copyright",
    ]  # fmt: skip
    paths = ["/".join(names) for names in product(parts, repeat=3)]
    paths += [
        "usr/share/locale/locale.alias",
        "usr/share/doc/pkg/copyright",
        "usr/bin/gcc-12",
        "usr/lib/llvm-14/bin/clang",
        "var/cache/apt/archives/x.deb",
        "home/user/.npm/_cacache/x",
        ".hg/store",
        "a.pyo",
    ]
    return paths


@pytest.mark.parametrize("kept_locales", [[], ["de", "de_DE"]])
def test_rule_matcher_matches_regex(kept_locales: list[str]) -> None:
    regex = compile_rules(JUNK_RULES, kept_locales)
    matcher = _RuleMatcher(JUNK_RULES, kept_locales)
    for path in _junk_paths():
        assert matcher.rule_index(path) == _rule_index(regex, path), path


def test_rule_matcher_custom_rules() -> None:
    """Rules that mix anchored and "**" patterns, patterns without a literal and a
    rule without patterns pick the same rule as the full regex."""
    rules = (
        JunkRule("none", "no patterns", "-", ()),
        JunkRule("mixed", "mixed", "-", ("/usr/share/doc/**", "**/*.a", "**/.git/**")),
        JunkRule("any", "every name", "-", ("**/*",), exclude=("**/keep",)),
        JunkRule("late", "never reached", "-", ("**/lib.a",)),
    )
    regex = compile_rules(rules)
    matcher = _RuleMatcher(rules, [])
    paths = [*_junk_paths(), "keep", "a/keep", "x.a", "usr/share/doc/keep", ""]
    for path in paths:
        assert matcher.rule_index(path) == _rule_index(regex, path), path


def test_member_data_reads_range(tmp_path: Path) -> None:
    path = tmp_path / "data"
    path.write_bytes(bytes(range(256)) * 4)
    descriptor = os.open(path, os.O_RDONLY)
    try:
        reader = io.BufferedReader(_MemberData(descriptor, 10, 600))
        assert reader.read(5) == bytes(range(10, 15))
        assert reader.read() == (bytes(range(256)) * 4)[15:610]
        assert reader.read(1) == b""
    finally:
        os.close(descriptor)


def test_member_data_cut_off(tmp_path: Path) -> None:
    path = tmp_path / "data"
    path.write_bytes(b"x" * 100)
    descriptor = os.open(path, os.O_RDONLY)
    try:
        reader = io.BufferedReader(_MemberData(descriptor, 50, 200))
        with pytest.raises(tarfile.ReadError, match="unexpected end of data"):
            reader.read()
    finally:
        os.close(descriptor)


def _record(path: str) -> LayerEntry:
    return LayerEntry(0, path, EntryKind.FILE, 1, 0o644, 0, 0, None, b"d" * 16, False)


def test_tree_file_replaces_directory() -> None:
    tree = _Tree()
    tree.put("a/b/c", _record("a/b/c"))
    assert tree.lookup("a/b/c") is not None
    tree.put("a/b", _record("a/b"))
    assert tree.lookup("a/b/c") is None
    tree.put("a/b/c", _record("a/b/c"))
    assert tree.lookup("a/b") is None
    assert tree.lookup("a/b/c") is not None


def test_tree_remove_and_clear() -> None:
    tree = _Tree()
    tree.put("a/b/c", _record("a/b/c"))
    tree.remove("a/b")
    assert tree.lookup("a/b/c") is None
    tree.put("a/b/c", _record("a/b/c"))
    tree.clear("a")
    assert tree.lookup("a/b/c") is None
    tree.put("a/b/c", _record("a/b/c"))
    tree.clear("")
    assert tree.lookup("a/b/c") is None


def test_inefficient_files_largest_first() -> None:
    """More repeated paths than the report lists, with tied sizes, come out as a
    full sort by cumulative bytes and then path would order them."""

    def layer(index: int) -> list[LayerEntry]:
        return [
            LayerEntry(
                index,
                f"d/p{n:02d}",
                EntryKind.FILE,
                n % 3,
                0o644,
                0,
                0,
                None,
                None,
                False,
            )
            for n in range(30)
        ]

    dive = compute_dive_efficiency([layer(0), layer(1)])
    expected = sorted(
        (f"/d/p{n:02d}" for n in range(30)),
        key=lambda path: (-(int(path[-2:]) % 3), path),
    )
    assert dive.inefficient_file_count == 30
    assert [item.path for item in dive.inefficient_files] == expected[:20]
    assert all(item.count == 2 for item in dive.inefficient_files)
    assert dive.wasted_bytes == sum(2 * (n % 3) for n in range(30))


def test_first_layer_whiteout_efficiency(tmp_path: Path) -> None:
    """A first layer that deletes one of its own files stacks a copy of itself."""
    layers: list[list[Entry]] = [
        [directory("app"), file("app/a", b"a" * 10), file("app/.wh.a", b"")],
        [file("app/a", b"b" * 20)],
    ]
    analysis = analyze_archive(detailed_archive(tmp_path / "image.tar", layers))
    paths = [item.path for item in analysis.dive.inefficient_files]
    assert paths == ["/app/a"]
    # The first layer visits its own file and its whiteout, the second its file.
    assert analysis.dive.inefficient_files[0].count == 3
    assert analysis.dive.wasted_bytes == 30
    assert analysis.dive.efficiency == 0.0


def test_switch_interval_restored(tmp_path: Path) -> None:
    """A layer larger than one read runs the reading thread, which shortens the
    GIL switch interval while it reads."""
    before_seconds = sys.getswitchinterval()
    layers = [[file("big", b"x" * (3 << 20)), file("small", b"y")]]
    analysis = analyze_archive(detailed_archive(tmp_path / "image.tar", layers))
    assert analysis.layers[0].regular_file_bytes == (3 << 20) + 1
    assert sys.getswitchinterval() == before_seconds
