"""Choose between the cgroup reader and the engine's stats API."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal

from docker.models.containers import Container

from hyperlane.errors import HyperlaneError, UsageError
from hyperlane.metrics.api import ApiStatsReader
from hyperlane.metrics.cgroup import CgroupReader, find_cgroup
from hyperlane.metrics.sample import SampleReader

logger = logging.getLogger(__name__)

MetricsSource = Literal["cgroup", "api", "auto"]
METRICS_SOURCES: tuple[MetricsSource, ...] = ("cgroup", "api", "auto")


def open_reader(
    source: MetricsSource,
    container: Container,
    pid: int,
    local: bool,
    proc_root: Path = Path("/proc"),
    cgroup_root: Path = Path("/sys/fs/cgroup"),
) -> SampleReader:
    """Return a reader for the container's metrics.

    "auto" chooses the cgroup files when the engine runs on this host (local) and a
    first read of them succeeds, else the stats API. "cgroup" raises UsageError
    when the engine is remote or the cgroup files of pid cannot be read.
    """
    if source not in METRICS_SOURCES:
        raise UsageError(
            f"invalid metrics source {source!r}; use one of "
            f"{', '.join(METRICS_SOURCES)}"
        )
    if source == "api":
        return ApiStatsReader(container)

    if not local:
        if source == "cgroup":
            raise UsageError(
                f"metrics source 'cgroup' needs an engine on this host, but container "
                f"{container.name!r} runs on a remote engine; use --metrics-source api"
            )
        logger.info("engine is remote, reading metrics of pid %s from its API", pid)
        return ApiStatsReader(container)

    try:
        reader = CgroupReader(find_cgroup(pid, proc_root, cgroup_root), pid, proc_root)
        # A first read proves the files exist and are readable.
        reader.read()
    except (HyperlaneError, OSError) as error:
        if source == "auto":
            logger.info(
                "cgroup files of pid %s unusable, using the API: %s", pid, error
            )
            return ApiStatsReader(container)
        if isinstance(error, HyperlaneError):
            raise
        raise UsageError(
            f"cannot read the cgroup files of pid {pid!r} under {str(cgroup_root)!r} "
            f"({error}); use --metrics-source api"
        ) from error
    return reader
