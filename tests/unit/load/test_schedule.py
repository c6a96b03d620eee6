"""ArrivalSchedule send times against numeric integration, and WeightedPicker."""

from __future__ import annotations

from collections import Counter

import pytest

from hyperlane.load import Stage
from hyperlane.load.schedule import ArrivalSchedule, WeightedPicker, share_size


def _due_by_bisection(rates: list[tuple[float, float, float]], sends: float) -> float:
    """Find the time at which ``sends`` sends are due, integrating each linear
    ramp (duration, start rate, end rate) with the trapezoid rule."""

    def due(t: float) -> float:
        total = 0.0
        offset = 0.0
        for duration, start, end in rates:
            span = min(max(t - offset, 0.0), duration)
            rate_at_span = start + (end - start) * span / duration
            total += (start + rate_at_span) / 2 * span
            offset += duration
        return total

    low, high = 0.0, sum(duration for duration, _, _ in rates)
    for _ in range(100):
        middle = (low + high) / 2
        if due(middle) < sends:
            low = middle
        else:
            high = middle
    return high


def test_constant_rate_times() -> None:
    schedule = ArrivalSchedule(1_000, 4.0)
    assert schedule.intended_ns(0) == 1_000
    assert schedule.intended_ns(3) == 1_000 + 750_000_000


@pytest.mark.parametrize("number", [1, 10, 119, 150, 249, 269])
def test_ramp_times_integrate(number: int) -> None:
    # Sends per stage: (20 + 100) / 2 * 2 = 120, then 100, then 50: 270 in all.
    stages = (Stage(2.0, 100.0), Stage(1.0, 100.0), Stage(1.0, 0.0))
    schedule = ArrivalSchedule(0, 20.0, stages)
    expected = _due_by_bisection(
        [(2.0, 20.0, 100.0), (1.0, 100.0, 100.0), (1.0, 100.0, 0.0)], number
    )
    intended = schedule.intended_ns(number)
    assert intended is not None
    assert intended / 1e9 == pytest.approx(expected, abs=1e-6)


def test_ramp_ends_after_stages() -> None:
    # 0 to 10/s over 2 s: 10 sends, numbered 0 to 9.
    schedule = ArrivalSchedule(0, None, (Stage(2.0, 10.0),))
    assert schedule.intended_ns(9) is not None
    assert schedule.intended_ns(10) is None


def test_due_matches_times() -> None:
    schedule = ArrivalSchedule(0, None, (Stage(1.0, 50.0), Stage(1.0, 10.0)))
    for number in range(0, 55):
        intended = schedule.intended_ns(number)
        assert intended is not None
        assert schedule.due_total(intended + 1_000) >= number + 1


def test_share_size_counts() -> None:
    for total in range(0, 12):
        for count in (1, 2, 3, 5):
            sizes = [share_size(total, index, count) for index in range(count)]
            assert sum(sizes) == total
            assert max(sizes) - min(sizes) <= 1


def test_picker_exact_mix() -> None:
    picker = WeightedPicker([5.0, 1.0, 2.0])
    picks = Counter(picker.pick() for _ in range(80))
    assert picks == {0: 50, 1: 10, 2: 20}


def test_picker_spreads_picks() -> None:
    picker = WeightedPicker([1.0, 1.0])
    assert [picker.pick() for _ in range(6)] == [0, 1, 0, 1, 0, 1]
