"""Rows of `hyperlane top`: one container's figures, their order and their text.

A row is built from the container's latest sample and the rates since the sample
before it. Every figure is None when unknown, and the text of an unknown figure is
"-", so a rate without a baseline never reads as 0.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

from rich import box
from rich.table import Table

from hyperlane.metrics.sample import Sample
from hyperlane.metrics.series import SampleRates
from hyperlane.units import format_bytes

SortKey = Literal["cpu", "memory", "name", "net", "io"]
SORT_KEYS: tuple[SortKey, ...] = ("cpu", "memory", "name", "net", "io")
UNKNOWN = "-"
# Characters of a container name or image shown in a table. JSON keeps them whole.
NAME_WIDTH = 24
IMAGE_WIDTH = 32

COLUMNS: tuple[tuple[str, str], ...] = (
    ("NAME", "left"),
    ("IMAGE", "left"),
    ("CPU", "right"),
    ("CPU %LIM", "right"),
    ("THROTTLED", "right"),
    ("MEM", "right"),
    ("MEM %LIM", "right"),
    ("NET RX/s", "right"),
    ("NET TX/s", "right"),
    ("BLK R/s", "right"),
    ("BLK W/s", "right"),
    ("PIDS", "right"),
    ("SOURCE", "left"),
)


@dataclass(frozen=True)
class ContainerRow:
    """Figures of one container at its latest sample, with units in the names."""

    container_id: str
    name: str
    image: str
    source: str
    """Reader that took the sample: "cgroup-v1", "cgroup-v2" or "api"."""
    interval_seconds: float | None
    """Time between the two samples behind the rates, None for the first sample."""
    cpu_cores: float | None
    """CPU seconds used per second over the interval: 1.0 is one core."""
    cpu_limit_cores: float | None
    """CPU quota in cores, None when no quota is set."""
    cpu_limit_percent: float | None
    """cpu_cores as a percent of cpu_limit_cores, None without a quota."""
    cpu_cfs_throttled_periods_percent: float | None
    """Percent of the interval's CFS periods in which the quota throttled the tasks."""
    memory_working_set_bytes: int | None
    memory_limit_bytes: int | None
    """Memory limit in bytes, None when no limit is set."""
    memory_limit_percent: float | None
    """Working set as a percent of memory_limit_bytes, None without a limit."""
    network_receive_bytes_per_second: float | None
    network_transmit_bytes_per_second: float | None
    block_io_read_bytes_per_second: float | None
    block_io_write_bytes_per_second: float | None
    pids: int | None
    """Tasks (threads included) from pids.current, else processes in cgroup.procs."""

    def to_dict(self) -> dict[str, Any]:
        """Return the fields as a JSON-ready dict."""
        return asdict(self)


def build_row(
    container_id: str,
    name: str,
    image: str,
    cpu_limit_cores: float | None,
    source: str,
    sample: Sample,
    rates: SampleRates,
) -> ContainerRow:
    """Combine a container's latest sample and rates into one row.

    A memory limit counts only when memory_limit_set is True, because an unlimited
    container reports the host's memory as its limit.
    """
    memory_limit = sample.memory_limit_bytes if sample.memory_limit_set else None
    throttled_ratio = rates.cpu_cfs_throttled_periods_ratio
    return ContainerRow(
        container_id=container_id,
        name=name,
        image=image,
        source=source,
        interval_seconds=rates.interval_seconds,
        cpu_cores=rates.cpu_cores,
        cpu_limit_cores=cpu_limit_cores,
        cpu_limit_percent=percent_of(rates.cpu_cores, cpu_limit_cores),
        cpu_cfs_throttled_periods_percent=(
            None if throttled_ratio is None else throttled_ratio * 100
        ),
        memory_working_set_bytes=sample.memory_working_set_bytes,
        memory_limit_bytes=memory_limit,
        memory_limit_percent=percent_of(sample.memory_working_set_bytes, memory_limit),
        network_receive_bytes_per_second=rates.network_receive_bytes_per_second,
        network_transmit_bytes_per_second=rates.network_transmit_bytes_per_second,
        block_io_read_bytes_per_second=rates.block_io_read_bytes_per_second,
        block_io_write_bytes_per_second=rates.block_io_write_bytes_per_second,
        pids=sample.threads if sample.threads is not None else sample.processes,
    )


