"""The JSON report document: its schema version and how it is written."""

from __future__ import annotations

import json
import os
import re
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hyperlane import __version__
from hyperlane.errors import UsageError

# Semantic version of every JSON document Hyperlane writes. Adding fields bumps the
# minor version; renaming or removing one bumps the major version.
SCHEMA_VERSION = "0.2.0"


def document_header(kind: str) -> dict[str, Any]:
    """Return the fields that open every JSON document: schema, kind, tool, time."""
    return {
        "schema_version": SCHEMA_VERSION,
        "kind": kind,
        "tool": {"name": "hyperlane", "version": __version__},
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }


# Lone surrogates: Python's surrogateescape form of the bytes of a file name that
# is not UTF-8.
_SURROGATE = re.compile("[\ud800-\udfff]")


def dumps(document: dict[str, Any]) -> str:
    """Return the document as indented JSON, valid UTF-8 whatever its names hold.

    A name that is not UTF-8 reaches here with each invalid byte as a lone
    surrogate (U+DC80 to U+DCFF). UTF-8 cannot encode those, so each is written as
    a JSON escape such as \\udcff, and json.loads(...).encode("utf-8",
    "surrogateescape") gives back the original bytes.
    """
    text = json.dumps(document, indent=2, sort_keys=False, ensure_ascii=False) + "\n"
    return _SURROGATE.sub(lambda match: f"\\u{ord(match.group()):04x}", text)


def write_text_atomically(path: Path, text: str, mode: int = 0o644) -> None:
    """Write ``text`` to a temporary file beside ``path``, then rename it into place.

    A reader sees the old file or the whole new one, never a part.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as output:
            output.write(text)
            output.flush()
            os.fsync(output.fileno())
        Path(temporary).chmod(mode)
        Path(temporary).replace(path)
    except OSError as error:
        Path(temporary).unlink(missing_ok=True)
        # A failed write (a full disk) names no file, so the error gets the path.
        if error.filename is None:
            raise OSError(error.errno, error.strerror, str(path)) from error
        raise
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def read_document(path: Path) -> dict[str, Any]:
    """Read a Hyperlane JSON document, checking its schema's major version."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"report file {str(path)!r} not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise UsageError(
            f"report file {str(path)!r} is not valid JSON: {error}"
        ) from None
    if not isinstance(document, dict) or "schema_version" not in document:
        raise UsageError(
            f"{str(path)!r} is not a Hyperlane document: it has no schema_version"
        )
    found = str(document["schema_version"])
    supported_major = SCHEMA_VERSION.split(".", 1)[0]
    if found.split(".", 1)[0] != supported_major:
        raise UsageError(
            f"{str(path)!r} has schema_version {found!r}, but this Hyperlane reads "
            f"{supported_major}.x; re-run the audit with this version"
        )
    return document
