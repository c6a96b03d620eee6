"""Counters of one set of requests (one endpoint, the whole run or the warm-up) and
their conversion into a LoadResult."""

from __future__ import annotations

from hyperlane.load.latency import LatencyRecorder, nearest_rank_nanoseconds
from hyperlane.load.result import (
    ERROR_KINDS,
    STATUS_CLASSES,
    EndpointResult,
    ErrorKind,
    LoadResult,
    TimelineSecond,
)
from hyperlane.load.spec import LoadSpec

_NANOSECONDS_PER_SECOND = 1e9


class RunStats:
    """Counts, histograms and timeline of one set of requests."""

    def __init__(self, open_model: bool) -> None:
        self.sent = 0
        self.completed = 0
        self.errors: dict[ErrorKind, int] = dict.fromkeys(ERROR_KINDS, 0)
        self.errors_total = 0
        self.bytes_received = 0
        self.status_counts = [0] * 10
        self.recorder = LatencyRecorder()
        self.uncorrected = LatencyRecorder() if open_model else None
        self.timeline: list[TimelineSecond] = []
        # Counts at the end of the previous tick: sent, completed, errors, bytes.
        self._tick_base = (0, 0, 0, 0)

    def close_tick(self, start_seconds: float, end_seconds: float) -> None:
        """Append the timeline entry for the tick that ends now."""
        latencies = self.recorder.take_window()
        if self.uncorrected is not None:
            # Only the corrected latency goes into the timeline, so the uncorrected
            # window is emptied to keep it from growing.
            self.uncorrected.take_window()
        latencies.sort()
        sent, completed, errors, received = self._tick_base
        self._tick_base = (
            self.sent,
            self.completed,
            self.errors_total,
            self.bytes_received,
        )
        length_seconds = max(end_seconds - start_seconds, 1e-9)
        p50 = p99 = top = None
        if latencies:
            p50 = nearest_rank_nanoseconds(latencies, 50.0) / _NANOSECONDS_PER_SECOND
            p99 = nearest_rank_nanoseconds(latencies, 99.0) / _NANOSECONDS_PER_SECOND
            top = latencies[-1] / _NANOSECONDS_PER_SECOND
        self.timeline.append(
            TimelineSecond(
                start_seconds=start_seconds,
                end_seconds=end_seconds,
                requests_sent=self.sent - sent,
                requests_total=self.completed - completed,
                errors_total=self.errors_total - errors,
                bytes_received=self.bytes_received - received,
                requests_per_second=(self.completed - completed) / length_seconds,
                p50_seconds=p50,
                p99_seconds=p99,
                max_seconds=top,
            )
        )

    def status_classes(self) -> dict[str, int]:
        return {name: self.status_counts[int(name[0])] for name in STATUS_CLASSES}

    def errors_by_kind(self) -> dict[str, int]:
        return {kind: self.errors[kind] for kind in ERROR_KINDS}

    def in_flight(self) -> int:
        return self.sent - self.completed - self.errors_total


def _rate(count: int, duration_seconds: float) -> float:
    return count / duration_seconds if duration_seconds > 0 else 0.0


def _endpoint_result(
    name: str, method: str, weight: float, stats: RunStats, duration_seconds: float
) -> EndpointResult:
    uncorrected = stats.uncorrected
    return EndpointResult(
        name=name,
        method=method,
        weight=weight,
        requests_sent=stats.sent,
        requests_total=stats.completed,
        requests_in_flight_at_stop=stats.in_flight(),
        requests_per_second=_rate(stats.completed, duration_seconds),
        bytes_received=stats.bytes_received,
        status_classes=stats.status_classes(),
        errors=stats.errors_by_kind(),
        errors_total=stats.errors_total,
        latency=stats.recorder.summary(),
        histogram=stats.recorder.encoded_histogram(),
        latency_uncorrected=None if uncorrected is None else uncorrected.summary(),
        histogram_uncorrected=(
            None if uncorrected is None else uncorrected.encoded_histogram()
        ),
        timeline=stats.timeline,
    )


def build_result(
    spec: LoadSpec,
    *,
    total: RunStats,
    endpoints: list[tuple[str, str, float, RunStats]],
    duration_seconds: float,
    connections_opened: int,
    keep_alive: bool,
    retries_total: int,
    late_sends_total: int | None,
    requests_unsent: int | None,
    requests_scheduled: int | None,
    bytes_sent: int,
    warmup_requests_total: int,
    generator_cpu_seconds: float,
    warnings: list[str],
) -> LoadResult:
    """Build the LoadResult of a finished run from its counters."""
    uncorrected = total.uncorrected
    return LoadResult(
        url=spec.url,
        model="open" if spec.is_open else "closed",
        connections=spec.connections,
        duration_seconds=duration_seconds,
        requests_sent=total.sent,
        requests_total=total.completed,
        requests_in_flight_at_stop=total.in_flight(),
        requests_per_second=_rate(total.completed, duration_seconds),
        bytes_received=total.bytes_received,
        status_classes=total.status_classes(),
        errors=total.errors_by_kind(),
        errors_total=total.errors_total,
        connections_opened=connections_opened,
        keep_alive=keep_alive,
        latency=total.recorder.summary(),
        histogram=total.recorder.encoded_histogram(),
        latency_uncorrected=None if uncorrected is None else uncorrected.summary(),
        histogram_uncorrected=(
            None if uncorrected is None else uncorrected.encoded_histogram()
        ),
        late_sends_total=late_sends_total,
        target_rate_per_second=spec.rate_per_second,
        retries_total=retries_total,
        requests_unsent=requests_unsent,
        requests_scheduled=requests_scheduled,
        bytes_sent=bytes_sent,
        warmup_seconds=spec.warmup_seconds,
        warmup_requests_total=warmup_requests_total,
        think_time_seconds=spec.think_time_seconds,
        generator_cpu_seconds=generator_cpu_seconds,
        endpoints=[
            _endpoint_result(name, method, weight, stats, duration_seconds)
            for name, method, weight, stats in endpoints
        ],
        timeline=total.timeline,
        warnings=list(warnings),
    )
