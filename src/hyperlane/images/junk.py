"""Files that a runtime image seldom needs: package caches, docs, build leftovers.

The rules are data: each has a category, globs on the absolute path, a
description and a suggested fix. A path belongs to the first rule in table order
whose globs match it and whose exclusions do not. In a glob, `*` and `?` match
within one path component and `**` matches any number of components.
"""

from __future__ import annotations

import heapq
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from itertools import product
from typing import Any, NamedTuple

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
_FILE = EntryKind.FILE


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


@dataclass(slots=True)
class _Tally:
    """The visible and hidden files of one rule.

    Each example is (-size_bytes, path), so that the smallest tuples are the
    largest files, ties in path order.
    """

    size_bytes: int = 0
    examples: list[tuple[int, str]] = field(default_factory=list)
    hidden_bytes: int = 0
    hidden_examples: list[tuple[int, str]] = field(default_factory=list)


def _largest_paths(examples: list[tuple[int, str]]) -> list[str]:
    return [path for _, path in heapq.nsmallest(EXAMPLE_PATHS, examples)]


def _rule_index(matcher: re.Pattern[str], path: str) -> int | None:
    match = matcher.fullmatch(path)
    if match is None or match.lastgroup is None:
        return None
    return int(match.lastgroup[1:])


def _component_regex(part: str) -> str:
    """Translate one component of a glob, not "**", into a regex on one name."""
    return "".join(_GLOB_CHARACTERS.get(char) or re.escape(char) for char in part)


# A position in a glob: the index of the glob among all globs of the rules and
# exclusions, and the index of the next component of it to match.
_Position = tuple[int, int]


class _Glob(NamedTuple):
    """A glob of a rule or of a rule's exclusions, split into its components."""

    rule_index: int
    excluded: bool
    parts: tuple[str, ...]


class _DirectoryState:
    """The glob positions that the directory names of a path reach.

    The directories of a path lead from the root state to its state one name at a
    time. Each state keeps the successor of each name it has seen and the regex
    that maps a file name in its directories to a rule.
    """

    __slots__ = (
        "base_match",
        "base_rules",
        "literal_moves",
        "next_states",
        "positions",
        "stay",
        "wildcard_moves",
    )

    def __init__(self, positions: frozenset[_Position]) -> None:
        self.positions = positions
        self.next_states: dict[str, _DirectoryState] = {}
        # The positions at a "**", which match any directory name and stay.
        self.stay: frozenset[_Position] = frozenset()
        # The positions that a directory name reaches by matching a component
        # without wildcards, by that component, and by matching one with them.
        self.literal_moves: dict[str, frozenset[_Position]] = {}
        self.wildcard_moves: list[
            tuple[Callable[[str], re.Match[str] | None], frozenset[_Position]]
        ] = []
        # The fullmatch of the regex on file names, None when no name can match,
        # and the rule index of each of the regex's groups, group 1 first.
        self.base_match: Callable[[str], re.Match[str] | None] | None = None
        self.base_rules: tuple[int, ...] = ()


