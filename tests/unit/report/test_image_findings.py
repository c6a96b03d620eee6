"""The content findings table at the end of `hyperlane image`'s terminal output."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console

from hyperlane.images import analyze_archive
from hyperlane.report.terminal import render_image
from tests.unit.images.builders import SparseFile, detailed_archive, file, owned

DATA = b"d" * 4096


def rendered(document: dict[str, Any]) -> str:
    console = Console(record=True, width=200, color_system=None)
    render_image(document, console)
    return console.export_text()


def image_document(tmp_path: Path) -> dict[str, Any]:
    path = detailed_archive(
        tmp_path / "image.tar",
        [
            [file("app/data", DATA), file("var/lib/apt/lists/x_Packages", b"p" * 2048)],
            [
                owned(file("app/data", DATA), 0o600),
                file("app/copy", DATA),
                file("var/lib/apt/.wh.lists", b""),
                file("usr/share/doc/tool/README", b"r" * 1024),
            ],
            [SparseFile("var/big", 1 << 20, ((0, b"head"),))],
        ],
    )
    analysis = analyze_archive(path, pull_bandwidth_bits_per_second=8e6)
    return {
        "kind": "image",
        "source": {"kind": "docker-archive", "value": str(path)},
        "image": analysis.to_dict(),
    }


def test_findings_rendered(tmp_path: Path) -> None:
    text = rendered(image_document(tmp_path))
    assert "Content findings" in text
    # Three copies of DATA, one overwritten by the chmod layer.
    assert "1 content stored more than once, 8.0 KiB beyond the first copies" in text
    assert "4.0 KiB visible, 4.0 KiB hidden" in text
    assert "1 file, 4.0 KiB copied again only to change mode (layer 1)" in text
    assert "1 file, 1.0 KiB (largest: docs 1.0 KiB)" in text
    assert "1 file, 2.0 KiB deleted or overwritten by a later layer" in text
    assert "/var/big 1.0 MiB (layer 2, sparse)" in text
    assert "at 8 Mbit/s (upper bound" in text


def test_pull_time_rendered(tmp_path: Path) -> None:
    document = image_document(tmp_path)
    pull = document["image"]["pull"]
    text = rendered(document)
    seconds = pull["transfer_bytes_estimate"] / 1e6
    assert f"{seconds * 1e3:.2f} ms for" in text


def test_document_without_findings(tmp_path: Path) -> None:
    document = image_document(tmp_path)
    for key in ("duplicates", "metadata_changes", "junk", "largest_files", "pull"):
        del document["image"][key]
    text = rendered(document)
    assert "Content findings" not in text
    assert "Image layers" in text
