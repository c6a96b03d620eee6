"""SLO trials on a real engine: a fresh container under limits, loaded and sampled.

Each trial creates a container from the image with the trial's CPU quota and memory
limit and waits for its first 2xx. It runs a warm-up load that is not measured, then
the measured open-model load while the container's cgroup is sampled. Then the
container is removed. The figures come from the load result (latency corrected for
coordinated omission, failures) and from the cgroup counters (CPU, throttling,
working set, OOM kills).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import docker.errors
from docker.models.containers import Container

from hyperlane.engines import Engine
from hyperlane.errors import ServiceNotReady
from hyperlane.load import LoadProgress, LoadResult
from hyperlane.load.merge import decode_histogram
from hyperlane.load.spec import LoadSpec
from hyperlane.load.workers import run_load_workers
from hyperlane.metrics import MetricsSeries, Sampler, open_reader
from hyperlane.metrics.series import counter_increase
from hyperlane.metrics.source import MetricsSource
from hyperlane.probes import wait_until_ready
from hyperlane.sizing.slo import SloTarget, TrialLimits, TrialMeasurement

logger = logging.getLogger(__name__)

NANOCPUS_PER_CORE = 1_000_000_000
MICROSECONDS_PER_SECOND = 1_000_000


@dataclass(frozen=True)
class TrialPlan:
    """Settings of every trial: the image, its port and path, and the load."""

    image: str
    container_port: int
    path: str = "/"
    duration_seconds: float = 10.0
    """Length of the measured load of one trial."""
    warmup_seconds: float = 2.0
    """Length of the unmeasured load before it."""
    connections: int = 16
    """Connections that the open-model load may use at once."""
    timeout_seconds: float = 5.0
    start_timeout_seconds: float = 30.0
    sample_interval_seconds: float = 0.5
    metrics_source: MetricsSource = "auto"
    workers: int = 1


class EngineTrialRunner:
    """A TrialRunner that runs each trial in a new container of one engine."""

    def __init__(
        self,
        engine: Engine,
        plan: TrialPlan,
        target: SloTarget,
        name_prefix: str,
        progress: Callable[[LoadProgress], None] | None = None,
    ) -> None:
        self._engine = engine
        self._plan = plan
        self._target = target
        self._name_prefix = name_prefix
        self._progress = progress
        self._count = 0
        self._started_once = False

    def __call__(self, limits: TrialLimits) -> TrialMeasurement:
        self._count += 1
        plan = self._plan
        container = self._engine.create_container(
            plan.image,
            plan.container_port,
            name=f"{self._name_prefix}-trial-{self._count}",
            nano_cpus=round(limits.cpu_cores * NANOCPUS_PER_CORE),
            memory_bytes=limits.memory_bytes,
        )
        try:
            self._engine.start_container(container)
            try:
                wait_until_ready(
                    self._engine,
                    container,
                    plan.container_port,
                    plan.path,
                    time.monotonic() + plan.start_timeout_seconds,
                )
            except ServiceNotReady as error:
                # Too little memory or CPU to start in time is a result of the
                # trial, once the service has started in an earlier one. Any other
                # reason (a closed port, a wrong path, a crash) is no SLO figure.
                state = _state(container)
                if state.get("OOMKilled"):
                    return _not_started(str(error), oom_killed=True)
                if self._started_once and state.get("Running"):
                    return _not_started(str(error), oom_killed=False)
                raise
            self._started_once = True
            measurement = self._measure(container)
        finally:
            self._engine.remove_container(container)
        if measurement.stopped and not measurement.oom_kills:
            raise ServiceNotReady(
                f"trial container {container.name} stopped during the load "
                f"({measurement.detail}), so the trial has no result; check the "
                "service's logs, and keep other tools from removing Hyperlane's "
                "containers"
            )
        return measurement

    def _measure(self, container: Container) -> TrialMeasurement:
        plan = self._plan
        host_port = self._engine.host_port(container, plan.container_port)
        url = f"http://127.0.0.1:{host_port}{plan.path}"
        pid = self._engine.container_pid(container)
        reader = open_reader(
            plan.metrics_source, container, pid, local=self._engine.info.local
        )
        if plan.warmup_seconds > 0:
            run_load_workers(self._spec(url, plan.warmup_seconds), plan.workers)
        sampler = Sampler(reader, interval_seconds=plan.sample_interval_seconds)
        sampler.start()
        try:
            result = run_load_workers(
                self._spec(url, plan.duration_seconds),
                plan.workers,
                progress=self._progress,
            )
        finally:
            series = sampler.stop()
        stopped, detail = _container_stopped(container)
        return _measurement(result, series, self._target, stopped, detail)

    def _spec(self, url: str, duration_seconds: float) -> LoadSpec:
        return LoadSpec(
            url=url,
            connections=self._plan.connections,
            duration_seconds=duration_seconds,
            rate_per_second=self._target.rate_per_second,
            timeout_seconds=self._plan.timeout_seconds,
        )


def _container_stopped(
    container: Container,
) -> tuple[bool, str]:
    state = _state(container)
    if not state:
        return True, "the container was removed during the trial"
    if state.get("Running"):
        return False, ""
    return True, (
        f"exit code {state.get('ExitCode')}, OOM killed {bool(state.get('OOMKilled'))}"
    )


def _state(container: Container) -> dict[str, Any]:
    """Return the container's State from the engine, empty once it is removed."""
    try:
        container.reload()
    except docker.errors.NotFound:
        return {}
    state: dict[str, Any] = container.attrs["State"]
    return state


