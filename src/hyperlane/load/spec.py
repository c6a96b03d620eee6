"""Load specification, its validation and the serialised HTTP/1.1 request."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from hyperlane import __version__
from hyperlane.errors import UsageError
from hyperlane.urls import display_url

# RFC 9110 token characters, used by methods and header names.
_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_FORBIDDEN_VALUE_CHARACTERS = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_DEFAULT_PORTS = {"http": 80, "https": 443}
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
# Idempotent HTTP methods, which may be sent again when a reused connection closes
# before any byte of the response arrives.
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS", "TRACE"})


@dataclass(frozen=True)
class Endpoint:
    """One kind of request in a run that mixes several, chosen by weight."""

    name: str
    """Label of the endpoint in the per-endpoint results."""
    path: str = "/"
    """Request target, ``/path[?query]``, sent to the host and port of the run's URL."""
    method: str = "GET"
    """HTTP method."""
    headers: tuple[tuple[str, str], ...] = ()
    """Extra request headers, added after those of the LoadSpec."""
    body: bytes = b""
    """Request body, sent with a Content-Length header."""
    weight: float = 1.0
    """Relative share of the requests that use this endpoint."""


@dataclass(frozen=True)
class Stage:
    """One stage of an open-model run, which ramps the arrival rate linearly."""

    duration_seconds: float
    """Length of the stage."""
    target_rate_per_second: float
    """Rate at the end of the stage, in requests per second. The stage starts at the
    previous stage's target, and the first stage at LoadSpec.rate_per_second or 0."""


@dataclass(frozen=True)
class LoadSpec:
    """One load run against one URL."""

    url: str
    """Target, ``http[s]://host[:port]/path[?query]``."""
    connections: int = 8
    """Number of concurrent TCP connections, each with one request in flight."""
    duration_seconds: float = 10.0
    """Maximum wall time of the run, warm-up included. With stages, the run lasts
    the sum of the stage durations instead."""
    requests: int | None = None
    """Exact number of requests to send, or None for no limit. The run ends when all
    have completed or failed, or when the duration ends, whichever comes first."""
    rate_per_second: float | None = None
    """Constant request rate across all connections (open model), or None for the
    closed model, where each connection sends again as soon as a response arrives."""
    timeout_seconds: float = 5.0
    """Maximum time from sending a request to the end of its response."""
    connect_timeout_seconds: float = 2.0
    """Maximum time to establish one TCP connection, TLS handshake included."""
    method: str = "GET"
    """HTTP method of the URL's request when ``endpoints`` is empty."""
    headers: tuple[tuple[str, str], ...] = ()
    """Extra request headers. A ``Host`` or ``User-Agent`` here replaces the default."""
    body: bytes = b""
    """Request body of the URL's request when ``endpoints`` is empty."""
    insecure: bool = False
    """For https URLs: skip certificate and host name verification."""
    think_time_seconds: float = 0.0
    """Closed model only: pause of each connection between a response and its next
    request. Latency runs from the write, so the pause is not part of it."""
    stages: tuple[Stage, ...] = ()
    """Open model with a varying rate: stages that ramp it, run one after another."""
    endpoints: tuple[Endpoint, ...] = ()
    """Requests to mix by weight, or empty for the single request that ``url``,
    ``method`` and ``body`` describe."""
    warmup_seconds: float = 0.0
    """Time at the start of the run whose requests are sent but left out of every
    figure except ``warmup_requests_total``."""
    share_index: int = 0
    """Index of this process among ``share_count`` processes that split one open-model
    schedule: it sends the intended sends whose index modulo share_count equals it.
    With ``requests``, it sends its share of that budget."""
    share_count: int = 1
    """Number of processes that split the schedule and the request budget."""

    @property
    def is_open(self) -> bool:
        """True for the open model: a rate or stages."""
        return self.rate_per_second is not None or bool(self.stages)

    @property
    def run_seconds(self) -> float:
        """Planned wall time of the run: the stages' total, or duration_seconds."""
        if self.stages:
            return sum(stage.duration_seconds for stage in self.stages)
        return self.duration_seconds


@dataclass(frozen=True)
class PreparedRequest:
    """One endpoint's serialised request and the properties that the runner reads."""

    name: str
    """Endpoint label."""
    request_bytes: bytes
    """The complete request, head and body, written as is for every request."""
    weight: float
    """Relative share of the requests."""
    is_head: bool
    """True for HEAD, whose response has no body whatever its headers state."""
    retry_allowed: bool
    """True for idempotent methods, which may be sent again on a new connection."""


@dataclass(frozen=True)
class Target:
    """Connection address and request bytes derived from a validated LoadSpec."""

    host: str
    """Host name or address to connect to, without IPv6 brackets."""
    port: int
    """TCP port."""
    request_bytes: bytes
    """The first endpoint's complete request, serialised once."""
    requests: tuple[PreparedRequest, ...] = ()
    """Every endpoint's request, in the order of LoadSpec.endpoints."""
    tls: bool = False
    """True for https URLs."""
    insecure: bool = False
    """True to skip certificate and host name verification."""


