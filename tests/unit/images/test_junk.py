"""Junk categories of hand-built layers, checked against hand-counted figures."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from hyperlane.images import ImageAnalysis, analyze_archive
from hyperlane.images.junk import JUNK_RULES, JunkCategory, selected_locales
from tests.unit.images.builders import (
    Entry,
    Owned,
    SparseFile,
    detailed_archive,
    directory,
    file,
    hardlink,
    symlink,
)


def analyze(
    tmp_path: Path,
    *layers: Sequence[Entry | Owned | SparseFile],
    env: Sequence[str] | None = None,
) -> ImageAnalysis:
    return analyze_archive(detailed_archive(tmp_path / "image.tar", layers, env))


def category(result: ImageAnalysis, name: str) -> JunkCategory:
    matches = [c for c in result.junk.categories if c.category == name]
    assert len(matches) == 1, [c.category for c in result.junk.categories]
    return matches[0]


APT_CACHE = [
    file("var/cache/apt/archives/curl.deb", b"c" * 1000),
    file("var/cache/apt/pkgcache.bin", b"p" * 300),
    file("var/lib/apt/lists/deb.debian.org_dists_bookworm_InRelease", b"r" * 200),
    file("usr/bin/curl", b"x" * 50),
]


def test_apt_cache_left(tmp_path: Path) -> None:
    result = analyze(tmp_path, APT_CACHE)
    apt = category(result, "apt")
    assert apt.files == 3
    assert apt.size_bytes == 1500
    assert apt.example_paths == [
        "var/cache/apt/archives/curl.deb",
        "var/cache/apt/pkgcache.bin",
        "var/lib/apt/lists/deb.debian.org_dists_bookworm_InRelease",
    ]
    assert apt.hidden_files == 0
    assert apt.hidden_bytes == 0
    assert "apt-get clean" in apt.fix
    assert result.junk.files == 3
    assert result.junk.size_bytes == 1500


def test_apt_cache_deleted_later(tmp_path: Path) -> None:
    # `rm` in a later RUN hides the cache but every layer still ships it.
    cleanup = [
        directory("var/cache/apt/archives"),
        file("var/cache/apt/archives/.wh.curl.deb", b""),
        file("var/cache/apt/.wh.pkgcache.bin", b""),
        file("var/lib/apt/.wh.lists", b""),
    ]
    result = analyze(tmp_path, APT_CACHE, cleanup)
    apt = category(result, "apt")
    assert apt.files == 0
    assert apt.size_bytes == 0
    assert apt.example_paths == []
    assert apt.hidden_files == 3
    assert apt.hidden_bytes == 1500
    assert apt.hidden_example_paths[0] == "var/cache/apt/archives/curl.deb"
    assert result.junk.size_bytes == 0
    assert result.junk.hidden_files == 3
    assert result.junk.hidden_bytes == 1500


def test_overwritten_junk_is_hidden(tmp_path: Path) -> None:
    result = analyze(
        tmp_path,
        [file("app/__pycache__/m.cpython-311.pyc", b"1" * 70)],
        [file("app/__pycache__/m.cpython-311.pyc", b"2" * 80)],
    )
    bytecode = category(result, "python_bytecode")
    assert (bytecode.files, bytecode.size_bytes) == (1, 80)
    assert (bytecode.hidden_files, bytecode.hidden_bytes) == (1, 70)


def test_git_directory(tmp_path: Path) -> None:
    result = analyze(
        tmp_path,
        [
            directory("src/app/.git/objects/pack"),
            file("src/app/.git/objects/pack/pack-1.pack", b"p" * 400),
            file("src/app/.git/HEAD", b"ref: refs/heads/main\n"),
            file("src/app/main.py", b"print()\n"),
            file("src/app/.gitignore", b"*.pyc\n"),
        ],
    )
    vcs = category(result, "vcs")
    assert vcs.files == 2
    assert vcs.size_bytes == 421
    assert vcs.example_paths == [
        "src/app/.git/objects/pack/pack-1.pack",
        "src/app/.git/HEAD",
    ]
    assert result.junk.files == 2


def test_hard_linked_junk_counted_once(tmp_path: Path) -> None:
    result = analyze(
        tmp_path,
        [
            file("usr/share/doc/a/README", b"r" * 100),
            hardlink("usr/share/doc/b/README", "usr/share/doc/a/README"),
            symlink("usr/share/doc/c", "a"),
        ],
    )
    docs = category(result, "docs")
    assert docs.files == 2
    assert docs.size_bytes == 100


def test_sparse_junk_apparent_size(tmp_path: Path) -> None:
    sparse = SparseFile("var/cache/apt/archives/big.deb", 1 << 30, ((0, b"!"),))
    result = analyze(tmp_path, [sparse])
    apt = category(result, "apt")
    assert apt.files == 1
    assert apt.size_bytes == 1 << 30


def test_locale_kept_for_env(tmp_path: Path) -> None:
    result = analyze(
        tmp_path,
        [
            file("usr/share/locale/de/LC_MESSAGES/apt.mo", b"d" * 30),
            file("usr/share/locale/de_DE/LC_MESSAGES/apt.mo", b"e" * 20),
            file("usr/share/locale/fr/LC_MESSAGES/apt.mo", b"f" * 40),
            file("usr/share/locale/pt_BR/LC_MESSAGES/apt.mo", b"p" * 50),
            file("usr/share/locale/locale.alias", b"a" * 10),
        ],
        env=["PATH=/bin", "LANG=de_DE.UTF-8"],
    )
    locale = category(result, "locale")
    assert locale.files == 2
    assert locale.size_bytes == 90
    assert locale.example_paths == [
        "usr/share/locale/pt_BR/LC_MESSAGES/apt.mo",
        "usr/share/locale/fr/LC_MESSAGES/apt.mo",
    ]
    assert result.junk.kept_locales == ["de", "de.UTF-8", "de_DE", "de_DE.UTF-8"]


def test_locale_all_junk_for_c(tmp_path: Path) -> None:
    result = analyze(
        tmp_path,
        [
            file("usr/share/locale/de/LC_MESSAGES/apt.mo", b"d" * 30),
            file("usr/share/locale/fr/LC_MESSAGES/apt.mo", b"f" * 40),
        ],
        env=["LANG=C.UTF-8"],
    )
    assert category(result, "locale").files == 2
    assert result.junk.kept_locales == []


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ([], []),
        (["LANG=C"], []),
        (["LC_ALL=POSIX"], []),
        (["LANG=fr_FR"], ["fr", "fr_FR"]),
        (["LANGUAGE=pt_BR:pt", "LANG=C.UTF-8"], ["pt", "pt_BR"]),
        (["LC_MESSAGES=sr_RS@latin"], ["sr", "sr@latin", "sr_RS", "sr_RS@latin"]),
        (["LANGUAGE="], []),
        (["NOT_LANG=de_DE"], []),
    ],
)
def test_selected_locales(env: list[str], expected: list[str]) -> None:
    assert selected_locales(env) == expected


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("var/cache/apt/archives/partial/x.deb", "apt"),
        ("var/cache/apt/srcpkgcache.bin", "apt"),
        ("var/lib/apt/lists/partial/x_Packages", "apt"),
        ("var/cache/apk/APKINDEX.tar.gz", "apk"),
        ("var/cache/dnf/fedora/packages/x.rpm", "dnf_yum"),
        ("var/cache/yum/x86_64/7/base/repomd.xml", "dnf_yum"),
        ("root/.cache/pip/http/a/b", "pip"),
        ("home/alice/.cache/pip/wheels/x.whl", "pip"),
        ("root/.npm/_cacache/index-v5/x", "npm"),
        ("home/node/.npm/_logs/debug.log", "npm"),
        ("root/.cargo/registry/cache/x.crate", "cargo"),
        ("home/bob/.cargo/registry/src/x/lib.rs", "cargo"),
        ("usr/local/cargo/registry/index/x", "cargo"),
        ("app/.git/config", "vcs"),
        ("app/vendor/lib/.svn/entries", "vcs"),
        ("srv/.hg/store/data", "vcs"),
        ("app/.git/hooks/x.pyc", "vcs"),
        ("usr/lib/python3.11/site-packages/pkg/tests/test_a.py", "tests"),
        ("usr/lib/python3/dist-packages/pkg/sub/test/data.bin", "tests"),
        ("usr/lib/python3.11/site-packages/pkg/tests/__pycache__/t.pyc", "tests"),
        ("app/node_modules/lodash/test/x.js", "tests"),
        ("app/node_modules/@scope/pkg/__tests__/x.js", "tests"),
        ("app/__pycache__/main.cpython-311.pyc", "python_bytecode"),
        ("usr/lib/python3.11/os.pyc", "python_bytecode"),
        ("app/legacy.pyo", "python_bytecode"),
        ("usr/share/doc/curl/README", "docs"),
        ("usr/share/man/man1/curl.1.gz", "docs"),
        ("usr/share/info/grep.info.gz", "docs"),
        ("usr/local/share/man/man1/tool.1", "docs"),
        ("usr/share/locale/fr/LC_MESSAGES/x.mo", "locale"),
        ("usr/bin/gcc-12", "compilers"),
        ("usr/bin/x86_64-linux-gnu-gcc-12", "compilers"),
        ("usr/bin/g++", "compilers"),
        ("usr/bin/cc", "compilers"),
        ("usr/bin/cpp-12", "compilers"),
        ("usr/bin/clang-15", "compilers"),
        ("usr/lib/gcc/x86_64-linux-gnu/12/cc1", "compilers"),
        ("usr/libexec/gcc/x86_64-redhat-linux/13/cc1plus", "compilers"),
        ("usr/lib/llvm-15/bin/clang", "compilers"),
        ("usr/include/stdio.h", "compilers"),
        ("usr/local/include/zlib.h", "compilers"),
        ("usr/lib/x86_64-linux-gnu/libc.a", "compilers"),
        ("usr/share/doc/curl/copyright", None),
        ("usr/share/locale/locale.alias", None),
        ("usr/bin/python3", None),
        ("usr/bin/ccache", None),
        ("usr/lib/x86_64-linux-gnu/libc.so.6", None),
        ("app/test/fixture.json", None),
        ("app/tests/test_main.py", None),
        ("root/.cache/other/x", None),
        ("var/cache/debconf/config.dat", None),
        ("app/.gitignore", None),
        ("app/main.py", None),
    ],
)
def test_rule_table(tmp_path: Path, path: str, expected: str | None) -> None:
    result = analyze(tmp_path, [file(path, b"x" * 7)])
    names = [c.category for c in result.junk.categories]
    assert names == ([expected] if expected else [])
    assert result.junk.files == (1 if expected else 0)
    assert result.junk.size_bytes == (7 if expected else 0)


def test_rules_have_fix_and_description() -> None:
    names = [rule.category for rule in JUNK_RULES]
    assert len(names) == len(set(names))
    for rule in JUNK_RULES:
        assert rule.description, rule.category
        assert rule.fix, rule.category
        assert rule.patterns, rule.category


def test_categories_sorted_by_bytes(tmp_path: Path) -> None:
    result = analyze(
        tmp_path,
        [
            file("usr/share/doc/x/README", b"d" * 10),
            file("var/cache/apk/index", b"a" * 30),
            file("usr/include/x.h", b"h" * 20),
        ],
    )
    assert [c.category for c in result.junk.categories] == [
        "apk",
        "compilers",
        "docs",
    ]
    assert result.junk.size_bytes == 60


def test_example_paths_limited(tmp_path: Path) -> None:
    docs = [file(f"usr/share/doc/p{n}/README", b"r" * (n + 1)) for n in range(7)]
    result = analyze(tmp_path, docs)
    assert category(result, "docs").example_paths == [
        "usr/share/doc/p6/README",
        "usr/share/doc/p5/README",
        "usr/share/doc/p4/README",
        "usr/share/doc/p3/README",
        "usr/share/doc/p2/README",
    ]
    assert category(result, "docs").files == 7