def _not_started(reason: str, oom_killed: bool) -> TrialMeasurement:
    """Return the measurement of a trial whose container never became ready."""
    return TrialMeasurement(
        latency_seconds=None,
        attempts_total=0,
        failed_total=0,
        completed_rate_per_second=0.0,
        cpu_used_cores=None,
        throttled_period_ratio=None,
        peak_memory_bytes=None,
        oom_kills=1 if oom_killed else 0,
        stopped=oom_killed,
        detail=reason,
    )


def _measurement(
    result: LoadResult,
    series: MetricsSeries,
    target: SloTarget,
    stopped: bool,
    detail: str,
) -> TrialMeasurement:
    unsent = result.requests_unsent or 0
    # Sends that never went out because every connection was busy are not
    # failures here: the completed rate catches an overloaded service, while the
    # last send due at the very stop would count as one spurious failure.
    attempts, failed = result.failure_counts()
    bad_status = failed - result.errors_total
    latency = None
    if result.latency.count:
        histogram = decode_histogram(result.histogram, "the trial's load result")
        latency = (
            histogram.get_value_at_percentile(target.latency_percentile)
            / MICROSECONDS_PER_SECOND
        )
    measured_seconds = result.duration_seconds - result.warmup_seconds
    good = result.requests_total - bad_status
    rate = good / measured_seconds if measured_seconds > 0 else 0.0

    samples = series.samples
    cpu_used = None
    if len(samples) >= 2:
        elapsed = samples[-1].timestamp_seconds - samples[0].timestamp_seconds
        used = counter_increase([sample.cpu_usage_seconds_total for sample in samples])
        if elapsed > 0 and used is not None:
            cpu_used = used / elapsed
    periods = counter_increase([sample.cpu_cfs_periods_total for sample in samples])
    throttled = counter_increase(
        [sample.cpu_cfs_throttled_periods_total for sample in samples]
    )
    throttled_ratio = throttled / periods if periods and throttled is not None else None
    memory = [
        sample.memory_working_set_bytes
        for sample in samples
        if sample.memory_working_set_bytes is not None
    ] or [
        sample.memory_usage_bytes
        for sample in samples
        if sample.memory_usage_bytes is not None
    ]
    oom_kills = (
        counter_increase([sample.memory_oom_kills_total for sample in samples]) or 0
    )
    if stopped and "OOM killed True" in detail:
        oom_kills = max(oom_kills, 1)
    return TrialMeasurement(
        latency_seconds=latency,
        attempts_total=attempts,
        failed_total=failed,
        completed_rate_per_second=rate,
        cpu_used_cores=cpu_used,
        throttled_period_ratio=throttled_ratio,
        peak_memory_bytes=max(memory, default=None),
        oom_kills=oom_kills,
        unsent_total=unsent,
        stopped=stopped,
        detail=detail,
    )
