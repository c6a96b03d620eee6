"""The .hgrm percentile distribution text and file."""

from __future__ import annotations

import re
import statistics
from pathlib import Path

import pytest

from hyperlane.errors import UsageError
from hyperlane.load.hgrm import format_hgrm, write_hgrm
from hyperlane.load.latency import new_histogram

# 1 µs to 10 ms, one latency per microsecond.
RAW_MICROSECONDS = list(range(1, 10_001))
HEADER = "       Value     Percentile TotalCount 1/(1-Percentile)"
LINE = re.compile(r"^ *(\d+\.\d{3}) (\d\.\d{12}) +(\d+)(?: +(\d+\.\d{2}))?$")
FOOTER = (
    re.compile(r"^#\[Mean    = +(\d+\.\d{3}), StdDeviation   = +(\d+\.\d{3})\]$"),
    re.compile(r"^#\[Max     = +(\d+\.\d{3}), Total count    = +(\d+)\]$"),
    re.compile(r"^#\[Buckets = +(\d+), SubBuckets     = +(\d+)\]$"),
)


def _encoding(values: list[int]) -> str:
    histogram = new_histogram()
    for value in values:
        histogram.record_value(value)
    encoded: bytes = histogram.encode()
    return encoded.decode("ascii")


def _table(text: str) -> list[tuple[float, float, int, str | None]]:
    rows = []
    for line in text.splitlines()[2:-3]:
        match = LINE.match(line)
        assert match is not None, line
        value, percentile, count, inverted = match.groups()
        rows.append((float(value), float(percentile), int(count), inverted))
    return rows


@pytest.fixture(scope="module")
def text() -> str:
    return format_hgrm(_encoding(RAW_MICROSECONDS))


def test_hgrm_header(text: str) -> None:
    lines = text.splitlines()
    assert lines[0] == HEADER
    assert lines[1] == ""


def test_hgrm_footer_layout(text: str) -> None:
    footer = text.splitlines()[-3:]
    for pattern, line in zip(FOOTER, footer, strict=True):
        assert pattern.match(line), line


def test_hgrm_first_ticks(text: str) -> None:
    # With 5 ticks per half distance, Java HdrHistogram steps by 0.1 up to 0.5,
    # by 0.05 up to 0.75, then by 0.025.
    percentiles = [row[1] for row in _table(text)[:13]]
    expected = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.775, 0.8]
    assert percentiles == pytest.approx(expected, abs=1e-12)


def test_hgrm_counts_match_raw(text: str) -> None:
    for value_ms, _, count, _ in _table(text):
        # Each Value is the upper end of a bucket, so every raw latency up to it
        # is counted.
        below = sum(1 for raw in RAW_MICROSECONDS if raw <= round(value_ms * 1000))
        assert count == below, value_ms


def test_hgrm_percentiles_reached(text: str) -> None:
    for _, percentile, count, _ in _table(text):
        assert count / len(RAW_MICROSECONDS) >= percentile - 1e-12


def test_hgrm_inverted_column(text: str) -> None:
    for _, percentile, _, inverted in _table(text)[:-1]:
        assert inverted is not None
        assert float(inverted) == pytest.approx(1 / (1 - percentile), abs=0.006)


def test_hgrm_last_line(text: str) -> None:
    value, percentile, count, inverted = _table(text)[-1]
    assert percentile == 1.0
    assert count == len(RAW_MICROSECONDS)
    assert inverted is None
    assert value == 10.007


def test_hgrm_footer_numbers(text: str) -> None:
    mean_line, max_line, bucket_line = text.splitlines()[-3:]
    mean_match = FOOTER[0].match(mean_line)
    max_match = FOOTER[1].match(max_line)
    bucket_match = FOOTER[2].match(bucket_line)
    assert mean_match is not None
    assert max_match is not None
    assert bucket_match is not None
    mean_ms = statistics.fmean(RAW_MICROSECONDS) / 1000
    deviation_ms = statistics.pstdev(RAW_MICROSECONDS) / 1000
    assert float(mean_match.group(1)) == pytest.approx(mean_ms, rel=1e-3)
    assert float(mean_match.group(2)) == pytest.approx(deviation_ms, rel=1e-2)
    # 10 000 µs sits in a bucket 8 µs wide, whose upper end is 10 007 µs.
    assert max_match.group(1) == "10.007"
    assert int(max_match.group(2)) == len(RAW_MICROSECONDS)
    # 2048 sub-buckets of 1 µs, doubling per bucket up to at least 1 h.
    assert int(bucket_match.group(2)) == 2048
    assert 2048 * 2 ** (int(bucket_match.group(1)) - 1) >= 3_600_000_000
    assert 2048 * 2 ** (int(bucket_match.group(1)) - 2) < 3_600_000_000


def test_hgrm_microseconds() -> None:
    text = format_hgrm(_encoding([250, 250, 1000]), unit_ms=False)
    rows = _table(text)
    assert rows[0][0] == 250.0
    assert rows[-1][0] == 1000.0


def test_hgrm_empty_histogram() -> None:
    lines = format_hgrm(_encoding([])).splitlines()
    assert lines[:2] == [HEADER, ""]
    assert len(lines) == 5
    assert lines[3].endswith("Total count    =            0]")


def test_hgrm_invalid_encoding() -> None:
    with pytest.raises(UsageError, match="Invalid histogram"):
        format_hgrm("bm90IGEgaGlzdG9ncmFt")


def test_write_hgrm_replaces(tmp_path: Path) -> None:
    path = tmp_path / "latency.hgrm"
    path.write_text("old", encoding="utf-8")
    encoding = _encoding(RAW_MICROSECONDS)
    write_hgrm(encoding, path)
    assert path.read_text(encoding="utf-8") == format_hgrm(encoding)
    assert [entry.name for entry in tmp_path.iterdir()] == ["latency.hgrm"]


def test_write_hgrm_unwritable(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("", encoding="utf-8")
    with pytest.raises(UsageError, match=r"Cannot write the \.hgrm file"):
        write_hgrm(_encoding([5]), blocker / "latency.hgrm")
