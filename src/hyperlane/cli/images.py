"""The body of ``hyperlane image``: find the source, export it if needed, analyse it."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hyperlane.images import ImageSource, analyze_archive, parse_source
from hyperlane.report.document import document_header

if TYPE_CHECKING:
    from hyperlane.settings import ImageSettings


def archive_document(
    source: ImageSource, platform: str | None, pull_bandwidth: float
) -> dict[str, Any]:
    """Analyse an image archive or directory into a JSON document.

    PLATFORM and PULL_BANDWIDTH (bits per second) are those of ImageSettings.
    """
    document = document_header("image")
    analysis = analyze_archive(
        Path(source.value),
        kind=source.kind,
        platform=platform,
        pull_bandwidth_bits_per_second=pull_bandwidth,
    )
    document["source"] = {"kind": source.kind, "value": source.value}
    document["image"] = analysis.to_dict()
    return document


def analyze_source(source_text: str, settings: ImageSettings) -> dict[str, Any]:
    """Analyse an image archive, directory or engine reference into a JSON document."""
    source = parse_source(source_text)
    if source.kind != "engine":
        return archive_document(source, settings.platform, settings.pull_bandwidth)

    document = document_header("image")
    # Imported here because the Docker SDK behind it adds about 50 ms and 6 MB to
    # every start, and only an engine source needs it.
    from hyperlane.engines import connect

    engine = connect(settings.engine)
    try:
        image = engine.get_image(source.value)
        with tempfile.TemporaryDirectory(prefix="hyperlane-export-") as directory:
            archive = engine.export_image(image, Path(directory) / "image.tar")
            analysis = analyze_archive(
                archive,
                kind="docker-archive",
                pull_bandwidth_bits_per_second=settings.pull_bandwidth,
            )
    finally:
        engine.close()
    document["engine"] = engine.info.to_dict()
    document["source"] = {"kind": "engine", "value": source.value}
    document["image"] = {
        **analysis.to_dict(),
        "reference": source.value,
        "engine_size_bytes": image.attrs.get("Size"),
    }
    return document
