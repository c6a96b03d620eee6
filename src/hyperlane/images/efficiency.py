"""Dive's image efficiency figures, computed from the layer records as dive 0.13.1 does.

dive (github.com/wagoodman/dive, v0.13.1: dive/filetree/efficiency.go,
dive/image/image.go, dive/image/docker/image_archive.go) builds one tree per layer
tar and visits the leaf nodes of each tree, so these figures follow its rules:

- A layer's tree has a node for every member path and for every parent directory
  of one. Opaque markers and other names that start with ".wh..wh." get no node,
  but their parent directories do.
- A leaf is a node without children in that layer: a file, symlink, hard link,
  device, whiteout, or a directory that the layer lists without any entry under it.
- A visit of a leaf adds its tar header size to the path's totals. A whiteout adds
  the subtree size of the hidden path in the tree of the lower layers stacked, if
  that node is a directory, and 0 otherwise.
- Efficiency is the sum over paths of the smallest visit over the sum of all
  visits. Wasted bytes are the sum of all visits to paths visited at least twice,
  so the copy that stays visible counts too.

The stacking uses dive's rules, not the OCI ones that FileSystemStack applies.
Opaque markers hide nothing. A directory that a layer only implies, because the
layer has an entry under it but no member for the directory itself, replaces the
lower directory's header with an empty one, which is not a directory. A whiteout
of such a path adds 0 bytes.

Where dive re-stacks every lower layer for each whiteout, this module keeps one
stacked tree and updates it after each layer, so the work is linear in the number
of entries, except where a whiteout aborts a layer (see _layer_visits).
"""

from __future__ import annotations

import heapq
import stat
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from hyperlane.images.entries import EntryKind, LayerEntry
from hyperlane.images.stacking import OPAQUE_MARKER, WHITEOUT_PREFIX

# dive 0.13.1 lists every inefficient path; the report keeps the largest ones.
INEFFICIENT_FILES_LISTED = 20
# dive's trees never get a node whose name starts with this prefix.
_SKIPPED_PREFIX = WHITEOUT_PREFIX * 2


@dataclass(frozen=True)
class InefficientFile:
    """A path that two or more leaf visits touch, an entry of dive's fileReference."""

    # Absolute path as dive prints it, with a leading "/".
    path: str
    # Leaf nodes at the path over all layers, the visible one included.
    count: int
    # Sum of the bytes of those visits.
    cumulative_bytes: int


