"""CPU and memory recommendations from measured usage series.

CPU request = nearest-rank percentile of the per-interval CPU cores used, and memory
request = limit = peak working set plus a margin, as in KRR's "simple" strategy.
Every figure is rounded up to the unit that deploy files use (millicores, MiB) and
carries a one-sentence explanation.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Literal

from hyperlane.errors import UsageError
from hyperlane.sizing.policy import MIB, SizingPolicy

logger = logging.getLogger(__name__)

DEFAULT_POLICY = SizingPolicy()

# After an OOM kill the peak working set only shows where the kernel stopped the
# container, so memory must not be below any of these.
OOM_EXTRA_BYTES = 100 * MIB
OOM_RATIO = Fraction(6, 5)

Status = Literal["ok", "not_enough_data"]


@dataclass(frozen=True)
class Recommendation:
    """Resource requests and limits for one container, with their reasons."""

    status: Status
    """"ok", or "not_enough_data" when a series was empty and no figure exists."""

    cpu_request_cores: float | None
    """CPU request in cores (0.137 is 137m), or None without data."""

    cpu_request_millicores: int | None
    """The same CPU request in whole millicores, or None without data."""

    cpu_floored: bool
    """True when the measured CPU request was below the floor and raised to it."""

    cpu_explanation: str
    """One sentence saying how the CPU request was derived."""

    memory_request_bytes: int | None
    """Memory request in bytes, a whole number of MiB, or None without data."""

    memory_limit_bytes: int | None
    """Memory limit in bytes, equal to the request, or None without data."""

    memory_floored: bool
    """True when the measured memory figure was below the floor and raised to it."""

    memory_explanation: str
    """One sentence saying how the memory request and limit were derived."""

    estimate: bool
    """True when the history was shorter than the policy's minimums."""

    estimate_reason: str | None
    """Sentence naming each unmet history minimum and its shortfall, or None."""

    samples: int
    """Samples behind the figures: the smaller of the CPU and memory counts."""

    history_seconds: float
    """Seconds of load that the samples cover."""

    policy: SizingPolicy
    """The rules that produced the figures."""

    def to_dict(self) -> dict[str, Any]:
        """Return the recommendation as a JSON-ready dict, with the policy as a dict."""
        # asdict also turns the nested SizingPolicy into a dict.
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class _Figure:
    value: int
    """Millicores for CPU, bytes for memory."""

    floored: bool
    explanation: str


def nearest_rank_percentile(values: Sequence[float], percentile: float) -> float:
    """Return the nearest-rank percentile: the value at rank ceil(p / 100 * n).

    The rank uses exact decimal arithmetic, so float rounding never pushes a whole
    rank such as 0.95 * 20 = 19 to the next value. Raise UsageError for an empty
    series.
    """
    if not values:
        raise UsageError(
            "Cannot take a percentile of an empty series: pass at least one sample."
        )
    ordered = sorted(values)
    rank = math.ceil(Fraction(str(float(percentile))) * len(ordered) / 100)
    return ordered[max(rank, 1) - 1]


def recommend(
    cpu_cores: Sequence[float],
    memory_working_set_bytes: Sequence[int],
    history_seconds: float,
    policy: SizingPolicy = DEFAULT_POLICY,
    memory_limit_in_force_bytes: int | None = None,
    oom_killed: bool = False,
    memory_measure: str = "working set",
) -> Recommendation:
    """Recommend a CPU request and a memory request and limit from usage series.

    memory_measure names what the memory series is in the explanations, for a source
    that has no working set and reports total usage instead.

    cpu_cores is the CPU cores used in each sampling interval, and
    memory_working_set_bytes is the working set in bytes at each sample. Both cover
    history_seconds of load. When either series is empty, the result has
    status "not_enough_data" and no figures. Raise UsageError for a negative,
    NaN or infinite input.
    """
    _validate_inputs(
        cpu_cores,
        memory_working_set_bytes,
        history_seconds,
        memory_limit_in_force_bytes,
    )
    if not cpu_cores or not memory_working_set_bytes:
        return _not_enough_data(
            cpu_cores, memory_working_set_bytes, history_seconds, policy
        )

    cpu = _size_cpu(cpu_cores, history_seconds, policy)
    memory = _size_memory(
        memory_working_set_bytes,
        policy,
        memory_limit_in_force_bytes,
        oom_killed,
        memory_measure,
    )
    samples = min(len(cpu_cores), len(memory_working_set_bytes))
    estimate_reason = _estimate_reason(
        len(cpu_cores), len(memory_working_set_bytes), history_seconds, policy
    )
    logger.debug(
        "Recommended %sm CPU and %s bytes memory from %s samples over %s s",
        cpu.value,
        memory.value,
        samples,
        history_seconds,
    )
    return Recommendation(
        status="ok",
        cpu_request_cores=cpu.value / 1000,
        cpu_request_millicores=cpu.value,
        cpu_floored=cpu.floored,
        cpu_explanation=cpu.explanation,
        memory_request_bytes=memory.value,
        memory_limit_bytes=memory.value,
        memory_floored=memory.floored,
        memory_explanation=memory.explanation,
        estimate=estimate_reason is not None,
        estimate_reason=estimate_reason,
        samples=samples,
        history_seconds=history_seconds,
        policy=policy,
    )


