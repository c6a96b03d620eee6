"""Result types of an image analysis, each convertible to a JSON-ready dict."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from hyperlane.images.duplicates import DuplicateReport
from hyperlane.images.efficiency import DiveEfficiency
from hyperlane.images.junk import JunkReport
from hyperlane.images.largest import LargeFile
from hyperlane.images.metadata import MetadataReport
from hyperlane.images.pull import PullEstimate


@dataclass(frozen=True)
class ImageConfig:
    """The run settings from an image's config blob."""

    # Ports as "PORT/PROTOCOL", for example "8080/tcp", sorted.
    exposed_ports: list[str] = field(default_factory=list)
    cmd: list[str] | None = None
    entrypoint: list[str] | None = None
    # "NAME=VALUE" strings in the order the config lists them.
    env: list[str] = field(default_factory=list)
    working_dir: str | None = None
    user: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return the fields as a JSON-ready dict."""
        return asdict(self)


@dataclass(frozen=True)
class LayerAnalysis:
    """Figures of one layer, measured against the layers below it."""

    # Position in the stack, 0 for the bottom layer.
    index: int
    # "sha256:..." digest of the uncompressed layer tar.
    diff_id: str
    # The history entry's created_by, or None if the config has no entry for it.
    created_by: str | None
    # Content bytes: regular-file sizes plus symlink target lengths.
    size_bytes: int
    # Bytes of the regular files in this layer, each hard-linked file once.
    regular_file_bytes: int
    # Non-directory entries at paths that no lower layer has.
    files_added: int
    # Non-directory entries at paths that a lower layer has.
    files_modified: int
    # Lower non-directory entries that this layer hides without replacing them.
    files_removed: int
    # Regular-file bytes of this layer that later layers delete or overwrite.
    hidden_bytes: int
    # Tar members in the layer, counting whiteouts and directories.
    entries: int
    # Length of the uncompressed layer tar, padding included.
    tar_bytes: int

    def to_dict(self) -> dict[str, Any]:
        """Return the fields as a JSON-ready dict."""
        return asdict(self)


@dataclass(frozen=True)
class ImageAnalysis:
    """Figures of a whole image and of each of its layers."""

    # First repository tag that the archive names, or None.
    reference: str | None
    # "sha256:..." digest of the config blob.
    image_id: str
    os: str | None
    architecture: str | None
    # Creation time as the config stores it (RFC 3339), or None.
    created: str | None
    config: ImageConfig
    # Bottom layer first.
    layers: list[LayerAnalysis]
    # Sum of the layers' size_bytes.
    total_size_bytes: int
    # Regular-file bytes in the final stacked file system, each inode once.
    visible_bytes: int
    # Sum of the layers' hidden_bytes.
    hidden_bytes: int
    # hidden_bytes over the regular-file bytes of all layers, in percent.
    hidden_percent: float
    # Non-directory entries in the final stacked file system.
    files_total: int
    # Paths of the sparse regular files (GNU tar's sparse formats) in any layer,
    # sorted. Their sizes are the apparent sizes from the headers, holes included.
    sparse_files: list[str]
    # Size of the archive file, or of all files under an OCI layout directory.
    archive_bytes: int
    # Length of the config blob.
    config_bytes: int
    # dive 0.13.1's efficiency, wasted bytes and inefficient paths, for comparison.
    dive: DiveEfficiency
    # Regular-file contents that the layers store more than once.
    duplicates: DuplicateReport
    # Files that a layer copies again only to change their mode, uid or gid.
    metadata_changes: MetadataReport
    # Caches, docs and build leftovers per category, visible and hidden.
    junk: JunkReport
    # The largest regular files of the final file system, largest first.
    largest_files: list[LargeFile]
    # Download size and time of a pull at a given bandwidth, estimated.
    pull: PullEstimate

    def to_dict(self) -> dict[str, Any]:
        """Return the fields, layers and config included, as a JSON-ready dict."""
        return asdict(self)
