"""The "percentile" strategy: KRR's "simple" strategy, through recommend().

CPU request = nearest-rank p95 of the CPU readings, no CPU limit, and memory
request = limit = peak working set + 15 %, each rounded up and floored.
"""

from __future__ import annotations

from hyperlane.sizing.policy import SizingPolicy
from hyperlane.sizing.recommend import recommend
from hyperlane.sizing.strategy import Sizing, StrategyParameters
from hyperlane.sizing.usage import ContainerUsage


class PercentileStrategy:
    """KRR's "simple" strategy: a CPU percentile and the peak memory plus a margin."""

    name = "percentile"
    summary = (
        "CPU request = nearest-rank percentile of the CPU readings, memory request "
        "= limit = peak working set plus a margin (KRR's simple strategy)."
    )

    def size(
        self,
        usage: ContainerUsage,
        policy: SizingPolicy,
        parameters: StrategyParameters,
    ) -> Sizing:
        """Size one container with recommend(), sizing from the OOM limit if needed."""
        memory = usage.memory_bytes
        memory_measure = usage.memory_measure
        limit_at_oom = usage.oom_limit_in_force_bytes
        if not memory and usage.oom_kills and limit_at_oom is not None:
            # Without memory readings the limit at the kill is the least memory
            # that the container is known to have needed.
            memory = [limit_at_oom]
            memory_measure = "memory limit at the OOM kill (no memory readings)"
        recommendation = recommend(
            usage.cpu_cores,
            memory,
            history_seconds=usage.history_seconds,
            policy=policy,
            memory_limit_in_force_bytes=limit_at_oom,
            oom_killed=bool(usage.oom_kills),
            memory_measure=memory_measure,
        )
        return Sizing(
            container=usage.name, strategy=self.name, recommendation=recommendation
        )
