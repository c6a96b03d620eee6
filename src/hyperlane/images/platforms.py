"""Parse and compare image platforms ("os/architecture[/variant]").

Names are normalised before they are compared, as containerd's platforms package
normalises them: "linux/arm64" equals "linux/arm64/v8" and "linux/aarch64",
"linux/arm" equals "linux/arm/v7" and "linux/armhf", and "linux/x86_64" equals
"linux/amd64".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hyperlane.errors import UsageError

DEFAULT_PLATFORM = "linux/amd64"
# Other names of an architecture, with the variant that the name implies.
_ARCHITECTURE_ALIASES = {
    "x86_64": ("amd64", ""),
    "x86-64": ("amd64", ""),
    "i386": ("386", ""),
    "aarch64": ("arm64", ""),
    "armhf": ("arm", "v7"),
    "armel": ("arm", "v6"),
}
_DEFAULT_VARIANTS = {"arm64": "v8", "arm": "v7"}


@dataclass(frozen=True)
class Platform:
    """A normalised platform, equal to another one with the same three names."""

    os: str
    architecture: str
    # "" when the architecture has no variants, else for example "v7".
    variant: str
    # The text that the platform was read from, as written.
    text: str = field(compare=False)


def make_platform(os: str, architecture: str, variant: str, text: str) -> Platform:
    """Return the platform of these names, normalised, read from TEXT."""
    architecture = architecture.lower()
    variant = variant.lower()
    if architecture in _ARCHITECTURE_ALIASES:
        architecture, implied_variant = _ARCHITECTURE_ALIASES[architecture]
        variant = variant or implied_variant
    if variant.isdigit():
        variant = "v" + variant
    if not variant:
        variant = _DEFAULT_VARIANTS.get(architecture, "")
    if architecture == "amd64" and variant == "v1":
        variant = ""
    return Platform(os.lower(), architecture, variant, text)


def parse_platform(text: str) -> Platform:
    """Parse "os/architecture[/variant]", raising UsageError for any other text."""
    parts = text.split("/")
    if len(parts) not in (2, 3) or not all(parts):
        raise UsageError(
            f"platform {text!r} is not OS/ARCHITECTURE[/VARIANT]; write for example "
            "linux/amd64, linux/arm64 or linux/arm/v7"
        )
    variant = parts[2] if len(parts) == 3 else ""
    return make_platform(parts[0], parts[1], variant, text)


def platform_of(fields: dict[str, Any]) -> Platform | None:
    """Return the platform of an OCI platform object or an image config.

    Both store "os", "architecture" and an optional "variant". Returns None when
    os or architecture is missing or not a string.
    """
    os = fields.get("os")
    architecture = fields.get("architecture")
    variant = fields.get("variant")
    if not isinstance(os, str) or not isinstance(architecture, str):
        return None
    if not os or not architecture:
        return None
    if not isinstance(variant, str):
        variant = ""
    text = f"{os}/{architecture}" + (f"/{variant}" if variant else "")
    return make_platform(os, architecture, variant, text)