def _positive_number(name: str, value: float, hint: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise UsageError(f"Invalid {name} {value!r}: expected a number. {hint}")
    if not math.isfinite(value) or value <= 0:
        raise UsageError(f"Invalid {name} {value!r}: must be greater than 0. {hint}")


def _positive_integer(name: str, value: int, hint: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UsageError(f"Invalid {name} {value!r}: must be an integer >= 1. {hint}")


def _non_negative_number(name: str, value: float, hint: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise UsageError(f"Invalid {name} {value!r}: expected a number. {hint}")
    if not math.isfinite(value) or value < 0:
        raise UsageError(f"Invalid {name} {value!r}: must be 0 or more. {hint}")


def _validate_numbers(spec: LoadSpec) -> None:
    _positive_integer("connections", spec.connections, "Pass --connections 1 or more.")
    _positive_number(
        "duration_seconds", spec.duration_seconds, "Pass --duration such as 10s."
    )
    if spec.requests is not None:
        _positive_integer(
            "requests", spec.requests, "Pass --requests 1 or more, or omit it."
        )
    if spec.rate_per_second is not None:
        _positive_number(
            "rate_per_second",
            spec.rate_per_second,
            "Pass --rate in requests per second, or omit it for the closed model.",
        )
    _positive_number(
        "timeout_seconds", spec.timeout_seconds, "Pass --timeout such as 5s."
    )
    _positive_number(
        "connect_timeout_seconds",
        spec.connect_timeout_seconds,
        "Pass --connect-timeout such as 2s.",
    )
    _non_negative_number(
        "think_time_seconds", spec.think_time_seconds, "Pass 0 for no think time."
    )
    _non_negative_number(
        "warmup_seconds", spec.warmup_seconds, "Pass 0 for no warm-up."
    )
    _positive_integer(
        "share_count", spec.share_count, "Pass 1 unless processes split the load."
    )
    if (
        isinstance(spec.share_index, bool)
        or not isinstance(spec.share_index, int)
        or not 0 <= spec.share_index < spec.share_count
    ):
        raise UsageError(
            f"Invalid share_index {spec.share_index!r}: must be an integer from 0 "
            f"to share_count - 1 ({spec.share_count - 1})."
        )


def _validate_model(spec: LoadSpec) -> None:
    if spec.think_time_seconds > 0 and spec.is_open:
        raise UsageError(
            f"Invalid think_time_seconds {spec.think_time_seconds!r}: think time "
            "applies to the closed model only. Omit the rate or the think time."
        )
    for index, stage in enumerate(spec.stages):
        _positive_number(
            f"stages[{index}].duration_seconds",
            stage.duration_seconds,
            "Give every stage a duration such as 10s.",
        )
        _non_negative_number(
            f"stages[{index}].target_rate_per_second",
            stage.target_rate_per_second,
            "Give every stage a target rate in requests per second.",
        )
    if spec.stages and not any(
        stage.target_rate_per_second > 0 for stage in spec.stages
    ):
        raise UsageError(
            f"Invalid stages {spec.stages!r}: every target rate is 0, so no request "
            "would be sent. Give at least one stage a rate above 0."
        )
    run_seconds = spec.run_seconds
    if spec.warmup_seconds >= run_seconds:
        raise UsageError(
            f"Invalid warmup_seconds {spec.warmup_seconds!r}: it must be shorter "
            f"than the run ({run_seconds!r} s). Shorten the warm-up."
        )


def _validate_header_list(headers: tuple[tuple[str, str], ...]) -> None:
    for name, value in headers:
        if not _TOKEN.match(name):
            raise UsageError(
                f"Invalid header name {name!r}: expected an HTTP token such as "
                "'Accept'. Remove spaces, colons and control characters."
            )
        if _FORBIDDEN_VALUE_CHARACTERS.search(value):
            raise UsageError(
                f"Invalid value {value!r} of header {name!r}: it contains a line "
                "break or control character. Remove it."
            )


def _validate_method(method: str) -> None:
    if not _TOKEN.match(method):
        raise UsageError(
            f"Invalid method {method!r}: expected an HTTP token such as 'GET'."
        )


def _validate_endpoints(spec: LoadSpec) -> None:
    names: set[str] = set()
    for endpoint in spec.endpoints:
        if not endpoint.name or endpoint.name in names:
            raise UsageError(
                f"Invalid endpoint name {endpoint.name!r}: names must be non-empty "
                "and unique. Rename the endpoint."
            )
        names.add(endpoint.name)
        _validate_method(endpoint.method)
        _validate_header_list(endpoint.headers)
        _validate_request_target(endpoint.path, f"path of endpoint {endpoint.name!r}")
        _positive_number(
            f"weight of endpoint {endpoint.name!r}",
            endpoint.weight,
            "Give every endpoint a weight above 0.",
        )


def _validate_request_target(target: str, label: str) -> None:
    if not target.startswith("/"):
        raise UsageError(
            f"Invalid {label} {target!r}: it must start with '/', such as '/health'."
        )
    if _FORBIDDEN_VALUE_CHARACTERS.search(target) or " " in target:
        raise UsageError(
            f"Invalid {label} {target!r}: it contains spaces or control characters. "
            "Percent-encode them."
        )


def _parse_url(url: str) -> tuple[str, int, str, str, bool]:
    """Split ``url`` into connect host, port, Host header value, request target and
    whether it uses TLS."""
    hint = "Pass a URL such as 'http://127.0.0.1:8080/'."
    shown_url = display_url(url)
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as error:
        raise UsageError(f"Invalid url {shown_url!r}: {error}. {hint}") from error
    if parts.scheme not in _DEFAULT_PORTS:
        raise UsageError(
            f"Invalid url {shown_url!r}: the scheme must be 'http' or 'https'. {hint}"
        )
    host = parts.hostname
    if not host:
        raise UsageError(f"Invalid url {shown_url!r}: the host is missing. {hint}")
    if port == 0:
        raise UsageError(
            f"Invalid url {shown_url!r}: port 0 cannot be connected to. {hint}"
        )
    if parts.username is not None or parts.password is not None:
        raise UsageError(
            f"Invalid url {shown_url!r}: user information (user:password@) is not "
            "supported. Remove it, and from Python pass credentials in an "
            "Authorization header through LoadSpec.headers."
        )
    default_port = _DEFAULT_PORTS[parts.scheme]
    if port is None:
        port = default_port
    host_header = f"[{host}]" if ":" in host else host
    if port != default_port:
        host_header = f"{host_header}:{port}"
    target = parts.path or "/"
    if parts.query:
        target = f"{target}?{parts.query}"
    if _FORBIDDEN_VALUE_CHARACTERS.search(target) or " " in target:
        raise UsageError(
            f"Invalid url {shown_url!r}: the path contains spaces or control "
            "characters. Percent-encode them."
        )
    return host, port, host_header, target, parts.scheme == "https"


def _serialise(
    method: str,
    request_target: str,
    host_header: str,
    headers: tuple[tuple[str, str], ...],
    body: bytes,
) -> bytes:
    overridden = {name.lower() for name, _ in headers}
    lines = [f"{method} {request_target} HTTP/1.1"]
    if "host" not in overridden:
        lines.append(f"Host: {host_header}")
    if "user-agent" not in overridden:
        lines.append(f"User-Agent: hyperlane/{__version__}")
    if "connection" not in overridden:
        lines.append("Connection: keep-alive")
    framed = "content-length" in overridden or "transfer-encoding" in overridden
    # RFC 9110 (section 8.6) has a client send Content-Length for a method that defines
    # content, such as POST, PUT or PATCH, even when the body is empty.
    if not framed and (body or method.upper() in _BODY_METHODS):
        lines.append(f"Content-Length: {len(body)}")
    lines.extend(f"{name}: {value}" for name, value in headers)
    head = "\r\n".join(lines) + "\r\n\r\n"
    try:
        return head.encode("latin-1") + body
    except UnicodeEncodeError as error:
        raise UsageError(
            f"Invalid request header text {head!r}: it contains characters "
            "outside Latin-1. Percent-encode the URL and use ASCII header values."
        ) from error


def build_target(spec: LoadSpec) -> Target:
    """Validate ``spec`` and serialise its requests.

    Raises UsageError naming the invalid field and its value.
    """
    _validate_numbers(spec)
    _validate_model(spec)
    _validate_method(spec.method)
    _validate_header_list(spec.headers)
    _validate_endpoints(spec)
    host, port, host_header, url_target, tls = _parse_url(spec.url)

    endpoints = spec.endpoints or (
        Endpoint(name=url_target, path=url_target, method=spec.method, body=spec.body),
    )
    prepared = tuple(
        PreparedRequest(
            name=endpoint.name,
            request_bytes=_serialise(
                endpoint.method,
                endpoint.path,
                host_header,
                spec.headers + endpoint.headers,
                endpoint.body,
            ),
            weight=float(endpoint.weight),
            is_head=endpoint.method.upper() == "HEAD",
            retry_allowed=endpoint.method.upper() in IDEMPOTENT_METHODS,
        )
        for endpoint in endpoints
    )
    return Target(
        host=host,
        port=port,
        request_bytes=prepared[0].request_bytes,
        requests=prepared,
        tls=tls,
        insecure=spec.insecure,
    )
