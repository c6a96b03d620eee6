"""The SLO search: the smallest CPU and memory limits under which a target is met.

Each trial runs the service under one pair of limits with an open-model load at the
target rate and measures it. The search first runs a baseline under the largest CPU
limit, then looks for the smallest passing CPU limit. It starts at the CPU that the
baseline used and widens by a factor of 1.5 until a failing and a passing limit
bracket the boundary. Then it bisects until the bracket is narrower than the
tolerance. Memory comes from the peak working set of all trials plus a margin.
A last trial under both limits checks that the SLO is met without an OOM kill.
After a kill the memory limit rises as the VPA recommender raises it, to
max(peak + 100 MiB, peak x 1.2).

The trials themselves run elsewhere (hyperlane.sizing.slo_trials runs them on an
engine), so the search can be checked against any TrialRunner.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from hyperlane.errors import UsageError
from hyperlane.sizing.policy import MIB

logger = logging.getLogger(__name__)

WIDEN_RATIO = 1.5
OOM_EXTRA_BYTES = 100 * MIB
OOM_RATIO = 1.2
MAX_MEMORY_RETRIES = 2
MAX_CPU_RETRIES = 2

Purpose = Literal["baseline", "search", "verify"]
Status = Literal["ok", "slo_not_met", "unverified"]


@dataclass(frozen=True)
class SloTarget:
    """Target of the service under the open-model load."""

    rate_per_second: float
    """Arrival rate of the open-model load, in requests per second."""
    latency_seconds: float
    """Highest latency allowed at latency_percentile, corrected for coordinated
    omission."""
    latency_percentile: float = 99.0
    max_error_ratio: float = 0.001
    """Highest share of failed requests (errors and non-2xx/3xx), 0.001 is 0.1 %."""
    min_rate_ratio: float = 0.95
    """Lowest share of the target rate that must complete per second."""

    def __post_init__(self) -> None:
        checks = (
            ("rate_per_second", self.rate_per_second, self.rate_per_second > 0),
            ("latency_seconds", self.latency_seconds, self.latency_seconds > 0),
            (
                "latency_percentile",
                self.latency_percentile,
                0 < self.latency_percentile < 100,
            ),
            ("max_error_ratio", self.max_error_ratio, 0 <= self.max_error_ratio < 1),
            ("min_rate_ratio", self.min_rate_ratio, 0 < self.min_rate_ratio <= 1),
        )
        for name, value, valid in checks:
            if not (math.isfinite(value) and valid):
                raise UsageError(
                    f"Invalid SLO {name} {value!r}: pass a finite value in range, "
                    "e.g. --slo-rate 300 --slo-latency 50ms --slo-percentile 99 "
                    "--slo-errors 0.001."
                )

    def describe(self) -> str:
        """Return the target as one phrase, e.g. 'p99 <= 50.0 ms at 300 req/s'."""
        return (
            f"p{self.latency_percentile:g} <= {self.latency_seconds * 1000:.1f} ms "
            f"with errors <= {self.max_error_ratio * 100:.2f} % at "
            f"{self.rate_per_second:g} req/s"
        )


@dataclass(frozen=True)
class TrialLimits:
    """The limits of one trial's container."""

    cpu_cores: float
    """CPU limit in cores, enforced as a CFS quota."""
    memory_bytes: int | None
    """Memory limit in bytes, or None for no limit."""


@dataclass(frozen=True)
class TrialMeasurement:
    """Figures of one trial: the load's result and the container's cgroup counters."""

    latency_seconds: float | None
    """Latency at the target percentile, corrected for coordinated omission, or
    None when no request succeeded."""
    attempts_total: int
    """Requests of the measured load that ended with a response or an error."""
    failed_total: int
    """Of those, the requests that failed or received a status other than 2xx or
    3xx."""
    completed_rate_per_second: float
    """Successful requests per second over the measured part of the load."""
    cpu_used_cores: float | None
    """Mean CPU cores the container used over the load, from cgroup counters."""
    throttled_period_ratio: float | None
    """Share of CFS periods in which the quota throttled the container."""
    peak_memory_bytes: int | None
    """Highest working set sampled (total usage where no working set exists)."""
    oom_kills: int
    """OOM kills in the container during the trial."""
    unsent_total: int = 0
    """Sends due that never went out because every connection was busy."""
    stopped: bool = False
    """True when the container was not running after the load."""
    detail: str = ""
    """Detail from the runner, e.g. why the container stopped."""

    @property
    def error_ratio(self) -> float:
        """Failed share of the attempts, 1.0 when there were none."""
        if self.attempts_total <= 0:
            return 1.0
        return min(1.0, self.failed_total / self.attempts_total)


