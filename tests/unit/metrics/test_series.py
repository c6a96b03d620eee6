from dataclasses import replace
from typing import Any

import pytest

from hyperlane.metrics import MetricsSeries, Sample, counter_increase, nearest_rank
from tests.unit.metrics.fakes import BASE


def series(*samples: Sample) -> MetricsSeries:
    return MetricsSeries(
        source="cgroup-v1", interval_seconds=0.5, samples=samples, failed_reads=0
    )


def sample_at(seconds: float, cpu_seconds: float, **fields: Any) -> Sample:
    return replace(
        BASE, timestamp_seconds=seconds, cpu_usage_seconds_total=cpu_seconds, **fields
    )


# Worked examples of the nearest-rank method: 15, 20, 35, 40, 50 has its 5th, 30th,
# 40th, 50th and 100th percentiles at 15, 20, 20, 35 and 50.
@pytest.mark.parametrize(
    ("percent", "expected"), [(5, 15), (30, 20), (40, 20), (50, 35), (100, 50)]
)
def test_nearest_rank_examples(percent: float, expected: int) -> None:
    assert nearest_rank([40, 15, 50, 35, 20], percent) == expected


def test_nearest_rank_p95_of_twenty() -> None:
    # ceil(0.95 * 20) = 19, so p95 is the 19th smallest value.
    assert nearest_rank(list(range(1, 21)), 95) == 19


def test_nearest_rank_p0_and_empty() -> None:
    assert nearest_rank([3, 1, 2], 0) == 1
    assert nearest_rank([], 95) is None


def test_increase_monotonic() -> None:
    assert counter_increase([10, 12, 20]) == 10


def test_increase_reset() -> None:
    # 10 -> 15 adds 5, the drop to 3 is a restart from 0 that adds 3, 3 -> 8 adds 5.
    assert counter_increase([10, 15, 3, 8]) == 13


def test_increase_skips_none() -> None:
    assert counter_increase([None, 4, None, 9]) == 5


def test_increase_too_few() -> None:
    assert counter_increase([None, 4]) is None
    assert counter_increase([]) is None


def test_cpu_cores_first_sample() -> None:
    assert series(sample_at(0.0, 1.0)).cpu_cores() == []


def test_cpu_cores_per_interval() -> None:
    cores = series(
        sample_at(0.0, 0.0),
        sample_at(0.5, 0.25),
        sample_at(1.5, 1.25),
        sample_at(2.0, 1.25),
    ).cpu_cores()
    assert cores == pytest.approx([0.5, 1.0, 0.0])


def test_cpu_cores_reset() -> None:
    cores = series(sample_at(0.0, 5.0), sample_at(1.0, 0.5)).cpu_cores()
    assert cores == pytest.approx([0.5])


def test_cpu_cores_zero_elapsed() -> None:
    assert series(sample_at(1.0, 0.0), sample_at(1.0, 1.0)).cpu_cores() == [0.0]


def test_summary_cpu_and_memory() -> None:
    samples = [
        sample_at(
            i * 0.5,
            i * 0.25,
            cpu_periods_total=i * 5,
            cpu_throttled_periods_total=i * 2,
            cpu_throttled_seconds_total=i * 0.1,
            memory_working_set_bytes=working_set,
            memory_limit_bytes=1000,
            network_rx_bytes_total=i * 100,
            network_tx_bytes_total=i * 10,
        )
        for i, working_set in enumerate([100, 300, 200, 500, 400])
    ]

    summary = series(*samples).summary()
    assert summary.source == "cgroup-v1"
    assert summary.samples == 5
    assert summary.interval_seconds == 0.5
    assert summary.duration_seconds == pytest.approx(2.0)
    assert summary.cpu_seconds_total == pytest.approx(1.0)
    assert summary.cpu_cores_mean == pytest.approx(0.5)
    assert summary.cpu_cores_p95 == pytest.approx(0.5)
    assert summary.cpu_cores_max == pytest.approx(0.5)
    assert summary.cpu_periods == 20
    assert summary.cpu_throttled_periods == 8
    assert summary.cpu_throttled_seconds == pytest.approx(0.4)
    assert summary.memory_working_set_max_bytes == 500
    assert summary.memory_working_set_p95_bytes == 500
    assert summary.memory_limit_bytes == 1000
    assert summary.network_rx_bytes == 400
    assert summary.network_tx_bytes == 40


def test_summary_p95_cores() -> None:
    # 20 intervals of 1 s using 0.05, 0.10, ... 1.00 cores: p95 is the 19th, 0.95.
    samples = [sample_at(0.0, 0.0)]
    for i in range(1, 21):
        samples.append(
            sample_at(float(i), samples[-1].cpu_usage_seconds_total + i * 0.05)
        )
    summary = series(*samples).summary()
    assert summary.cpu_cores_p95 == pytest.approx(0.95)
    assert summary.cpu_cores_max == pytest.approx(1.0)
    assert summary.cpu_cores_mean == pytest.approx(
        sum(i * 0.05 for i in range(1, 21)) / 20
    )


def test_summary_reset_counter() -> None:
    summary = series(
        sample_at(0.0, 8.0),
        sample_at(1.0, 9.0),
        sample_at(2.0, 0.5),
        sample_at(3.0, 1.0),
    ).summary()
    assert summary.cpu_seconds_total == pytest.approx(2.0)
    assert summary.cpu_cores_max == pytest.approx(1.0)


def test_summary_one_sample() -> None:
    summary = series(sample_at(4.0, 1.0, memory_working_set_bytes=7)).summary()
    assert summary.duration_seconds == 0.0
    assert summary.cpu_seconds_total is None
    assert summary.cpu_cores_mean is None
    assert summary.cpu_cores_p95 is None
    assert summary.cpu_cores_max is None
    assert summary.memory_working_set_max_bytes == 7


def test_summary_missing_fields() -> None:
    summary = series(sample_at(0.0, 0.0), sample_at(1.0, 0.5)).summary()
    assert summary.cpu_periods is None
    assert summary.cpu_throttled_periods is None
    assert summary.cpu_throttled_seconds is None
    assert summary.memory_working_set_max_bytes is None
    assert summary.memory_working_set_p95_bytes is None
    assert summary.memory_limit_bytes is None
    assert summary.network_rx_bytes is None
    assert summary.network_tx_bytes is None


def test_summary_last_limit() -> None:
    samples = [
        sample_at(0.0, 0.0, memory_limit_bytes=100),
        sample_at(1.0, 0.0, memory_limit_bytes=200),
        sample_at(2.0, 0.0),
    ]
    assert series(*samples).summary().memory_limit_bytes == 200


def test_summary_to_dict() -> None:
    data = series(sample_at(0.0, 0.0), sample_at(2.0, 1.0)).summary().to_dict()
    assert data["cpu_cores_mean"] == pytest.approx(0.5)
    assert data["network_rx_bytes"] is None
    assert data["source"] == "cgroup-v1"
    assert set(data) == {
        "source",
        "samples",
        "interval_seconds",
        "duration_seconds",
        "cpu_seconds_total",
        "cpu_cores_mean",
        "cpu_cores_p95",
        "cpu_cores_max",
        "cpu_periods",
        "cpu_throttled_periods",
        "cpu_throttled_seconds",
        "memory_working_set_max_bytes",
        "memory_working_set_p95_bytes",
        "memory_limit_bytes",
        "network_rx_bytes",
        "network_tx_bytes",
    }
