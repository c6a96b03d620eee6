"""Container metrics: samplers over cgroup files (v1 and v2) or the engine's stats API.

Take samples with a SampleReader from open_reader(), collect a series with a Sampler
while a load runs, then summarise it with MetricsSeries.summary().
"""

from hyperlane.metrics.api import ApiStatsReader, parse_api_stats
from hyperlane.metrics.cgroup import CgroupLocation, CgroupReader, find_cgroup
from hyperlane.metrics.sample import Sample, SampleReader
from hyperlane.metrics.sampler import Sampler
from hyperlane.metrics.series import (
    MetricsSeries,
    MetricsSummary,
    counter_increase,
    nearest_rank,
)
from hyperlane.metrics.source import METRICS_SOURCES, MetricsSource, open_reader

__all__ = [
    "METRICS_SOURCES",
    "ApiStatsReader",
    "CgroupLocation",
    "CgroupReader",
    "MetricsSeries",
    "MetricsSource",
    "MetricsSummary",
    "Sample",
    "SampleReader",
    "Sampler",
    "counter_increase",
    "find_cgroup",
    "nearest_rank",
    "open_reader",
    "parse_api_stats",
]