@dataclass(frozen=True)
class SloTrial:
    """One trial: its limits, what it measured and whether the SLO held."""

    index: int
    purpose: Purpose
    limits: TrialLimits
    measurement: TrialMeasurement
    passed: bool
    reason: str
    """The figures against the target, e.g. 'p99 41.2 ms <= 50.0 ms, ...'."""


class TrialRunner(Protocol):
    """Runs the service under limits with the target load and measures it."""

    def __call__(self, limits: TrialLimits) -> TrialMeasurement: ...


@dataclass(frozen=True)
class SearchBounds:
    """The range and precision of the CPU search and the memory rule."""

    cpu_max_cores: float
    """Largest CPU limit tried, that of the baseline trial."""
    cpu_min_cores: float = 0.01
    cpu_resolution_cores: float = 0.01
    """CPU limits are multiples of this (0.01 is 10 millicores)."""
    cpu_tolerance_ratio: float = 0.05
    """The search ends when the passing and failing limits are closer than this share
    of the passing one, or than one resolution step."""
    cpu_margin_ratio: float = 0.1
    """Headroom added to the smallest passing CPU limit before verification, so that
    a limit found at the edge passes again in a later run."""
    max_trials: int = 12
    """Trials of the search phase at most, baseline and verification excluded."""
    memory_margin_ratio: float = 0.15
    memory_floor_bytes: int = 100 * MIB

    def __post_init__(self) -> None:
        if not (math.isfinite(self.cpu_min_cores) and self.cpu_min_cores > 0):
            raise UsageError(
                f"Invalid smallest CPU limit {self.cpu_min_cores!r} cores: pass a "
                "positive --slo-cpu-min, e.g. 10m."
            )
        if not (
            math.isfinite(self.cpu_max_cores)
            and self.cpu_min_cores <= self.cpu_max_cores
        ):
            raise UsageError(
                f"Invalid CPU search range {self.cpu_min_cores:g} to "
                f"{self.cpu_max_cores:g} cores: pass a --slo-cpu-min below "
                f"--slo-cpu-max {self.cpu_max_cores:g}."
            )
        if not 0 < self.cpu_resolution_cores <= self.cpu_min_cores:
            raise UsageError(
                f"Invalid --slo-cpu-min {self.cpu_min_cores:g} cores: it is below "
                f"the search's step of {self.cpu_resolution_cores * 1000:g}m, so "
                f"pass {self.cpu_resolution_cores * 1000:g}m or more."
            )
        if not 0 < self.cpu_tolerance_ratio < 1:
            raise UsageError(
                f"Invalid CPU tolerance {self.cpu_tolerance_ratio!r}: pass a ratio "
                "between 0 and 1, e.g. 0.05 for 5 %."
            )
        if not 0 <= self.cpu_margin_ratio <= 10:
            raise UsageError(
                f"Invalid CPU margin {self.cpu_margin_ratio!r}: pass a ratio from 0 "
                "to 10, e.g. 0.1 for 10 %."
            )
        if self.max_trials < 1:
            raise UsageError(f"Invalid max_trials {self.max_trials!r}: pass 1 or more.")


@dataclass
class SloSearchResult:
    """The limits the search found, each trial, and how the figures were derived."""

    target: SloTarget
    status: Status
    """"ok"; "slo_not_met" when even the baseline failed; "unverified" when the
    verification trials failed after their retries."""
    cpu_limit_cores: float | None
    memory_limit_bytes: int | None
    cpu_explanation: str
    memory_explanation: str
    trials: list[SloTrial] = field(default_factory=list)
    cpu_passing_cores: float | None = None
    """Smallest CPU limit that passed in the search."""
    cpu_failing_cores: float | None = None
    """Largest CPU limit that failed in the search, or None when none was tried."""
    notes: list[str] = field(default_factory=list)
    """Sentences on results that make the figures uncertain."""

    @property
    def cpu_limit_millicores(self) -> int | None:
        """The CPU limit in whole millicores."""
        if self.cpu_limit_cores is None:
            return None
        return round(self.cpu_limit_cores * 1000)

    def to_dict(self) -> dict[str, Any]:
        """Return the result as a JSON-ready dict."""
        document = dataclasses.asdict(self)
        document["cpu_limit_millicores"] = self.cpu_limit_millicores
        for trial, row in zip(self.trials, document["trials"], strict=True):
            row["measurement"]["error_ratio"] = trial.measurement.error_ratio
        return document


