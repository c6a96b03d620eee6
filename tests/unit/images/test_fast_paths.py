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
from hyperlane.images.duplicates import find_duplicates
from hyperlane.images.efficiency import (
    _count_visit,
    _count_visits,
    _layer_tree,
    _RepeatedPath,
    _walk,
    compute_dive_efficiency,
)
from hyperlane.images.entries import EntryKind, LayerEntry
from hyperlane.images.junk import (
    JUNK_RULES,
    JunkRule,
    _rule_index,
    _RuleMatcher,
    compile_rules,
)
from hyperlane.images.largest import find_largest_files
from hyperlane.images.layers import _unsigned_checksum
from hyperlane.images.metadata import _Tree
from hyperlane.images.stacking import WHITEOUT_PREFIX, VisibleFile
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


def test_rule_matcher_tricky_paths() -> None:
    """Names with surrogate escapes, newlines and glob characters, locales whose
    names contain "/" or wildcards, and paths that are not normalised pick the
    same rule as the full regex."""
    undecodable = b"caf\xe9".decode("utf-8", "surrogateescape")
    kept_locales = ["de", "pt_BR", "x.a/b", "f*", "g?"]
    parts = [
        "usr", "share", "locale", "doc", "de", "pt_BR", "x.a", "b", "fr", "g1",
        "LC_MESSAGES", "copyright", "home", "me", ".cache", "pip", ".npm", "bin",
        "gcc-12", "lib", "llvm-14", "clang", "include", ".git", "node_modules",
        "test", undecodable, "a\nb", "*", "?", "[x]", "x.pyc", "lib.a",
    ]  # fmt: skip
    paths = ["/".join(names) for names in product(parts, repeat=3)]
    paths += [
        "usr/share/locale/locale.alias",
        "usr/share/locale/x.a/b/LC_MESSAGES/app.mo",
        "usr/share/locale/fr/LC_MESSAGES/app.mo",
        "usr/share/doc/pkg/copyright",
        "usr/share/doc/pkg/sub/copyright",
        "usr/lib/llvm-14/bin/clang++",
        f"usr/share/doc/{undecodable}/x",
        "/usr/share/doc/x",
        "usr//share/doc/x",
        "usr/share/doc/",
        "usr/share/doc",
        "x.pyc",
        "/",
        "",
    ]

    regex = compile_rules(JUNK_RULES, kept_locales)
    matcher = _RuleMatcher(JUNK_RULES, kept_locales)
    # Twice, so that the second round reads the kept directory states.
    for path in paths + paths:
        assert matcher.rule_index(path) == _rule_index(regex, path), repr(path)


def _file_record(
    layer_index: int,
    path: str,
    size_bytes: int,
    digest: bytes | None,
    kind: EntryKind = EntryKind.FILE,
) -> LayerEntry:
    return LayerEntry(
        layer_index, path, kind, size_bytes, 0o644, 0, 0, None, digest, False
    )


def _largest_reference(
    visible_files: list[VisibleFile], limit: int
) -> list[tuple[str, int, list[str]]]:
    """Group every regular file by content and sort the groups."""
    names: dict[int, tuple[LayerEntry, list[str]]] = {}
    for visible in visible_files:
        if visible.content.kind is EntryKind.FILE:
            group = names.setdefault(id(visible.content), (visible.content, []))
            group[1].append(visible.path)
    ordered = sorted(names.values(), key=lambda item: (-item[0].size_bytes, item[1][0]))
    return [(paths[0], content.size_bytes, paths[1:]) for content, paths in ordered][
        :limit
    ]


def test_largest_files_match_full_sort() -> None:
    """Tied sizes, hard links among the largest names, symlinks and empty files
    list as grouping and sorting every file does."""
    generator = random.Random(11)
    for _ in range(200):
        contents = [
            _file_record(0, f"c{index}", generator.choice([0, 1, 5, 5, 9, 40]), None)
            for index in range(generator.randint(0, 30))
        ]
        contents += [
            _file_record(0, f"s{index}", 0, None, EntryKind.SYMLINK)
            for index in range(3)
        ]
        visible_files = []
        for index in range(generator.randint(0, 60)):
            if not contents:
                break
            content = generator.choice(contents)
            visible_files.append(VisibleFile(f"p{index:03d}", content, content))
        for limit in (0, 1, 3, 20):
            result = find_largest_files(visible_files, limit)
            rows = [(item.path, item.size_bytes, item.hard_links) for item in result]
            assert rows == _largest_reference(visible_files, limit)


