"""Files that a runtime image seldom needs: package caches, docs, build leftovers.

The rules are data: each has a category, globs on the absolute path, a
description and a suggested fix. A path belongs to the first rule in table order
whose globs match it and whose exclusions do not. In a glob, `*` and `?` match
within one path component and `**` matches any number of components.
"""

from __future__ import annotations

import heapq
import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from itertools import product
from typing import Any

from hyperlane.images.entries import EntryKind, LayerEntry
from hyperlane.images.stacking import VisibleFile

# Paths listed per category, largest files first.
EXAMPLE_PATHS = 5
# Environment variables whose locale names select the message catalogs that
# gettext reads, so the locale rule keeps those languages.
LOCALE_VARIABLES = ("LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG")
_LOCALE_DIRECTORY = "/usr/share/locale"
# Regexes of the glob wildcards within one path component.
_GLOB_CHARACTERS = {"*": "[^/]*", "?": "[^/]"}


@dataclass(frozen=True)
class JunkRule:
    """A category of junk and the paths that belong to it."""

    category: str
    description: str
    fix: str
    patterns: tuple[str, ...]
    exclude: tuple[str, ...] = ()
    # True for message catalogs: the languages that the image's environment
    # selects are excluded.
    keep_selected_locales: bool = False


JUNK_RULES: tuple[JunkRule, ...] = (
    JunkRule(
        category="apt",
        description="APT package archives, binary caches and package lists",
        fix="run apt-get clean and rm -rf /var/lib/apt/lists/* in the same RUN as "
        "apt-get install",
        patterns=(
            "/var/cache/apt/**/*.deb",
            "/var/cache/apt/*.bin",
            "/var/lib/apt/lists/**",
        ),
    ),
    JunkRule(
        category="apk",
        description="Alpine apk package cache",
        fix="use apk add --no-cache, or rm -rf /var/cache/apk/* in the same RUN",
        patterns=("/var/cache/apk/**",),
    ),
    JunkRule(
        category="dnf_yum",
        description="dnf and yum package and metadata caches",
        fix="run dnf clean all (or yum clean all) and rm -rf /var/cache/dnf "
        "/var/cache/yum in the same RUN as the install",
        patterns=("/var/cache/dnf/**", "/var/cache/yum/**"),
    ),
    JunkRule(
        category="pip",
        description="pip's download and wheel cache",
        fix="use pip install --no-cache-dir, or a cache mount "
        "(RUN --mount=type=cache,target=/root/.cache/pip)",
        patterns=("/root/.cache/pip/**", "/home/*/.cache/pip/**"),
    ),
    JunkRule(
        category="npm",
        description="npm's package cache and logs",
        fix="run npm cache clean --force in the same RUN as npm ci, or use a cache "
        "mount for ~/.npm",
        patterns=("/root/.npm/**", "/home/*/.npm/**"),
    ),
    JunkRule(
        category="cargo",
        description="Cargo registry index and downloaded crate sources",
        fix="build in an earlier stage and COPY only the binary, or use a cache "
        "mount for the registry",
        patterns=(
            "/root/.cargo/registry/**",
            "/home/*/.cargo/registry/**",
            "/usr/local/cargo/registry/**",
        ),
    ),
    JunkRule(
        category="vcs",
        description="version control directories (.git, .svn, .hg)",
        fix="add .git, .svn and .hg to .dockerignore, or COPY only the files the "
        "image needs",
        patterns=("**/.git/**", "**/.svn/**", "**/.hg/**"),
    ),
    JunkRule(
        category="tests",
        description="test folders of installed Python and Node.js packages",
        fix="delete the test folders of installed packages in the same RUN as the "
        "install, or install into an earlier stage and COPY a pruned tree",
        patterns=(
            "**/site-packages/**/tests/**",
            "**/site-packages/**/test/**",
            "**/dist-packages/**/tests/**",
            "**/dist-packages/**/test/**",
            "**/node_modules/**/tests/**",
            "**/node_modules/**/test/**",
            "**/node_modules/**/__tests__/**",
        ),
    ),
    JunkRule(
        category="python_bytecode",
        description="compiled Python bytecode (__pycache__, *.pyc, *.pyo)",
        fix="set PYTHONDONTWRITEBYTECODE=1 for the build or use pip install "
        "--no-compile; keep the bytecode if start time matters, because Python "
        "compiles each module again at import without it",
        patterns=("**/__pycache__/**", "**/*.pyc", "**/*.pyo"),
    ),
    JunkRule(
        category="docs",
        description="documentation, man pages and info pages",
        fix="add dpkg path-exclude lines for /usr/share/doc/*, /usr/share/man/* and "
        "/usr/share/info/* under /etc/dpkg/dpkg.cfg.d/ before installing, or delete "
        "them in the same RUN; copyright files are kept",
        patterns=(
            "/usr/share/doc/**",
            "/usr/share/man/**",
            "/usr/share/info/**",
            "/usr/local/share/doc/**",
            "/usr/local/share/man/**",
            "/usr/local/share/info/**",
        ),
        exclude=("/usr/share/doc/*/copyright",),
    ),
    JunkRule(
        category="locale",
        description="message catalogs of languages that the image's environment "
        "does not select",
        fix="add a dpkg path-exclude line for /usr/share/locale/* with path-include "
        "lines for the languages in use, or delete the others in the same RUN",
        patterns=(f"{_LOCALE_DIRECTORY}/**",),
        exclude=(f"{_LOCALE_DIRECTORY}/locale.alias",),
        keep_selected_locales=True,
    ),
    JunkRule(
        category="compilers",
        description="compilers, C headers and static libraries",
        fix="build in an earlier stage and COPY only the artifacts, or purge the "
        "build packages in the same RUN that used them",
        patterns=(
            "/usr/bin/gcc*",
            "/usr/bin/*-gcc*",
            "/usr/bin/g++*",
            "/usr/bin/*-g++*",
            "/usr/bin/cc",
            "/usr/bin/c++",
            "/usr/bin/cpp",
            "/usr/bin/cpp-*",
            "/usr/bin/*-cpp*",
            "/usr/bin/clang*",
            "/usr/lib/gcc/**",
            "/usr/libexec/gcc/**",
            "/usr/lib/llvm-*/bin/clang*",
            "/usr/include/**",
            "/usr/local/include/**",
            "**/*.a",
        ),
    ),
)