def judge(target: SloTarget, measurement: TrialMeasurement) -> tuple[bool, str]:
    """Return whether a measurement meets the target, and the figures as a sentence."""
    parts: list[str] = []
    passed = True
    percentile = f"p{target.latency_percentile:g}"
    limit_ms = target.latency_seconds * 1000

    if measurement.latency_seconds is None:
        passed = False
        parts.append(
            f"{percentile} none ({measurement.detail or 'no request succeeded'})"
        )
    else:
        latency_ms = measurement.latency_seconds * 1000
        ok = measurement.latency_seconds <= target.latency_seconds
        passed &= ok
        parts.append(
            f"{percentile} {latency_ms:.1f} ms {'<=' if ok else '>'} {limit_ms:.1f} ms"
        )

    error_ratio = measurement.error_ratio
    ok = error_ratio <= target.max_error_ratio
    passed &= ok
    parts.append(
        f"errors {error_ratio * 100:.2f} % {'<=' if ok else '>'} "
        f"{target.max_error_ratio * 100:.2f} %"
    )

    lowest_rate = target.rate_per_second * target.min_rate_ratio
    ok = measurement.completed_rate_per_second >= lowest_rate
    passed &= ok
    parts.append(
        f"{measurement.completed_rate_per_second:.1f} req/s "
        f"{'>=' if ok else '<'} {lowest_rate:.1f} req/s"
    )

    if measurement.oom_kills:
        passed = False
        parts.append(f"{measurement.oom_kills} OOM kill(s)")
    if measurement.stopped:
        passed = False
        detail = f": {measurement.detail}" if measurement.detail else ""
        parts.append(f"container stopped{detail}")
    return passed, ", ".join(parts)


class _Trials:
    """Runs and records trials, numbering them in order."""

    def __init__(
        self,
        runner: TrialRunner,
        target: SloTarget,
        observer: Callable[[SloTrial], None] | None,
    ) -> None:
        self.runner = runner
        self.target = target
        self.observer = observer
        self.trials: list[SloTrial] = []

    def run(self, purpose: Purpose, limits: TrialLimits) -> SloTrial:
        logger.debug(
            "SLO trial %d (%s): CPU %.3f cores, memory %s",
            len(self.trials) + 1,
            purpose,
            limits.cpu_cores,
            "unlimited"
            if limits.memory_bytes is None
            else f"{limits.memory_bytes / MIB:.0f} MiB",
        )
        measurement = self.runner(limits)
        passed, reason = judge(self.target, measurement)
        trial = SloTrial(
            len(self.trials) + 1, purpose, limits, measurement, passed, reason
        )
        self.trials.append(trial)
        if self.observer is not None:
            self.observer(trial)
        return trial

    def peak_memory_bytes(self) -> int | None:
        peaks = [
            trial.measurement.peak_memory_bytes
            for trial in self.trials
            if trial.measurement.peak_memory_bytes is not None
        ]
        return max(peaks, default=None)


def _round_up(cores: float, resolution: float) -> float:
    steps = math.ceil(round(cores / resolution, 6))
    return round(steps * resolution, 6)


def _round_down(cores: float, resolution: float) -> float:
    steps = math.floor(round(cores / resolution, 6))
    return round(steps * resolution, 6)


def _memory_limit(peak_bytes: int | None, bounds: SearchBounds) -> tuple[int, str]:
    if peak_bytes is None:
        return bounds.memory_floor_bytes, (
            f"No memory was sampled, so the limit is the floor "
            f"{bounds.memory_floor_bytes / MIB:.0f} MiB."
        )
    with_margin = peak_bytes * (1 + bounds.memory_margin_ratio)
    rounded = math.ceil(with_margin / MIB) * MIB
    if rounded < bounds.memory_floor_bytes:
        return bounds.memory_floor_bytes, (
            f"Peak working set {peak_bytes / MIB:.1f} MiB + "
            f"{bounds.memory_margin_ratio * 100:g} % = {with_margin / MIB:.1f} MiB, "
            f"below the floor, so the floor {bounds.memory_floor_bytes / MIB:.0f} MiB "
            "(floored)."
        )
    return rounded, (
        f"Peak working set over all trials {peak_bytes / MIB:.1f} MiB + "
        f"{bounds.memory_margin_ratio * 100:g} % margin = {with_margin / MIB:.1f} MiB, "
        "rounded up to whole MiB."
    )


