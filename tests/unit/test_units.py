import pytest

from hyperlane.units import (
    format_bytes,
    parse_bandwidth_bits_per_second,
    parse_cpu_cores,
    parse_duration_seconds,
    parse_memory_bytes,
)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("10s", 10.0),
        ("500ms", 0.5),
        ("2m", 120.0),
        ("1h", 3600.0),
        ("7d", 604_800.0),
        ("1.5d", 129_600.0),
        ("1.5", 1.5),
        (3, 3.0),
        ("250us", 0.00025),
    ],
)
def test_duration_parses(text: object, seconds: float) -> None:
    assert parse_duration_seconds(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["10x", "s", "", "1e3s", "nan", True])
def test_duration_rejects(text: object) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration_seconds(text)


@pytest.mark.parametrize(
    ("text", "cores"), [("250m", 0.25), ("0.5", 0.5), ("2", 2.0), (1, 1.0)]
)
def test_cpu_parses(text: object, cores: float) -> None:
    assert parse_cpu_cores(text) == pytest.approx(cores)


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("100Mi", 100 * 2**20),
        ("1Gi", 2**30),
        ("512m", 512 * 2**20),
        ("64M", 64_000_000),
        ("2048", 2048),
        ("1.5Ki", 1536),
        (4096, 4096),
    ],
)
def test_memory_parses(text: object, size: int) -> None:
    assert parse_memory_bytes(text) == size


@pytest.mark.parametrize("text", ["12 parsecs", "Mi", "-5Mi"])
def test_memory_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="invalid memory"):
        parse_memory_bytes(text)


def test_format_bytes_units() -> None:
    assert format_bytes(512) == "512 B"
    assert format_bytes(1536) == "1.5 KiB"
    assert format_bytes(100 * 2**20) == "100.0 MiB"
    assert format_bytes(None) == "n/a"


@pytest.mark.parametrize(
    ("text", "bits"),
    [
        ("100Mbit", 100e6),
        ("100Mbit/s", 100e6),
        ("1Gbit/s", 1e9),
        ("100Mbps", 100e6),
        ("12.5MB/s", 100e6),
        ("1MiB/s", 8 * 2**20),
        ("5 kbit/s", 5e3),
        ("1000", 1000.0),
        (2e6, 2e6),
    ],
)
def test_bandwidth_parses(text: object, bits: float) -> None:
    assert parse_bandwidth_bits_per_second(text) == bits


@pytest.mark.parametrize("text", ["10Mb", "fast", "0", "10Xbit/s", "-1Mbit", True])
def test_bandwidth_rejects(text: object) -> None:
    with pytest.raises(ValueError, match="bandwidth"):
        parse_bandwidth_bits_per_second(text)
