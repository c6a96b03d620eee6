"""Unit tests of the sizing formulas on hand-made series.

Expected figures are worked out by hand in each test from the formulas in
docs/sizing.md, never taken from the code's output.
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
from typing import Any

import pytest

from hyperlane.errors import UsageError
from hyperlane.sizing import (
    Recommendation,
    SizingPolicy,
    nearest_rank_percentile,
    recommend,
)

MIB = 2**20


def measured(
    cpu_cores: list[float],
    memory_bytes: int = 200 * MIB,
    history_seconds: float = 120.0,
) -> Recommendation:
    """Recommend from a CPU series with a flat memory series of the same length."""
    return recommend(cpu_cores, [memory_bytes] * len(cpu_cores), history_seconds)


# Percentile


def test_percentile_one_sample() -> None:
    for percentile in (1.0, 50.0, 95.0, 100.0):
        assert nearest_rank_percentile([0.3], percentile) == 0.3


def test_percentile_two_samples() -> None:
    # Nearest rank: ceil(0.95 * 2) = 2, ceil(0.50 * 2) = 1, ceil(0.51 * 2) = 2.
    assert nearest_rank_percentile([0.2, 0.1], 95.0) == 0.2
    assert nearest_rank_percentile([0.2, 0.1], 50.0) == 0.1
    assert nearest_rank_percentile([0.2, 0.1], 51.0) == 0.2


def test_percentile_hundred_samples() -> None:
    values = [index / 1000 for index in range(1, 101)]
    random.Random(7).shuffle(values)
    # The k-th smallest of 0.001 .. 0.100 is k / 1000, and p-th percentile is rank p.
    assert nearest_rank_percentile(values, 95.0) == 0.095
    assert nearest_rank_percentile(values, 1.0) == 0.001
    assert nearest_rank_percentile(values, 100.0) == 0.100
    assert nearest_rank_percentile(values, 94.5) == 0.095


def test_percentile_exact_rank_boundary() -> None:
    # 0.95 * 20 is exactly 19, so the 19th value and not the 20th.
    values = [float(index) for index in range(1, 21)]
    assert nearest_rank_percentile(values, 95.0) == 19.0


def test_percentile_empty_raises() -> None:
    with pytest.raises(UsageError, match="empty series"):
        nearest_rank_percentile([], 95.0)


# CPU


def test_cpu_p95_ignores_single_spike() -> None:
    # 99 samples at 50m and one at 2 cores: rank 95 of 100 is still 50m.
    recommendation = measured([0.050] * 99 + [2.0])
    assert recommendation.cpu_request_millicores == 50
    assert recommendation.cpu_request_cores == 0.050
    assert recommendation.cpu_floored is False


def test_cpu_spike_counts_in_short_series() -> None:
    # With 10 samples, rank ceil(9.5) = 10 is the spike itself.
    recommendation = measured([0.050] * 9 + [2.0])
    assert recommendation.cpu_request_millicores == 2000


def test_cpu_near_zero_floored() -> None:
    recommendation = measured([0.0] * 100)
    assert recommendation.cpu_request_millicores == 10
    assert recommendation.cpu_request_cores == 0.010
    assert recommendation.cpu_floored is True
    assert "0m measured" in recommendation.cpu_explanation
    assert "raised to the 10m floor" in recommendation.cpu_explanation


def test_cpu_tiny_floor_never_zero() -> None:
    policy = SizingPolicy(cpu_floor_cores=0.001)
    recommendation = recommend([0.0] * 100, [200 * MIB] * 100, 120.0, policy)
    assert recommendation.cpu_request_millicores == 1


def test_cpu_below_floor_explanation() -> None:
    recommendation = measured([0.004] * 100)
    assert recommendation.cpu_explanation.startswith("CPU request 10m: 4m measured")


def test_cpu_at_floor_not_floored() -> None:
    recommendation = measured([0.010] * 100)
    assert recommendation.cpu_request_millicores == 10
    assert recommendation.cpu_floored is False


def test_cpu_rounds_up_partial_millicore() -> None:
    assert measured([0.1371] * 100).cpu_request_millicores == 138
    assert measured([0.137000001] * 100).cpu_request_millicores == 138


def test_cpu_exact_millicore_boundary() -> None:
    assert measured([0.137] * 100).cpu_request_millicores == 137
    # 9 * 0.001 is 0.009000000000000001 in binary floating point, still 9m.
    policy = SizingPolicy(cpu_floor_cores=0.001)
    recommendation = recommend([9 * 0.001] * 100, [200 * MIB] * 100, 120.0, policy)
    assert recommendation.cpu_request_millicores == 9


def test_cpu_explanation_sentence() -> None:
    # 21 readings over 10.5 s are 0.5 s long, and rank ceil(19.95) = 20 is 137m.
    cpu_cores = [0.100] * 19 + [0.137, 0.300]
    recommendation = recommend(cpu_cores, [200 * MIB] * 21, 10.5)
    assert recommendation.cpu_explanation == (
        "CPU request 137m = p95 of 21 readings of CPU cores used, one per interval "
        "between samples (0.5 s long on average), rounded up to whole millicores."
    )


# Memory


def test_memory_peak_plus_margin() -> None:
    # Peak 120 MiB * 1.15 = 138 MiB exactly.
    series = [50 * MIB] * 59 + [120 * MIB]
    recommendation = recommend([0.1] * 60, series, 120.0)
    assert recommendation.memory_request_bytes == 138 * MIB
    assert recommendation.memory_limit_bytes == 138 * MIB
    assert recommendation.memory_floored is False


def test_memory_single_spike_sets_peak() -> None:
    # The peak and not a percentile sets memory: 1000 MiB * 1.15 = 1150 MiB.
    series = [150 * MIB] * 99 + [1000 * MIB]
    recommendation = recommend([0.1] * 100, series, 120.0)
    assert recommendation.memory_request_bytes == 1150 * MIB


def test_memory_exact_mib_boundary() -> None:
    # 100 MiB * 1.15 is exactly 115 MiB, and one byte more needs a 116th MiB.
    assert measured([0.1] * 60, 100 * MIB).memory_request_bytes == 115 * MIB
    assert measured([0.1] * 60, 100 * MIB + 1).memory_request_bytes == 116 * MIB


def test_memory_zero_margin_boundary() -> None:
    policy = SizingPolicy(memory_margin_ratio=0.0)
    exact = recommend([0.1] * 60, [200 * MIB] * 60, 120.0, policy)
    above = recommend([0.1] * 60, [200 * MIB + 1] * 60, 120.0, policy)
    assert exact.memory_request_bytes == 200 * MIB
    assert above.memory_request_bytes == 201 * MIB


def test_memory_near_zero_floored() -> None:
    # 10 MiB * 1.15 = 11.5 MiB, which rounds up to 12 MiB, below the 100 MiB floor.
    recommendation = measured([0.1] * 60, 10 * MIB)
    assert recommendation.memory_request_bytes == 100 * MIB
    assert recommendation.memory_limit_bytes == 100 * MIB
    assert recommendation.memory_floored is True
    assert "12 MiB measured" in recommendation.memory_explanation
    assert "raised to the 100 MiB floor" in recommendation.memory_explanation


def test_memory_explanation_sentence() -> None:
    recommendation = measured([0.1] * 60, 120 * MIB)
    assert recommendation.memory_explanation == (
        "Memory request and limit 138 MiB = peak working set 120 MiB * 1.15, "
        "rounded up to whole MiB."
    )


# OOM kill


def test_oom_limit_in_force_dominates() -> None:
    # Peak 200 MiB, limit 256 MiB: max(300, 240, 307.2) MiB rounds up to 308 MiB.
    recommendation = recommend(
        [0.1] * 60,
        [200 * MIB] * 60,
        120.0,
        memory_limit_in_force_bytes=256 * MIB,
        oom_killed=True,
    )
    assert recommendation.memory_request_bytes == 308 * MIB
    assert recommendation.memory_limit_bytes == 308 * MIB
    assert "OOM-kill minimum" in recommendation.memory_explanation
    assert "limit in force * 1.2" in recommendation.memory_explanation
    assert "limit in force 256 MiB" in recommendation.memory_explanation


def test_oom_peak_plus_extra_dominates() -> None:
    # Peak 300 MiB, limit 310 MiB: max(400, 360, 372) MiB = 400 MiB.
    recommendation = recommend(
        [0.1] * 60,
        [300 * MIB] * 60,
        120.0,
        memory_limit_in_force_bytes=310 * MIB,
        oom_killed=True,
    )
    assert recommendation.memory_request_bytes == 400 * MIB


def test_oom_peak_ratio_dominates() -> None:
    # Peak 1000 MiB, limit 800 MiB: max(1100, 1200, 960) MiB = 1200 MiB.
    recommendation = recommend(
        [0.1] * 60,
        [1000 * MIB] * 60,
        120.0,
        memory_limit_in_force_bytes=800 * MIB,
        oom_killed=True,
    )
    assert recommendation.memory_request_bytes == 1200 * MIB


def test_oom_without_limit_uses_peak() -> None:
    # Peak 200 MiB and no known limit: max(300, 240) MiB = 300 MiB.
    recommendation = recommend([0.1] * 60, [200 * MIB] * 60, 120.0, oom_killed=True)
    assert recommendation.memory_request_bytes == 300 * MIB
    assert "no known limit in force" in recommendation.memory_explanation


def test_limit_without_oom_ignored() -> None:
    recommendation = recommend(
        [0.1] * 60,
        [200 * MIB] * 60,
        120.0,
        memory_limit_in_force_bytes=1024 * MIB,
    )
    # 200 MiB * 1.15 = 230 MiB, as without a limit.
    assert recommendation.memory_request_bytes == 230 * MIB


def test_oom_large_margin_already_enough() -> None:
    # Peak 1000 MiB * 1.5 = 1500 MiB is above max(1100, 1200, 1200) MiB.
    policy = SizingPolicy(memory_margin_ratio=0.5)
    recommendation = recommend(
        [0.1] * 60,
        [1000 * MIB] * 60,
        120.0,
        policy,
        memory_limit_in_force_bytes=1000 * MIB,
        oom_killed=True,
    )
    assert recommendation.memory_request_bytes == 1500 * MIB
    assert "meets the OOM-kill minimum" in recommendation.memory_explanation


# History and status


def test_short_history_estimate() -> None:
    recommendation = measured([0.1] * 20, history_seconds=10.0)
    assert recommendation.status == "ok"
    assert recommendation.estimate is True
    reason = recommendation.estimate_reason
    assert reason is not None
    assert "20 CPU readings and 20 memory samples over 10.0 s" in reason
    assert "at least 60 samples (40 more)" in reason
    assert "at least 60 s of load (50.0 s more)" in reason


def test_few_samples_estimate() -> None:
    recommendation = measured([0.1] * 30, history_seconds=120.0)
    reason = recommendation.estimate_reason
    assert reason is not None
    assert "at least 60 samples (30 more)" in reason
    assert "of load" not in reason


def test_short_seconds_estimate() -> None:
    recommendation = measured([0.1] * 600, history_seconds=30.0)
    reason = recommendation.estimate_reason
    assert reason is not None
    assert "at least 60 s of load (30.0 s more)" in reason
    assert "samples (" not in reason


def test_estimate_still_computed() -> None:
    recommendation = measured([0.2] * 5, history_seconds=2.5)
    assert recommendation.cpu_request_millicores == 200
    assert recommendation.memory_request_bytes == 230 * MIB


def test_enough_history_not_estimate() -> None:
    recommendation = measured([0.1] * 60, history_seconds=60.0)
    assert recommendation.estimate is False
    assert recommendation.estimate_reason is None


def test_samples_smaller_series() -> None:
    recommendation = recommend([0.1] * 59, [200 * MIB] * 60, 60.0)
    assert recommendation.samples == 59
    assert recommendation.estimate is True


def test_no_samples_not_enough_data() -> None:
    recommendation = recommend([], [], 0.0)
    assert recommendation.status == "not_enough_data"
    assert recommendation.cpu_request_cores is None
    assert recommendation.cpu_request_millicores is None
    assert recommendation.memory_request_bytes is None
    assert recommendation.memory_limit_bytes is None
    assert recommendation.cpu_floored is False
    assert recommendation.memory_floored is False
    assert recommendation.samples == 0
    assert "no CPU or memory samples" in recommendation.cpu_explanation
    assert "no measurement to size from" in recommendation.memory_explanation


def test_no_memory_not_enough_data() -> None:
    recommendation = recommend([0.1] * 60, [], 60.0)
    assert recommendation.status == "not_enough_data"
    assert recommendation.cpu_request_millicores is None
    assert "no memory samples" in recommendation.memory_explanation


def test_to_dict_json_ready() -> None:
    recommendation = measured([0.1] * 60)
    data = json.loads(json.dumps(recommendation.to_dict()))
    assert data["status"] == "ok"
    assert data["cpu_request_millicores"] == 100
    assert data["memory_request_bytes"] == 230 * MIB
    assert data["policy"]["cpu_percentile"] == 95.0
    assert data["policy"]["memory_floor_bytes"] == 100 * MIB


# Validation


@pytest.mark.parametrize("bad_cpu", [-0.1, math.nan, math.inf])
def test_invalid_cpu_sample_raises(bad_cpu: float) -> None:
    with pytest.raises(UsageError, match="Invalid CPU sample"):
        recommend([0.1, bad_cpu], [MIB, MIB], 1.0)


def test_invalid_memory_sample_raises() -> None:
    with pytest.raises(UsageError, match="index 1"):
        recommend([0.1, 0.1], [MIB, -1], 1.0)


@pytest.mark.parametrize("bad_seconds", [-1.0, math.nan])
def test_invalid_history_raises(bad_seconds: float) -> None:
    with pytest.raises(UsageError, match="history_seconds"):
        recommend([0.1], [MIB], bad_seconds)


def test_invalid_limit_raises() -> None:
    with pytest.raises(UsageError, match="memory_limit_in_force_bytes"):
        recommend([0.1], [MIB], 1.0, memory_limit_in_force_bytes=0)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("cpu_percentile", 0.0),
        ("cpu_percentile", 100.5),
        ("cpu_percentile", math.nan),
        ("memory_margin_ratio", -0.01),
        ("cpu_floor_cores", 0.0),
        ("memory_floor_bytes", 6 * MIB - 1),
        ("min_history_samples", 0),
        ("min_history_seconds", -1.0),
    ],
)
def test_policy_invalid_raises(field: str, value: float) -> None:
    changes: dict[str, Any] = {field: value}
    with pytest.raises(UsageError, match=field):
        dataclasses.replace(SizingPolicy(), **changes)
