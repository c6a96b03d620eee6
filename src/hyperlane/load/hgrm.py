"""HdrHistogram percentile distribution files (``.hgrm``).

The text has the layout of Java HdrHistogram's ``outputPercentileDistribution``: a
Value, Percentile, TotalCount and 1/(1-Percentile) table with percentile ticks that
halve with each half of the distance to 100 %, then a footer with the mean,
standard deviation, max, total count and bucket layout.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from hdrh.histogram import HdrHistogram
from hdrh.iterators import PercentileIterator

from hyperlane.errors import UsageError
from hyperlane.load.merge import decode_histogram
from hyperlane.report.document import write_text_atomically

# Five ticks per half distance is what HdrHistogram's own tools and wrk2 print.
DEFAULT_TICKS_PER_HALF_DISTANCE = 5
_MICROSECONDS_PER_MILLISECOND = 1000.0


class _JavaPercentileIterator(PercentileIterator):  # type: ignore[misc]
    """Percentile iterator with the tick spacing of Java HdrHistogram.

    hdrh 0.10.8 omits Java's rounding of the half-distance exponent down to an
    integer, so its ticks shrink at every step instead of keeping one size through
    each half of the remaining distance to 100 %.
    """

    def increment_iteration_level(self) -> None:
        self.percentile_to_iterate_from = self.percentile_to_iterate_to
        remaining = 100.0 - self.percentile_to_iterate_to
        if remaining <= 0:
            return
        halvings = math.floor(math.log(100.0 / remaining) / math.log(2))
        ticks = self.percentile_ticks_per_half_distance * 2 ** (halvings + 1)
        self.percentile_to_iterate_to += 100.0 / ticks


def format_hgrm(
    histogram_encoding: str,
    unit_ms: bool = True,
    ticks_per_half_distance: int = DEFAULT_TICKS_PER_HALF_DISTANCE,
) -> str:
    """Return the percentile distribution text of an encoded histogram.

    The histogram contains microseconds. ``unit_ms`` prints milliseconds, otherwise
    microseconds. Raises UsageError for an invalid encoding or tick count.
    """
    if (
        isinstance(ticks_per_half_distance, bool)
        or not isinstance(ticks_per_half_distance, int)
        or ticks_per_half_distance < 1
    ):
        raise UsageError(
            f"Invalid ticks_per_half_distance {ticks_per_half_distance!r}: must be "
            "an integer >= 1, such as 5."
        )
    histogram = decode_histogram(histogram_encoding, "the .hgrm input")
    scale = _MICROSECONDS_PER_MILLISECOND if unit_ms else 1.0
    digits = histogram.significant_figures
    lines = [
        f"{'Value':>12} {'Percentile':>14} {'TotalCount':>10} {'1/(1-Percentile)':>14}",
        "",
    ]
    for step in _JavaPercentileIterator(histogram, ticks_per_half_distance):
        lines.append(_table_line(step, scale, digits))
    lines.extend(_footer(histogram, scale, digits))
    return "\n".join(lines) + "\n"


def write_hgrm(histogram_encoding: str, path: Path, unit_ms: bool = True) -> None:
    """Write the percentile distribution of an encoded histogram to ``path``.

    The file is written to a temporary name beside ``path`` and renamed into place,
    so a reader never sees part of it. Raises UsageError for an invalid encoding or
    a path that cannot be written.
    """
    text = format_hgrm(histogram_encoding, unit_ms=unit_ms)
    try:
        write_text_atomically(path, text)
    except OSError as error:
        raise UsageError(
            f"Cannot write the .hgrm file {str(path)!r}: {error.strerror or error}. "
            "Pass a path in a writable directory."
        ) from error


def _table_line(step: Any, scale: float, digits: int) -> str:
    value = step.value_iterated_to / scale
    level = step.percentile_level_iterated_to
    head = (
        f"{value:12.{digits}f} {level / 100:2.12f} {step.total_count_to_this_value:10d}"
    )
    if level == 100.0:
        # 1/(1-Percentile) is infinite on the last line, which Java leaves blank.
        return head
    return f"{head} {1 / (1 - level / 100):14.2f}"


def _footer(histogram: HdrHistogram, scale: float, digits: int) -> list[str]:
    mean = histogram.get_mean_value() / scale
    deviation = histogram.get_stddev() / scale
    maximum = histogram.get_max_value() / scale
    total = histogram.get_total_count()
    return [
        f"#[Mean    = {mean:12.{digits}f}, StdDeviation   = {deviation:12.{digits}f}]",
        f"#[Max     = {maximum:12.{digits}f}, Total count    = {total:12d}]",
        f"#[Buckets = {histogram.bucket_count:12d}, "
        f"SubBuckets     = {histogram.sub_bucket_count:12d}]",
    ]