@dataclass(frozen=True)
class DiveEfficiency:
    """The figures that dive 0.13.1 reports for an image."""

    # Sum of each path's smallest visit over the sum of all visits, 1.0 when no
    # visit has bytes. dive's JSON `image.efficiencyScore`. It is below 0 only
    # through an aborted layer, which counts -1 byte (see _layer_visits).
    efficiency: float
    # Cumulative bytes of all inefficient paths. dive's JSON
    # `image.inefficientBytes`.
    wasted_bytes: int
    # wasted_bytes over user_size_bytes, in percent, and above 100 when the base
    # layer's files are rewritten. dive keeps it as a 0..1 ratio, prints it times
    # 100 with `--ci` and leaves it out of its `--json` export. None when
    # user_size_bytes is 0, where dive prints NaN or +Inf.
    user_wasted_percent: float | None
    # Header sizes of all layers but the first. dive keeps it in memory only.
    user_size_bytes: int
    # Header sizes of all layers. dive's JSON `image.sizeBytes`.
    size_bytes: int
    # Paths that at least two leaf visits touch, zero-byte ones included.
    inefficient_file_count: int
    # The largest inefficient paths by cumulative_bytes, at most
    # INEFFICIENT_FILES_LISTED, ties by path.
    inefficient_files: list[InefficientFile] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Return the fields as a JSON-ready dict."""
        return asdict(self)


class _Node:
    """A node of a dive tree: the header fields dive reads and the child nodes."""

    __slots__ = ("children", "is_dir", "path", "size_bytes")

    def __init__(
        self, size_bytes: int = 0, is_dir: bool = False, path: str = ""
    ) -> None:
        # A node that only a deeper path implies keeps dive's empty header: 0, False.
        self.size_bytes = size_bytes
        self.is_dir = is_dir
        # The path that a visit of a layer tree's node counts under, without the
        # leading "/". A member's node takes the member's path, so that visits
        # need no string of their own. The nodes of the stacked tree leave it "".
        # NOTE: that path is dive's only because LayerEntry paths are normalised:
        # dive would count "a//b" under "/a/b".
        self.path = path
        # Only add_child may insert, because a node without children shares the
        # one _NO_CHILDREN dict.
        self.children: dict[str, _Node] = _NO_CHILDREN

    def add_child(self, name: str, child: _Node) -> None:
        if self.children is _NO_CHILDREN:
            self.children = {}
        self.children[name] = child


# The children of every node that has none. Most nodes are leaves, and an empty
# dict of their own would take 64 bytes each.
_NO_CHILDREN: dict[str, _Node] = {}


@dataclass(slots=True)
class _RepeatedPath:
    """dive's EfficiencyData of a path that two or more leaf visits touch.

    The smallest visit of each path is kept in a dict of its own.
    """

    cumulative_bytes: int
    count: int


@dataclass(frozen=True, slots=True)
class _Leaf:
    # Names from the root, a whiteout's name with its ".wh." prefix.
    names: tuple[str, ...]
    node: _Node


@dataclass(frozen=True, slots=True)
class _LayerTree:
    """dive's tree of one layer and the nodes in it whose names start with ".wh."."""

    root: _Node
    # The names from the root of each such node, and its parent node.
    whiteouts: list[tuple[tuple[str, ...], _Node]]
    # Sum of the size_bytes of the layer's records, dive's layer size.
    size_bytes: int
    # The nodes whose names do not start with ".wh.", in the order they were
    # added. A list comprehension finds the leaves among them faster than a walk
    # of the tree does.
    nodes: list[_Node]


_OPAQUE = EntryKind.OPAQUE
_WHITEOUT = EntryKind.WHITEOUT
_DIRECTORY = EntryKind.DIRECTORY
_S_IFMT = 0o170000
_S_IFDIR = stat.S_IFDIR


def _layer_tree(entries: Sequence[LayerEntry]) -> _LayerTree:
    """Build dive's tree of one layer from its records in archive order."""
    root = _Node(is_dir=True)
    whiteouts: list[tuple[tuple[str, ...], _Node]] = []
    # Nodes by the names of their path joined with "/". Nodes are only ever added,
    # so the node of a parent path stays valid for every later member under it.
    parents: dict[str, _Node] = {"": root}
    nodes: list[_Node] = []
    layer_bytes = 0
    for entry in entries:
        size_bytes = entry.size_bytes
        layer_bytes += size_bytes
        # The components of the member name, as dive adds it to the tree: all but
        # the last joined with "/", and the last.
        kind = entry.kind
        if kind is _OPAQUE:
            parent_key, last = entry.path, OPAQUE_MARKER
        else:
            parent_key, _, last = entry.path.rpartition("/")
            if kind is _WHITEOUT:
                last = WHITEOUT_PREFIX + last
        node = parents.get(parent_key)
        complete = True
        if node is None:
            parent_names = parent_key.split("/") if parent_key else []
            node = root
            for depth, name in enumerate(parent_names):
                child = node.children.get(name)
                if child is None:
                    if name.startswith(_SKIPPED_PREFIX):
                        complete = False
                        break
                    names = parent_names[: depth + 1]
                    child = _Node(path=_visit_text(names))
                    node.add_child(name, child)
                    if name.startswith(WHITEOUT_PREFIX):
                        whiteouts.append((tuple(names), node))
                    else:
                        nodes.append(child)
                node = child
            if not complete:
                continue
            parents[parent_key] = node
        # Go's tar.Header.FileInfo().IsDir() also reads the mode's file type bits.
        is_dir = kind is _DIRECTORY or entry.mode & _S_IFMT == _S_IFDIR
        children = node.children
        child = children.get(last)
        if child is not None:
            # A later member at the same path replaces the header, not the children.
            child.size_bytes = size_bytes
            child.is_dir = is_dir
            continue
        # _SKIPPED_PREFIX starts with WHITEOUT_PREFIX, so most names take one test.
        if last.startswith(WHITEOUT_PREFIX):
            if last.startswith(_SKIPPED_PREFIX):
                continue
            names = parent_key.split("/") if parent_key else []
            whiteouts.append(((*names, last), node))
            child = _Node(size_bytes, is_dir, _visit_text([*names, last]))
        else:
            child = _Node(size_bytes, is_dir, entry.path)
            nodes.append(child)
        # add_child, inlined because most layer members add a node.
        if children is _NO_CHILDREN:
            node.children = children = {}
        children[last] = child
    return _LayerTree(root, whiteouts, layer_bytes, nodes)


