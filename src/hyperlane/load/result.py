"""Results and progress reports of a load run."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

from hyperlane.load.latency import LatencySummary

ErrorKind = Literal[
    "refused",
    "reset",
    "timeout",
    "connect_timeout",
    "parse",
    "closed_mid_response",
    "other",
]
ERROR_KINDS: tuple[ErrorKind, ...] = (
    "refused",
    "reset",
    "timeout",
    "connect_timeout",
    "parse",
    "closed_mid_response",
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
class LoadResult:
    """Outcome of one load run.

    ``requests_sent == requests_total + errors_total + requests_in_flight_at_stop``
    holds for every result.
    """

    url: str
    model: Literal["closed", "open"]
    connections: int
    duration_seconds: float
    """Measured wall time from the start of the run until it stopped."""
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

    def to_dict(self) -> dict[str, Any]:
        """Return the fields as a JSON-ready dict."""
        return asdict(self)
