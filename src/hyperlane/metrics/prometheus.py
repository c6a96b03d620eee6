"""Read container series with cAdvisor's metric names from a Prometheus HTTP API.

read_prometheus() sends one range query (/api/v1/query_range) per metric and joins
the results into one series of Samples per container, one per scrape seen at the
query's step points:

- CPU, CFS and OOM counters are read raw. A step point's instant value is the last
  scrape at or before it, so timestamp() of the CPU counter gives the time of that
  scrape, and each Sample carries it as timestamp_seconds. Rates then divide by
  real scrape intervals, whatever the step.
- Consecutive step points that carry the same CPU scrape (a step below the scrape
  interval, or a series that stopped) become one Sample: the max of their working
  sets, and every other field from the later point.
- The working set is max_over_time() over the step, so a spike between two step
  points is still the peak of its step.
- container_oom_events_total, cAdvisor's count of OOM kills, becomes
  memory_oom_kills_total. container_spec_memory_limit_bytes of 0 means no limit.
  container_spec_cpu_quota / container_spec_cpu_period gives the CPU limit in cores.

Join rule: the series of one container are those whose labels are equal after
dropping ``__name__`` and ``cpu`` (cAdvisor puts ``cpu="total"`` on the CPU usage
counter only). ``instance`` and ``job`` are kept, because cAdvisor (and the kubelet)
exports every metric of a container from the same target, and keeping them keeps two
scrapers of one container apart instead of interleaving their counters.

Excluded rows: when any CPU or memory series has a non-empty ``pod`` label (the
kubelet's cAdvisor), only rows with a non-empty ``pod`` and a ``container`` label other
than "" and "POD" are kept. That drops the pod-level cgroups (``container=""``), the
pause containers (``container="POD"``) and the node's own cgroups (``/``,
``/system.slice/...``). Without ``pod`` labels (plain cAdvisor) every row is kept.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import math
import statistics
import time
import urllib.parse
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Any

import requests

from hyperlane.errors import UsageError
from hyperlane.metrics.prometheus_api import query_range
from hyperlane.metrics.sample import Sample
from hyperlane.urls import display_url

logger = logging.getLogger(__name__)

# Prometheus 2.42 rejects a range query whose (end - start) / step exceeds 11,000
# ("exceeded maximum resolution of 11,000 points per timeseries"), so 11,001
# points still pass. 11,000 keeps one point of headroom.
MAX_POINTS_PER_QUERY = 11_000
# A bound on the whole range, so that a long history at a fine step fails early
# instead of filling memory: 200,000 points is 139 days at a 60 s step.
MAX_POINTS_PER_SERIES = 200_000
DEFAULT_CFS_PERIOD_MICROSECONDS = 100_000
# A measured scrape interval up to 5 % above the step is taken as jitter of the
# scrape times, not as a step below the scrape interval.
_SCRAPE_JITTER_RATIO = 1.05
# cgroup v1 reports "no limit" as a page-aligned value near 2**63.
_UNLIMITED_FLOOR_BYTES = 2**62
# Labels that identify one metric of a container rather than the container.
_METRIC_LABELS = frozenset({"__name__", "cpu"})
_POD_CONTAINER = "POD"
_OPTIONAL_SAMPLE_FIELDS: dict[str, Any] = {
    item.name: None
    for item in fields(Sample)
    if item.name not in ("timestamp_seconds", "cpu_usage_seconds_total")
}


@dataclass(frozen=True)
class _Query:
    """One PromQL query and the Sample field (or join input) that its values fill."""

    key: str
    promql: str


@dataclass
class PrometheusContainer:
    """The series of one container read from Prometheus."""

    name: str
    """namespace/pod/container, else the ``name`` label, else the ``id`` label."""
    labels: dict[str, str]
    """Labels that identify the container, as the join rule above keeps them."""
    samples: list[Sample] = field(default_factory=list)
    """One sample per CPU scrape seen at the step points, in time order."""
    cpu_limit_cores: float | None = None
    """CPU quota / period at the last step point that has both, in cores."""


def parse_time_seconds(text: str) -> float:
    """Parse unix seconds (e.g. 1700000000.5) or RFC 3339 (2026-01-02T03:04:05Z).

    Raises ValueError with the accepted forms.
    """
    value = text.strip()
    try:
        seconds = float(value)
    except ValueError:
        seconds = None
    if seconds is None:
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(
                f"invalid time {text!r}; use unix seconds such as 1700000000 or RFC "
                "3339 with a UTC offset such as 2026-01-02T03:04:05Z"
            ) from None
        if moment.tzinfo is None:
            raise ValueError(
                f"time {text!r} has no UTC offset; add Z or an offset such as +02:00"
            )
        seconds = moment.timestamp()
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"invalid time {text!r}; it must be finite and not negative")
    return seconds


def build_queries(selector: str, step_seconds: float) -> list[_Query]:
    """Return the PromQL of every metric read, with the label matchers of selector.

    The working set window is 1 ms shorter than the step. Prometheus 2.x range
    selectors include both ends, so a window of the whole step would also contain
    a sample that sits exactly on the previous step point.
    """
    braces = "{" + selector + "}"
    window_milliseconds = max(1, round(step_seconds * 1000) - 1)
    # NOTE: Prometheus 3.x excludes the start of a range, so there a raw sample
    # exactly 1 ms after a step point falls in neither window.
    return [
        _Query("cpu_usage_seconds_total", f"container_cpu_usage_seconds_total{braces}"),
        _Query(
            "cpu_usage_scrape_timestamp_seconds",
            f"timestamp(container_cpu_usage_seconds_total{braces})",
        ),
        _Query(
            "memory_working_set_bytes",
            f"max_over_time(container_memory_working_set_bytes{braces}"
            f"[{window_milliseconds}ms])",
        ),
        _Query("cpu_cfs_periods_total", f"container_cpu_cfs_periods_total{braces}"),
        _Query(
            "cpu_cfs_throttled_periods_total",
            f"container_cpu_cfs_throttled_periods_total{braces}",
        ),
        _Query(
            "cpu_cfs_throttled_seconds_total",
            f"container_cpu_cfs_throttled_seconds_total{braces}",
        ),
        _Query("memory_oom_kills_total", f"container_oom_events_total{braces}"),
        _Query("memory_limit_bytes", f"container_spec_memory_limit_bytes{braces}"),
        _Query("cpu_quota", f"container_spec_cpu_quota{braces}"),
        _Query("cpu_period", f"container_spec_cpu_period{braces}"),
    ]


def split_range(
    start_seconds: float, end_seconds: float, step_seconds: float
) -> list[tuple[float, float]]:
    """Split [start, end] into ranges of at most MAX_POINTS_PER_QUERY step points.

    Every range starts one step after the previous one ends, so the step points stay
    on one grid and none is read twice. Raises UsageError beyond
    MAX_POINTS_PER_SERIES points.
    """
    points = math.floor((end_seconds - start_seconds) / step_seconds + 1e-9) + 1
    if points > MAX_POINTS_PER_SERIES:
        raise UsageError(
            f"The range of {end_seconds - start_seconds:.0f} s at a {step_seconds:g} s "
            f"step has {points} points per series, more than the "
            f"{MAX_POINTS_PER_SERIES} allowed: raise --step or shorten --history."
        )
    span_seconds = (MAX_POINTS_PER_QUERY - 1) * step_seconds
    ranges = []
    chunk_start = start_seconds
    for _ in range(math.ceil(points / MAX_POINTS_PER_QUERY)):
        chunk_end = min(end_seconds, chunk_start + span_seconds)
        ranges.append((chunk_start, chunk_end))
        chunk_start = chunk_end + step_seconds
        if chunk_start > end_seconds:
            break
    return ranges


def read_prometheus(
    url: str,
    *,
    start_seconds: float,
    end_seconds: float,
    step_seconds: float,
    selector: str = "",
    timeout_seconds: float = 30.0,
) -> list[PrometheusContainer]:
    """Read every container that selector matches from start to end, one per scrape.

    url is the Prometheus base URL (with its path prefix, if any). Times are unix
    seconds. Every message names the URL without its password. Raises
    EngineUnavailable when the server cannot be reached, times out or returns
    HTTP 5xx, and UsageError for invalid arguments, rejected credentials, a rejected
    query, or no series.
    """
    safe_url = display_url(url)
    _check_arguments(url, safe_url, start_seconds, end_seconds, step_seconds, selector)
    ranges = split_range(start_seconds, end_seconds, step_seconds)
    logger.info(
        "Reading %s from Prometheus %s, %s s ending at %s at a %g s step",
        f"the containers matching {{{selector}}}"
        if selector.strip()
        else "every container",
        safe_url,
        _duration_text(end_seconds - start_seconds),
        _rfc3339(end_seconds),
        step_seconds,
    )
    endpoint = url.rstrip("/") + "/api/v1/query_range"
    values: dict[str, dict[tuple[tuple[str, str], ...], dict[int, float]]] = {}
    with requests.Session() as session:
        for number, (chunk_start, chunk_end) in enumerate(ranges, start=1):
            if len(ranges) > 1:
                logger.info(
                    "Reading part %d of %d of the range from Prometheus %s",
                    number,
                    len(ranges),
                    safe_url,
                )
            for query in build_queries(selector, step_seconds):
                began = time.monotonic()
                result = query_range(
                    session,
                    endpoint,
                    url,
                    safe_url,
                    query.promql,
                    (chunk_start, chunk_end, step_seconds),
                    timeout_seconds,
                )
                logger.debug(
                    "Prometheus %s: %d series for %s in %.2f s",
                    safe_url,
                    len(result),
                    query.promql,
                    time.monotonic() - began,
                )
                by_series = values.setdefault(query.key, {})
                for labels, points in _parse_matrix(result, safe_url, query.promql):
                    by_series.setdefault(labels, {}).update(points)
    if not values.get("cpu_usage_seconds_total") and not values.get(
        "memory_working_set_bytes"
    ):
        raise UsageError(
            f"Prometheus at {safe_url} has no container_cpu_usage_seconds_total or "
            f"container_memory_working_set_bytes series matching {{{selector}}} "
            f"between {start_seconds:.0f} and {end_seconds:.0f} (unix seconds): "
            "check --prometheus-selector, --history and that Prometheus scrapes "
            "cAdvisor or the kubelet's /metrics/cadvisor."
        )
    containers = _join(values, step_seconds)
    if not containers:
        raise UsageError(
            f"Prometheus at {safe_url} has series matching {{{selector}}}, but none of "
            "a container with CPU usage (pod-level, pause and node cgroups are "
            "excluded): widen --prometheus-selector, e.g. to a namespace."
        )
    return containers


def _duration_text(seconds: float) -> str:
    return f"{seconds:.0f}" if seconds >= 100 else f"{seconds:g}"


def _rfc3339(unix_seconds: float) -> str:
    moment = datetime.fromtimestamp(unix_seconds, tz=UTC)
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def _check_arguments(
    url: str,
    safe_url: str,
    start_seconds: float,
    end_seconds: float,
    step_seconds: float,
    selector: str,
) -> None:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(
            f"Prometheus URL {safe_url!r} is not an http:// or https:// URL with a "
            "host: pass e.g. http://127.0.0.1:9090."
        )
    if selector.strip().startswith("{") or selector.strip().endswith("}"):
        raise UsageError(
            f"Prometheus selector {selector!r} is wrapped in braces: pass only the "
            'label matchers, e.g. namespace="shop",container="api".'
        )
    if not step_seconds >= 0.002:
        raise UsageError(
            f"Step {step_seconds!r} s is too small: pass a step of at least 2ms, "
            "ideally the scrape interval or more."
        )
    if not end_seconds > start_seconds:
        raise UsageError(
            f"The range from {start_seconds!r} to {end_seconds!r} (unix seconds) is "
            "empty: pass a start before the end."
        )


def _parse_matrix(
    result: list[Any], safe_url: str, promql: str
) -> Iterator[tuple[tuple[tuple[str, str], ...], dict[int, float]]]:
    """Yield (identifying labels, {timestamp in ms: value}) per series of a matrix."""
    for series in result:
        try:
            labels = tuple(
                sorted(
                    (str(name), str(value))
                    for name, value in series["metric"].items()
                    if name not in _METRIC_LABELS
                )
            )
            points = {
                round(float(timestamp) * 1000): float(value)
                for timestamp, value in series["values"]
            }
        except (KeyError, TypeError, ValueError, AttributeError):
            raise UsageError(
                f"Prometheus at {safe_url} returned a malformed series for {promql!r}: "
                "check that --prometheus is the base URL of a Prometheus server."
            ) from None
        yield labels, points


def _join(
    values: Mapping[str, Mapping[tuple[tuple[str, str], ...], dict[int, float]]],
    step_seconds: float,
) -> list[PrometheusContainer]:
    """Build one container per label set that has CPU usage or memory series."""
    cpu = values.get("cpu_usage_seconds_total", {})
    memory = values.get("memory_working_set_bytes", {})
    keys = sorted(set(cpu) | set(memory))
    kubernetes = any(dict(key).get("pod") for key in keys)
    containers = []
    excluded = 0
    merged_points = 0
    scrape_intervals_seconds: list[float] = []

    for key in keys:
        labels = dict(key)
        if _excluded(labels, kubernetes):
            excluded += 1
            continue
        name = _container_name(labels)
        if key not in cpu:
            # Sample needs a CPU counter, and 0 in its place would read as idle.
            logger.warning(
                "Container %s has a working set but no CPU usage series; skipped",
                name,
            )
            continue
        container = PrometheusContainer(name=name, labels=labels)
        container.samples, merged = _samples(key, values)
        container.cpu_limit_cores = _cpu_limit_cores(key, values)
        containers.append(container)
        merged_points += merged
        interval_seconds = _median_interval_seconds(container.samples)
        if interval_seconds is not None:
            scrape_intervals_seconds.append(interval_seconds)

    neither = _keys_without_usage(values, kubernetes)
    if neither:
        logger.warning(
            "Skipped %d series sets that have neither CPU usage nor a working set, "
            "e.g. %s",
            len(neither),
            _container_name(dict(neither[0])),
        )
    if excluded:
        logger.info(
            "Excluded %d pod-level, pause or node cgroup series (no container label)",
            excluded,
        )
    _warn_duplicate_names(containers)
    _warn_step_below_scrape_interval(
        step_seconds, scrape_intervals_seconds, merged_points
    )
    return containers


def _median_interval_seconds(samples: list[Sample]) -> float | None:
    """Return the median time between consecutive samples, None below two."""
    if len(samples) < 2:
        return None
    return statistics.median(
        later.timestamp_seconds - earlier.timestamp_seconds
        for earlier, later in itertools.pairwise(samples)
    )


def _warn_step_below_scrape_interval(
    step_seconds: float, scrape_intervals_seconds: list[float], merged_points: int
) -> None:
    if not scrape_intervals_seconds:
        return
    interval_seconds = statistics.median(scrape_intervals_seconds)
    if interval_seconds <= step_seconds * _SCRAPE_JITTER_RATIO:
        return
    logger.warning(
        "The step of %g s is below the scrape interval of %g s (median time between "
        "the scrapes of container_cpu_usage_seconds_total), so %d step points "
        "repeated a scrape and were merged into its sample: pass --step %gs or "
        "more to read fewer points.",
        step_seconds,
        interval_seconds,
        merged_points,
        interval_seconds,
    )


def _keys_without_usage(
    values: Mapping[str, Mapping[tuple[tuple[str, str], ...], dict[int, float]]],
    kubernetes: bool,
) -> list[tuple[tuple[str, str], ...]]:
    """Return the label sets of other metrics that have no CPU or memory series."""
    usage = set(values.get("cpu_usage_seconds_total", {})) | set(
        values.get("memory_working_set_bytes", {})
    )
    others = {key for by_series in values.values() for key in by_series} - usage
    return sorted(key for key in others if not _excluded(dict(key), kubernetes))


def _excluded(labels: Mapping[str, str], kubernetes: bool) -> bool:
    """Return whether a label set is a pod-level, pause or node row of the kubelet."""
    if not kubernetes:
        return False
    container = labels.get("container", "")
    return not labels.get("pod") or container in ("", _POD_CONTAINER)


def _container_name(labels: Mapping[str, str]) -> str:
    if labels.get("pod") and labels.get("container"):
        return f"{labels.get('namespace', '')}/{labels['pod']}/{labels['container']}"
    return (
        labels.get("name")
        or labels.get("id")
        or ",".join(f"{name}={value}" for name, value in sorted(labels.items()))
    )


def _samples(
    key: tuple[tuple[str, str], ...],
    values: Mapping[str, Mapping[tuple[tuple[str, str], ...], dict[int, float]]],
) -> tuple[list[Sample], int]:
    """Return one Sample per CPU scrape, and how many step points were merged."""

    def series(name: str) -> dict[int, float]:
        return values.get(name, {}).get(key, {})

    cpu = series("cpu_usage_seconds_total")
    scrape_timestamps = series("cpu_usage_scrape_timestamp_seconds")
    memory = series("memory_working_set_bytes")
    periods = series("cpu_cfs_periods_total")
    throttled_periods = series("cpu_cfs_throttled_periods_total")
    throttled_seconds = series("cpu_cfs_throttled_seconds_total")
    oom_kills = series("memory_oom_kills_total")
    limits = series("memory_limit_bytes")
    samples: list[Sample] = []
    merged = 0
    previous_scrape_milliseconds: int | None = None
    for milliseconds in sorted(cpu):
        scrape_milliseconds = _scrape_milliseconds(
            scrape_timestamps.get(milliseconds), milliseconds
        )
        limit_bytes, limit_set = _memory_limit(limits.get(milliseconds))
        sample = Sample(
            **{
                **_OPTIONAL_SAMPLE_FIELDS,
                "timestamp_seconds": scrape_milliseconds / 1000,
                "cpu_usage_seconds_total": cpu[milliseconds],
                "memory_working_set_bytes": _integer(memory.get(milliseconds)),
                "cpu_cfs_periods_total": _integer(periods.get(milliseconds)),
                "cpu_cfs_throttled_periods_total": _integer(
                    throttled_periods.get(milliseconds)
                ),
                "cpu_cfs_throttled_seconds_total": throttled_seconds.get(milliseconds),
                "memory_oom_kills_total": _integer(oom_kills.get(milliseconds)),
                "memory_limit_bytes": limit_bytes,
                "memory_limit_set": limit_set,
            }
        )
        # A scrape time that does not advance means this step point repeats the
        # scrape of the previous one, so both are one reading of the counters.
        if (
            samples
            and previous_scrape_milliseconds is not None
            and scrape_milliseconds <= previous_scrape_milliseconds
        ):
            samples[-1] = _merge(samples[-1], sample)
            merged += 1
        else:
            samples.append(sample)
            previous_scrape_milliseconds = scrape_milliseconds
    return samples, merged


def _scrape_milliseconds(
    timestamp_seconds: float | None, step_milliseconds: int
) -> int:
    """Return the CPU scrape time in ms, or the step point's when it is missing."""
    # NOTE: the timestamp query runs after the CPU query. On a live server, a
    # scrape that lands between the two gives the last step point the CPU value
    # of the older scrape with the time of the newer one.
    if timestamp_seconds is None or not math.isfinite(timestamp_seconds):
        return step_milliseconds
    return round(timestamp_seconds * 1000)


