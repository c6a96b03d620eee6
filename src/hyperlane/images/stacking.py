"""Stack layer tar entries into one file system view, as overlay drivers apply them.

Whiteout rules follow the OCI image layer specification: a ``.wh.NAME`` entry hides
NAME from lower layers, a ``.wh..wh..opq`` entry hides every lower entry in its
directory, and neither hides an entry from its own layer.
"""

from __future__ import annotations

import posixpath
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hyperlane.images.entries import LayerEntry

WHITEOUT_PREFIX = ".wh."
OPAQUE_MARKER = ".wh..wh..opq"
_DIRTYPE = tarfile.DIRTYPE
_LNKTYPE = tarfile.LNKTYPE
_SYMTYPE = tarfile.SYMTYPE
# The type flags for which TarInfo.isreg() is true.
_REGULAR_TYPES = frozenset(tarfile.REGULAR_TYPES)


class PathEscapesRoot(ValueError):
    """A member name or hard link target that normalises to a path outside the root."""


@dataclass(eq=False, slots=True)
class _Inode:
    """File content that one or more hard-linked paths share."""

    layer_index: int
    # Regular-file size, or the target length for a symlink, 0 for other kinds.
    content_bytes: int
    regular: bool
    # The record of the member that created the content, when records are kept.
    entry: LayerEntry | None = None


@dataclass(eq=False, slots=True)
class _Node:
    """A path in the stacked file system: a directory or a non-directory entry."""

    # Index of the last layer that created or passed through this path.
    layer_index: int
    inode: _Inode | None = None
    children: dict[str, _Node] | None = None
    # The record of the member that put this entry here, when records are kept.
    entry: LayerEntry | None = None

    @property
    def is_dir(self) -> bool:
        return self.children is not None


@dataclass
class LayerCounts:
    """Counters of one layer while its entries are applied."""

    regular_file_bytes: int = 0
    content_bytes: int = 0
    files_added: int = 0
    files_modified: int = 0
    files_removed: int = 0
    entries: int = 0
    inodes: list[_Inode] = field(default_factory=list)


def normalize_member_path(name: str) -> str:
    """Return NAME relative to the root without "./" or "/", "" for the root itself.

    Raises PathEscapesRoot when ".." components lead outside the root.
    """
    stripped = name.lstrip("/")
    if not stripped:
        return ""
    normalized = posixpath.normpath(stripped)
    if normalized == ".":
        return ""
    if normalized == ".." or normalized.startswith("../"):
        raise PathEscapesRoot(name)
    return normalized


def _check_symlink(path: str, member: tarfile.TarInfo) -> None:
    """Raise PathEscapesRoot if MEMBER, a symlink at PATH, leads outside the root.

    The target is joined to the symlink's directory, an absolute target included,
    as the tar extractor in Docker's pkg/archive joins it before it rejects a layer
    with "invalid symlink". So "/usr/lib" from "etc/x" stays inside the root, while
    "../../etc" from "a/x" and "/../etc" from "x" lead outside it.
    """
    directory = posixpath.dirname(path)
    joined = f"{directory}/{member.linkname}" if directory else member.linkname
    try:
        normalize_member_path(joined)
    except PathEscapesRoot as error:
        raise PathEscapesRoot(f"symlink {member.name} -> {member.linkname}") from error


def _walk(node: _Node, path: str) -> Iterator[tuple[str, _Node]]:
    """Yield NODE at PATH and every node under it with its path."""
    yield path, node
    for name, child in (node.children or {}).items():
        yield from _walk(child, f"{path}/{name}" if path else name)