def _duplicates_reference(
    layer_entries: list[list[LayerEntry]], visible_files: list[VisibleFile]
) -> list[tuple[str, int, int, list[tuple[int, str, bool]]]]:
    """Group the records by digest with a list each and sort by wasted bytes."""
    visible_ids = {id(visible.content) for visible in visible_files}
    groups: dict[bytes, list[LayerEntry]] = {}
    for entries in layer_entries:
        for entry in entries:
            if entry.kind is not EntryKind.FILE or not entry.size_bytes:
                continue
            if entry.content_xxh3_128 is not None:
                groups.setdefault(entry.content_xxh3_128, []).append(entry)
    rows = [
        (
            digest.hex(),
            records[0].size_bytes,
            (len(records) - 1) * records[0].size_bytes,
            [(r.layer_index, r.path, id(r) in visible_ids) for r in records],
        )
        for digest, records in groups.items()
        if len(records) > 1
    ]
    rows.sort(key=lambda row: (-row[2], row[0]))
    return rows


def test_duplicates_match_reference() -> None:
    """Digests of different lengths, tied wasted bytes, empty and sparse files
    and hard-linked visible copies group as one list per digest does."""
    generator = random.Random(5)
    digests = [b"\x01", b"\x01\x00", b"\x00\xff", b"\xff", b"\x10" * 16, None]
    for _ in range(200):
        layer_entries = [
            [
                _file_record(
                    layer_index,
                    f"f{generator.randint(0, 9)}",
                    generator.choice([0, 2, 3]),
                    generator.choice(digests),
                )
                for _ in range(generator.randint(0, 8))
            ]
            for layer_index in range(3)
        ]
        records = [entry for entries in layer_entries for entry in entries]
        visible_files = [
            VisibleFile(f"v{index}", content, content)
            for index, content in enumerate(
                generator.sample(records, len(records) // 2) * 2
            )
        ]
        report = find_duplicates(layer_entries, visible_files, limit=4)
        expected = _duplicates_reference(layer_entries, visible_files)
        rows = [
            (
                group.xxh3_128,
                group.size_bytes,
                group.wasted_bytes,
                [(c.layer_index, c.path, c.visible) for c in group.copies],
            )
            for group in report.groups
        ]
        assert rows == expected[:4]
        assert report.group_count == len(expected)
        assert report.duplicate_bytes == sum(row[2] for row in expected)
        visible_bytes = sum(
            max(sum(copy[2] for copy in row[3]) - 1, 0) * row[1] for row in expected
        )
        assert report.visible_duplicate_bytes == visible_bytes


def test_count_visits_matches_loop() -> None:
    """Paths visited twice in one layer, paths with the -1 of an aborted layer and
    new paths add up as one visit at a time does."""
    generator = random.Random(3)
    for _ in range(300):
        minimum_bytes = {f"p{n}": generator.choice([-1, 0, 4]) for n in range(4)}
        repeated = {"p1": _RepeatedPath(8, 2)} if minimum_bytes["p1"] >= 0 else {}
        expected_minimum = dict(minimum_bytes)
        expected_repeated = {
            path: _RepeatedPath(totals.cumulative_bytes, totals.count)
            for path, totals in repeated.items()
        }
        paths = [f"p{generator.randint(0, 7)}" for _ in range(generator.randint(0, 6))]
        sizes = [generator.randint(0, 5) for _ in paths]
        total = _count_visits((paths, sizes), minimum_bytes, repeated)
        for path, size_bytes in zip(paths, sizes, strict=True):
            _count_visit(path, size_bytes, expected_minimum, expected_repeated)
        assert total == sum(sizes)
        assert minimum_bytes == expected_minimum
        assert repeated == expected_repeated


def test_visit_paths_match_names() -> None:
    """The path kept on each leaf of a layer tree is the one that dive's
    FileNode.Path gives from the names: whiteouts lose their prefix, implied
    directories, opaque markers, a root member and surrogate escapes included."""
    undecodable = b"caf\xe9".decode("utf-8", "surrogateescape")

    def record(path: str, kind: EntryKind) -> LayerEntry:
        return LayerEntry(0, path, kind, 1, 0o644, 0, 0, None, None, False)

    entries = [
        record("", EntryKind.DIRECTORY),
        record("a/b/c", EntryKind.FILE),
        record("a/b", EntryKind.WHITEOUT),
        record("a/d", EntryKind.OPAQUE),
        record("e/.wh.f/g", EntryKind.FILE),
        record("e/.wh..wh.h/i", EntryKind.FILE),
        record(f"{undecodable}/x", EntryKind.FILE),
        record(f"{undecodable}/x", EntryKind.FILE),
        record("top", EntryKind.WHITEOUT),
    ]
    layer = _layer_tree(entries)
    leaves = 0
    for names, node, _ in _walk(layer.root):
        if node.children:
            continue
        leaves += 1
        visit_names = list(names)
        if visit_names[-1].startswith(WHITEOUT_PREFIX):
            visit_names[-1] = visit_names[-1][len(WHITEOUT_PREFIX) :]
        expected = ("/" + "/".join(visit_names)).replace("//", "/")
        assert "/" + node.path == expected, names
    # "", a/b/c, a/.wh.b, a/d, e/.wh.f/g, the undecodable x and .wh.top, while
    # ".wh..wh.h" gets no node.
    assert leaves == 7


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
