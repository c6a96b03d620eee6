"""The percentile and histogram strategies on hand-made series of Samples."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace

import pytest

from hyperlane.errors import UsageError
from hyperlane.metrics.sample import Sample
from hyperlane.sizing.histogram import (
    DecayingHistogram,
    ExponentialBuckets,
    confidence_days,
    lower_bound_multiplier,
    upper_bound_multiplier,
)
from hyperlane.sizing.policy import MIB, SizingPolicy
from hyperlane.sizing.strategies import STRATEGIES, get_strategy, size_container
from hyperlane.sizing.strategy import StrategyParameters
from hyperlane.sizing.usage import ContainerUsage, usage_from_samples

BASE = Sample(
    timestamp_seconds=0.0,
    cpu_usage_seconds_total=0.0,
    **{
        name: None
        for name in Sample.__dataclass_fields__
        if name not in ("timestamp_seconds", "cpu_usage_seconds_total")
    },
)
STRATEGY_NAMES = sorted(STRATEGIES)


def make_series(
    cores: Sequence[float],
    working_sets: Sequence[int | None],
    interval_seconds: float = 1.0,
    **fields: Sequence[object],
) -> list[Sample]:
    """Build len(cores) + 1 samples: cores[i] is the CPU used in interval i.

    working_sets and each extra field list give one value per sample.
    """
    assert len(working_sets) == len(cores) + 1
    samples = []
    total = 0.0
    for index in range(len(cores) + 1):
        if index > 0:
            total += cores[index - 1] * interval_seconds
        values = {name: column[index] for name, column in fields.items()}
        samples.append(
            replace(
                BASE,
                timestamp_seconds=index * interval_seconds,
                cpu_usage_seconds_total=total,
                memory_working_set_bytes=working_sets[index],
                **values,  # type: ignore[arg-type]
            )
        )
    return samples


def usage_of(samples: Sequence[Sample], name: str = "app") -> ContainerUsage:
    return usage_from_samples(name, samples)


def test_percentile_formula_p95_and_peak_margin() -> None:
    cores = [(index % 20 + 1) / 100 for index in range(60)]
    working_sets = [200 * MIB] * 61
    sizing = size_container(usage_of(make_series(cores, working_sets)), "percentile")
    recommendation = sizing.recommendation
    # p95 of 60 readings is the 57th smallest: each of 0.01..0.20 appears 3 times.
    assert recommendation.cpu_request_millicores == 190
    assert recommendation.memory_request_bytes == 230 * MIB
    assert recommendation.memory_limit_bytes == 230 * MIB
    assert recommendation.estimate is False
    assert "p95 of 60 readings" in recommendation.cpu_explanation


def test_histogram_cpu_target_is_bucket_end_with_margin() -> None:
    cores = [0.5] * 60
    sizing = size_container(usage_of(make_series(cores, [50 * MIB] * 61)), "histogram")
    # The VPA's exponential buckets: 0.5 cores falls in bucket
    # floor(log(0.5 * 0.05 / 0.01 + 1) / log(1.05)) = 25, which ends at
    # 0.01 * (1.05^26 - 1) / 0.05 cores. The target is that end * 1.15.
    bucket_end = 0.01 * (1.05**26 - 1) / 0.05
    expected = math.ceil(round(bucket_end * 1.15 * 1000, 6))
    assert expected == 588
    assert sizing.recommendation.cpu_request_millicores == expected
    assert "p90 of a decaying histogram" in sizing.recommendation.cpu_explanation


def test_histogram_memory_target_from_window_peaks() -> None:
    working_sets = [300 * MIB] * 61
    sizing = size_container(
        usage_of(make_series([0.1] * 60, working_sets)), "histogram"
    )
    buckets = ExponentialBuckets(1e7, 1.05, 1e12)
    bucket = buckets.find_bucket(300 * MIB)
    bucket_end = buckets.bucket_start(bucket + 1)
    expected = math.ceil(bucket_end * 1.15 / MIB) * MIB
    assert sizing.recommendation.memory_request_bytes == expected
    assert (
        "1 window peak of the working set" in sizing.recommendation.memory_explanation
    )


def test_exponential_buckets_match_vpa_layout() -> None:
    buckets = ExponentialBuckets(0.01, 1.05, 1000.0)
    assert buckets.bucket_start(0) == 0.0
    assert buckets.bucket_start(1) == pytest.approx(0.01)
    assert buckets.bucket_start(2) == pytest.approx(0.01 + 0.0105)
    assert buckets.find_bucket(0.005) == 0
    assert buckets.find_bucket(0.01) == 1
    assert buckets.find_bucket(0.0205) == 2
    assert buckets.find_bucket(1e9) == buckets.bucket_count - 1


def test_decaying_histogram_halves_weight_per_half_life() -> None:
    buckets = ExponentialBuckets(0.01, 1.05, 1000.0)
    histogram = DecayingHistogram(buckets, 3600.0, reference_seconds=7200.0)
    # Weight 0.25 two half-lives back, weight 1 at the reference.
    histogram.add(1.0, 0.0)
    histogram.add(2.0, 7200.0)
    assert sum(histogram.weights.values()) == pytest.approx(1.25)
    low_end = buckets.bucket_start(buckets.find_bucket(1.0) + 1)
    high_end = buckets.bucket_start(buckets.find_bucket(2.0) + 1)
    # 0.25 / 1.25 = 20 % of the weight sits in the bucket of 1.0.
    assert histogram.percentile(20) == pytest.approx(low_end)
    assert histogram.percentile(21) == pytest.approx(high_end)


def test_histogram_bounds_widen_with_confidence() -> None:
    # 1441 readings a minute apart: their starts span 1 day, and 1441 / 1440 > 1,
    # so the confidence is min(1, 1441 / 1440) = 1.
    samples = make_series([0.2] * 1441, [100 * MIB] * 1442, interval_seconds=60.0)
    usage = usage_of(samples)
    assert confidence_days(usage) == pytest.approx(1.0)
    assert upper_bound_multiplier(1.0) == pytest.approx(2.0)
    assert lower_bound_multiplier(1.0) == pytest.approx(1.001**-2)
    sizing = size_container(usage, "histogram")
    bounds = sizing.bounds
    assert bounds is not None
    bucket_end = (
        0.01
        * (1.05 ** (ExponentialBuckets(0.01, 1.05, 1000).find_bucket(0.2) + 1) - 1)
        / 0.05
    )
    assert bounds.cpu_upper_cores == pytest.approx(bucket_end * 1.15 * 2.0)
    assert bounds.cpu_lower_cores == pytest.approx(bucket_end * 1.15 * 1.001**-2)


def test_histogram_short_history_has_no_upper_bound() -> None:
    # The starts of a single reading span no time, so the confidence is 0 and
    # the VPA's upper multiplier (1 + 1 / 0) is infinite.
    usage = usage_of(make_series([0.2], [100 * MIB] * 2))
    assert confidence_days(usage) == 0.0
    sizing = size_container(usage, "histogram")
    assert sizing.recommendation.status == "ok"
    assert sizing.bounds is not None
    assert sizing.bounds.cpu_upper_cores is None
    assert sizing.bounds.memory_upper_bytes is None
    assert sizing.bounds.cpu_lower_cores == 0.01
    assert sizing.bounds.memory_lower_bytes == 100 * MIB


@pytest.mark.parametrize("strategy", STRATEGY_NAMES)
def test_near_zero_usage_floored(strategy: str) -> None:
    # The histogram's first CPU bucket ends at 10m, so its smallest figure is
    # 10m * 1.15 = 12m, below the 25m floor here.
    policy = SizingPolicy(cpu_floor_cores=0.025)
    samples = make_series([0.0001] * 60, [1 * MIB] * 61)
    recommendation = size_container(
        usage_of(samples), strategy, policy=policy
    ).recommendation
    assert recommendation.cpu_request_millicores == 25
    assert recommendation.cpu_floored is True
    assert "floor" in recommendation.cpu_explanation
    assert recommendation.memory_request_bytes == 100 * MIB
    assert recommendation.memory_floored is True
    assert "floor" in recommendation.memory_explanation


@pytest.mark.parametrize("strategy", STRATEGY_NAMES)
def test_single_spike_keeps_limit_above_peak(strategy: str) -> None:
    working_sets: list[int | None] = [150 * MIB] * 61
    working_sets[30] = 700 * MIB
    parameters = StrategyParameters(histogram_memory_aggregation_seconds=1.0)
    recommendation = size_container(
        usage_of(make_series([0.1] * 60, working_sets)),
        strategy,
        parameters=parameters,
    ).recommendation
    assert recommendation.memory_limit_bytes is not None
    assert recommendation.memory_limit_bytes >= 700 * MIB


def test_histogram_spike_explained_as_observed_peak() -> None:
    working_sets: list[int | None] = [150 * MIB] * 61
    working_sets[30] = 700 * MIB
    parameters = StrategyParameters(histogram_memory_aggregation_seconds=1.0)
    recommendation = size_container(
        usage_of(make_series([0.1] * 60, working_sets)),
        "histogram",
        parameters=parameters,
    ).recommendation
    assert recommendation.memory_limit_bytes == 700 * MIB
    assert "observed peak 700 MiB" in recommendation.memory_explanation


def oom_series(
    working_sets: Sequence[int | None], kill_at: int, limit_bytes: int
) -> list[Sample]:
    count = len(working_sets)
    kills = [0 if index < kill_at else 1 for index in range(count)]
    return make_series(
        [0.1] * (count - 1),
        working_sets,
        memory_oom_kills_total=kills,
        memory_limit_bytes=[limit_bytes] * count,
        memory_limit_set=[True] * count,
    )


def test_oom_kill_percentile_uses_limit_rule() -> None:
    samples = oom_series([200 * MIB] * 61, kill_at=30, limit_bytes=256 * MIB)
    recommendation = size_container(usage_of(samples), "percentile").recommendation
    # max(200 + 100, 200 * 1.2, 256 * 1.2) MiB = 307.2 MiB, rounded up.
    assert recommendation.memory_request_bytes == 308 * MIB
    assert "OOM" in recommendation.memory_explanation


def test_oom_kill_histogram_uses_vpa_bump() -> None:
    samples = oom_series([200 * MIB] * 61, kill_at=30, limit_bytes=256 * MIB)
    recommendation = size_container(usage_of(samples), "histogram").recommendation
    # used = max(peak 200, limit 256) MiB; max(256 + 100, 256 * 1.2) = 356 MiB.
    assert recommendation.memory_request_bytes == 356 * MIB
    assert "OOM-kill minimum" in recommendation.memory_explanation


@pytest.mark.parametrize("strategy", STRATEGY_NAMES)
def test_oom_kill_without_memory_samples(strategy: str) -> None:
    samples = oom_series([None] * 61, kill_at=30, limit_bytes=512 * MIB)
    recommendation = size_container(usage_of(samples), strategy).recommendation
    assert recommendation.status == "ok"
    # Both rules give max(512 + 100, 512 * 1.2) = 614.4 MiB, rounded up.
    assert recommendation.memory_request_bytes == 615 * MIB
    assert "limit" in recommendation.memory_explanation


@pytest.mark.parametrize("strategy", STRATEGY_NAMES)
def test_oom_before_newest_sample_still_raises(strategy: str) -> None:
    working_sets: list[int | None] = [*([300 * MIB] * 5), *([120 * MIB] * 56)]
    samples = oom_series(working_sets, kill_at=5, limit_bytes=300 * MIB)
    usage = usage_of(samples)
    assert usage.oom_kills[0].timestamp_seconds < usage.memory[-1].timestamp_seconds
    recommendation = size_container(usage, strategy).recommendation
    assert recommendation.memory_request_bytes is not None
    # Without the kill both strategies give at most 345 MiB (300 * 1.15).
    assert recommendation.memory_request_bytes >= 360 * MIB


@pytest.mark.parametrize("strategy", STRATEGY_NAMES)
def test_short_history_is_estimate(strategy: str) -> None:
    samples = make_series([0.2] * 9, [100 * MIB] * 10)
    recommendation = size_container(usage_of(samples), strategy).recommendation
    assert recommendation.status == "ok"
    assert recommendation.cpu_request_millicores is not None
    assert recommendation.estimate is True
    assert recommendation.estimate_reason is not None
    assert "at least 60 samples" in recommendation.estimate_reason
    assert "at least 60 s of load" in recommendation.estimate_reason


@pytest.mark.parametrize("strategy", STRATEGY_NAMES)
def test_no_samples_not_enough_data(strategy: str) -> None:
    recommendation = size_container(usage_of([]), strategy).recommendation
    assert recommendation.status == "not_enough_data"
    assert recommendation.cpu_request_millicores is None
    assert recommendation.memory_request_bytes is None
    assert recommendation.memory_limit_bytes is None


@pytest.mark.parametrize("strategy", STRATEGY_NAMES)
def test_autoscaler_target_keeps_peak_over_target(strategy: str) -> None:
    cores = [0.3] * 59 + [0.7]
    parameters = StrategyParameters(target_utilization=0.7)
    sizing = size_container(
        usage_of(make_series(cores, [100 * MIB] * 61)), strategy, parameters=parameters
    )
    # Peak 0.7 cores / target 0.7 = 1000m, above both strategies' formula.
    assert sizing.recommendation.cpu_request_millicores == 1000
    assert "autoscaler" in sizing.recommendation.cpu_explanation
    assert len(sizing.notes) == 1


@pytest.mark.parametrize("strategy", STRATEGY_NAMES)
def test_three_containers_floored_each(strategy: str) -> None:
    policy = SizingPolicy(cpu_floor_cores=0.025, memory_floor_bytes=128 * MIB)
    for index, cores in enumerate((0.0001, 0.002, 0.004)):
        samples = make_series([cores] * 60, [(index + 1) * MIB] * 61)
        usage = usage_of(samples, name=f"app-{index}")
        sizing = size_container(usage, strategy, policy=policy)
        assert sizing.container == f"app-{index}"
        assert sizing.recommendation.cpu_request_millicores == 25
        assert sizing.recommendation.cpu_floored is True
        assert sizing.recommendation.memory_request_bytes == 128 * MIB
        assert sizing.recommendation.memory_floored is True


def test_unknown_strategy_rejected() -> None:
    with pytest.raises(UsageError, match="Unknown sizing strategy 'vpa'"):
        get_strategy("vpa")
