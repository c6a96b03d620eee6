"""Rows of `hyperlane top`: building, sorting, limits and text of the figures."""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import pytest
from rich.console import Console

from hyperlane.metrics.discovery import cpu_limit_cores
from hyperlane.metrics.sample import Sample
from hyperlane.metrics.series import compute_rates
from hyperlane.report.top_view import (
    COLUMNS,
    ContainerRow,
    build_row,
    format_cores,
    format_percent,
    format_rate,
    format_size,
    percent_of,
    render_plain,
    render_table,
    row_cells,
    sort_rows,
)

MIB = 2**20
ANSI_ESCAPE = re.compile(r"\x1b\[")


def make_sample(timestamp_seconds: float, **fields: Any) -> Sample:
    """Return a Sample with every optional field None unless given."""
    values: dict[str, Any] = {field.name: None for field in dataclasses.fields(Sample)}
    values["timestamp_seconds"] = timestamp_seconds
    values["cpu_usage_seconds_total"] = 0.0
    values.update(fields)
    return Sample(**values)


def row_of(
    previous: Sample | None,
    current: Sample,
    name: str = "web",
    cpu_limit: float | None = None,
) -> ContainerRow:
    return build_row(
        container_id=f"id-{name}",
        name=name,
        image="localhost/app:1",
        cpu_limit_cores=cpu_limit,
        source="cgroup-v2",
        sample=current,
        rates=compute_rates(previous, current),
    )


def simple_row(name: str, **fields: Any) -> ContainerRow:
    """Return a row with every figure None unless given."""
    values: dict[str, Any] = {
        field.name: None for field in dataclasses.fields(ContainerRow)
    }
    values.update(container_id=f"id-{name}", name=name, image="i", source="api")
    values.update(fields)
    return ContainerRow(**values)


def test_first_sample_rates_unknown() -> None:
    sample = make_sample(
        10.0,
        cpu_usage_seconds_total=5.0,
        network_receive_bytes_total=1000,
        block_io_read_bytes_total=4096,
        memory_working_set_bytes=8 * MIB,
        threads=3,
    )
    row = row_of(None, sample, cpu_limit=0.5)
    assert row.interval_seconds is None
    assert row.cpu_cores is None
    assert row.cpu_limit_percent is None
    assert row.cpu_cfs_throttled_periods_percent is None
    assert row.network_receive_bytes_per_second is None
    assert row.network_transmit_bytes_per_second is None
    assert row.block_io_read_bytes_per_second is None
    assert row.block_io_write_bytes_per_second is None
    # Gauges need no baseline.
    assert row.memory_working_set_bytes == 8 * MIB
    assert row.pids == 3
    cells = dict(zip([header for header, _ in COLUMNS], row_cells(row), strict=True))
    assert cells["CPU"] == "-"
    assert cells["NET RX/s"] == "-"
    assert cells["BLK R/s"] == "-"
    assert cells["MEM"] == "8.0 MiB"


def test_second_sample_rates_and_limits() -> None:
    previous = make_sample(
        10.0,
        cpu_usage_seconds_total=5.0,
        cpu_cfs_periods_total=100,
        cpu_cfs_throttled_periods_total=40,
        network_receive_bytes_total=1000,
        network_transmit_bytes_total=0,
        block_io_read_bytes_total=0,
        block_io_write_bytes_total=0,
    )
    current = make_sample(
        12.0,
        cpu_usage_seconds_total=6.0,
        cpu_cfs_periods_total=120,
        cpu_cfs_throttled_periods_total=55,
        network_receive_bytes_total=3048,
        network_transmit_bytes_total=1024,
        block_io_read_bytes_total=2 * MIB,
        block_io_write_bytes_total=MIB,
        memory_working_set_bytes=16 * MIB,
        memory_limit_bytes=64 * MIB,
        memory_limit_set=True,
    )

    row = row_of(previous, current, cpu_limit=0.5)

    assert row.interval_seconds == pytest.approx(2.0)
    assert row.cpu_cores == pytest.approx(0.5)
    assert row.cpu_limit_percent == pytest.approx(100.0)
    assert row.cpu_cfs_throttled_periods_percent == pytest.approx(75.0)
    assert row.memory_limit_bytes == 64 * MIB
    assert row.memory_limit_percent == pytest.approx(25.0)
    assert row.network_receive_bytes_per_second == pytest.approx(1024.0)
    assert row.network_transmit_bytes_per_second == pytest.approx(512.0)
    assert row.block_io_read_bytes_per_second == pytest.approx(MIB)
    assert row.block_io_write_bytes_per_second == pytest.approx(MIB / 2)


def test_no_limits_percent_unknown() -> None:
    """An unlimited container reports the host's memory, which is not its limit."""
    previous = make_sample(0.0, cpu_usage_seconds_total=1.0)
    current = make_sample(
        1.0,
        cpu_usage_seconds_total=1.25,
        memory_working_set_bytes=32 * MIB,
        memory_limit_bytes=4096 * MIB,
        memory_limit_set=False,
    )
    row = row_of(previous, current, cpu_limit=None)
    assert row.cpu_cores == pytest.approx(0.25)
    assert row.cpu_limit_cores is None
    assert row.cpu_limit_percent is None
    assert row.memory_limit_bytes is None
    assert row.memory_limit_percent is None
    cells = dict(zip([header for header, _ in COLUMNS], row_cells(row), strict=True))
    assert cells["CPU"] == "0.250"
    assert cells["CPU %LIM"] == "-"
    assert cells["MEM %LIM"] == "-"


