"""Terminal summary of an image's content findings: duplicates, junk, pull time."""

from __future__ import annotations

from typing import Any

from rich import box
from rich.table import Table

from hyperlane.units import format_bandwidth, format_bytes, format_seconds

# Rows of the largest files and junk categories that the summary shows.
SUMMARY_ROWS = 3


def _count(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _duplicates_text(duplicates: dict[str, Any]) -> str:
    if not duplicates["group_count"]:
        return "none"
    return (
        f"{_count(duplicates['group_count'], 'content')} stored more than once, "
        f"{format_bytes(duplicates['duplicate_bytes'])} beyond the first copies: "
        f"{format_bytes(duplicates['visible_duplicate_bytes'])} visible, "
        f"{format_bytes(duplicates['hidden_duplicate_bytes'])} hidden"
    )


def _metadata_text(metadata: dict[str, Any]) -> str:
    if not metadata["files"]:
        return "none"
    layers = metadata["layers"]
    fields = sorted(
        {name for layer in layers for name in layer["changed"]},
        key=["mode", "uid", "gid"].index,
    )
    indexes = ", ".join(str(layer["layer_index"]) for layer in layers)
    noun = "layer" if len(layers) == 1 else "layers"
    return (
        f"{_count(metadata['files'], 'file')}, "
        f"{format_bytes(metadata['copied_bytes'])} copied again only to change "
        f"{'/'.join(fields)} ({noun} {indexes})"
    )


def _junk_text(junk: dict[str, Any]) -> str:
    if not junk["files"]:
        return "none"
    visible = [c for c in junk["categories"] if c["files"]][:SUMMARY_ROWS]
    top = ", ".join(f"{c['category']} {format_bytes(c['size_bytes'])}" for c in visible)
    return (
        f"{_count(junk['files'], 'file')}, {format_bytes(junk['size_bytes'])} "
        f"(largest: {top})"
    )


def _hidden_junk_text(junk: dict[str, Any]) -> str:
    if not junk["hidden_files"]:
        return "none"
    return (
        f"{_count(junk['hidden_files'], 'file')}, "
        f"{format_bytes(junk['hidden_bytes'])} deleted or overwritten by a later "
        "layer but still shipped"
    )


def _largest_text(largest: list[dict[str, Any]]) -> str:
    if not largest:
        return "none"
    return "\n".join(
        f"/{item['path']} {format_bytes(item['size_bytes'])} "
        f"(layer {item['layer_index']}{', sparse' if item['sparse'] else ''})"
        for item in largest[:SUMMARY_ROWS]
    )


def _pull_text(pull: dict[str, Any]) -> str:
    bandwidth = format_bandwidth(pull["bandwidth_bits_per_second"])
    text = (
        f"{format_seconds(pull['pull_seconds_estimate'])} for "
        f"{format_bytes(pull['transfer_bytes_estimate'])} at {bandwidth}"
    )
    if pull["method"] == "uncompressed_upper_bound":
        text += " (upper bound: uncompressed layers counted at their tar length)"
    return text


def findings_table(image: dict[str, Any]) -> Table | None:
    """Build the findings table of an image document, None if it has no findings."""
    if "duplicates" not in image:
        return None
    table = Table(
        title="Content findings",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        show_header=False,
    )
    table.add_column("finding", no_wrap=True)
    table.add_column("figures")
    table.add_row("duplicate contents", _duplicates_text(image["duplicates"]))
    table.add_row("metadata-only copies", _metadata_text(image["metadata_changes"]))
    table.add_row("junk, visible", _junk_text(image["junk"]))
    table.add_row("junk, hidden", _hidden_junk_text(image["junk"]))
    table.add_row("largest files", _largest_text(image["largest_files"]))
    table.add_row("pull time, estimate", _pull_text(image["pull"]))
    return table