def _merge(earlier: Sample, later: Sample) -> Sample:
    """Join two step points of one scrape: the larger working set, else the later."""
    working_sets = [
        value
        for value in (earlier.memory_working_set_bytes, later.memory_working_set_bytes)
        if value is not None
    ]
    return dataclasses.replace(
        later,
        timestamp_seconds=earlier.timestamp_seconds,
        memory_working_set_bytes=max(working_sets) if working_sets else None,
    )


def _integer(value: float | None) -> int | None:
    return None if value is None or not math.isfinite(value) else round(value)


def _memory_limit(value: float | None) -> tuple[int | None, bool | None]:
    """Map container_spec_memory_limit_bytes to (memory_limit_bytes, limit_set)."""
    if value is None or not math.isfinite(value):
        return None, None
    # The metric is 0 without a limit, or near 2**63 when it carries cgroup v1's raw
    # "no limit" value.
    if value <= 0 or value >= _UNLIMITED_FLOOR_BYTES:
        return None, False
    return round(value), True


def _cpu_limit_cores(
    key: tuple[tuple[str, str], ...],
    values: Mapping[str, Mapping[tuple[tuple[str, str], ...], dict[int, float]]],
) -> float | None:
    quotas = values.get("cpu_quota", {}).get(key, {})
    periods = values.get("cpu_period", {}).get(key, {})
    for milliseconds in sorted(quotas, reverse=True):
        quota = quotas[milliseconds]
        period = periods.get(milliseconds) or DEFAULT_CFS_PERIOD_MICROSECONDS
        # A quota of 0 or -1 (cgroup v1's value for no quota) means no CPU limit.
        if quota > 0 and period > 0:
            return quota / period
        return None
    return None


def _warn_duplicate_names(containers: list[PrometheusContainer]) -> None:
    seen: dict[str, int] = {}
    for container in containers:
        seen[container.name] = seen.get(container.name, 0) + 1
    for name, count in seen.items():
        if count > 1:
            # TODO: merge the series of a restarted container (new id label) into
            # one history instead of sizing each one alone.
            logger.warning(
                "%d series sets are named %s (restarts or several scrape jobs); "
                "each is sized on its own",
                count,
                name,
            )