def test_pids_falls_back_to_processes() -> None:
    row = row_of(None, make_sample(0.0, processes=2))
    assert row.pids == 2


@pytest.mark.parametrize(
    ("value", "limit", "expected"),
    [(1.0, 4.0, 25.0), (None, 4.0, None), (1.0, None, None), (1.0, 0.0, None)],
)
def test_percent_of_cases(
    value: float | None, limit: float | None, expected: float | None
) -> None:
    assert percent_of(value, limit) == expected


def test_sort_by_cpu_unknown_last() -> None:
    rows = [
        simple_row("b", cpu_cores=0.1),
        simple_row("a", cpu_cores=None),
        simple_row("c", cpu_cores=0.9),
        simple_row("d", cpu_cores=0.1),
    ]
    assert [row.name for row in sort_rows(rows, "cpu")] == ["c", "b", "d", "a"]


def test_sort_by_name() -> None:
    rows = [simple_row("zeta"), simple_row("alpha"), simple_row("mid")]
    assert [row.name for row in sort_rows(rows, "name")] == ["alpha", "mid", "zeta"]


def test_sort_by_memory() -> None:
    rows = [
        simple_row("small", memory_working_set_bytes=MIB),
        simple_row("none"),
        simple_row("large", memory_working_set_bytes=100 * MIB),
    ]
    assert [row.name for row in sort_rows(rows, "memory")] == [
        "large",
        "small",
        "none",
    ]


def test_sort_by_net_sums_directions() -> None:
    rows = [
        simple_row("rx", network_receive_bytes_per_second=300.0),
        simple_row(
            "both",
            network_receive_bytes_per_second=200.0,
            network_transmit_bytes_per_second=200.0,
        ),
        simple_row("tx-only", network_transmit_bytes_per_second=350.0),
        simple_row("unknown"),
    ]
    assert [row.name for row in sort_rows(rows, "net")] == [
        "both",
        "tx-only",
        "rx",
        "unknown",
    ]


def test_sort_by_io() -> None:
    rows = [
        simple_row("reader", block_io_read_bytes_per_second=10.0),
        simple_row("writer", block_io_write_bytes_per_second=20.0),
    ]
    assert [row.name for row in sort_rows(rows, "io")] == ["writer", "reader"]


def test_format_units() -> None:
    assert format_cores(0.5) == "0.500"
    assert format_percent(49.84) == "49.8%"
    assert format_size(1536) == "1.5 KiB"
    assert format_size(0) == "0 B"
    assert format_rate(3 * MIB) == "3.0 MiB/s"
    assert format_rate(12.0) == "12 B/s"


def test_format_unknown_is_dash() -> None:
    assert format_cores(None) == "-"
    assert format_percent(None) == "-"
    assert format_size(None) == "-"
    assert format_rate(None) == "-"


def test_plain_render_aligned_no_ansi() -> None:
    rows = [
        simple_row("short", cpu_cores=0.5),
        simple_row("a-much-longer-name", cpu_cores=0.25),
    ]
    lines = render_plain(rows)
    assert len(lines) == 3
    assert lines[0].startswith("NAME")
    assert not any(ANSI_ESCAPE.search(line) for line in lines)
    # Right-aligned CPU figures end in the same column.
    cpu_ends = [line.index("0.500") + 5 for line in lines[1:2]]
    cpu_ends += [line.index("0.250") + 5 for line in lines[2:3]]
    assert cpu_ends[0] == cpu_ends[1]


def test_long_name_shortened_in_cells() -> None:
    row = simple_row("n" * 80)
    assert len(row_cells(row)[0]) < 80
    assert row.to_dict()["name"] == "n" * 80


def test_rich_table_lists_rows() -> None:
    console = Console(width=200, record=True, color_system=None)
    console.print(render_table([simple_row("web", cpu_cores=1.5)], "title", "keys"))
    text = console.export_text()
    assert "web" in text
    assert "1.500" in text
    assert "SOURCE" in text


def test_row_dict_has_units_in_names() -> None:
    keys = set(simple_row("web").to_dict())
    assert "cpu_cores" in keys
    assert "memory_working_set_bytes" in keys
    assert "network_receive_bytes_per_second" in keys
    assert "block_io_write_bytes_per_second" in keys
    assert "cpu_cfs_throttled_periods_percent" in keys


@pytest.mark.parametrize(
    ("host_config", "expected"),
    [
        ({"NanoCpus": 500_000_000, "CpuQuota": 50_000, "CpuPeriod": 100_000}, 0.5),
        ({"NanoCpus": 0, "CpuQuota": 150_000, "CpuPeriod": 100_000}, 1.5),
        ({"CpuQuota": 25_000, "CpuPeriod": 0}, 0.25),
        ({"NanoCpus": 0, "CpuQuota": 0, "CpuPeriod": 0}, None),
        ({"CpuQuota": -1}, None),
        ({}, None),
    ],
)
def test_cpu_limit_from_host_config(
    host_config: dict[str, int], expected: float | None
) -> None:
    assert cpu_limit_cores(host_config) == expected