def _size_cpu(
    cpu_cores: Sequence[float], history_seconds: float, policy: SizingPolicy
) -> _Figure:
    measured = _ceil_millicores(
        nearest_rank_percentile(cpu_cores, policy.cpu_percentile)
    )
    source = (
        f"p{policy.cpu_percentile:g} of {len(cpu_cores)} readings of CPU cores used, "
        "one per interval between samples"
    )
    if history_seconds > 0:
        spacing_seconds = history_seconds / len(cpu_cores)
        source += f" ({_format_seconds(spacing_seconds)} s long on average)"

    floor = _ceil_millicores(policy.cpu_floor_cores)
    if measured < floor:
        return _Figure(
            value=floor,
            floored=True,
            explanation=(
                f"CPU request {floor}m: {measured}m measured as {source} and rounded "
                f"up to whole millicores, raised to the {floor}m floor."
            ),
        )
    return _Figure(
        value=measured,
        floored=False,
        explanation=(
            f"CPU request {measured}m = {source}, rounded up to whole millicores."
        ),
    )


def _size_memory(
    memory_working_set_bytes: Sequence[int],
    policy: SizingPolicy,
    memory_limit_in_force_bytes: int | None,
    oom_killed: bool,
    memory_measure: str,
) -> _Figure:
    peak = max(memory_working_set_bytes)
    factor = 1 + Fraction(str(float(policy.memory_margin_ratio)))
    with_margin = _ceil_mib(Fraction(peak) * factor)
    basis = f"peak {memory_measure} {_format_mib(peak)} * {float(factor):g}"
    measured = with_margin
    # Why an OOM kill did or did not change the figure, appended to the sentence.
    oom_note = ""

    if oom_killed:
        terms = [Fraction(peak + OOM_EXTRA_BYTES), Fraction(peak) * OOM_RATIO]
        if memory_limit_in_force_bytes is None:
            rule = (
                f"max(peak + 100 MiB, peak * 1.2) with peak {_format_mib(peak)} "
                "and no known limit in force"
            )
        else:
            terms.append(Fraction(memory_limit_in_force_bytes) * OOM_RATIO)
            rule = (
                "max(peak + 100 MiB, peak * 1.2, limit in force * 1.2) with peak "
                f"{_format_mib(peak)} and limit in force "
                f"{_format_mib(memory_limit_in_force_bytes)}"
            )
        oom_minimum = _ceil_mib(max(terms))
        if oom_minimum > with_margin:
            measured = oom_minimum
            oom_note = (
                f", because the container was OOM-killed and {basis} gives only "
                f"{_format_mib(with_margin)}"
            )
            basis = f"the OOM-kill minimum {rule}"
        else:
            oom_note = f", which meets the OOM-kill minimum {rule}"

    floor = _ceil_mib(Fraction(policy.memory_floor_bytes))
    if measured < floor:
        return _Figure(
            value=floor,
            floored=True,
            explanation=(
                f"Memory request and limit {_format_mib(floor)}: "
                f"{_format_mib(measured)} measured as {basis} and rounded up to "
                f"whole MiB{oom_note}, raised to the {_format_mib(floor)} floor."
            ),
        )
    return _Figure(
        value=measured,
        floored=False,
        explanation=(
            f"Memory request and limit {_format_mib(measured)} = {basis}, "
            f"rounded up to whole MiB{oom_note}."
        ),
    )


