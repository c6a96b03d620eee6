"""Image analysis: per-layer sizes, stacking counts and hidden bytes of an archive.

The analysis reads each layer blob as a stream and never unpacks to disk.
"""

from hyperlane.images.archive import analyze_archive, detect_layout
from hyperlane.images.model import ImageAnalysis, ImageConfig, LayerAnalysis
from hyperlane.images.source import ImageSource, SourceKind, parse_source

__all__ = [
    "ImageAnalysis",
    "ImageConfig",
    "ImageSource",
    "LayerAnalysis",
    "SourceKind",
    "analyze_archive",
    "detect_layout",
    "parse_source",
]