def _walk(root: _Node) -> Iterator[tuple[tuple[str, ...], _Node, _Node]]:
    """Yield the names, node and parent of every node under ROOT, in no fixed order."""
    pending: list[tuple[tuple[str, ...], _Node]] = [((), root)]
    while pending:
        names, node = pending.pop()
        for name, child in node.children.items():
            child_names = (*names, name)
            yield child_names, child, node
            pending.append((child_names, child))


def _copy_tree(root: _Node) -> _Node:
    copy = _Node(root.size_bytes, root.is_dir)
    pending = [(root, copy)]
    while pending:
        source, target = pending.pop()
        for name, child in source.children.items():
            child_copy = _Node(child.size_bytes, child.is_dir)
            target.add_child(name, child_copy)
            pending.append((child, child_copy))
    return copy


def _subtree_bytes(node: _Node) -> int:
    total = 0
    pending = [node]
    while pending:
        current = pending.pop()
        total += current.size_bytes
        pending.extend(current.children.values())
    return total


def _sort_key(names: tuple[str, ...]) -> tuple[bytes, ...]:
    # Go's sort.Strings compares bytes, and member names may hold surrogate escapes.
    return tuple(name.encode("utf-8", "surrogateescape") for name in names)


class _DiveStack:
    """The lower layers stacked by the rules of dive's FileTree.Stack."""

    def __init__(self) -> None:
        self.root = _Node(is_dir=True)

    def lookup(self, names: Sequence[str]) -> _Node | None:
        node = self.root
        for name in names:
            # dive's GetNode skips empty components of the path it splits.
            if not name:
                continue
            child = node.children.get(name)
            if child is None:
                return None
            node = child
        return node

    def apply(self, layer: _LayerTree) -> None:
        """Stack LAYER on top, as dive's Stack does in its sorted depth-first order.

        Whiteouts and additions commute, except a whiteout ".wh.X" and the layer's
        own subtree at X: dive visits siblings in byte order, so it removes X and
        then adds the subtree when ".wh.X" sorts first, and the reverse otherwise.
        The removals of one group commute with each other.
        """
        removals_first: list[tuple[str, ...]] = []
        removals_last: list[tuple[str, ...]] = []
        for names, parent in layer.whiteouts:
            name = names[-1]
            target = name[len(WHITEOUT_PREFIX) :]
            hidden = (*names[:-1], target)
            replaced = target in parent.children
            if replaced and _sort_key((target,)) < _sort_key((name,)):
                removals_last.append(hidden)
            else:
                removals_first.append(hidden)
        for hidden in removals_first:
            self._remove(hidden)
        self._add(layer.root)
        for hidden in removals_last:
            self._remove(hidden)

    def _remove(self, names: tuple[str, ...]) -> None:
        parent = self.lookup(names[:-1])
        if parent is not None:
            # A missing target is an error that dive logs and skips.
            parent.children.pop(names[-1], None)

    def _add(self, layer: _Node) -> None:
        pending = [(layer, self.root)]
        while pending:
            source, target = pending.pop()
            for name, child in source.children.items():
                existing = target.children.get(name)
                if existing is None:
                    existing = _Node()
                    target.add_child(name, existing)
                if not name.startswith(WHITEOUT_PREFIX):
                    # A whiteout node is never added, but its children imply it.
                    existing.size_bytes = child.size_bytes
                    existing.is_dir = child.is_dir
                pending.append((child, existing))


