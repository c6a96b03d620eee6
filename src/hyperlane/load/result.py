"""Results and progress reports of a load run."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from hyperlane.load.latency import LatencySummary

ErrorKind = Literal[
    "refused",
    "reset",
    "timeout",
    "connect_timeout",
    "parse",
    "closed_mid_response",
    "tls",
    "other",
]
ERROR_KINDS: tuple[ErrorKind, ...] = (
    "refused",
    "reset",
    "timeout",
    "connect_timeout",
    "parse",
    "closed_mid_response",
    "tls",
    "other",
)
STATUS_CLASSES = ("2xx", "3xx", "4xx", "5xx")


@dataclass(frozen=True)
class LoadProgress:
    """Snapshot passed to the progress callback during a run."""

    elapsed_seconds: float
    """Wall time since the run started."""
    requests_total: int
    """Requests completed with a full response so far."""
    errors_total: int
    """Failed requests so far."""
    rate_per_second: float
    """Completed requests per second since the previous snapshot."""
    p99_seconds: float | None
    """99th percentile latency of everything completed so far, None before the first."""


@dataclass(frozen=True)
class TimelineSecond:
    """Counts and latency of one tick of the per-second timeline.

    A tick ends when the run's event loop checks the clock, about once per second,
    so ``end_seconds - start_seconds`` is close to but not exactly 1. Requests count
    in the tick in which they completed, failed or were written.
    """

    start_seconds: float
    """Start of the tick, in seconds after the end of the warm-up."""
    end_seconds: float
    """End of the tick, in seconds after the end of the warm-up."""
    requests_sent: int
    """Requests written, or whose connection attempt failed, during the tick."""
    requests_total: int
    """Requests completed with a full response during the tick."""
    errors_total: int
    """Requests failed during the tick."""
    bytes_received: int
    """Response bytes received during the tick."""
    requests_per_second: float
    """requests_total divided by the tick's length."""
    p50_seconds: float | None
    """Exact median latency of the tick's completed requests, None without any."""
    p99_seconds: float | None
    """Exact 99th percentile latency of the tick's completed requests."""
    max_seconds: float | None
    """Exact maximum latency of the tick's completed requests."""


@dataclass(frozen=True)
class EndpointResult:
    """Figures of one endpoint of the run, each defined as the LoadResult field of
    the same name.

    ``requests_sent == requests_total + errors_total + requests_in_flight_at_stop``
    is true here too, and the endpoints' counts add up to the run's.
    """

    name: str
    """Endpoint label: the scenario's name, or the request target for a single URL."""
    method: str
    """HTTP method of the endpoint's request."""
    weight: float
    """Relative share of the requests that were meant to use this endpoint."""
    requests_sent: int
    requests_total: int
    requests_in_flight_at_stop: int
    requests_per_second: float
    """requests_total divided by the run's measured duration_seconds."""
    bytes_received: int
    """Response bytes received on this endpoint's requests, headers included."""
    status_classes: dict[str, int]
    errors: dict[str, int]
    errors_total: int
    latency: LatencySummary
    histogram: str
    """HdrHistogram base64 compressed encoding, in microseconds."""
    latency_uncorrected: LatencySummary | None
    """Open model only: latency from the actual write."""
    histogram_uncorrected: str | None
    """Open model only: encoding of ``latency_uncorrected``, in microseconds."""
    timeline: list[TimelineSecond]
    """The endpoint's per-second timeline, tick for tick as the run's."""


@dataclass(frozen=True)
class LoadResult:
    """Outcome of one load run.

    ``requests_sent == requests_total + errors_total + requests_in_flight_at_stop``
    holds for every result.
    """

    url: str
    model: Literal["closed", "open"]
    connections: int
    duration_seconds: float
    """Measured wall time from the end of the warm-up until the run stopped."""
    requests_sent: int
    """Requests started, including those whose connection attempt failed."""
    requests_total: int
    """Requests completed with a full response, whatever the status code."""
    requests_in_flight_at_stop: int
    """Requests started but neither completed nor failed when the run stopped."""
    requests_per_second: float
    """requests_total divided by duration_seconds."""
    bytes_received: int
    """Response bytes received, headers included."""
    status_classes: dict[str, int]
    """Count of completed responses per status class: "2xx", "3xx", "4xx", "5xx".
    A status outside 200-599 counts only in requests_total."""
    errors: dict[str, int]
    """Count of failed requests per kind, every kind in ERROR_KINDS present."""
    errors_total: int
    connections_opened: int
    """TCP connections established, so reconnects show as a count above connections."""
    keep_alive: bool
    """True if any connection served more than one response."""
    latency: LatencySummary
    """Closed model: from writing the request to the end of the response. Open model:
    from the intended send time, so queueing delay is included."""
    histogram: str
    """HdrHistogram base64 compressed encoding of ``latency``, in microseconds."""
    latency_uncorrected: LatencySummary | None = None
    """Open model only: latency from the actual write, as the closed model measures."""
    histogram_uncorrected: str | None = None
    """Open model only: encoding of ``latency_uncorrected``, in microseconds."""
    late_sends_total: int | None = None
    """Open model only: requests written more than one interval after their intended
    send time."""
    target_rate_per_second: float | None = None
    """Open model only: the arrival rate that the run was asked to keep."""
    retries_total: int = 0
    """Requests sent again on a new connection because a reused keep-alive connection
    closed before any byte of their response arrived. Each counts once in
    requests_sent. Only idempotent methods are retried."""
    # NOTE: an endpoint is picked when a send is handed to a connection, so unsent
    # requests have no endpoint and EndpointResult has no unsent count.
    requests_unsent: int | None = None
    """Open model only: intended sends that were due before the stop but were never
    written, because every connection was busy, reconnecting or backing off. They
    are in no latency histogram, so a large count means the latency figures
    describe fewer requests than the rate asked for."""
    requests_scheduled: int | None = None
    """Open model only: intended sends due between the end of the warm-up and the
    stop, so ``requests_scheduled == requests_sent + requests_unsent``."""
    bytes_sent: int = 0
    """Request bytes written, head and body, retries included."""
    warmup_seconds: float = 0.0
    """Length of the warm-up at the start of the run. Its requests are in no other
    field, and duration_seconds starts after it."""
    warmup_requests_total: int = 0
    """Requests sent during the warm-up, whatever their outcome."""
    think_time_seconds: float = 0.0
    """Closed model: pause of each connection between a response and its next
    request."""
    generator_cpu_seconds: float = 0.0
    """CPU time that the event loop's thread used during the run, user and system."""
    endpoints: list[EndpointResult] = field(default_factory=list)
    """Per-endpoint figures, in the order of the spec's endpoints."""
    timeline: list[TimelineSecond] = field(default_factory=list)
    """Per-second figures of the whole run, from the end of the warm-up."""
    warnings: list[str] = field(default_factory=list)
    """Self-check findings that make the figures less trustworthy, such as a
    saturated generator CPU or a rate that the generator could not keep."""

    def failure_counts(self) -> tuple[int, int]:
        """Return the requests that ended and, of those, the failed ones.

        A request ended with a response or a transport error. It failed with an
        error or a status other than 2xx or 3xx.
        """
        bad_status = sum(
            count
            for status_class, count in self.status_classes.items()
            if status_class not in ("2xx", "3xx")
        )
        return (
            self.requests_total + self.errors_total,
            self.errors_total + bad_status,
        )

    def to_dict(self) -> dict[str, Any]:
        """Return the fields as a JSON-ready dict."""
        return asdict(self)