def _estimate_reason(
    cpu_readings: int,
    memory_samples: int,
    history_seconds: float,
    policy: SizingPolicy,
) -> str | None:
    samples = min(cpu_readings, memory_samples)
    shortfalls = []
    if samples < policy.min_history_samples:
        missing_samples = policy.min_history_samples - samples
        shortfalls.append(
            f"at least {policy.min_history_samples} samples ({missing_samples} more)"
        )
    if history_seconds < policy.min_history_seconds:
        missing_seconds = policy.min_history_seconds - history_seconds
        shortfalls.append(
            f"at least {policy.min_history_seconds:g} s of load "
            f"({_format_seconds(missing_seconds)} s more)"
        )
    if not shortfalls:
        return None
    return (
        f"Based on {cpu_readings} CPU readings and {memory_samples} memory samples "
        f"over {_format_seconds(history_seconds)} s, but a measured recommendation "
        f"needs {' and '.join(shortfalls)}."
    )


def _not_enough_data(
    cpu_cores: Sequence[float],
    memory_working_set_bytes: Sequence[int],
    history_seconds: float,
    policy: SizingPolicy,
) -> Recommendation:
    empty = []
    if not cpu_cores:
        empty.append("CPU")
    if not memory_working_set_bytes:
        empty.append("memory")
    reason = (
        f"no {' or '.join(empty)} samples were recorded, so there is no measurement "
        "to size from."
    )
    logger.debug("No recommendation: %s", reason)
    return Recommendation(
        status="not_enough_data",
        cpu_request_cores=None,
        cpu_request_millicores=None,
        cpu_floored=False,
        cpu_explanation=f"No CPU request: {reason}",
        memory_request_bytes=None,
        memory_limit_bytes=None,
        memory_floored=False,
        memory_explanation=f"No memory request or limit: {reason}",
        estimate=False,
        estimate_reason=None,
        samples=min(len(cpu_cores), len(memory_working_set_bytes)),
        history_seconds=history_seconds,
        policy=policy,
    )


def _validate_inputs(
    cpu_cores: Sequence[float],
    memory_working_set_bytes: Sequence[int],
    history_seconds: float,
    memory_limit_in_force_bytes: int | None,
) -> None:
    if not math.isfinite(history_seconds) or history_seconds < 0:
        raise UsageError(
            f"Invalid history_seconds {history_seconds!r}: pass the seconds of load "
            "that the samples cover, 0 or more."
        )
    for index, cores in enumerate(cpu_cores):
        if not math.isfinite(cores) or cores < 0:
            raise UsageError(
                f"Invalid CPU sample {cores!r} at index {index}: CPU cores used must "
                "be a finite number of 0 or more. Check the metrics source."
            )
    for index, working_set in enumerate(memory_working_set_bytes):
        if not math.isfinite(working_set) or working_set < 0:
            raise UsageError(
                f"Invalid memory sample {working_set!r} at index {index}: the working "
                "set must be a finite number of bytes, 0 or more. Check the metrics "
                "source."
            )
    if memory_limit_in_force_bytes is not None and memory_limit_in_force_bytes <= 0:
        raise UsageError(
            f"Invalid memory_limit_in_force_bytes {memory_limit_in_force_bytes!r}: "
            "pass the container's memory limit in bytes, or None when it had none."
        )


def _ceil_millicores(cores: float) -> int:
    # Rounding to 1e-6 millicores first stops float noise from adding a millicore:
    # 9 * 0.001 * 1000 is 9.000000000000002, which must stay 9m.
    return math.ceil(round(cores * 1000, 6))


def _ceil_mib(size_bytes: Fraction) -> int:
    """Round a byte count up to a whole number of MiB, returned in bytes."""
    return math.ceil(size_bytes / MIB) * MIB


def _format_mib(size_bytes: int) -> str:
    if size_bytes % MIB == 0:
        return f"{size_bytes // MIB} MiB"
    return f"{size_bytes / MIB:.1f} MiB"


def _format_seconds(seconds: float) -> str:
    # Two significant digits below 1 s so that a 0.04 s gap does not print as 0.0.
    if seconds < 1:
        return f"{seconds:.2g}"
    return f"{seconds:.1f}"