def _next_candidate(
    passing: float,
    failing: float | None,
    cpu_min: float,
    cpu_max: float,
    resolution: float,
) -> float:
    """Return the next CPU limit to try between the failing and passing ones."""
    if failing is None:
        # Nothing failed yet: shrink geometrically towards the smallest limit.
        return max(cpu_min, _round_down(passing / WIDEN_RATIO, resolution))
    midpoint = _round_up((failing + passing) / 2, resolution)
    if passing == cpu_max:
        # Nothing below the baseline passed yet: widen geometrically upwards.
        return min(_round_up(failing * WIDEN_RATIO, resolution), midpoint)
    return midpoint


def _converged(passing: float, failing: float, bounds: SearchBounds) -> bool:
    gap = passing - failing
    return gap <= max(
        bounds.cpu_resolution_cores * 1.000001, passing * bounds.cpu_tolerance_ratio
    )


def search_limits(
    runner: TrialRunner,
    target: SloTarget,
    bounds: SearchBounds,
    observer: Callable[[SloTrial], None] | None = None,
) -> SloSearchResult:
    """Find the smallest CPU limit and a memory limit that keep the SLO.

    observer receives each trial as it ends, for progress. The result lists every
    trial, and its status is "ok" only when the verification trial passed.
    """
    trials = _Trials(runner, target, observer)
    resolution = bounds.cpu_resolution_cores
    cpu_max = _round_down(bounds.cpu_max_cores, resolution)
    cpu_min = _round_up(bounds.cpu_min_cores, resolution)

    baseline = trials.run("baseline", TrialLimits(cpu_max, None))
    if not baseline.passed:
        return SloSearchResult(
            target=target,
            status="slo_not_met",
            cpu_limit_cores=None,
            memory_limit_bytes=None,
            cpu_explanation=(
                f"The SLO ({target.describe()}) is not met even at the largest CPU "
                f"limit {cpu_max:g} cores with no memory limit: {baseline.reason}. "
                + _not_met_advice(baseline.measurement, cpu_max)
            ),
            memory_explanation="No memory limit: the SLO search found no passing CPU.",
            trials=trials.trials,
        )

    passing = cpu_max
    failing: float | None = None
    used = baseline.measurement.cpu_used_cores
    # The first candidate is the CPU that the baseline used: a limit below it
    # cannot keep up, and the SLO usually needs little more.
    candidate = _round_up((cpu_min + passing) / 2, resolution)
    if used is not None:
        candidate = max(_round_up(used, resolution), cpu_min)
    for _ in range(bounds.max_trials):
        low = failing if failing is not None else cpu_min - resolution
        if not low < candidate < passing:
            break
        if trials.run("search", TrialLimits(candidate, None)).passed:
            passing = candidate
        else:
            failing = candidate
        if failing is not None and _converged(passing, failing, bounds):
            break
        candidate = _next_candidate(passing, failing, cpu_min, cpu_max, resolution)
    else:
        logger.warning(
            "SLO search stopped after %d trials with the CPU limit between %s and "
            "%g cores",
            bounds.max_trials,
            failing,
            passing,
        )

    memory_bytes, memory_explanation = _memory_limit(trials.peak_memory_bytes(), bounds)
    with_margin = min(
        cpu_max, _round_up(passing * (1 + bounds.cpu_margin_ratio), resolution)
    )
    cpu_cores = with_margin
    status: Status = "unverified"
    memory_retries = cpu_retries = 0
    while True:
        verify = trials.run("verify", TrialLimits(cpu_cores, memory_bytes))
        if verify.passed:
            status = "ok"
            break
        measurement = verify.measurement
        if measurement.oom_kills and memory_retries < MAX_MEMORY_RETRIES:
            memory_retries += 1
            peak = max(trials.peak_memory_bytes() or 0, memory_bytes)
            raised = (
                math.ceil(max(peak + OOM_EXTRA_BYTES, peak * OOM_RATIO) / MIB) * MIB
            )
            memory_explanation = (
                f"{memory_explanation} The verification trial was OOM-killed at "
                f"{memory_bytes / MIB:.0f} MiB, so the limit rose to "
                f"max(peak + 100 MiB, peak x 1.2) = {raised / MIB:.0f} MiB."
            )
            memory_bytes = raised
            continue
        if (
            not measurement.oom_kills
            and cpu_retries < MAX_CPU_RETRIES
            and _cpu_bound(measurement)
        ):
            cpu_retries += 1
            raised_cpu = min(
                cpu_max,
                _round_up(
                    cpu_cores * (1 + bounds.cpu_tolerance_ratio) + resolution / 2,
                    resolution,
                ),
            )
            if raised_cpu <= cpu_cores:
                break
            cpu_cores = raised_cpu
            continue
        break

    cpu_explanation = _cpu_explanation(
        target, baseline, (passing, failing, with_margin, cpu_cores), bounds, trials
    )
    notes = _inconsistencies(trials.trials)
    if status == "unverified" and not _cpu_bound(trials.trials[-1].measurement):
        notes.append(
            "The last verification failed with under 1 % of CFS periods throttled, "
            "so more CPU would not help: the latency comes from something else, "
            "such as the server's accept backlog or worker count."
        )
    for note in notes:
        logger.warning("%s", note)
    return SloSearchResult(
        target=target,
        status=status,
        cpu_limit_cores=cpu_cores,
        memory_limit_bytes=memory_bytes,
        cpu_explanation=cpu_explanation,
        memory_explanation=memory_explanation,
        trials=trials.trials,
        cpu_passing_cores=passing,
        cpu_failing_cores=failing,
        notes=notes,
    )