def _visit_text(names: Sequence[str]) -> str:
    """Return the path that dive counts a visit of the node at NAMES under.

    It is dive's FileNode.Path without the leading "/", which the report adds.
    dive strips the ".wh." prefix of the node's own name only.
    """
    name = names[-1]
    if name.startswith(WHITEOUT_PREFIX):
        names = [*names[:-1], name[len(WHITEOUT_PREFIX) :]]
    return "/".join(names)


def _whiteout_bytes(path: str, stack: _DiveStack) -> int | None:
    """Return the bytes that a visit of a whiteout of PATH adds.

    Returns None when the lower stack lacks PATH, which aborts the visits of the
    whiteout's layer.
    """
    hidden = stack.lookup(path.split("/"))
    if hidden is None:
        return None
    return _subtree_bytes(hidden) if hidden.is_dir else 0


# The visits of one layer as parallel lists of paths and their bytes, which
# _count_visits turns into a dict without a tuple per visit.
_Visits = tuple[list[str], list[int]]


def _layer_visits(layer: _LayerTree, stack: _DiveStack) -> tuple[_Visits, str | None]:
    """Return the visits of LAYER's leaves and the path that aborted it.

    dive visits leaves depth first in byte order, and a whiteout whose path the
    lower stack lacks returns an error that ends the visits of its layer. The path
    of that whiteout still gets totals, whose minimum stays -1. The order matters
    only then, so the leaves are visited in the order they were added, and only a
    layer with such a whiteout is visited again in byte order.
    """
    leaves = [node for node in layer.nodes if not node.children]
    paths = [node.path for node in leaves]
    sizes = [node.size_bytes for node in leaves]
    for names, parent in layer.whiteouts:
        node = parent.children[names[-1]]
        if node.children:
            continue
        size_bytes = _whiteout_bytes(node.path, stack)
        if size_bytes is None:
            return _sorted_layer_visits(layer.root, stack)
        paths.append(node.path)
        sizes.append(size_bytes)
    return (paths, sizes), None


def _sorted_layer_visits(layer: _Node, stack: _DiveStack) -> tuple[_Visits, str | None]:
    """Return _layer_visits's result for a layer that a whiteout aborts."""
    leaves = [
        _Leaf(names, node) for names, node, _ in _walk(layer) if not node.children
    ]
    leaves.sort(key=lambda leaf: _sort_key(leaf.names))
    paths: list[str] = []
    sizes: list[int] = []
    for leaf in leaves:
        path = leaf.node.path
        size_bytes: int | None = leaf.node.size_bytes
        if leaf.names[-1].startswith(WHITEOUT_PREFIX):
            size_bytes = _whiteout_bytes(path, stack)
        if size_bytes is None:
            return (paths, sizes), path
        paths.append(path)
        sizes.append(size_bytes)
    return (paths, sizes), None


def _count_visits(
    visits: _Visits,
    minimum_bytes: dict[str, int],
    repeated: dict[str, _RepeatedPath],
) -> int:
    """Add VISITS to the totals that compute_dive_efficiency keeps per path.

    Returns the sum of the bytes of VISITS.
    """
    paths, sizes = visits
    layer_bytes = dict(zip(paths, sizes, strict=True))
    if len(layer_bytes) < len(paths):
        # A whiteout and a leaf of the same layer visit the same path.
        for path, size_bytes in zip(paths, sizes, strict=True):
            _count_visit(path, size_bytes, minimum_bytes, repeated)
        return sum(sizes)
    # Most paths are new, so dict and set operations, which loop in C, add them,
    # and only the paths visited before take the Python loop.
    visited = layer_bytes.keys() & minimum_bytes.keys()
    lowest_bytes = {path: minimum_bytes[path] for path in visited}
    minimum_bytes.update(layer_bytes)
    for path, lowest in lowest_bytes.items():
        minimum_bytes[path] = lowest
        _count_visit(path, layer_bytes[path], minimum_bytes, repeated)
    return sum(sizes)


