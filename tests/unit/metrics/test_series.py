from dataclasses import replace
from typing import Any

import pytest

from hyperlane.errors import UsageError
from hyperlane.metrics import (
    MetricsSeries,
    Sample,
    compute_rates,
    counter_increase,
    nearest_rank,
    series_rates,
)
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
    # The interval across a restart has no rate, and the next one uses the new baseline.
    cores = series(
        sample_at(0.0, 5.0), sample_at(1.0, 0.5), sample_at(2.0, 1.0)
    ).cpu_cores()
    assert cores == pytest.approx([0.5])


def test_cpu_cores_zero_elapsed() -> None:
    assert series(sample_at(1.0, 0.0), sample_at(1.0, 1.0)).cpu_cores() == []


def test_summary_cpu_and_memory() -> None:
    samples = [
        sample_at(
            i * 0.5,
            i * 0.25,
            cpu_cfs_periods_total=i * 5,
            cpu_cfs_throttled_periods_total=i * 2,
            cpu_cfs_throttled_seconds_total=i * 0.1,
            memory_working_set_bytes=working_set,
            memory_limit_bytes=1000,
            memory_limit_set=True,
            memory_oom_kills_total=i // 2,
            block_io_read_bytes_total=i * 4096,
            block_io_write_bytes_total=i * 8192,
            network_receive_bytes_total=i * 100,
            network_transmit_bytes_total=i * 10,
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
    assert summary.memory_oom_kills == 2
    assert summary.block_io_read_bytes == 4 * 4096
    assert summary.block_io_write_bytes == 4 * 8192


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
    assert summary.memory_oom_kills is None
    assert summary.block_io_read_bytes is None
    assert summary.block_io_write_bytes is None


def test_summary_last_limit() -> None:
    samples = [
        sample_at(0.0, 0.0, memory_limit_bytes=100, memory_limit_set=True),
        sample_at(1.0, 0.0, memory_limit_bytes=200, memory_limit_set=True),
        sample_at(2.0, 0.0),
    ]
    assert series(*samples).summary().memory_limit_bytes == 200


def test_summary_unlimited_memory() -> None:
    # An unlimited container reports the host's memory, which is no limit in force.
    samples = [
        sample_at(0.0, 0.0, memory_limit_bytes=2**34, memory_limit_set=False),
        sample_at(1.0, 0.0, memory_limit_bytes=2**34, memory_limit_set=False),
    ]
    assert series(*samples).summary().memory_limit_bytes is None


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
        "memory_oom_kills",
        "block_io_read_bytes",
        "block_io_write_bytes",
    }


# Rates between samples


def test_rates_first_sample_unknown() -> None:
    first = sample_at(
        10.0, 4.0, network_receive_bytes_total=1000, block_io_write_bytes_total=10
    )
    rates = compute_rates(None, first)
    assert rates.timestamp_seconds == 10.0
    assert rates.interval_seconds is None
    assert rates.counter_reset is False
    assert rates.cpu_cores is None
    assert rates.cpu_cfs_throttled_periods_ratio is None
    assert rates.network_receive_bytes_per_second is None
    assert rates.network_transmit_bytes_per_second is None
    assert rates.block_io_read_bytes_per_second is None
    assert rates.block_io_write_bytes_per_second is None


def test_rates_between_samples() -> None:
    previous = sample_at(
        10.0,
        4.0,
        cpu_cfs_periods_total=100,
        cpu_cfs_throttled_periods_total=40,
        network_receive_bytes_total=1000,
        network_transmit_bytes_total=500,
        block_io_read_bytes_total=0,
        block_io_write_bytes_total=4096,
    )
    current = sample_at(
        12.0,
        5.0,
        cpu_cfs_periods_total=120,
        cpu_cfs_throttled_periods_total=45,
        network_receive_bytes_total=5000,
        network_transmit_bytes_total=700,
        block_io_read_bytes_total=8192,
        block_io_write_bytes_total=4096 + 2 * 1048576,
    )

    rates = compute_rates(previous, current)

    assert rates.timestamp_seconds == 12.0
    assert rates.interval_seconds == pytest.approx(2.0)
    assert rates.counter_reset is False
    assert rates.cpu_cores == pytest.approx(0.5)
    assert rates.cpu_cfs_throttled_periods_ratio == pytest.approx(0.25)
    assert rates.network_receive_bytes_per_second == pytest.approx(2000.0)
    assert rates.network_transmit_bytes_per_second == pytest.approx(100.0)
    assert rates.block_io_read_bytes_per_second == pytest.approx(4096.0)
    assert rates.block_io_write_bytes_per_second == pytest.approx(1048576.0)


def test_rates_missing_counters() -> None:
    previous = sample_at(0.0, 0.0, network_receive_bytes_total=10)
    current = sample_at(1.0, 0.25, network_transmit_bytes_total=10)
    rates = compute_rates(previous, current)
    assert rates.cpu_cores == pytest.approx(0.25)
    assert rates.network_receive_bytes_per_second is None
    assert rates.network_transmit_bytes_per_second is None
    assert rates.cpu_cfs_throttled_periods_ratio is None


def test_rates_no_cfs_period() -> None:
    # An idle container under a quota runs no CFS period, so no share exists.
    previous = sample_at(
        0.0, 1.0, cpu_cfs_periods_total=50, cpu_cfs_throttled_periods_total=5
    )
    current = sample_at(
        1.0, 1.0, cpu_cfs_periods_total=50, cpu_cfs_throttled_periods_total=5
    )
    rates = compute_rates(previous, current)
    assert rates.cpu_cores == 0.0
    assert rates.cpu_cfs_throttled_periods_ratio is None


def test_rates_restart_new_baseline() -> None:
    # The container restarted between the second and third sample.
    samples = [
        sample_at(0.0, 100.0, network_receive_bytes_total=9000),
        sample_at(1.0, 100.5, network_receive_bytes_total=10000),
        sample_at(2.0, 0.2, network_receive_bytes_total=50000),
        sample_at(3.0, 0.7, network_receive_bytes_total=51000),
    ]
    rates = series_rates(samples)
    assert len(rates) == 4
    assert rates[0].cpu_cores is None
    assert rates[1].cpu_cores == pytest.approx(0.5)
    assert rates[1].network_receive_bytes_per_second == pytest.approx(1000.0)
    assert rates[2].counter_reset is True
    assert rates[2].interval_seconds == pytest.approx(1.0)
    assert rates[2].cpu_cores is None
    assert rates[2].network_receive_bytes_per_second is None
    assert rates[3].counter_reset is False
    assert rates[3].cpu_cores == pytest.approx(0.5)
    assert rates[3].network_receive_bytes_per_second == pytest.approx(1000.0)


def test_rates_one_counter_backwards() -> None:
    # A single counter that went backwards gives no rate, never a negative one.
    previous = sample_at(0.0, 1.0, network_transmit_bytes_total=9000)
    current = sample_at(1.0, 1.5, network_transmit_bytes_total=100)
    rates = compute_rates(previous, current)
    assert rates.counter_reset is False
    assert rates.cpu_cores == pytest.approx(0.5)
    assert rates.network_transmit_bytes_per_second is None


def test_rates_zero_elapsed() -> None:
    rates = compute_rates(sample_at(5.0, 1.0), sample_at(5.0, 2.0))
    assert rates.interval_seconds == 0.0
    assert rates.cpu_cores is None


def test_rates_time_backwards() -> None:
    with pytest.raises(UsageError, match="older than the previous"):
        compute_rates(sample_at(5.0, 1.0), sample_at(4.0, 2.0))


def test_series_rates_method() -> None:
    rates = series(sample_at(0.0, 0.0), sample_at(0.5, 0.25)).rates()
    assert [rate.cpu_cores for rate in rates] == [None, pytest.approx(0.5)]
