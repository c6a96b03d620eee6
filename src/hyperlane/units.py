"""Parsing of the durations, CPU and memory quantities that flags and files accept."""

from __future__ import annotations

import math
import re

_DURATION_UNITS_SECONDS = {
    "us": 1e-6,
    "µs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
    "d": 86_400.0,
}
_DURATION_PATTERN = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([a-zµ]*)\s*$")

# Kubernetes quantities (binary Ki/Mi/Gi, decimal k/M/G) and Docker's lowercase binary
# suffixes (b, k, m, g), because users write both spellings.
_MEMORY_UNITS_BYTES = {
    "": 1,
    "b": 1,
    "k": 1024,
    "m": 1024**2,
    "g": 1024**3,
    "t": 1024**4,
    "ki": 1024,
    "mi": 1024**2,
    "gi": 1024**3,
    "ti": 1024**4,
    "K": 1000,
    "M": 1000**2,
    "G": 1000**3,
    "T": 1000**4,
}
_CPU_PATTERN = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)(m?)\s*$")
_MEMORY_PATTERN = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([a-zA-Z]*)\s*$")


def parse_duration_seconds(value: object) -> float:
    """Parse ``10s``, ``500ms``, ``2m``, ``1h``, ``7d`` or a plain number of seconds."""
    if isinstance(value, bool):
        raise ValueError(
            f"invalid duration {value!r}; use a number with a unit, e.g. 10s"
        )
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        match = _DURATION_PATTERN.match(str(value))
        unit = match.group(2) if match else None
        if match is None or unit not in {*_DURATION_UNITS_SECONDS, ""}:
            raise ValueError(
                f"invalid duration {value!r}; use a number with a unit such as "
                "500ms, 10s, 2m, 1h or 7d"
            )
        seconds = float(match.group(1)) * _DURATION_UNITS_SECONDS.get(unit or "s", 1.0)
    if not math.isfinite(seconds):
        raise ValueError(f"invalid duration {value!r}; it must be finite")
    return seconds


def parse_cpu_cores(value: object) -> float:
    """Parse a CPU quantity: ``250m`` (millicores) or ``0.25`` (cores)."""
    if isinstance(value, bool):
        raise ValueError(f"invalid CPU quantity {value!r}; use e.g. 250m or 0.25")
    if isinstance(value, int | float):
        cores = float(value)
    else:
        match = _CPU_PATTERN.match(str(value))
        if match is None:
            raise ValueError(
                f"invalid CPU quantity {value!r}; use millicores such as 250m or cores "
                "such as 0.25"
            )
        number, milli = match.groups()
        cores = float(number) / 1000 if milli else float(number)
    if not math.isfinite(cores):
        raise ValueError(f"invalid CPU quantity {value!r}; it must be finite")
    return cores


def parse_memory_bytes(value: object) -> int:
    """Parse a memory quantity: ``100Mi``, ``1Gi``, ``512m`` (MiB), ``64M`` or bytes."""
    if isinstance(value, bool):
        raise ValueError(f"invalid memory quantity {value!r}; use e.g. 100Mi")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(
                f"invalid memory quantity {value!r}; use a size of 0 or more, e.g. "
                "100Mi"
            )
        return value
    match = _MEMORY_PATTERN.match(str(value))
    if match is None:
        raise ValueError(
            f"invalid memory quantity {value!r}; use bytes or a unit such as 100Mi, "
            "1Gi or 512m"
        )
    number, unit = match.groups()
    factor = _MEMORY_UNITS_BYTES.get(unit)
    if factor is None:
        factor = _MEMORY_UNITS_BYTES.get(unit.lower())
    if factor is None:
        raise ValueError(
            f"invalid memory unit {unit!r} in {value!r}; use Ki, Mi, Gi, k, m, g or b"
        )
    if factor == 1 and not float(number).is_integer():
        raise ValueError(
            f"invalid memory quantity {value!r}; a byte count is a whole number, or "
            "use a unit such as 1.5Mi"
        )
    return math.ceil(float(number) * factor)


def format_bytes(value: float | None) -> str:
    """Format a byte count with binary units, e.g. ``1.5 MiB``."""
    if value is None:
        return "n/a"
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(size) < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"


def format_bandwidth(bits_per_second: float, separator: str = " ") -> str:
    """Format a rate in the largest decimal unit it reaches, e.g. ``100 Mbit/s``."""
    for suffix, factor in (("Gbit/s", 1e9), ("Mbit/s", 1e6), ("kbit/s", 1e3)):
        if bits_per_second >= factor:
            return f"{bits_per_second / factor:g}{separator}{suffix}"
    return f"{bits_per_second:g}{separator}bit/s"


def format_seconds(value: float | None) -> str:
    """Format a duration with a unit fitted to its size, e.g. ``1.23 ms``."""
    if value is None:
        return "n/a"
    if value < 1e-3:
        return f"{value * 1e6:.0f} µs"
    if value < 1:
        return f"{value * 1e3:.2f} ms"
    return f"{value:.2f} s"


# Network rates are decimal (1 Mbit/s = 10^6 bit/s), as link speeds are quoted.
# Byte rates are also accepted, because registries and CDNs quote those.
_BANDWIDTH_UNITS_BITS = {
    "bit": 1,
    "kbit": 1e3,
    "mbit": 1e6,
    "gbit": 1e9,
    "bps": 1,
    "kbps": 1e3,
    "mbps": 1e6,
    "gbps": 1e9,
    "b": 8,
    "kb": 8e3,
    "mb": 8e6,
    "gb": 8e9,
    "kib": 8 * 1024,
    "mib": 8 * 1024**2,
    "gib": 8 * 1024**3,
}
_BANDWIDTH_PATTERN = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([a-zA-Z]*)(/s)?\s*$")


def parse_bandwidth_bits_per_second(value: object) -> float:
    """Parse a network rate: ``100Mbit``, ``1Gbit/s``, ``100Mbps``, ``12.5MB/s``.

    A plain number is bits per second. Units ending in "bit" or "bps" are bits and
    units ending in "B" are bytes, so ``MB/s`` is 8 times ``Mbit/s``.
    """
    if isinstance(value, bool):
        raise ValueError(f"invalid bandwidth {value!r}; use e.g. 100Mbit/s")
    if isinstance(value, int | float):
        bits = float(value)
    else:
        match = _BANDWIDTH_PATTERN.match(str(value))
        if match is None:
            raise ValueError(
                f"invalid bandwidth {value!r}; use a rate such as 100Mbit/s, 1Gbit/s "
                "or 12.5MB/s"
            )
        number, unit, _ = match.groups()
        # "Mb" is ambiguous in the wild; only a capital B means bytes here.
        if unit.endswith("b") and not unit.lower().endswith(("bit", "bps")):
            raise ValueError(
                f"ambiguous bandwidth unit {unit!r} in {value!r}; write Mbit/s for "
                "bits or MB/s for bytes"
            )
        factor = _BANDWIDTH_UNITS_BITS.get(unit.lower(), 1.0 if not unit else None)
        if factor is None:
            raise ValueError(
                f"invalid bandwidth unit {unit!r} in {value!r}; use bit, kbit, Mbit, "
                "Gbit (or bps forms), B, kB, MB, GB, KiB, MiB or GiB"
            )
        bits = float(number) * factor
    if not math.isfinite(bits) or bits <= 0:
        raise ValueError(f"invalid bandwidth {value!r}; it must be finite and above 0")
    return bits
