"""Pull estimates of hand-built archives: compressed, plain and mixed layers."""

from __future__ import annotations

import gzip
import math
from pathlib import Path

import pytest

from hyperlane.errors import UsageError
from hyperlane.images import analyze_archive
from hyperlane.images.pull import (
    DEFAULT_PULL_BANDWIDTH_BITS_PER_SECOND,
    METHOD_COMPRESSED,
    METHOD_UPPER_BOUND,
)
from tests.unit.images.builders import (
    compress,
    docker_archive_members,
    file,
    layer_tar,
    write_tar,
)

# Repetitive content, so that gzip and zstd blobs are far smaller than the tars.
LOWER = layer_tar([file("bin/tool", b"tool " * 2000)])
UPPER = layer_tar([file("etc/conf", b"conf " * 500)])


def test_plain_layers_upper_bound(tmp_path: Path) -> None:
    path = write_tar(tmp_path / "image.tar", docker_archive_members([LOWER, UPPER]))
    pull = analyze_archive(path).pull
    assert pull.method == METHOD_UPPER_BOUND
    assert pull.transfer_bytes_estimate == len(LOWER) + len(UPPER)
    assert [layer.compressed for layer in pull.layers] == [False, False]
    assert [layer.blob_bytes for layer in pull.layers] == [len(LOWER), len(UPPER)]
    assert pull.bandwidth_bits_per_second == DEFAULT_PULL_BANDWIDTH_BITS_PER_SECOND
    expected_seconds = (len(LOWER) + len(UPPER)) * 8 / 100e6
    assert pull.pull_seconds_estimate == pytest.approx(expected_seconds)


@pytest.mark.parametrize("compression", ["gzip", "zstd"])
def test_compressed_blob_bytes(tmp_path: Path, compression: str) -> None:
    members = docker_archive_members([LOWER, UPPER], compression)
    pull = analyze_archive(write_tar(tmp_path / "image.tar", members)).pull
    blobs = [len(compress(LOWER, compression)), len(compress(UPPER, compression))]
    assert pull.method == METHOD_COMPRESSED
    assert [layer.transfer_bytes_estimate for layer in pull.layers] == blobs
    assert pull.transfer_bytes_estimate == sum(blobs)
    assert pull.transfer_bytes_estimate < len(LOWER) + len(UPPER)


def test_mixed_layers_upper_bound(tmp_path: Path) -> None:
    members = docker_archive_members([LOWER, UPPER])
    lower_name = next(name for name in members if name.startswith("0" * 64))
    members[lower_name] = gzip.compress(LOWER)
    pull = analyze_archive(write_tar(tmp_path / "image.tar", members)).pull
    assert pull.method == METHOD_UPPER_BOUND
    assert [layer.compressed for layer in pull.layers] == [True, False]
    assert pull.transfer_bytes_estimate == len(gzip.compress(LOWER)) + len(UPPER)


def test_bandwidth_parameter(tmp_path: Path) -> None:
    path = write_tar(tmp_path / "image.tar", docker_archive_members([LOWER, UPPER]))
    pull = analyze_archive(path, pull_bandwidth_bits_per_second=8e6).pull
    assert pull.bandwidth_bits_per_second == 8e6
    # 8 Mbit/s moves 1e6 bytes per second.
    assert pull.pull_seconds_estimate == pytest.approx((len(LOWER) + len(UPPER)) / 1e6)


@pytest.mark.parametrize("bandwidth", [0, -1.0, math.nan, math.inf, True])
def test_invalid_bandwidth_rejected(tmp_path: Path, bandwidth: float) -> None:
    # The check runs before the archive is opened, so no archive is needed.
    with pytest.raises(UsageError, match=r"pull bandwidth .* is invalid"):
        analyze_archive(
            tmp_path / "absent.tar", pull_bandwidth_bits_per_second=bandwidth
        )