def _count_visit(
    path: str,
    size_bytes: int,
    minimum_bytes: dict[str, int],
    repeated: dict[str, _RepeatedPath],
) -> None:
    lowest = minimum_bytes.get(path)
    # Visits add 0 bytes or more, so only the -1 of an aborted visit is below 0,
    # and the next visit is the path's first one that counts.
    if lowest is None or lowest < 0:
        minimum_bytes[path] = size_bytes
        return
    if size_bytes < lowest:
        minimum_bytes[path] = size_bytes
    path_totals = repeated.get(path)
    if path_totals is None:
        repeated[path] = _RepeatedPath(lowest + size_bytes, 2)
    else:
        path_totals.cumulative_bytes += size_bytes
        path_totals.count += 1


def compute_dive_efficiency(
    layer_entries: Sequence[Sequence[LayerEntry]],
) -> DiveEfficiency:
    """Compute dive 0.13.1's figures from each layer's records, bottom layer first.

    Layer sizes are the sums of the records' size_bytes, which are dive's header
    sizes for every member but a hard link or whiteout whose header claims bytes.
    """
    # NOTE: dive rejects a layer tar that contains a PAX global header, so it reports
    # nothing for such an image, while these figures are still computed.
    # The smallest visit of each path. A path whose only visit aborted its layer
    # keeps -1, as dive's EfficiencyData starts its minimum. Most paths are visited
    # once, so only the paths visited again get a _RepeatedPath.
    minimum_bytes: dict[str, int] = {}
    repeated: dict[str, _RepeatedPath] = {}
    cumulative_sum = 0
    stack = _DiveStack()
    layer_sizes: list[int] = []
    for index, entries in enumerate(layer_entries):
        layer = _layer_tree(entries)
        layer_sizes.append(layer.size_bytes)
        shared = False
        if index == 0:
            # dive's StackTreeRange starts from a copy of the first tree, so the
            # whiteouts of the first layer are looked up in that layer itself.
            # Stacking a tree without whiteouts onto itself changes nothing, so
            # such a tree is the stack itself instead of a copy.
            shared = not layer.whiteouts
            stack.root = layer.root if shared else _copy_tree(layer.root)
        # The node paths, the list of nodes and the dict operations of
        # _count_visits took this function from 130 ms to 102 ms. That was on the
        # 63,104 records of the tree archive of bench/image_vs_dive.py, as medians
        # of 15 runs on the same records (2-core AMD EPYC VM, CPython 3.11).
        visits, aborted_path = _layer_visits(layer, stack)
        cumulative_sum += _count_visits(visits, minimum_bytes, repeated)
        del visits
        if aborted_path is not None:
            minimum_bytes.setdefault(aborted_path, -1)
        # Only the whiteouts of upper layers read the stack.
        if not shared and index < len(layer_entries) - 1:
            stack.apply(layer)

    minimum_sum = sum(minimum_bytes.values())
    # float() of each sum, as dive's Go code converts them before dividing.
    efficiency = 1.0
    if cumulative_sum:
        efficiency = float(minimum_sum) / float(cumulative_sum)

    # NOTE: dive orders ties with Go's unstable sort, so equal sizes may list in
    # another order than this path order.
    largest = heapq.nsmallest(
        INEFFICIENT_FILES_LISTED,
        repeated.items(),
        key=lambda item: (
            -item[1].cumulative_bytes,
            item[0].encode("utf-8", "surrogateescape"),
        ),
    )
    wasted_bytes = sum(totals.cumulative_bytes for totals in repeated.values())

    user_size_bytes = sum(layer_sizes[1:])
    user_wasted_percent = None
    if user_size_bytes:
        # The ratio first, then times 100, as dive prints it.
        user_wasted_percent = float(wasted_bytes) / float(user_size_bytes) * 100
    return DiveEfficiency(
        efficiency=efficiency,
        wasted_bytes=wasted_bytes,
        user_wasted_percent=user_wasted_percent,
        user_size_bytes=user_size_bytes,
        size_bytes=sum(layer_sizes),
        inefficient_file_count=len(repeated),
        inefficient_files=[
            InefficientFile("/" + path, totals.count, totals.cumulative_bytes)
            for path, totals in largest
        ],
    )
