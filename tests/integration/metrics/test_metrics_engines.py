"""Metrics of a CPU-bound busybox container under a 0.5 CPU quota, on both engines.

One burner container per engine runs for about 10 s while the Sampler reads its
cgroup. The figures are checked against the quota, against utime + stime in
/proc/<pid>/stat of the container's processes, and against the engine's stats API.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import docker
import pytest

from hyperlane.errors import HyperlaneError, ServiceNotReady
from hyperlane.metrics import (
    ApiStatsReader,
    CgroupReader,
    MetricsSeries,
    Sample,
    Sampler,
    find_cgroup,
    open_reader,
)
from tests.conftest import unique_name

pytestmark = pytest.mark.integration

NANO_CPUS = 500_000_000
QUOTA_CORES = 0.5
BURN_SECONDS = 10.0
MEMORY_LIMIT_BYTES = 64 * 1024 * 1024
BUSY_LOOP = ["sh", "-c", "while :; do :; done"]


@dataclass(frozen=True)
class Burn:
    """Readings taken around one run of the burner container."""

    engine_name: str
    series: MetricsSeries
    cgroup_first: Sample
    cgroup_last: Sample
    api_first: Sample
    api_last: Sample
    proc_cpu_first_seconds: float
    proc_cpu_last_seconds: float
    auto_source: str
    api_after_exit: type[Exception] | None
    cgroup_after_exit: type[Exception] | None


def proc_cpu_seconds(procs_file: Path) -> float:
    """Sum utime + stime (fields 14 and 15 of /proc/<pid>/stat) over the cgroup."""
    ticks = 0
    for line in procs_file.read_text().split():
        stat = Path("/proc") / line / "stat"
        # The command name in field 2 may contain spaces, so split after its ")".
        fields = stat.read_text().rsplit(")", 1)[1].split()
        ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def read_after_exit(reader: CgroupReader | ApiStatsReader) -> type[Exception] | None:
    # The engine may remove the cgroup a moment after wait() returns.
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline:
        try:
            reader.read()
        except ServiceNotReady:
            return ServiceNotReady
        except HyperlaneError as error:
            return type(error)
        time.sleep(0.1)
    return None


@pytest.fixture(scope="module")
def burn(
    engine_name: str, engine_client: docker.DockerClient, busybox_image: str
) -> Iterator[Burn]:
    container = engine_client.containers.run(
        busybox_image,
        BUSY_LOOP,
        name=unique_name("hl-metrics-burn"),
        detach=True,
        nano_cpus=NANO_CPUS,
        mem_limit=MEMORY_LIMIT_BYTES,
    )
    try:
        container.reload()
        pid = int(container.attrs["State"]["Pid"])
        location = find_cgroup(pid)
        cgroup_reader = CgroupReader(location, pid)
        api_reader = ApiStatsReader(container)
        auto_source = open_reader("auto", container, pid, local=True).source

        cgroup_first = cgroup_reader.read()
        proc_first = proc_cpu_seconds(location.procs_file())
        api_first = api_reader.read()

        sampler = Sampler(cgroup_reader)
        sampler.start()
        time.sleep(BURN_SECONDS)
        series = sampler.stop()

        cgroup_last = cgroup_reader.read()
        proc_last = proc_cpu_seconds(location.procs_file())
        api_last = api_reader.read()

        container.kill()
        container.wait(timeout=30)
        yield Burn(
            engine_name=engine_name,
            series=series,
            cgroup_first=cgroup_first,
            cgroup_last=cgroup_last,
            api_first=api_first,
            api_last=api_last,
            proc_cpu_first_seconds=proc_first,
            proc_cpu_last_seconds=proc_last,
            auto_source=auto_source,
            api_after_exit=read_after_exit(api_reader),
            cgroup_after_exit=read_after_exit(cgroup_reader),
        )
    finally:
        container.remove(force=True)


def cgroup_cpu_seconds(burn: Burn) -> float:
    return (
        burn.cgroup_last.cpu_usage_seconds_total
        - burn.cgroup_first.cpu_usage_seconds_total
    )


def test_sampler_series_shape(burn: Burn) -> None:
    series = burn.series
    assert series.source.startswith("cgroup-v")
    assert series.failed_reads == 0
    # 10 s at 0.5 s gives 21 samples; allow for a loaded machine.
    assert len(series.samples) >= 15
    assert len(series.cpu_cores()) == len(series.samples) - 1


def test_cpu_seconds_match_quota(burn: Burn) -> None:
    summary = burn.series.summary()
    assert summary.cpu_seconds_total is not None
    assert summary.cpu_seconds_total == pytest.approx(
        QUOTA_CORES * BURN_SECONDS, abs=0.5
    )


def test_cpu_cores_within_quota(burn: Burn) -> None:
    summary = burn.series.summary()
    assert summary.cpu_cores_mean == pytest.approx(QUOTA_CORES, abs=0.05)
    assert summary.cpu_cores_max is not None
    # CFS grants 50 ms per 100 ms period; a 0.5 s interval may catch one extra slice.
    assert summary.cpu_cores_max <= QUOTA_CORES + 0.15


def test_throttling_rises(burn: Burn) -> None:
    summary = burn.series.summary()
    assert summary.cpu_periods is not None
    assert summary.cpu_periods >= 50
    assert summary.cpu_throttled_periods is not None
    assert summary.cpu_throttled_periods > 0
    assert summary.cpu_throttled_seconds is not None
    assert summary.cpu_throttled_seconds > 0


def test_cpu_matches_proc_stat(burn: Burn) -> None:
    proc_seconds = burn.proc_cpu_last_seconds - burn.proc_cpu_first_seconds
    assert proc_seconds == pytest.approx(cgroup_cpu_seconds(burn), rel=0.10)


def test_api_cpu_matches_cgroup(burn: Burn) -> None:
    api_seconds = (
        burn.api_last.cpu_usage_seconds_total - burn.api_first.cpu_usage_seconds_total
    )
    assert api_seconds == pytest.approx(cgroup_cpu_seconds(burn), rel=0.05)


def test_api_throttling_fields(burn: Burn) -> None:
    first, last = burn.api_first, burn.api_last
    if burn.engine_name == "podman":
        # Podman 4.3 sends zeros in throttling_data, so the reader reports None.
        assert last.cpu_periods_total is None
        assert last.cpu_throttled_periods_total is None
        return
    assert first.cpu_throttled_periods_total is not None
    assert last.cpu_throttled_periods_total is not None
    assert last.cpu_throttled_periods_total > first.cpu_throttled_periods_total


def test_memory_limit_64mib(burn: Burn) -> None:
    assert burn.cgroup_last.memory_limit_bytes == MEMORY_LIMIT_BYTES
    assert burn.api_last.memory_limit_bytes == MEMORY_LIMIT_BYTES
    assert burn.series.summary().memory_limit_bytes == MEMORY_LIMIT_BYTES


def test_memory_and_pids(burn: Burn) -> None:
    sample = burn.cgroup_last
    assert sample.memory_usage_bytes is not None
    assert sample.memory_usage_bytes > 0
    assert sample.memory_working_set_bytes is not None
    assert sample.memory_working_set_bytes <= sample.memory_usage_bytes
    assert sample.pids == 1
    assert burn.api_last.pids == 1


def test_network_matches_api(burn: Burn) -> None:
    # Both read the counters of the container's interfaces; an idle busybox sends
    # little, so the two reads taken moments apart agree within a few packets.
    cgroup_sample, api_sample = burn.cgroup_last, burn.api_last
    assert cgroup_sample.network_rx_bytes_total is not None
    assert api_sample.network_rx_bytes_total is not None
    assert api_sample.network_rx_bytes_total == pytest.approx(
        cgroup_sample.network_rx_bytes_total, abs=200
    )
    assert cgroup_sample.network_tx_bytes_total is not None
    assert api_sample.network_tx_bytes_total is not None
    assert api_sample.network_tx_bytes_total == pytest.approx(
        cgroup_sample.network_tx_bytes_total, abs=200
    )


def test_auto_source_is_cgroup(burn: Burn) -> None:
    assert burn.auto_source.startswith("cgroup-v")


def test_readers_after_exit(burn: Burn) -> None:
    assert burn.api_after_exit is ServiceNotReady
    assert burn.cgroup_after_exit is ServiceNotReady
