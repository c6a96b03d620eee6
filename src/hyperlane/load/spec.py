"""Load specification, its validation and the serialised HTTP/1.1 request."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from hyperlane import __version__
from hyperlane.errors import UsageError
from hyperlane.settings import LoadSettings

# RFC 9110 token characters, used by methods and header names.
_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_FORBIDDEN_VALUE_CHARACTERS = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


@dataclass(frozen=True)
class LoadSpec:
    """One load run against one URL."""

    url: str
    """Target, ``http://host[:port]/path[?query]``."""
    connections: int = 8
    """Number of concurrent TCP connections, each with one request in flight."""
    duration_seconds: float = 10.0
    """Maximum wall time of the run."""
    requests: int | None = None
    """Exact number of requests to send, or None for no limit. The run ends when all
    have completed or failed, or when the duration ends, whichever comes first."""
    rate_per_second: float | None = None
    """Constant request rate across all connections (open model), or None for the
    closed model, where each connection sends again as soon as a response arrives."""
    timeout_seconds: float = 5.0
    """Maximum time from sending a request to the end of its response."""
    connect_timeout_seconds: float = 2.0
    """Maximum time to establish one TCP connection."""
    method: str = "GET"
    """HTTP method, sent without a request body."""
    headers: tuple[tuple[str, str], ...] = ()
    """Extra request headers. A ``Host`` or ``User-Agent`` here replaces the default."""


@dataclass(frozen=True)
class Target:
    """Connection address and request bytes derived from a validated LoadSpec."""

    host: str
    """Host name or address to connect to, without IPv6 brackets."""
    port: int
    """TCP port."""
    request_bytes: bytes
    """The complete request, serialised once and written as is for every request."""


def _positive_number(name: str, value: float, hint: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise UsageError(f"Invalid {name} {value!r}: expected a number. {hint}")
    if not math.isfinite(value) or value <= 0:
        raise UsageError(f"Invalid {name} {value!r}: must be greater than 0. {hint}")


def _positive_integer(name: str, value: int, hint: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UsageError(f"Invalid {name} {value!r}: must be an integer >= 1. {hint}")


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


def _validate_headers(spec: LoadSpec) -> None:
    if not _TOKEN.match(spec.method):
        raise UsageError(
            f"Invalid method {spec.method!r}: expected an HTTP token such as 'GET'."
        )
    for name, value in spec.headers:
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


def _parse_url(url: str) -> tuple[str, int, str, str]:
    """Split ``url`` into connect host, port, Host header value and request target."""
    hint = "Pass a URL such as 'http://127.0.0.1:8080/'."
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as error:
        raise UsageError(f"Invalid url {url!r}: {error}. {hint}") from error
    if parts.scheme == "https":
        # TODO: TLS is not implemented, so https URLs are rejected.
        raise UsageError(
            f"Unsupported url {url!r}: https is not supported yet. "
            "Load the service over plain http."
        )
    if parts.scheme != "http":
        raise UsageError(f"Invalid url {url!r}: the scheme must be 'http'. {hint}")
    host = parts.hostname
    if not host:
        raise UsageError(f"Invalid url {url!r}: the host is missing. {hint}")
    if port == 0:
        raise UsageError(f"Invalid url {url!r}: port 0 cannot be connected to. {hint}")
    if parts.username is not None or parts.password is not None:
        raise UsageError(
            f"Invalid url {url!r}: user information (user:password@) is not "
            "supported. Remove it, and from Python pass credentials in an "
            "Authorization header through LoadSpec.headers."
        )
    if port is None:
        port = 80
    host_header = f"[{host}]" if ":" in host else host
    if port != 80:
        host_header = f"{host_header}:{port}"
    target = parts.path or "/"
    if parts.query:
        target = f"{target}?{parts.query}"
    if _FORBIDDEN_VALUE_CHARACTERS.search(target) or " " in target:
        raise UsageError(
            f"Invalid url {url!r}: the path contains spaces or control characters. "
            "Percent-encode them."
        )
    return host, port, host_header, target


def build_target(spec: LoadSpec) -> Target:
    """Validate ``spec`` and serialise its request.

    Raises UsageError naming the invalid field and its value.
    """
    _validate_numbers(spec)
    _validate_headers(spec)
    host, port, host_header, request_target = _parse_url(spec.url)

    overridden = {name.lower() for name, _ in spec.headers}
    lines = [f"{spec.method} {request_target} HTTP/1.1"]
    if "host" not in overridden:
        lines.append(f"Host: {host_header}")
    if "user-agent" not in overridden:
        lines.append(f"User-Agent: hyperlane/{__version__}")
    if "connection" not in overridden:
        lines.append("Connection: keep-alive")
    lines.extend(f"{name}: {value}" for name, value in spec.headers)
    request = "\r\n".join(lines) + "\r\n\r\n"
    try:
        request_bytes = request.encode("latin-1")
    except UnicodeEncodeError as error:
        raise UsageError(
            f"Invalid request header text {request!r}: it contains characters "
            "outside Latin-1. Percent-encode the URL and use ASCII header values."
        ) from error
    return Target(host=host, port=port, request_bytes=request_bytes)


def spec_from_settings(settings: LoadSettings, url: str) -> LoadSpec:
    """Build the LoadSpec that the load flags in ``settings`` describe for ``url``.

    Raises UsageError for the options this generator does not implement yet, rather
    than ignoring them.
    """
    # TODO: multi-process workers and scenario files are not built yet.
    if settings.workers != 1:
        raise UsageError(
            f"--workers {settings.workers} is not supported yet; the load runs in one "
            "process, so pass --workers 1"
        )
    if settings.scenario is not None:
        raise UsageError(
            f"--scenario {str(settings.scenario)!r} is not supported yet; pass the URL "
            "with --connections, --duration and --rate instead"
        )
    return LoadSpec(
        url=url,
        connections=settings.connections,
        duration_seconds=settings.duration,
        requests=settings.requests,
        rate_per_second=settings.rate,
        timeout_seconds=settings.timeout,
        connect_timeout_seconds=settings.connect_timeout,
    )
