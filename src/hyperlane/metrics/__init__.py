"""Container metrics: samplers over cgroup files (v1 and v2) or the engine's stats API.

Take samples with a SampleReader from open_reader(), collect a series with a Sampler
while a load runs, then summarise it with MetricsSeries.summary().
"""

from hyperlane.metrics.api import (
    ApiStatsReader,
    cpu_percent,
    online_cpu_count,
    parse_api_stats,
)
from hyperlane.metrics.cgroup import (
    CgroupContainer,
    CgroupLocation,
    CgroupReader,
    container_from_cgroup_path,
    find_cgroup,
)
from hyperlane.metrics.sample import Sample, SampleReader
from hyperlane.metrics.sampler import Sampler
from hyperlane.metrics.series import (
    MetricsSeries,
    MetricsSummary,
    SampleRates,
    compute_rates,
    counter_increase,
    nearest_rank,
    series_rates,
)
from hyperlane.metrics.source import METRICS_SOURCES, MetricsSource, open_reader

__all__ = [
    "METRICS_SOURCES",
    "ApiStatsReader",
    "CgroupContainer",
    "CgroupLocation",
    "CgroupReader",
    "MetricsSeries",
    "MetricsSource",
    "MetricsSummary",
    "Sample",
    "SampleRates",
    "SampleReader",
    "Sampler",
    "compute_rates",
    "container_from_cgroup_path",
    "counter_increase",
    "cpu_percent",
    "find_cgroup",
    "nearest_rank",
    "online_cpu_count",
    "open_reader",
    "parse_api_stats",
    "series_rates",
]
