"""CFS throttling of one container, and the CPU limit that keeps it under a share."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from hyperlane.metrics.series import nearest_rank
from hyperlane.sizing.usage import ContainerUsage


@dataclass(frozen=True)
class ThrottlingReport:
    """Share of CFS periods throttled, and what it means for the CPU limit."""

    throttled_share: float | None
    """Throttled periods / elapsed periods, 0 to 1, or None without a CPU quota."""
    threshold_share: float
    exceeded: bool
    suggested_cpu_limit_cores: float | None
    """CPU limit at or above which at most threshold_share of intervals needed more."""
    limit_below_need: bool
    """True when the CPU limit in force is below suggested_cpu_limit_cores."""
    sentences: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        """Return the report as a JSON-ready dict."""
        return asdict(self)


def analyse_throttling(
    usage: ContainerUsage, threshold_share: float
) -> ThrottlingReport:
    """Compare the throttled share of CFS periods with threshold_share.

    The CPU needed in an interval is the CPU used plus the throttled seconds per
    second, because a throttled task would have run in that time. NOTE: that is an
    estimate: throttled time counts wall time of the whole cgroup, so with several
    runnable threads the need can be higher still.
    """
    periods = usage.cfs_periods
    throttled = usage.cfs_throttled_periods
    if not periods or throttled is None:
        return ThrottlingReport(
            throttled_share=None,
            threshold_share=threshold_share,
            exceeded=False,
            suggested_cpu_limit_cores=None,
            limit_below_need=False,
            sentences=(
                "No CFS periods were recorded, so the container ran without a CPU "
                "limit (quota) and was never throttled.",
            ),
        )
    share = throttled / periods
    needed = [reading.cores + (reading.throttled_cores or 0.0) for reading in usage.cpu]
    keep_percent = 100 * (1 - threshold_share)
    need_at_percentile = nearest_rank(needed, keep_percent)
    suggested = None
    if need_at_percentile is not None:
        suggested = math.ceil(round(need_at_percentile * 1000, 6)) / 1000
    sentences = []
    exceeded = share > threshold_share
    verdict = "above" if exceeded else "within"
    sentences.append(
        f"{throttled} of {periods} CFS periods were throttled ({share:.1%}), "
        f"{verdict} the {threshold_share:.0%} threshold."
    )
    if exceeded and suggested is not None:
        sentences.append(
            f"A CPU limit of {suggested * 1000:.0f}m would keep throttling under "
            f"{threshold_share:.0%}: p{keep_percent:g} of CPU used plus throttled "
            f"time per interval over {len(needed)} intervals (an estimate)."
        )
    limit = usage.cpu_limit_cores
    limit_below_need = (
        exceeded and limit is not None and suggested is not None and limit < suggested
    )
    if limit_below_need and limit is not None and suggested is not None:
        sentences.append(
            f"The CPU limit in force, {limit * 1000:.0f}m, is below the "
            f"{suggested * 1000:.0f}m that the service needed."
        )
    return ThrottlingReport(
        throttled_share=share,
        threshold_share=threshold_share,
        exceeded=exceeded,
        suggested_cpu_limit_cores=suggested,
        limit_below_need=limit_below_need,
        sentences=tuple(sentences),
    )
