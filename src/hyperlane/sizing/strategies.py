"""The registry of sizing strategies by name, and the entry point that runs one."""

from __future__ import annotations

from hyperlane.errors import UsageError
from hyperlane.sizing.histogram import HistogramStrategy
from hyperlane.sizing.percentile import PercentileStrategy
from hyperlane.sizing.policy import SizingPolicy
from hyperlane.sizing.strategy import (
    Sizing,
    Strategy,
    StrategyParameters,
    apply_autoscaler_target,
)
from hyperlane.sizing.usage import ContainerUsage

DEFAULT_STRATEGY = "percentile"

STRATEGIES: dict[str, Strategy] = {
    strategy.name: strategy for strategy in (PercentileStrategy(), HistogramStrategy())
}


def get_strategy(name: str) -> Strategy:
    """Return the strategy registered under name, or raise UsageError."""
    try:
        return STRATEGIES[name]
    except KeyError:
        raise UsageError(
            f"Unknown sizing strategy {name!r}: pass one of "
            f"{', '.join(sorted(STRATEGIES))}."
        ) from None


def size_container(
    usage: ContainerUsage,
    strategy_name: str = DEFAULT_STRATEGY,
    policy: SizingPolicy | None = None,
    parameters: StrategyParameters | None = None,
) -> Sizing:
    """Size one container with the named strategy, then apply the autoscaler target."""
    policy = policy or SizingPolicy()
    parameters = parameters or StrategyParameters()
    sizing = get_strategy(strategy_name).size(usage, policy, parameters)
    return apply_autoscaler_target(sizing, usage, parameters.target_utilization)
