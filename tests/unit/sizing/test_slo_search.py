"""The SLO search's bracketing, bisection, margin, memory rule and verification.

The trials here run against a model of a service, not a container: it passes when
the CPU limit is at least its need and, with a memory limit, when the limit is
above its peak. The engine runs of the same search are in
tests/integration/sizing/test_slo_engine.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from hyperlane.errors import UsageError
from hyperlane.sizing.policy import MIB
from hyperlane.sizing.slo import (
    SearchBounds,
    SloTarget,
    TrialLimits,
    TrialMeasurement,
    judge,
    search_limits,
)

TARGET = SloTarget(rate_per_second=100, latency_seconds=0.025)


@dataclass
class ModelService:
    """Meets the target when the limit covers its CPU need, and fails otherwise."""

    need_cores: float
    peak_bytes: int = 40 * MIB
    used_cores: float | None = None
    """CPU that the baseline reports; need_cores when None."""
    oom_below_bytes: int | None = None
    """A memory limit below this is OOM-killed."""
    flaky_failures: int = 0
    """The first this many verification trials fail on latency."""
    failing_limits: tuple[float, ...] = ()
    """CPU limits that fail without throttling, as a server with a full backlog."""
    calls: list[TrialLimits] = field(default_factory=list)

    def __call__(self, limits: TrialLimits) -> TrialMeasurement:
        self.calls.append(limits)
        oom = (
            limits.memory_bytes is not None
            and self.oom_below_bytes is not None
            and limits.memory_bytes < self.oom_below_bytes
        )
        enough = limits.cpu_cores >= self.need_cores - 1e-9
        throttled = 0.0 if enough else 1.0
        if limits.memory_bytes is not None and self.flaky_failures and enough:
            self.flaky_failures -= 1
            enough = False
            throttled = 1.0
        if any(abs(limits.cpu_cores - cores) < 1e-9 for cores in self.failing_limits):
            enough = False
            throttled = 0.0
        latency = 0.004 if enough else 0.9
        return TrialMeasurement(
            latency_seconds=latency,
            attempts_total=600,
            failed_total=0,
            completed_rate_per_second=100.0 if enough else 80.0,
            cpu_used_cores=min(limits.cpu_cores, self.used_cores or self.need_cores),
            throttled_period_ratio=throttled,
            peak_memory_bytes=self.peak_bytes,
            oom_kills=1 if oom else 0,
            stopped=oom,
        )


def test_search_brackets_need_within_tolerance() -> None:
    service = ModelService(need_cores=0.213)
    bounds = SearchBounds(cpu_max_cores=2.0, cpu_margin_ratio=0.0)

    result = search_limits(service, TARGET, bounds)

    assert result.status == "ok"
    assert result.cpu_passing_cores is not None
    assert result.cpu_failing_cores is not None
    assert result.cpu_failing_cores < 0.213 <= result.cpu_passing_cores
    gap = result.cpu_passing_cores - result.cpu_failing_cores
    assert gap <= max(0.01 + 1e-9, 0.05 * result.cpu_passing_cores)
    assert result.cpu_limit_cores == result.cpu_passing_cores
    assert result.trials[0].purpose == "baseline"
    assert result.trials[-1].purpose == "verify"
    # The first search trial is the CPU that the baseline used, rounded up.
    assert result.trials[1].limits.cpu_cores == pytest.approx(0.22)


def test_search_limit_adds_margin_and_rounds() -> None:
    service = ModelService(need_cores=0.3)
    bounds = SearchBounds(cpu_max_cores=2.0, cpu_margin_ratio=0.1)

    result = search_limits(service, TARGET, bounds)

    assert result.cpu_passing_cores == pytest.approx(0.3)
    assert result.cpu_limit_cores == pytest.approx(0.33)
    assert result.cpu_limit_millicores == 330
    assert "300m + 10 % margin = 330m" in result.cpu_explanation


def test_search_widens_past_low_baseline_usage() -> None:
    # A service whose latency needs more than its mean usage: the first guess
    # fails, and the search widens upwards by 1.5x before bisecting.
    service = ModelService(need_cores=0.5, used_cores=0.2)
    bounds = SearchBounds(cpu_max_cores=2.0, cpu_margin_ratio=0.0)

    result = search_limits(service, TARGET, bounds)

    tried = [
        trial.limits.cpu_cores for trial in result.trials if trial.purpose == "search"
    ]
    assert tried[:3] == pytest.approx([0.2, 0.3, 0.45])
    assert result.cpu_passing_cores is not None
    assert 0.5 <= result.cpu_passing_cores <= 0.5 * 1.05 + 0.01


def test_search_stops_at_cpu_minimum() -> None:
    service = ModelService(need_cores=0.001, used_cores=0.001)
    bounds = SearchBounds(cpu_max_cores=1.0, cpu_min_cores=0.05, cpu_margin_ratio=0)

    result = search_limits(service, TARGET, bounds)

    assert result.cpu_passing_cores == pytest.approx(0.05)
    assert result.cpu_failing_cores is None
    assert "no limit down to 50m failed" in result.cpu_explanation


def test_search_reports_unmet_baseline() -> None:
    service = ModelService(need_cores=3.0)

    result = search_limits(service, TARGET, SearchBounds(cpu_max_cores=2.0))

    assert result.status == "slo_not_met"
    assert result.cpu_limit_cores is None
    assert result.memory_limit_bytes is None
    assert len(result.trials) == 1
    assert "not met even at the largest CPU limit 2 cores" in result.cpu_explanation


def test_search_memory_is_peak_plus_margin() -> None:
    service = ModelService(need_cores=0.2, peak_bytes=300 * MIB)

    result = search_limits(service, TARGET, SearchBounds(cpu_max_cores=2.0))

    assert result.memory_limit_bytes == 345 * MIB
    assert result.trials[-1].limits.memory_bytes == 345 * MIB


def test_search_memory_floor_applies() -> None:
    service = ModelService(need_cores=0.2, peak_bytes=7 * MIB)

    result = search_limits(service, TARGET, SearchBounds(cpu_max_cores=2.0))

    assert result.memory_limit_bytes == 100 * MIB
    assert "(floored)" in result.memory_explanation


def test_search_oom_kill_raises_memory() -> None:
    service = ModelService(
        need_cores=0.2, peak_bytes=300 * MIB, oom_below_bytes=400 * MIB
    )

    result = search_limits(service, TARGET, SearchBounds(cpu_max_cores=2.0))

    verifications = [trial for trial in result.trials if trial.purpose == "verify"]
    assert [trial.limits.memory_bytes for trial in verifications] == [
        345 * MIB,
        445 * MIB,
    ]
    assert result.status == "ok"
    assert result.memory_limit_bytes == 445 * MIB
    assert "OOM-killed at 345 MiB" in result.memory_explanation


def test_search_verification_retries_then_unverified() -> None:
    flaky = ModelService(need_cores=0.2, flaky_failures=1)
    bounds = SearchBounds(cpu_max_cores=2.0, cpu_margin_ratio=0.0)

    result = search_limits(flaky, TARGET, bounds)

    assert result.status == "ok"
    assert result.cpu_passing_cores is not None
    assert result.cpu_limit_cores is not None
    assert result.cpu_limit_cores > result.cpu_passing_cores
    assert "The verification failed at" in result.cpu_explanation

    broken = ModelService(need_cores=0.2, flaky_failures=10)
    result = search_limits(broken, TARGET, bounds)
    assert result.status == "unverified"
    assert sum(trial.purpose == "verify" for trial in result.trials) == 3


def test_search_stops_at_max_trials() -> None:
    service = ModelService(need_cores=0.2131)
    bounds = SearchBounds(
        cpu_max_cores=2.0,
        cpu_tolerance_ratio=0.001,
        cpu_resolution_cores=0.001,
        cpu_min_cores=0.001,
        max_trials=3,
    )

    result = search_limits(service, TARGET, bounds)

    assert sum(trial.purpose == "search" for trial in result.trials) == 3


def test_judge_names_each_figure() -> None:
    measurement = TrialMeasurement(
        latency_seconds=0.030,
        attempts_total=1000,
        failed_total=2,
        completed_rate_per_second=99.0,
        cpu_used_cores=0.2,
        throttled_period_ratio=0.5,
        peak_memory_bytes=10 * MIB,
        oom_kills=0,
    )

    passed, reason = judge(TARGET, measurement)

    assert not passed
    assert reason == (
        "p99 30.0 ms > 25.0 ms, errors 0.20 % > 0.10 %, 99.0 req/s >= 95.0 req/s"
    )


def test_judge_no_success_fails_fully() -> None:
    measurement = TrialMeasurement(
        latency_seconds=None,
        attempts_total=0,
        failed_total=0,
        completed_rate_per_second=0.0,
        cpu_used_cores=None,
        throttled_period_ratio=None,
        peak_memory_bytes=None,
        oom_kills=1,
        stopped=True,
        detail="exit code 137, OOM killed True",
    )

    passed, reason = judge(TARGET, measurement)

    assert not passed
    assert measurement.error_ratio == 1.0
    assert "1 OOM kill(s)" in reason
    assert reason.endswith("container stopped: exit code 137, OOM killed True")


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"rate_per_second": 0}, "rate_per_second"),
        ({"latency_seconds": float("nan")}, "latency_seconds"),
        ({"latency_percentile": 100}, "latency_percentile"),
        ({"max_error_ratio": 1.5}, "max_error_ratio"),
    ],
)
def test_target_invalid_names_value(changes: dict[str, float], named: str) -> None:
    values = {"rate_per_second": 100.0, "latency_seconds": 0.05, **changes}
    with pytest.raises(UsageError, match=named):
        SloTarget(**values)


def test_bounds_invalid_names_flag() -> None:
    with pytest.raises(UsageError, match="--slo-cpu-max"):
        SearchBounds(cpu_max_cores=0.005)
    with pytest.raises(UsageError, match="tolerance"):
        SearchBounds(cpu_max_cores=2, cpu_tolerance_ratio=0)


def test_search_unthrottled_baseline_not_cpu_bound() -> None:
    service = ModelService(need_cores=0.1, failing_limits=(2.0,))

    result = search_limits(service, TARGET, SearchBounds(cpu_max_cores=2.0))

    assert result.status == "slo_not_met"
    assert "CPU is not what limits it" in result.cpu_explanation
    assert "used 100m of 2000m" in result.cpu_explanation
    assert "Raise --slo-cpu-max" not in result.cpu_explanation


def test_search_notes_unthrottled_inconsistent_failure() -> None:
    # 220m fails without throttling although 200m passed, the way a server with a
    # full accept backlog fails at random.
    service = ModelService(need_cores=0.2, failing_limits=(0.22,))

    result = search_limits(service, TARGET, SearchBounds(cpu_max_cores=2.0))

    verifications = [trial for trial in result.trials if trial.purpose == "verify"]
    assert len(verifications) == 1
    assert verifications[0].limits.cpu_cores == pytest.approx(0.22)
    assert result.status == "unverified"
    assert len(result.notes) == 2
    assert "failed at 220m although trial" in result.notes[0]
    assert "passed at 200m" in result.notes[0]
    assert "more CPU would not help" in result.notes[1]