@dataclass(frozen=True)
class JunkCategory:
    """The files of one junk category, visible and hidden."""

    category: str
    description: str
    fix: str
    # Regular-file paths of the final file system, each hard-link name counted.
    files: int
    # Their content bytes, each hard-linked content once.
    size_bytes: int
    # At most EXAMPLE_PATHS visible paths, largest files first.
    example_paths: list[str]
    # Regular-file members of any layer that later layers delete or overwrite.
    hidden_files: int
    hidden_bytes: int
    hidden_example_paths: list[str]

    def to_dict(self) -> dict[str, Any]:
        """Return the fields as a JSON-ready dict."""
        return asdict(self)


@dataclass(frozen=True)
class JunkReport:
    """Junk per category and in total."""

    # Only categories with at least one file, most visible bytes first.
    categories: list[JunkCategory]
    files: int
    size_bytes: int
    hidden_files: int
    hidden_bytes: int
    # Locale names that the environment selects, which the locale rule keeps.
    kept_locales: list[str]

    def to_dict(self) -> dict[str, Any]:
        """Return the fields, categories included, as a JSON-ready dict."""
        return asdict(self)


def _glob_regex(pattern: str) -> str:
    """Translate a glob on an absolute path into a regex on a normalised path."""
    parts = pattern.lstrip("/").split("/")
    regex = []
    for index, part in enumerate(parts):
        last = index == len(parts) - 1
        if part == "**":
            regex.append(".+" if last else "(?:[^/]+/)*")
            continue
        text = "".join(_GLOB_CHARACTERS.get(char) or re.escape(char) for char in part)
        regex.append(text if last else text + "/")
    return "".join(regex)


def _alternatives(patterns: Iterable[str]) -> str:
    return "|".join(_glob_regex(pattern) for pattern in patterns)


def compile_rules(
    rules: Sequence[JunkRule], kept_locales: Iterable[str] = ()
) -> re.Pattern[str]:
    """Compile RULES into one regex whose group `r<N>` names the matching rule.

    Python's regex engine tries alternatives left to right, so a full match
    reports the first rule in table order that matches.
    """
    return _compile_groups(
        rules,
        kept_locales,
        [(index, rule.patterns) for index, rule in enumerate(rules)],
    )


