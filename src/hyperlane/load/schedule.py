"""Intended send times of the open model, and the weighted choice of endpoints."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from hyperlane.load.spec import Stage

_NANOSECONDS_PER_SECOND = 1_000_000_000


@dataclass(frozen=True)
class _Ramp:
    """One stage in absolute terms: where it starts and how many sends precede it."""

    start_seconds: float
    duration_seconds: float
    start_rate_per_second: float
    end_rate_per_second: float
    sends_before: float
    """Expected number of sends before the stage, a real number."""

    @property
    def sends(self) -> float:
        mean_rate = (self.start_rate_per_second + self.end_rate_per_second) / 2
        return mean_rate * self.duration_seconds

    def offset_seconds(self, sends_into_stage: float) -> float:
        """Time into the stage at which ``sends_into_stage`` sends have been due.

        The count of due sends is N(t) = r0 t + (r1 - r0) t² / (2 D). Its root is
        written as 2k / (r0 + sqrt(r0² + 4 a k)) with a = (r1 - r0) / (2 D), which
        needs no special case for a constant rate and stays exact when a is tiny.
        """
        if sends_into_stage <= 0:
            return 0.0
        rate = self.start_rate_per_second
        slope = (
            (self.end_rate_per_second - rate) / (2 * self.duration_seconds)
            if self.duration_seconds > 0
            else 0.0
        )
        discriminant = max(0.0, rate * rate + 4 * slope * sends_into_stage)
        return 2 * sends_into_stage / (rate + math.sqrt(discriminant))

    def sends_at(self, offset_seconds: float) -> float:
        """Expected sends due in the first ``offset_seconds`` of the stage."""
        t = min(max(offset_seconds, 0.0), self.duration_seconds)
        rate = self.start_rate_per_second
        change = self.end_rate_per_second - rate
        return rate * t + change * t * t / (2 * self.duration_seconds)

    def rate_at(self, offset_seconds: float) -> float:
        share = min(max(offset_seconds / self.duration_seconds, 0.0), 1.0)
        start = self.start_rate_per_second
        return start + (self.end_rate_per_second - start) * share


class ArrivalSchedule:
    """Intended send times at a constant rate or along ramping stages.

    Sends are numbered from 0 across all processes that split the schedule. Send i
    is due when the expected number of sends since the start reaches i, so send 0
    is due at the start. This process takes the sends whose number modulo
    ``share_count`` is ``share_index``.
    """

    def __init__(
        self,
        start_ns: int,
        rate_per_second: float | None,
        stages: Sequence[Stage] = (),
        share_index: int = 0,
        share_count: int = 1,
    ) -> None:
        self.start_ns = start_ns
        self.share_index = share_index
        self.share_count = share_count
        self.constant_rate = rate_per_second if not stages else None
        self.ramps: list[_Ramp] = []
        offset = 0.0
        sends = 0.0
        previous_rate = rate_per_second or 0.0
        for stage in stages:
            ramp = _Ramp(
                start_seconds=offset,
                duration_seconds=stage.duration_seconds,
                start_rate_per_second=previous_rate,
                end_rate_per_second=stage.target_rate_per_second,
                sends_before=sends,
            )
            self.ramps.append(ramp)
            offset += stage.duration_seconds
            sends += ramp.sends
            previous_rate = stage.target_rate_per_second
        self.total_sends = sends
        self.end_seconds = offset

    def intended_ns(self, send_number: int) -> int | None:
        """Return the clock time at which send ``send_number`` is due, or None when
        the stages end before it."""
        seconds = self._offset_seconds(send_number)
        if seconds is None:
            return None
        return self.start_ns + round(seconds * _NANOSECONDS_PER_SECOND)

    def _offset_seconds(self, send_number: int) -> float | None:
        if self.constant_rate is not None:
            return send_number / self.constant_rate
        if send_number >= self.total_sends:
            return None
        for ramp in reversed(self.ramps):
            if send_number >= ramp.sends_before and ramp.sends > 0:
                into_stage = send_number - ramp.sends_before
                return ramp.start_seconds + ramp.offset_seconds(into_stage)
        return None

    def rate_at(self, now_ns: int) -> float:
        """Return the total arrival rate in requests per second at ``now_ns``."""
        offset = (now_ns - self.start_ns) / _NANOSECONDS_PER_SECOND
        if self.constant_rate is not None:
            return self.constant_rate
        for ramp in self.ramps:
            if offset < ramp.start_seconds + ramp.duration_seconds:
                return ramp.rate_at(offset - ramp.start_seconds)
        return 0.0

    def due_total(self, now_ns: int) -> int:
        """Return how many sends of all processes are due at or before ``now_ns``."""
        offset = (now_ns - self.start_ns) / _NANOSECONDS_PER_SECOND
        if offset < 0:
            return 0
        if self.constant_rate is not None:
            return math.floor(offset * self.constant_rate) + 1
        expected = self.total_sends
        for ramp in self.ramps:
            if offset < ramp.start_seconds + ramp.duration_seconds:
                expected = ramp.sends_before + ramp.sends_at(
                    offset - ramp.start_seconds
                )
                return min(math.floor(expected) + 1, math.ceil(self.total_sends))
        return math.ceil(expected)

    def due_in_share(self, now_ns: int, budget: int | None = None) -> int:
        """Return how many of this process's sends are due at or before ``now_ns``,
        counting only send numbers below ``budget`` when it is given."""
        due = self.due_total(now_ns)
        if budget is not None:
            due = min(due, budget)
        return share_size(due, self.share_index, self.share_count)


def share_size(total: int, share_index: int, share_count: int) -> int:
    """Return how many of the numbers 0 .. total - 1 are ``share_index`` modulo
    ``share_count``."""
    if total <= share_index:
        return 0
    return (total - 1 - share_index) // share_count + 1


class WeightedPicker:
    """Smooth weighted round-robin, as nginx balances upstreams: over any run of
    sum(weights) picks with integer weights, each index is picked weight times,
    and picks of one index are spread out rather than bunched."""

    def __init__(self, weights: Sequence[float]) -> None:
        self.weights = list(weights)
        self.total = sum(self.weights)
        self.current = [0.0] * len(self.weights)

    def pick(self) -> int:
        """Return the index of the next endpoint."""
        if len(self.weights) == 1:
            return 0
        current = self.current
        best = 0
        for index, weight in enumerate(self.weights):
            current[index] += weight
            if current[index] > current[best]:
                best = index
        current[best] -= self.total
        return best
