"""The "histogram" strategy: the Kubernetes VPA recommender's decaying histograms.

Constants and formulas follow vertical-pod-autoscaler/pkg/recommender in
kubernetes/autoscaler (logic/recommender.go at commit 03934ebfcdb6,
logic/estimator.go at 1743dbec4699, model/aggregations_config.go at 115087573e54,
util/histogram.go), as docs/sizing.md describes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

from hyperlane.sizing.policy import SizingPolicy
from hyperlane.sizing.recommend import (
    OOM_EXTRA_BYTES,
    OOM_RATIO,
    Recommendation,
    _ceil_mib,
    _ceil_millicores,
    _estimate_reason,
    _format_mib,
    _not_enough_data,
)
from hyperlane.sizing.strategy import (
    DAY_SECONDS,
    Bounds,
    Sizing,
    StrategyParameters,
)
from hyperlane.sizing.usage import ContainerUsage

# The VPA's histograms end at 1000 cores and 1 TB, with the last bucket open.
CPU_HISTOGRAM_MAX_CORES = 1000.0
MEMORY_HISTOGRAM_MAX_BYTES = 1e12
# The VPA recommender counts one sample per minute as one day of confidence.
SAMPLES_PER_CONFIDENCE_DAY = 60 * 24


@dataclass(frozen=True)
class ExponentialBuckets:
    """Buckets growing by a ratio r: bucket i starts at f * (r^i - 1) / (r - 1)."""

    first_bucket_size: float
    ratio: float
    max_value: float

    @property
    def bucket_count(self) -> int:
        """Number of buckets, the last of which has no upper end."""
        return (
            math.ceil(
                math.log(self.max_value * (self.ratio - 1) / self.first_bucket_size + 1)
                / math.log(self.ratio)
            )
            + 1
        )

    def bucket_start(self, bucket: int) -> float:
        """Return the lower end of a bucket."""
        return self.first_bucket_size * (self.ratio**bucket - 1) / (self.ratio - 1)

    def find_bucket(self, value: float) -> int:
        """Return the bucket that contains value."""
        if value < self.first_bucket_size:
            return 0
        bucket = int(
            math.log(value * (self.ratio - 1) / self.first_bucket_size + 1)
            / math.log(self.ratio)
        )
        # Float rounding in log() or bucket_start() can move a value on a boundary
        # by one bucket. A relative tolerance of 1e-9 puts it in the bucket that
        # the boundary starts.
        tolerance = value * 1e-9
        while bucket > 0 and self.bucket_start(bucket) > value + tolerance:
            bucket -= 1
        while self.bucket_start(bucket + 1) <= value + tolerance:
            bucket += 1
        return min(bucket, self.bucket_count - 1)


class DecayingHistogram:
    """A histogram whose sample weights halve every half_life_seconds of age.

    Weights are relative to reference_seconds, so a sample at the reference
    weighs its full weight and one half_life_seconds older weighs half.
    """

    def __init__(
        self,
        buckets: ExponentialBuckets,
        half_life_seconds: float,
        reference_seconds: float,
    ) -> None:
        self.buckets = buckets
        self.half_life_seconds = half_life_seconds
        self.reference_seconds = reference_seconds
        self.weights: dict[int, float] = {}

    def add(self, value: float, timestamp_seconds: float, weight: float = 1.0) -> None:
        """Add one sample taken at timestamp_seconds."""
        age_seconds = timestamp_seconds - self.reference_seconds
        decayed = weight * 2 ** (age_seconds / self.half_life_seconds)
        bucket = self.buckets.find_bucket(value)
        self.weights[bucket] = self.weights.get(bucket, 0.0) + decayed

    def percentile(self, percent: float) -> float:
        """Return the upper end of the bucket where the cumulative weight hits percent.

        As in the VPA, the last bucket returns its start, and an empty histogram 0.
        """
        if not self.weights:
            return 0.0
        threshold = percent / 100 * sum(self.weights.values())
        partial = 0.0
        ordered = sorted(self.weights)
        bucket = ordered[-1]
        for candidate in ordered:
            partial += self.weights[candidate]
            if partial >= threshold:
                bucket = candidate
                break
        if bucket < self.buckets.bucket_count - 1:
            return self.buckets.bucket_start(bucket + 1)
        return self.buckets.bucket_start(bucket)


def confidence_days(usage: ContainerUsage) -> float:
    """Return the VPA's confidence: min(history in days, CPU readings / 1440).

    As in the VPA, the history runs from the start of the first CPU reading to the
    start of the last, so a single reading has a confidence of 0.
    """
    if not usage.cpu:
        return 0.0
    first = usage.cpu[0].end_seconds - usage.cpu[0].interval_seconds
    last = usage.cpu[-1].end_seconds - usage.cpu[-1].interval_seconds
    lifespan_days = (last - first) / DAY_SECONDS
    return min(lifespan_days, len(usage.cpu) / SAMPLES_PER_CONFIDENCE_DAY)


def upper_bound_multiplier(confidence: float) -> float:
    """Return (1 + 1 / confidence)^1, infinite without history."""
    if confidence <= 0:
        return math.inf
    return 1 + 1 / confidence


def lower_bound_multiplier(confidence: float) -> float:
    """Return (1 + 0.001 / confidence)^-2, 0 without history."""
    if confidence <= 0:
        return 0.0
    return float((1 + 0.001 / confidence) ** -2)


def memory_peaks(
    usage: ContainerUsage, window_seconds: float
) -> list[tuple[float, int]]:
    """Return (window start, peak) of each aggregation window that has readings."""
    if not usage.memory:
        return []
    origin = usage.memory[0].timestamp_seconds
    peaks: dict[int, int] = {}
    for reading in usage.memory:
        window = int((reading.timestamp_seconds - origin) // window_seconds)
        peaks[window] = max(peaks.get(window, 0), reading.working_set_bytes)
    return [
        (origin + window * window_seconds, peak)
        for window, peak in sorted(peaks.items())
    ]


class HistogramStrategy:
    """The VPA recommender's target, lower and upper bounds from decaying histograms."""

    name = "histogram"
    summary = (
        "Target = p90 of a decaying histogram (24 h half-life, buckets growing 5 %) "
        "plus a 15 % margin, with p50 and p95 bounds widened for short history "
        "(the Kubernetes VPA recommender)."
    )

    def size(
        self,
        usage: ContainerUsage,
        policy: SizingPolicy,
        parameters: StrategyParameters,
    ) -> Sizing:
        """Size one container from its CPU and memory histograms."""
        limit_at_oom = usage.oom_limit_in_force_bytes
        has_memory = bool(usage.memory) or (
            bool(usage.oom_kills) and limit_at_oom is not None
        )
        if not usage.cpu or not has_memory:
            recommendation = _not_enough_data(
                usage.cpu_cores, usage.memory_bytes, usage.history_seconds, policy
            )
            return Sizing(usage.name, self.name, recommendation)

        margin = 1 + policy.memory_margin_ratio
        confidence = confidence_days(usage)
        upper_factor = upper_bound_multiplier(confidence)
        lower_factor = lower_bound_multiplier(confidence)

        cpu_histogram = self._cpu_histogram(usage, parameters)
        cpu_target = cpu_histogram.percentile(parameters.histogram_target_percentile)
        cpu_lower = cpu_histogram.percentile(parameters.histogram_lower_percentile)
        cpu_upper = cpu_histogram.percentile(parameters.histogram_upper_percentile)
        cpu_millicores, cpu_floored, cpu_explanation = self._cpu_figure(
            cpu_target * margin, cpu_target, usage, policy, parameters
        )

        memory_histogram, peaks = self._memory_histogram(usage, parameters)
        memory_target = memory_histogram.percentile(
            parameters.histogram_target_percentile
        )
        memory_lower = memory_histogram.percentile(
            parameters.histogram_lower_percentile
        )
        memory_upper = memory_histogram.percentile(
            parameters.histogram_upper_percentile
        )
        memory_bytes, memory_floored, memory_explanation = self._memory_figure(
            memory_target, peaks, usage, policy, parameters
        )

        cpu_floor = policy.cpu_floor_cores
        memory_floor = policy.memory_floor_bytes
        bounds = Bounds(
            cpu_lower_cores=max(cpu_lower * margin * lower_factor, cpu_floor),
            cpu_upper_cores=(
                None
                if math.isinf(upper_factor)
                else max(cpu_upper * margin * upper_factor, cpu_floor)
            ),
            memory_lower_bytes=max(
                math.ceil(memory_lower * margin * lower_factor), memory_floor
            ),
            memory_upper_bytes=(
                None
                if math.isinf(upper_factor)
                else max(math.ceil(memory_upper * margin * upper_factor), memory_floor)
            ),
            explanation=(
                f"Lower bound = p{parameters.histogram_lower_percentile:g} * "
                f"{margin:g} * (1 + 0.001 / confidence)^-2 = * {lower_factor:.3g}, "
                f"upper bound = p{parameters.histogram_upper_percentile:g} * "
                f"{margin:g} * (1 + 1 / confidence) = * {upper_factor:.4g}, with "
                f"confidence {confidence:.3g} days = min(history in days, CPU "
                f"readings / 1440), each at least its floor."
            ),
        )
        estimate_reason = _estimate_reason(
            len(usage.cpu), len(usage.memory), usage.history_seconds, policy
        )
        recommendation = Recommendation(
            status="ok",
            cpu_request_cores=cpu_millicores / 1000,
            cpu_request_millicores=cpu_millicores,
            cpu_floored=cpu_floored,
            cpu_explanation=cpu_explanation,
            memory_request_bytes=memory_bytes,
            memory_limit_bytes=memory_bytes,
            memory_floored=memory_floored,
            memory_explanation=memory_explanation,
            estimate=estimate_reason is not None,
            estimate_reason=estimate_reason,
            samples=min(len(usage.cpu), len(usage.memory)),
            history_seconds=usage.history_seconds,
            policy=policy,
        )
        return Sizing(usage.name, self.name, recommendation, bounds=bounds)

    def _cpu_histogram(
        self, usage: ContainerUsage, parameters: StrategyParameters
    ) -> DecayingHistogram:
        buckets = ExponentialBuckets(
            parameters.histogram_cpu_first_bucket_cores,
            1 + parameters.histogram_bucket_growth_ratio,
            CPU_HISTOGRAM_MAX_CORES,
        )
        histogram = DecayingHistogram(
            buckets, parameters.histogram_half_life_seconds, usage.cpu[-1].end_seconds
        )
        # NOTE: the VPA weighs each CPU sample by max(CPU request, 0.1 cores).
        # Recordings carry no CPU request, so every reading weighs 1 before decay.
        for reading in usage.cpu:
            histogram.add(reading.cores, reading.end_seconds)
        return histogram

    def _memory_histogram(
        self, usage: ContainerUsage, parameters: StrategyParameters
    ) -> tuple[DecayingHistogram, list[tuple[float, int]]]:
        buckets = ExponentialBuckets(
            float(parameters.histogram_memory_first_bucket_bytes),
            1 + parameters.histogram_bucket_growth_ratio,
            MEMORY_HISTOGRAM_MAX_BYTES,
        )
        peaks = memory_peaks(usage, parameters.histogram_memory_aggregation_seconds)
        reference = peaks[-1][0] if peaks else 0.0
        histogram = DecayingHistogram(
            buckets, parameters.histogram_half_life_seconds, reference
        )
        for window_start, peak in peaks:
            histogram.add(float(peak), window_start)
        return histogram, peaks

    def _cpu_figure(
        self,
        with_margin_cores: float,
        target_cores: float,
        usage: ContainerUsage,
        policy: SizingPolicy,
        parameters: StrategyParameters,
    ) -> tuple[int, bool, str]:
        measured = _ceil_millicores(with_margin_cores)
        source = (
            f"p{parameters.histogram_target_percentile:g} of a decaying histogram of "
            f"{len(usage.cpu)} CPU readings ({target_cores * 1000:.1f}m, the upper "
            f"end of its bucket) * {1 + policy.memory_margin_ratio:g}"
        )
        floor = _ceil_millicores(policy.cpu_floor_cores)
        if measured < floor:
            return (
                floor,
                True,
                f"CPU request {floor}m: {measured}m measured as {source}, raised to "
                f"the {floor}m floor.",
            )
        return measured, False, f"CPU request {measured}m = {source}, rounded up."

    def _memory_figure(
        self,
        target_bytes: float,
        peaks: Sequence[tuple[float, int]],
        usage: ContainerUsage,
        policy: SizingPolicy,
        parameters: StrategyParameters,
    ) -> tuple[int, bool, str]:
        factor = Fraction(str(1 + policy.memory_margin_ratio))
        peak = max((value for _, value in peaks), default=0)
        with_margin = _ceil_mib(Fraction(target_bytes) * factor)
        basis = (
            f"p{parameters.histogram_target_percentile:g} of a decaying histogram of "
            f"{len(peaks)} window {'peak' if len(peaks) == 1 else 'peaks'} of the "
            f"{usage.memory_measure} "
            f"({_format_mib(math.ceil(target_bytes))}, the upper end of its bucket) "
            f"* {float(factor):g}"
        )
        measured = with_margin
        if peak > measured:
            measured = _ceil_mib(Fraction(peak))
            basis = (
                f"the observed peak {_format_mib(peak)}, because {basis} gives only "
                f"{_format_mib(with_margin)}"
            )
        limit_at_oom = usage.oom_limit_in_force_bytes
        if usage.oom_kills:
            # The VPA's OOM rule: memory used at the kill, at least the limit in
            # force, bumped to max(used + 100 MiB, used * 1.2).
            used = max(peak, limit_at_oom or 0)
            bump = _ceil_mib(max(Fraction(used + OOM_EXTRA_BYTES), used * OOM_RATIO))
            used_text = (
                f"max(peak {_format_mib(peak)}, limit at the kill "
                f"{_format_mib(limit_at_oom)})"
                if limit_at_oom is not None
                else f"peak {_format_mib(peak)} (no known limit at the kill)"
            )
            if bump > measured:
                basis = (
                    f"the OOM-kill minimum max(used + 100 MiB, used * 1.2) with used = "
                    f"{used_text}, because {basis} gives only {_format_mib(measured)}"
                )
                measured = bump
        floor = _ceil_mib(Fraction(policy.memory_floor_bytes))
        if measured < floor:
            return (
                floor,
                True,
                f"Memory request and limit {_format_mib(floor)}: "
                f"{_format_mib(measured)} measured as {basis}, rounded up to whole "
                f"MiB, raised to the {_format_mib(floor)} floor.",
            )
        return (
            measured,
            False,
            f"Memory request and limit {_format_mib(measured)} = {basis}, rounded up "
            "to whole MiB.",
        )
