"""The interface of a sizing strategy, its parameters and its result."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Protocol

from hyperlane.sizing.policy import SizingPolicy
from hyperlane.sizing.recommend import Recommendation
from hyperlane.sizing.usage import ContainerUsage

DAY_SECONDS = 86_400.0


@dataclass(frozen=True)
class StrategyParameters:
    """Parameters of the strategies beyond the SizingPolicy, with their defaults.

    The histogram defaults are the VPA recommender's, as docs/sizing.md lists them.
    """

    target_utilization: float | None = None
    """Autoscaler target CPU utilisation (0.7 is 70 %), or None for no autoscaler.

    With a target, the CPU request is at least the peak CPU reading / target.
    """
    histogram_half_life_seconds: float = DAY_SECONDS
    histogram_target_percentile: float = 90.0
    histogram_lower_percentile: float = 50.0
    histogram_upper_percentile: float = 95.0
    histogram_bucket_growth_ratio: float = 0.05
    histogram_cpu_first_bucket_cores: float = 0.01
    histogram_memory_first_bucket_bytes: int = 10_000_000
    histogram_memory_aggregation_seconds: float = DAY_SECONDS
    """Length of the window whose peak working set is one memory sample."""


@dataclass(frozen=True)
class Bounds:
    """Lower and upper bounds around a figure, as the VPA recommender reports them."""

    cpu_lower_cores: float | None
    cpu_upper_cores: float | None
    """None when the history is too short for a finite upper bound."""
    memory_lower_bytes: int | None
    memory_upper_bytes: int | None
    explanation: str


@dataclass(frozen=True)
class Sizing:
    """One container's recommendation from one strategy, with its extra figures."""

    container: str
    strategy: str
    recommendation: Recommendation
    bounds: Bounds | None = None
    notes: tuple[str, ...] = ()
    """Sentences on adjustments after the strategy's formula (autoscaler target)."""

    def to_dict(self) -> dict[str, Any]:
        """Return the sizing as a JSON-ready dict."""
        return dataclasses.asdict(self)


class Strategy(Protocol):
    """A named rule that turns one container's usage into a Sizing."""

    name: str
    summary: str
    """One sentence naming the formula and its source."""

    def size(
        self,
        usage: ContainerUsage,
        policy: SizingPolicy,
        parameters: StrategyParameters,
    ) -> Sizing:
        """Compute the recommendation of one container."""
        ...


def apply_autoscaler_target(
    sizing: Sizing, usage: ContainerUsage, target_utilization: float | None
) -> Sizing:
    """Raise the CPU request to peak CPU / target utilisation when it is below that.

    A horizontal autoscaler adds replicas when usage / request exceeds its target,
    so a request below peak / target would keep it scaling out at the peak.
    """
    recommendation = sizing.recommendation
    current = recommendation.cpu_request_millicores
    if target_utilization is None or current is None or not usage.cpu:
        return sizing
    peak_cores = max(usage.cpu_cores)
    minimum = math.ceil(round(peak_cores / target_utilization * 1000, 6))
    if minimum <= current:
        note = (
            f"CPU request {current}m meets the autoscaler minimum: peak "
            f"{peak_cores * 1000:.1f}m / target utilisation {target_utilization:g} = "
            f"{minimum}m."
        )
        return dataclasses.replace(sizing, notes=(*sizing.notes, note))
    note = (
        f"CPU request raised from {current}m to {minimum}m = peak "
        f"{peak_cores * 1000:.1f}m / autoscaler target utilisation "
        f"{target_utilization:g}, rounded up to whole millicores."
    )
    raised = dataclasses.replace(
        recommendation,
        cpu_request_cores=minimum / 1000,
        cpu_request_millicores=minimum,
        cpu_floored=False,
        cpu_explanation=f"{recommendation.cpu_explanation} {note}",
    )
    return dataclasses.replace(
        sizing, recommendation=raised, notes=(*sizing.notes, note)
    )
