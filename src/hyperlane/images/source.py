"""Parse an image source: a kind-prefixed or bare archive path, or a reference."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, cast

from hyperlane.errors import UsageError
from hyperlane.images.archive import detect_layout

SourceKind = Literal["docker-archive", "oci-archive", "oci", "engine"]
SOURCE_KINDS: tuple[SourceKind, ...] = (
    "docker-archive",
    "oci-archive",
    "oci",
    "engine",
)

# A reference as the distribution grammar spells it: optional host[:port], lowercase
# path components, optional :tag and @digest.
_REFERENCE = re.compile(
    r"(?:[a-zA-Z0-9.-]+(?::[0-9]+)?/)?"
    r"[a-z0-9]+(?:[._-]+[a-z0-9]+)*(?:/[a-z0-9]+(?:[._-]+[a-z0-9]+)*)*"
    r"(?::[\w][\w.-]{0,127})?"
    r"(?:@[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[0-9a-fA-F]{32,})?"
)
_PREFIX = re.compile(r"(?P<prefix>[a-z][a-z0-9+.-]*):(?P<rest>.*)", re.DOTALL)
# A missing path with one of these starts or ends is reported as a missing file, not
# passed to the engine. A reference that looks like a path needs the engine: prefix.
_PATH_STARTS = ("/", "./", "../", "~")
_PATH_ENDS = (".tar", ".tar.gz", ".tgz", ".tar.zst", ".oci")


@dataclass(frozen=True)
class ImageSource:
    """An image location: an archive, an OCI layout directory or an engine image."""

    kind: SourceKind
    # Archive path, OCI layout directory or engine image reference.
    value: str


def parse_source(text: str) -> ImageSource:
    """Parse "KIND:VALUE", an existing archive path or an engine image reference.

    A path without a prefix is classified by its content. A leading "~" in a path is
    expanded, since shells leave it alone after a "KIND:" prefix. Raises UsageError
    for an empty value, an unknown prefix or a missing path without a prefix, and
    ImageInvalid for an existing path that is not an image layout.
    """
    if not text:
        raise UsageError("image source is empty; pass a path or an image reference")
    match = _PREFIX.fullmatch(text)
    if match is not None and match["prefix"] in SOURCE_KINDS:
        value = match["rest"]
        if not value:
            raise UsageError(
                f"image source {text!r} has no value after the prefix; write "
                f"{match['prefix']}:PATH or engine:REFERENCE"
            )
        kind = cast(SourceKind, match["prefix"])
        if kind != "engine":
            # os.path keeps the text as written, where Path would normalise it.
            value = os.path.expanduser(value)  # noqa: PTH111
        return ImageSource(kind, value)
    path = os.path.expanduser(text)  # noqa: PTH111
    if Path(path).exists():
        return ImageSource(cast(SourceKind, detect_layout(Path(path))), path)
    if match is not None and not _REFERENCE.fullmatch(text):
        raise UsageError(
            f"image source {text!r} has unknown prefix {match['prefix']!r}; use one of "
            f"{', '.join(kind + ':' for kind in SOURCE_KINDS)} or an image reference"
        )
    if text.startswith(_PATH_STARTS) or text.endswith(_PATH_ENDS):
        message = (
            f"file {text!r} not found; pass an existing archive or directory, or an "
            "image reference such as localhost/app:1"
        )
        if _REFERENCE.fullmatch(text):
            message += f" (engine:{text} forces a reference)"
        raise UsageError(message)
    return ImageSource("engine", text)