class _RuleMatcher:
    """The first rule of RULES that matches a path, as compile_rules' regex finds it.

    The globs are matched one path component at a time, and the state that the
    directory names of a path reach is kept per directory. So each directory is
    matched once, and each file name then takes one small regex. With the tighter
    loops of find_junk, that took find_junk from 145 ms to 86 ms on the tree
    archive of bench/image_vs_dive.py (medians of 15 runs on the same records,
    2-core AMD EPYC VM, CPython 3.11). A path that is empty, starts or ends with
    "/", or has an empty component takes compile_rules' regex, because the
    component steps assume non-empty names.
    """

    def __init__(self, rules: Sequence[JunkRule], kept_locales: Sequence[str]) -> None:
        self._rules = rules
        self._kept_locales = kept_locales
        self._full_regex: re.Pattern[str] | None = None
        locale_excludes = [f"{_LOCALE_DIRECTORY}/{name}/**" for name in kept_locales]
        globs: list[_Glob] = []
        for index, rule in enumerate(rules):
            exclude = list(rule.exclude)
            if rule.keep_selected_locales:
                exclude += locale_excludes
            for pattern in rule.patterns:
                globs.append(_Glob(index, False, _glob_parts(pattern)))
            for pattern in exclude:
                globs.append(_Glob(index, True, _glob_parts(pattern)))
        self._globs = globs
        self._states: dict[frozenset[_Position], _DirectoryState] = {}
        self._base_regexes: dict[str, re.Pattern[str]] = {}
        root = self._state(self._closure([(index, 0) for index in range(len(globs))]))
        # The state of each directory path seen so far, "" for the root.
        self._directories: dict[str, _DirectoryState] = {"": root}

    def rule_index(self, path: str) -> int | None:
        """Return the index of the first rule that matches PATH, else None."""
        directory, slash, base = path.rpartition("/")
        state = self._directories.get(directory)
        if state is None or not base or (slash and not directory):
            if not base or path.startswith("/") or "//" in path:
                return self._irregular_rule_index(path)
            state = self._directory_state(directory)
        if state.base_match is None:
            return None
        match = state.base_match(base)
        if match is None or match.lastindex is None:
            return None
        return state.base_rules[match.lastindex - 1]

    def _irregular_rule_index(self, path: str) -> int | None:
        if self._full_regex is None:
            self._full_regex = compile_rules(self._rules, self._kept_locales)
        return _rule_index(self._full_regex, path)

    def _directory_state(self, directory: str) -> _DirectoryState:
        # The nearest ancestor with a known state, then each name below it.
        names: list[str] = []
        ancestor = directory
        state = self._directories.get(ancestor)
        while state is None:
            ancestor, _, name = ancestor.rpartition("/")
            names.append(name)
            state = self._directories.get(ancestor)
        for name in reversed(names):
            ancestor = f"{ancestor}/{name}" if ancestor else name
            successor = state.next_states.get(name)
            if successor is None:
                successor = self._next_state(state, name)
                state.next_states[name] = successor
            state = successor
            self._directories[ancestor] = state
        return state

    def _next_state(self, state: _DirectoryState, name: str) -> _DirectoryState:
        """Return the state after directory NAME, which is not the file name."""
        reached = state.literal_moves.get(name, frozenset())
        for fullmatch, targets in state.wildcard_moves:
            if fullmatch(name) is not None:
                reached = reached | targets
        return self._state(state.stay | reached)

    def _closure(self, positions: Iterable[_Position]) -> frozenset[_Position]:
        """Return POSITIONS and those that a "**" matching no name leads to."""
        closed = set(positions)
        pending = list(closed)
        while pending:
            index, part_index = pending.pop()
            parts = self._globs[index].parts
            if part_index < len(parts) - 1 and parts[part_index] == "**":
                skipped = (index, part_index + 1)
                if skipped not in closed:
                    closed.add(skipped)
                    pending.append(skipped)
        return frozenset(closed)

    def _state(self, positions: frozenset[_Position]) -> _DirectoryState:
        """Return the one state of POSITIONS, a closed set, creating it on first use."""
        state = self._states.get(positions)
        if state is not None:
            return state

        state = _DirectoryState(positions)
        stay = []
        literal_moves: dict[str, list[_Position]] = {}
        wildcard_moves: dict[str, list[_Position]] = {}
        for index, part_index in positions:
            parts = self._globs[index].parts
            if part_index >= len(parts):
                continue
            part = parts[part_index]
            if part == "**":
                # A last "**" matches one name or more, and one before a "/" any
                # number of names, so both stay after a directory name.
                stay.append((index, part_index))
            elif part_index < len(parts) - 1:
                # A last component can only match the file name.
                moves = wildcard_moves if "*" in part or "?" in part else literal_moves
                moves.setdefault(part, []).append((index, part_index + 1))

        state.stay = self._closure(stay)
        state.literal_moves = {
            part: self._closure(targets) for part, targets in literal_moves.items()
        }
        state.wildcard_moves = [
            (
                re.compile(_component_regex(part), re.DOTALL).fullmatch,
                self._closure(targets),
            )
            for part, targets in wildcard_moves.items()
        ]
        self._set_base_regex(state)

        self._states[positions] = state
        return state

    def _set_base_regex(self, state: _DirectoryState) -> None:
        """Set the regex that maps a file name in STATE's directories to a rule.

        It has one group per rule that a name can still reach, in table order, so
        a full match reports the first such rule, as compile_rules' regex does.
        """
        patterns: dict[int, list[str]] = {}
        excludes: dict[int, list[str]] = {}
        for index, part_index in sorted(state.positions):
            glob = self._globs[index]
            if part_index != len(glob.parts) - 1:
                continue
            part = glob.parts[part_index]
            regex = ".+" if part == "**" else _component_regex(part)
            target = excludes if glob.excluded else patterns
            target.setdefault(glob.rule_index, []).append(regex)
        if not patterns:
            return
        alternatives = []
        for rule_index in sorted(patterns):
            exclude = excludes.get(rule_index)
            guard = f"(?!(?:{'|'.join(exclude)})\\Z)" if exclude else ""
            alternatives.append(f"({guard}(?:{'|'.join(patterns[rule_index])}))")
        regex = "|".join(alternatives)
        compiled = self._base_regexes.get(regex)
        if compiled is None:
            compiled = re.compile(regex, re.DOTALL)
            self._base_regexes[regex] = compiled
        state.base_match = compiled.fullmatch
        state.base_rules = tuple(sorted(patterns))


def _glob_parts(pattern: str) -> tuple[str, ...]:
    return tuple(pattern.lstrip("/").split("/"))


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
    rule_index = _RuleMatcher(rules, kept_locales).rule_index
    tallies = [_Tally() for _ in rules]

    visible_ids: set[int] = set()
    # Contents whose bytes a category already counts, for hard-linked names.
    counted_ids: set[int] = set()
    for visible in visible_files:
        content = visible.content
        if content.kind is not _FILE:
            continue
        content_id = id(content)
        visible_ids.add(content_id)
        path = visible.path
        index = rule_index(path)
        if index is None:
            continue
        tally = tallies[index]
        size_bytes = content.size_bytes
        if content_id not in counted_ids:
            counted_ids.add(content_id)
            tally.size_bytes += size_bytes
        tally.examples.append((-size_bytes, path))

    for entries in layer_entries:
        for entry in entries:
            if entry.kind is not _FILE or id(entry) in visible_ids:
                continue
            # A hidden record at a visible path, one that a later layer overwrote,
            # is matched again: that costs less than keeping every visible path's
            # rule in a dict.
            path = entry.path
            index = rule_index(path)
            if index is None:
                continue
            tally = tallies[index]
            size_bytes = entry.size_bytes
            tally.hidden_bytes += size_bytes
            tally.hidden_examples.append((-size_bytes, path))

    categories = [
        JunkCategory(
            category=rule.category,
            description=rule.description,
            fix=rule.fix,
            files=len(tally.examples),
            size_bytes=tally.size_bytes,
            example_paths=_largest_paths(tally.examples),
            hidden_files=len(tally.hidden_examples),
            hidden_bytes=tally.hidden_bytes,
            hidden_example_paths=_largest_paths(tally.hidden_examples),
        )
        for rule, tally in zip(rules, tallies, strict=True)
        if tally.examples or tally.hidden_examples
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