def percent_of(value: float | None, limit: float | None) -> float | None:
    """Return value as a percent of limit, or None when either is unknown or 0."""
    if value is None or limit is None or limit <= 0:
        return None
    return value / limit * 100


def _sum_known(*values: float | None) -> float | None:
    """Add the known values, or return None when all are unknown."""
    known = [value for value in values if value is not None]
    return sum(known) if known else None


_NUMERIC_KEYS: dict[str, Callable[[ContainerRow], float | None]] = {
    "cpu": lambda row: row.cpu_cores,
    "memory": lambda row: row.memory_working_set_bytes,
    "net": lambda row: _sum_known(
        row.network_receive_bytes_per_second, row.network_transmit_bytes_per_second
    ),
    "io": lambda row: _sum_known(
        row.block_io_read_bytes_per_second, row.block_io_write_bytes_per_second
    ),
}


def sort_rows(rows: Sequence[ContainerRow], key: SortKey) -> list[ContainerRow]:
    """Order rows by name (ascending) or by a figure (largest first).

    Rows whose figure is unknown come last. Ties keep name order, so the order
    does not flicker between refreshes.
    """
    by_name = sorted(rows, key=lambda row: (row.name, row.container_id))
    if key == "name":
        return by_name
    figure = _NUMERIC_KEYS[key]
    known = [row for row in by_name if figure(row) is not None]
    unknown = [row for row in by_name if figure(row) is None]
    # sorted() is stable, so equal figures stay in name order.
    known.sort(key=lambda row: -float(figure(row) or 0.0))
    return known + unknown


def format_cores(value: float | None) -> str:
    """Format CPU cores with three decimals, e.g. ``0.500``."""
    return UNKNOWN if value is None else f"{value:.3f}"


def format_percent(value: float | None) -> str:
    """Format a percent with one decimal, e.g. ``49.8%``."""
    return UNKNOWN if value is None else f"{value:.1f}%"


def format_size(value: float | None) -> str:
    """Format a byte count with binary units, e.g. ``1.5 MiB``."""
    return UNKNOWN if value is None else format_bytes(value)


def format_rate(value: float | None) -> str:
    """Format a byte rate with binary units, e.g. ``1.5 MiB/s``."""
    return UNKNOWN if value is None else f"{format_bytes(value)}/s"


def format_count(value: int | None) -> str:
    return UNKNOWN if value is None else str(value)


def _shorten(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def row_cells(row: ContainerRow) -> list[str]:
    """Return the text of each column of COLUMNS for one row."""
    return [
        _shorten(row.name, NAME_WIDTH),
        _shorten(row.image, IMAGE_WIDTH),
        format_cores(row.cpu_cores),
        format_percent(row.cpu_limit_percent),
        format_percent(row.cpu_cfs_throttled_periods_percent),
        format_size(row.memory_working_set_bytes),
        format_percent(row.memory_limit_percent),
        format_rate(row.network_receive_bytes_per_second),
        format_rate(row.network_transmit_bytes_per_second),
        format_rate(row.block_io_read_bytes_per_second),
        format_rate(row.block_io_write_bytes_per_second),
        format_count(row.pids),
        row.source,
    ]


def render_table(rows: Sequence[ContainerRow], title: str, caption: str) -> Table:
    """Return a Rich table of the rows, in the order given."""
    table = Table(
        title=title,
        title_justify="left",
        caption=caption,
        caption_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
    )
    for header, justify in COLUMNS:
        table.add_column(header, justify=justify, no_wrap=True)  # type: ignore[arg-type]
    for row in rows:
        table.add_row(*row_cells(row))
    return table


def render_plain(rows: Sequence[ContainerRow]) -> list[str]:
    """Return the rows as aligned plain-text lines, a header line first.

    Columns are separated by two spaces and padded to their widest cell, without
    any terminal control codes.
    """
    lines = [[header for header, _ in COLUMNS], *(row_cells(row) for row in rows)]
    widths = [max(len(line[index]) for line in lines) for index in range(len(COLUMNS))]
    text = []
    for line in lines:
        cells = []
        for (_, justify), cell, width in zip(COLUMNS, line, widths, strict=True):
            cells.append(cell.ljust(width) if justify == "left" else cell.rjust(width))
        text.append("  ".join(cells).rstrip())
    return text