def _compile_groups(
    rules: Sequence[JunkRule],
    kept_locales: Iterable[str],
    groups: Iterable[tuple[int, Sequence[str]]],
) -> re.Pattern[str]:
    """Compile GROUPS in their order, as compile_rules compiles every rule.

    Each group is an index into RULES and the patterns of that rule to include.
    """
    locale_excludes = [f"{_LOCALE_DIRECTORY}/{name}/**" for name in kept_locales]
    alternatives = []
    for index, patterns in groups:
        rule = rules[index]
        exclude = list(rule.exclude)
        if rule.keep_selected_locales:
            exclude += locale_excludes
        guard = f"(?!(?:{_alternatives(exclude)})\\Z)" if exclude else ""
        alternatives.append(f"(?P<r{index}>{guard}(?:{_alternatives(patterns)}))")
    return re.compile("|".join(alternatives), re.DOTALL)


def _locale_names(value: str) -> set[str]:
    """Return the catalog directory names that gettext tries for locale VALUE.

    "de_DE.UTF-8@euro" yields de_DE.UTF-8@euro, de_DE@euro, de@euro, de_DE.UTF-8,
    de_DE, de and the other combinations. "C" and "POSIX" select no catalog.
    """
    match = re.fullmatch(
        r"(?P<language>[A-Za-z]+)(?P<territory>_[A-Za-z0-9]+)?"
        r"(?P<codeset>\.[^@]+)?(?P<modifier>@.+)?",
        value,
    )
    if match is None or match["language"] in ("C", "POSIX"):
        return set()
    options = [
        ("", match[name]) if match[name] else ("",)
        for name in ("territory", "codeset", "modifier")
    ]
    return {
        match["language"] + territory + codeset + modifier
        for territory, codeset, modifier in product(*options)
    }


def selected_locales(env: Sequence[str]) -> list[str]:
    """Return the catalog names that the LOCALE_VARIABLES in ENV select, sorted.

    ENV contains "NAME=VALUE" strings, and LANGUAGE may list several names
    separated by colons. Every variable counts, because which one wins depends on
    the others.
    """
    names: set[str] = set()
    for item in env:
        key, _, value = item.partition("=")
        if key not in LOCALE_VARIABLES:
            continue
        for part in value.split(":"):
            names |= _locale_names(part.strip())
    return sorted(names)


@dataclass
class _Tally:
    files: int = 0
    size_bytes: int = 0
    examples: list[tuple[int, str]] = field(default_factory=list)
    hidden_files: int = 0
    hidden_bytes: int = 0
    hidden_examples: list[tuple[int, str]] = field(default_factory=list)


def _largest_paths(examples: list[tuple[int, str]]) -> list[str]:
    chosen = heapq.nsmallest(EXAMPLE_PATHS, examples, key=lambda e: (-e[0], e[1]))
    return [path for _, path in chosen]


def _rule_index(matcher: re.Pattern[str], path: str) -> int | None:
    match = matcher.fullmatch(path)
    if match is None or match.lastgroup is None:
        return None
    return int(match.lastgroup[1:])


def _required_literal(pattern: str) -> str:
    """Return the longest text without wildcards within one component of PATTERN.

    Every path that PATTERN matches contains it. It is "" for a pattern that is
    all wildcards.
    """
    runs = (
        run
        for part in pattern.lstrip("/").split("/")
        for run in re.split(r"[*?]", part)
    )
    return max(runs, key=len, default="")


