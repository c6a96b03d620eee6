"""LatencyRecorder percentiles against a sorted list, and above-range values."""

from __future__ import annotations

import math
import random

import pytest
from hdrh.histogram import HdrHistogram

from hyperlane.load.latency import LatencyRecorder


def _nearest_rank(values: list[int], percentile: float) -> int:
    ordered = sorted(values)
    rank = max(1, math.ceil(percentile * len(ordered) / 100))
    return ordered[rank - 1]


@pytest.mark.parametrize("percentile", [50.0, 90.0, 99.0, 99.9, 100.0])
def test_percentile_nearest_rank(percentile: float) -> None:
    # Below 2048 µs the histogram resolves every microsecond, so the nearest-rank
    # value of the sorted list must come back exactly.
    generator = random.Random(7)
    microseconds = [generator.randint(1, 2000) for _ in range(1537)]
    recorder = LatencyRecorder()
    recorder.pending.extend(value * 1000 for value in microseconds)
    expected = _nearest_rank(microseconds, percentile) / 1e6
    assert recorder.percentile_seconds(percentile) == expected


def test_percentile_rank_not_rounded_down() -> None:
    # 60 % of 12 samples is 7.2, so the nearest rank is 8. hdrh's own
    # get_value_at_percentile rounds 7.2 to rank 7.
    recorder = LatencyRecorder()
    recorder.pending.extend(value * 1000 for value in range(1, 13))
    assert recorder.percentile_seconds(60.0) == 8e-6


def test_summary_empty_is_none() -> None:
    summary = LatencyRecorder().summary()
    assert summary.p50_seconds is None
    assert summary.max_seconds is None
    assert summary.mean_seconds is None
    assert summary.count == 0


def test_summary_exact_max_and_mean() -> None:
    recorder = LatencyRecorder()
    recorder.pending.extend([1_000_000, 3_000_000, 123_456_789])
    summary = recorder.summary()
    assert summary.max_seconds == 0.123456789
    assert summary.mean_seconds == pytest.approx((1e-3 + 3e-3 + 0.123456789) / 3)
    # Above 2048 µs a bucket spans several microseconds, and the reported value is
    # the upper end of the bucket, within 3 significant digits.
    assert summary.p50_seconds is not None
    assert 0.003 <= summary.p50_seconds <= 0.003 * 1.001
    assert summary.p999_seconds is not None
    assert summary.p999_seconds <= summary.max_seconds


def test_above_range_counted() -> None:
    recorder = LatencyRecorder()
    two_hours_ns = 7_200 * 1_000_000_000
    recorder.pending.extend([1_000_000] * 8 + [two_hours_ns] * 2)
    summary = recorder.summary()
    assert summary.count == 10
    assert summary.above_range_count == 2
    assert summary.p90_seconds == 7_200.0
    assert summary.p50_seconds == 0.001
    assert summary.max_seconds == 7_200.0


def test_encoding_decodes_to_counts() -> None:
    recorder = LatencyRecorder()
    recorder.pending.extend([5_000, 5_000, 70_000_000])
    decoded = HdrHistogram.decode(recorder.encoded_histogram())
    assert decoded.get_total_count() == 3
    assert decoded.get_count_at_value(5) == 2
