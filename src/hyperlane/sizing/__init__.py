"""Right-size a container from measured CPU and memory usage.

``recommend`` turns usage series into a CPU request and a memory request and limit,
each with a one-sentence explanation. docs/sizing.md describes the rules.
"""

from hyperlane.sizing.policy import SizingPolicy
from hyperlane.sizing.recommend import (
    DEFAULT_POLICY,
    Recommendation,
    nearest_rank_percentile,
    recommend,
)

__all__ = [
    "DEFAULT_POLICY",
    "Recommendation",
    "SizingPolicy",
    "nearest_rank_percentile",
    "recommend",
]
