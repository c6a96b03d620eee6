"""Estimate how long pulling an image takes: the bytes to download over a bandwidth.

A registry serves each layer blob as it was pushed. Blobs that the archive stores
compressed are counted at their stored size. A layer that the archive stores
uncompressed, as `docker save` writes every layer, is normally compressed on
push, and its compressed size cannot be known without compressing it. Such a
layer counts at its uncompressed tar length. That is an upper bound on its gzip
size, apart from gzip's framing. Only data that does not compress pays for the
framing: a header and trailer of 18 bytes or more (RFC 1952) and 5 bytes per
stored deflate block of at most 65535 bytes (RFC 1951).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from hyperlane.errors import UsageError
from hyperlane.images.layers import LayerStream

DEFAULT_PULL_BANDWIDTH_BITS_PER_SECOND = 100e6
# Values of PullEstimate.method.
METHOD_COMPRESSED = "compressed_blob_bytes"
METHOD_UPPER_BOUND = "uncompressed_upper_bound"


@dataclass(frozen=True)
class LayerTransfer:
    """The bytes that pulling one layer downloads."""

    index: int
    # Length of the blob as the archive stores it.
    blob_bytes: int
    # False for a blob stored as a plain tar.
    compressed: bool
    # blob_bytes when compressed, else the tar length as an upper bound.
    transfer_bytes_estimate: int

    def to_dict(self) -> dict[str, Any]:
        """Return the fields as a JSON-ready dict."""
        return asdict(self)


@dataclass(frozen=True)
class PullEstimate:
    """The download size and time of a pull with no layer already present."""

    # Sum of the layers' transfer_bytes_estimate.
    transfer_bytes_estimate: int
    bandwidth_bits_per_second: float
    # transfer_bytes_estimate * 8 / bandwidth_bits_per_second.
    pull_seconds_estimate: float
    # METHOD_COMPRESSED when every layer is stored compressed, else
    # METHOD_UPPER_BOUND.
    method: str
    layers: list[LayerTransfer]

    def to_dict(self) -> dict[str, Any]:
        """Return the fields, layers included, as a JSON-ready dict."""
        return asdict(self)


def check_bandwidth(bits_per_second: float) -> None:
    """Raise UsageError unless BITS_PER_SECOND is a finite number above zero."""
    if (
        isinstance(bits_per_second, bool)
        or not isinstance(bits_per_second, int | float)
        or not math.isfinite(bits_per_second)
        or bits_per_second <= 0
    ):
        raise UsageError(
            f"pull bandwidth {bits_per_second!r} is invalid; pass a number of bits "
            "per second above 0, for example 100e6 for 100 Mbit/s"
        )


def estimate_pull(
    streams: Sequence[LayerStream],
    bandwidth_bits_per_second: float = DEFAULT_PULL_BANDWIDTH_BITS_PER_SECOND,
) -> PullEstimate:
    """Estimate the bytes and seconds that pulling the layers of STREAMS takes.

    The time is the bytes over the bandwidth alone: it leaves out request latency,
    parallel downloads, decompression and unpacking, and the manifest and config.
    Raises UsageError for a bandwidth that is not a finite number above zero.
    """
    check_bandwidth(bandwidth_bits_per_second)
    layers = []
    for index, stream in enumerate(streams):
        # A plain tar is its own uncompressed form, so its digests are equal.
        compressed = stream.blob_digest != stream.diff_id
        layers.append(
            LayerTransfer(
                index=index,
                blob_bytes=stream.blob_bytes,
                compressed=compressed,
                transfer_bytes_estimate=(
                    stream.blob_bytes if compressed else stream.tar_bytes
                ),
            )
        )
    transfer_bytes = sum(layer.transfer_bytes_estimate for layer in layers)
    all_compressed = all(layer.compressed for layer in layers)
    return PullEstimate(
        transfer_bytes_estimate=transfer_bytes,
        bandwidth_bits_per_second=float(bandwidth_bits_per_second),
        pull_seconds_estimate=transfer_bytes * 8 / bandwidth_bits_per_second,
        method=METHOD_COMPRESSED if all_compressed else METHOD_UPPER_BOUND,
        layers=layers,
    )