THROTTLED_SHARE_CPU_BOUND = 0.01


def _cpu_bound(measurement: TrialMeasurement) -> bool:
    """Return whether the CPU quota may have caused a failure: throttled or unknown."""
    ratio = measurement.throttled_period_ratio
    return ratio is None or ratio >= THROTTLED_SHARE_CPU_BOUND


def _not_met_advice(measurement: TrialMeasurement, cpu_max: float) -> str:
    used = measurement.cpu_used_cores
    if _cpu_bound(measurement) or used is None:
        return (
            "Raise --slo-cpu-max (up to the host's cores), lower --slo-rate or "
            "relax the latency target."
        )
    throttled = (measurement.throttled_period_ratio or 0.0) * 100
    return (
        f"CPU is not what limits it: the container used {used * 1000:.0f}m of "
        f"{cpu_max * 1000:.0f}m and {throttled:.1f} % of CFS periods were "
        "throttled, so more CPU will not help. Look at the server's concurrency "
        "(accept backlog, workers, connection limits), or lower --slo-rate."
    )


def _inconsistencies(trials: list[SloTrial]) -> list[str]:
    """Return a sentence for each failed trial above a passed one's CPU limit."""
    notes = []
    for failed in trials:
        if failed.passed or failed.measurement.oom_kills:
            continue
        lower = [
            trial
            for trial in trials
            if trial.passed and trial.limits.cpu_cores < failed.limits.cpu_cores
        ]
        if lower:
            passed = min(lower, key=lambda trial: trial.limits.cpu_cores)
            notes.append(
                f"Trial {failed.index} failed at {failed.limits.cpu_cores * 1000:.0f}m "
                f"although trial {passed.index} passed at "
                f"{passed.limits.cpu_cores * 1000:.0f}m: the results do not follow "
                "the CPU limit, so the latency also depends on something else. Treat "
                "the limits as uncertain, and rerun with a longer "
                "--slo-trial-duration."
            )
    return notes


def _cpu_explanation(
    target: SloTarget,
    baseline: SloTrial,
    figures: tuple[float, float | None, float, float],
    bounds: SearchBounds,
    trials: _Trials,
) -> str:
    """Say how the CPU limit was found: the bracket, the margin, any raise."""
    passing, failing, with_margin, chosen = figures
    used = baseline.measurement.cpu_used_cores
    used_text = "" if used is None else f", where it used {used * 1000:.0f}m"
    searched = sum(1 for trial in trials.trials if trial.purpose == "search")
    if failing is None:
        bracket = (
            f"no limit down to {passing * 1000:.0f}m failed, the smallest the search "
            "may try"
        )
    else:
        bracket = (
            f"{passing * 1000:.0f}m passed and {failing * 1000:.0f}m failed, within "
            f"{bounds.cpu_tolerance_ratio * 100:g} % or "
            f"{bounds.cpu_resolution_cores * 1000:.0f}m"
        )
    sentence = (
        f"Smallest CPU limit that met {target.describe()}, found in {searched} "
        f"search trial(s) after a baseline at {baseline.limits.cpu_cores * 1000:.0f}m"
        f"{used_text}: {bracket}. Limit = {passing * 1000:.0f}m + "
        f"{bounds.cpu_margin_ratio * 100:g} % margin = {with_margin * 1000:.0f}m"
        f", rounded up to {bounds.cpu_resolution_cores * 1000:.0f}m steps."
    )
    failed = [
        f"{trial.limits.cpu_cores * 1000:.0f}m"
        for trial in trials.trials
        if trial.purpose == "verify" and not trial.passed
    ]
    if chosen != with_margin:
        sentence += (
            f" The verification failed at {', '.join(failed)}, so the limit rose to "
            f"{chosen * 1000:.0f}m."
        )
    return sentence
