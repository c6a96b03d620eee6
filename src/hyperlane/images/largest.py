"""The largest regular files of an image's final file system."""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from hyperlane.images.entries import EntryKind, LayerEntry
from hyperlane.images.stacking import VisibleFile

# Files listed in a report.
TOP_FILES = 20


@dataclass(frozen=True)
class LargeFile:
    """A regular file of the final file system, each hard-linked content once."""

    # The first of its visible names in path order.
    path: str
    # The size from the tar header: the apparent size for a sparse file.
    size_bytes: int
    # The layer whose member wrote the content; for a hard link, its target's.
    layer_index: int
    sparse: bool
    # The other visible names of the same content, sorted.
    hard_links: list[str]

    def to_dict(self) -> dict[str, Any]:
        """Return the fields as a JSON-ready dict."""
        return asdict(self)


def find_largest_files(
    visible_files: Sequence[VisibleFile], limit: int = TOP_FILES
) -> list[LargeFile]:
    """Return the LIMIT largest regular files of VISIBLE_FILES, largest first.

    Files of equal size are listed in path order. VISIBLE_FILES must be sorted by
    path, as FileSystemStack.visible_files returns it.
    """
    names: dict[int, tuple[LayerEntry, list[str]]] = {}
    for visible in visible_files:
        content = visible.content
        if content.kind is not EntryKind.FILE:
            continue
        names.setdefault(id(content), (content, []))[1].append(visible.path)
    largest = heapq.nsmallest(
        limit,
        names.values(),
        key=lambda item: (-item[0].size_bytes, item[1][0]),
    )
    return [
        LargeFile(
            path=paths[0],
            size_bytes=content.size_bytes,
            layer_index=content.layer_index,
            sparse=content.sparse,
            hard_links=paths[1:],
        )
        for content, paths in largest
    ]
