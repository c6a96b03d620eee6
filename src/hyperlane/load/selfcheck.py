"""Self-check of the load generator: is its own CPU saturated, does it keep the rate?"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

logger = logging.getLogger(__name__)

# One event loop uses at most one core, so a thread busy for 90 % of the wall time
# leaves too little slack to send and read on time.
CPU_SATURATED_SHARE = 0.9
# Shortest span over which the CPU share is judged, so that a burst at the start
# of a short run does not raise a warning.
MIN_CPU_SPAN_SECONDS = 0.5
# Shares of the scheduled sends above which the open model fell behind: a backlog
# left unsent at the stop, or sends more than one interval late. A loaded 2-core
# machine delays a few sends by an interval now and then, hence the larger late
# share and the minimum count.
UNSENT_SHARE = 0.01
LATE_SHARE = 0.05
MIN_BEHIND_COUNT = 5

_clock_ns = time.perf_counter_ns


class SelfCheck:
    """Collects warnings about the generator itself, each logged once."""

    def __init__(self, cpu_clock: Callable[[], float], start_ns: int) -> None:
        self.cpu_clock = cpu_clock
        self.start_cpu_seconds = cpu_clock()
        self.start_ns = start_ns
        self.previous_cpu_seconds = self.start_cpu_seconds
        self.previous_ns = start_ns
        self.warnings: list[str] = []
        self._kinds: set[str] = set()

    def warn(self, kind: str, message: str) -> None:
        """Record ``message`` unless a warning of ``kind`` was already recorded."""
        if kind in self._kinds:
            return
        self._kinds.add(kind)
        self.warnings.append(message)
        logger.warning("%s", message)

    def cpu_seconds(self) -> float:
        """Return the CPU seconds used since the run started."""
        return max(0.0, self.cpu_clock() - self.start_cpu_seconds)

    def check_cpu(self, now_ns: int, whole_run: bool = False) -> None:
        """Warn if the CPU share since the previous check, or over the whole run
        with ``whole_run``, reached CPU_SATURATED_SHARE."""
        cpu_now = self.cpu_clock()
        if whole_run:
            cpu_used = cpu_now - self.start_cpu_seconds
            wall_seconds = (now_ns - self.start_ns) / 1e9
        else:
            cpu_used = cpu_now - self.previous_cpu_seconds
            wall_seconds = (now_ns - self.previous_ns) / 1e9
        self.previous_cpu_seconds = cpu_now
        self.previous_ns = now_ns
        if wall_seconds < MIN_CPU_SPAN_SECONDS:
            return
        share = cpu_used / wall_seconds
        if share >= CPU_SATURATED_SHARE:
            self.warn(
                "cpu",
                f"Load generator CPU saturated: its event loop used {share:.0%} of "
                f"one core over {wall_seconds:.1f} s, so latencies include its own "
                "delays. Use fewer connections, a lower rate or more workers.",
            )

    def check_rate(self, scheduled: int, unsent: int, late: int) -> None:
        """Warn if more than UNSENT_SHARE of the scheduled sends were unsent, or
        more than LATE_SHARE late, and at least MIN_BEHIND_COUNT of them."""
        unsent_behind = unsent >= MIN_BEHIND_COUNT and unsent > UNSENT_SHARE * scheduled
        late_behind = late >= MIN_BEHIND_COUNT and late > LATE_SHARE * scheduled
        if not (unsent_behind or late_behind):
            return
        self.warn(
            "rate",
            f"Load generator fell behind the target rate: {unsent} of {scheduled} "
            f"scheduled requests were never sent and {late} were sent more than "
            "one interval late. Add connections, or lower the rate.",
        )