class FileSystemStack:
    """The stacked file system of the layers applied so far, bottom layer first."""

    def __init__(self) -> None:
        self._root = _Node(layer_index=-1, children={})
        self._layers: list[LayerCounts] = []
        # Paths of lower files and directories that the current layer removed. A
        # later entry of the same layer at one of these paths modifies it, so the
        # counts do not depend on where the whiteout sits in the tar.
        self._removed_files: set[str] = set()
        self._removed_directories: set[str] = set()
        # Index of the layer being applied.
        self._current = -1
        # Directory nodes by path that the current layer has passed through. A
        # node that a layer passes through gets that layer's index, and entries of
        # the current layer are never removed, so a cached node stays in the tree
        # until a file replaces a directory, which clears the cache.
        self._directories: dict[str, _Node] = {}

    @property
    def layers(self) -> list[LayerCounts]:
        return self._layers

    def begin_layer(self) -> LayerCounts:
        """Start the next layer and return its counters."""
        counts = LayerCounts()
        self._layers.append(counts)
        self._removed_files.clear()
        self._removed_directories.clear()
        self._current = len(self._layers) - 1
        self._directories.clear()
        return counts

    def apply(
        self,
        member: tarfile.TarInfo,
        entry: LayerEntry | None = None,
        path: str | None = None,
    ) -> None:
        """Apply one tar member of the current layer, ENTRY being its record.

        PATH is normalize_member_path(member.name), computed here when None.
        Raises PathEscapesRoot for a member path, hard link target or symlink target
        outside the root and LookupError for a hard link whose target does not exist.
        """
        counts = self._layers[-1]
        counts.entries += 1
        if path is None:
            path = normalize_member_path(member.name)
        if not path:
            return
        parent_path, _, base = path.rpartition("/")
        parent = self._directories.get(parent_path)
        if parent is None:
            parent = self._directory(parent_path)
            self._directories[parent_path] = parent
        if base[:4] == WHITEOUT_PREFIX:
            if base == OPAQUE_MARKER:
                counts.files_removed += self._remove_lower(parent, parent_path)
            # Other ".wh..wh." names are AUFS bookkeeping that hides nothing.
            elif not base.startswith(WHITEOUT_PREFIX * 2):
                self._whiteout(parent, parent_path, base[len(WHITEOUT_PREFIX) :])
            return
        # The type flag tests of TarInfo.isdir, issym, islnk and isreg, without a
        # method call each: this runs once per member of every layer.
        member_type = member.type
        if member_type in _REGULAR_TYPES:
            size = member.size
            inode = _Inode(self._current, size, True, entry)
            counts.regular_file_bytes += size
            counts.content_bytes += size
            counts.inodes.append(inode)
            children = parent.children
            assert children is not None
            if (
                base not in children
                and path not in self._removed_files
                and path not in self._removed_directories
            ):
                # A new file, the most common member, without _put_file's cases.
                counts.files_added += 1
                children[base] = _Node(self._current, inode, None, entry)
                return
            self._put_file(parent, path, base, inode, entry)
            return
        if member_type == _DIRTYPE:
            self._put_directory(parent, base)
            return
        if member_type == _LNKTYPE:
            inode = self._linked_inode(member)
        else:
            if member_type == _SYMTYPE:
                _check_symlink(path, member)
            inode = self._new_inode(member, member_type, entry, counts)
        self._put_file(parent, path, base, inode, entry)

    def _directory(self, path: str) -> _Node:
        """Return the directory node at PATH, creating missing ones in this layer."""
        node = self._root
        if not path:
            return node
        for part in path.split("/"):
            node = self._put_directory(node, part)
        return node

    def _put_directory(self, parent: _Node, name: str) -> _Node:
        assert parent.children is not None
        existing = parent.children.get(name)
        if existing is not None and existing.is_dir:
            # Marking the directory as touched lets an opaque marker in this layer
            # keep its entries from this layer while it hides the lower ones.
            existing.layer_index = self._current
            return existing
        if existing is not None and existing.layer_index < self._current:
            # A file replaced by a directory is hidden, not modified.
            self._layers[-1].files_removed += 1
        node = _Node(self._current, None, {})
        parent.children[name] = node
        return node

    def _put_file(
        self,
        parent: _Node,
        path: str,
        name: str,
        inode: _Inode,
        entry: LayerEntry | None,
    ) -> None:
        """Put a non-directory entry named NAME at PATH under PARENT."""
        assert parent.children is not None
        counts = self._layers[-1]
        existing = parent.children.get(name)
        if existing is None and path in self._removed_files:
            # A lower file that this layer removed earlier is replaced after all.
            self._removed_files.discard(path)
            counts.files_removed -= 1
            counts.files_modified += 1
        elif existing is None and path in self._removed_directories:
            counts.files_modified += 1
        elif existing is None:
            counts.files_added += 1
        elif existing.layer_index < self._current:
            counts.files_modified += 1
            if existing.is_dir:
                counts.files_removed += self._remove_lower(existing, path)
        if existing is not None and existing.is_dir:
            # The directory and every cached one under it leave the tree.
            self._directories.clear()
        parent.children[name] = _Node(self._current, inode, None, entry)

    def _linked_inode(self, member: tarfile.TarInfo) -> _Inode:
        """Return the inode of the hard link MEMBER's target."""
        try:
            target_path = normalize_member_path(member.linkname)
        except PathEscapesRoot as error:
            raise PathEscapesRoot(
                f"hard link {member.name} -> {member.linkname}"
            ) from error
        target = self._lookup(target_path)
        if target is None or target.inode is None:
            raise LookupError(member.linkname)
        return target.inode

    def _new_inode(
        self,
        member: tarfile.TarInfo,
        member_type: bytes,
        entry: LayerEntry | None,
        counts: LayerCounts,
    ) -> _Inode:
        """Return the inode that MEMBER, which is not a hard link, creates."""
        if member_type in _REGULAR_TYPES:
            inode = _Inode(self._current, member.size, True, entry)
            counts.regular_file_bytes += member.size
        elif member_type == _SYMTYPE:
            length = len(member.linkname.encode("utf-8", "surrogateescape"))
            inode = _Inode(self._current, length, False, entry)
        else:
            inode = _Inode(self._current, 0, False, entry)
        counts.content_bytes += inode.content_bytes
        counts.inodes.append(inode)
        return inode

    def _lookup(self, path: str) -> _Node | None:
        node = self._root
        for part in path.split("/"):
            if node.children is None:
                return None
            child = node.children.get(part)
            if child is None:
                return None
            node = child
        return node

    def _whiteout(self, parent: _Node, parent_path: str, name: str) -> None:
        assert parent.children is not None
        counts = self._layers[-1]
        target = parent.children.get(name)
        if target is None:
            return
        path = f"{parent_path}/{name}" if parent_path else name
        if target.layer_index < self._current:
            counts.files_removed += self._record_removed(target, path)
            del parent.children[name]
        elif target.is_dir:
            # The directory was recreated in this layer, so only its lower
            # entries go.
            counts.files_removed += self._remove_lower(target, path)

    def _remove_lower(self, directory: _Node, path: str) -> int:
        """Remove the entries of lower layers under DIRECTORY, return the file count."""
        assert directory.children is not None
        removed = 0
        for name, child in list(directory.children.items()):
            child_path = f"{path}/{name}" if path else name
            if child.layer_index < self._current:
                removed += self._record_removed(child, child_path)
                del directory.children[name]
            elif child.is_dir:
                removed += self._remove_lower(child, child_path)
        return removed

    def _record_removed(self, node: _Node, path: str) -> int:
        """Note the lower paths under NODE as removed, return their file count."""
        files = 0
        for removed_path, removed in _walk(node, path):
            if removed.is_dir:
                self._removed_directories.add(removed_path)
            else:
                self._removed_files.add(removed_path)
                files += 1
        return files

    def visible_inodes(self) -> tuple[int, set[int]]:
        """Return the count of visible non-directory paths and their inode ids."""
        files = 0
        inode_ids: set[int] = set()
        pending = [self._root]
        while pending:
            node = pending.pop()
            if node.children is not None:
                pending.extend(node.children.values())
                continue
            files += 1
            assert node.inode is not None
            inode_ids.add(id(node.inode))
        return files, inode_ids

    def visible_files(self) -> list[VisibleFile]:
        """Return the non-directory entries of the final file system, sorted by path.

        Only entries applied with a record are listed.
        """
        files: list[VisibleFile] = []
        pending: list[tuple[str, _Node]] = [("", self._root)]
        while pending:
            path, node = pending.pop()
            if node.children is not None:
                prefix = f"{path}/" if path else ""
                pending.extend(
                    (prefix + name, child) for name, child in node.children.items()
                )
                continue
            assert node.inode is not None
            if node.entry is None or node.inode.entry is None:
                continue
            files.append(VisibleFile(path, node.entry, node.inode.entry))
        files.sort(key=lambda visible: visible.path)
        return files


@dataclass(frozen=True, slots=True)
class VisibleFile:
    """A non-directory path of the final file system and the records behind it."""

    path: str
    # The member that put the path there: for a hard link, the link itself.
    entry: LayerEntry
    # The member that created the content: the link's target for a hard link.
    content: LayerEntry