class _RuleMatcher:
    """The first rule of RULES that matches a path, as compile_rules' regex finds it.

    The patterns that start with "**" are the slow ones to try, because they may
    match at any depth. Such a pattern is left out of the regex for a path that
    lacks the pattern's required literal, since it cannot match that path, and a
    rule is left out when none of its patterns remain. Each set of patterns left
    out gets its own regex. Most paths contain none of the literals, which one
    search finds out.
    """

    def __init__(self, rules: Sequence[JunkRule], kept_locales: Sequence[str]) -> None:
        self._rules = rules
        self._kept_locales = kept_locales
        # Each pattern that can be left out, as its bit in a left-out mask and its
        # required literal.
        self._checks: list[tuple[int, str]] = []
        # The bit of each pattern of each rule, 0 for one that is never left out.
        self._pattern_bits: list[list[int]] = []
        for rule in rules:
            bits = []
            for pattern in rule.patterns:
                literal = _required_literal(pattern)
                bit = 0
                if pattern.lstrip("/").startswith("**") and literal:
                    bit = 1 << len(self._checks)
                    self._checks.append((bit, literal))
                bits.append(bit)
            self._pattern_bits.append(bits)
        self._all_left_out = sum(bit for bit, _ in self._checks)
        literals = sorted({literal for _, literal in self._checks})
        self._any_literal = re.compile("|".join(map(re.escape, literals)))
        self._matchers: dict[int, re.Pattern[str] | None] = {}

    def rule_index(self, path: str) -> int | None:
        """Return the index of the first rule that matches PATH, else None."""
        if self._checks and self._any_literal.search(path) is None:
            left_out = self._all_left_out
        else:
            left_out = 0
            for bit, literal in self._checks:
                if literal not in path:
                    left_out |= bit
        if left_out in self._matchers:
            matcher = self._matchers[left_out]
        else:
            matcher = self._compile(left_out)
        if matcher is None:
            return None
        match = matcher.fullmatch(path)
        if match is None or match.lastgroup is None:
            return None
        return int(match.lastgroup[1:])

    def _compile(self, left_out: int) -> re.Pattern[str] | None:
        groups = []
        for index, rule in enumerate(self._rules):
            bits = self._pattern_bits[index]
            patterns = [
                pattern
                for pattern, bit in zip(rule.patterns, bits, strict=True)
                if not left_out & bit
            ]
            # A rule without patterns stays, as compile_rules keeps it.
            if patterns or not rule.patterns:
                groups.append((index, patterns))
        matcher = None
        if groups:
            matcher = _compile_groups(self._rules, self._kept_locales, groups)
        self._matchers[left_out] = matcher
        return matcher


def find_junk(
    layer_entries: Sequence[Sequence[LayerEntry]],
    visible_files: Sequence[VisibleFile],
    env: Sequence[str],
    rules: Sequence[JunkRule] = JUNK_RULES,
) -> JunkReport:
    """Sort the regular files of an image into the junk categories of RULES.

    Visible junk is read from VISIBLE_FILES. Hidden junk is every regular-file
    record of LAYER_ENTRIES that the final file system does not show. ENV is the
    image config's environment, which selects the locales to keep.
    """
    kept_locales = selected_locales(env)
    matcher = _RuleMatcher(rules, kept_locales)
    tallies = [_Tally() for _ in rules]

    visible_ids: set[int] = set()
    # Contents whose bytes a category already counts, for hard-linked names.
    counted_ids: set[int] = set()
    # The rule of each visible path, so that a hidden record at the same path, one
    # that a later layer overwrote, is not matched again.
    visible_indexes: dict[str, int | None] = {}
    for visible in visible_files:
        content = visible.content
        if content.kind is not EntryKind.FILE:
            continue
        visible_ids.add(id(content))
        index = matcher.rule_index(visible.path)
        visible_indexes[visible.path] = index
        if index is None:
            continue
        tally = tallies[index]
        tally.files += 1
        if id(content) not in counted_ids:
            counted_ids.add(id(content))
            tally.size_bytes += content.size_bytes
        tally.examples.append((content.size_bytes, visible.path))

    for entries in layer_entries:
        for entry in entries:
            if entry.kind is not EntryKind.FILE or id(entry) in visible_ids:
                continue
            path = entry.path
            if path in visible_indexes:
                index = visible_indexes[path]
            else:
                index = matcher.rule_index(path)
            if index is None:
                continue
            tally = tallies[index]
            tally.hidden_files += 1
            tally.hidden_bytes += entry.size_bytes
            tally.hidden_examples.append((entry.size_bytes, entry.path))

    categories = [
        JunkCategory(
            category=rule.category,
            description=rule.description,
            fix=rule.fix,
            files=tally.files,
            size_bytes=tally.size_bytes,
            example_paths=_largest_paths(tally.examples),
            hidden_files=tally.hidden_files,
            hidden_bytes=tally.hidden_bytes,
            hidden_example_paths=_largest_paths(tally.hidden_examples),
        )
        for rule, tally in zip(rules, tallies, strict=True)
        if tally.files or tally.hidden_files
    ]
    categories.sort(key=lambda c: (-c.size_bytes, -c.hidden_bytes, c.category))
    return JunkReport(
        categories=categories,
        files=sum(category.files for category in categories),
        size_bytes=sum(category.size_bytes for category in categories),
        hidden_files=sum(category.hidden_files for category in categories),
        hidden_bytes=sum(category.hidden_bytes for category in categories),
        kept_locales=kept_locales,
    )
