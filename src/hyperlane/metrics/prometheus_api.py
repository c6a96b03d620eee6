"""Send one range query to a Prometheus HTTP API and map its failures to errors.

A server that cannot be reached, times out or returns HTTP 5xx raises
EngineUnavailable (exit code 4). Rejected credentials, a rejected query and any
other unexpected reply raise UsageError (exit code 2). Messages name the URL without
its password.
"""

from __future__ import annotations

import urllib.parse
from typing import Any

import requests

from hyperlane.errors import EngineUnavailable, UsageError


def query_range(
    session: requests.Session,
    endpoint: str,
    url: str,
    safe_url: str,
    promql: str,
    range_seconds: tuple[float, float, float],
    timeout_seconds: float,
) -> list[Any]:
    """POST one query to endpoint and return the series of its matrix result.

    url is the base URL with any credentials, and safe_url its form for messages.
    range_seconds is (start, end, step) in seconds.
    """
    start_seconds, end_seconds, step_seconds = range_seconds
    form = {
        "query": promql,
        "start": f"{start_seconds:.3f}",
        "end": f"{end_seconds:.3f}",
        "step": f"{step_seconds:.3f}",
    }
    try:
        # POST keeps a long selector out of URL length limits; requests takes the
        # user name and password of the URL as basic authentication.
        response = session.post(endpoint, data=form, timeout=timeout_seconds)
    except requests.RequestException as error:
        raise _request_error(error, url, safe_url, timeout_seconds) from None
    document = _json_or_none(response)
    _check_status(response.status_code, document, url, safe_url, promql)
    if isinstance(document, dict) and document.get("status") == "error":
        raise UsageError(
            f"Prometheus at {safe_url} rejected the query {promql!r} "
            f"({document.get('errorType')}: {document.get('error')}): check "
            "--prometheus-selector, which takes label matchers such as "
            'namespace="shop",container="api".'
        )
    if response.status_code != 200:
        raise UsageError(
            f"Prometheus at {safe_url} returned HTTP {response.status_code} for "
            f"{endpoint.removeprefix(url.rstrip('/'))}: check that --prometheus is "
            "the base URL of a Prometheus server, with its path prefix if any."
        )
    data = document.get("data") if isinstance(document, dict) else None
    if (
        not isinstance(data, dict)
        or data.get("resultType") != "matrix"
        or not isinstance(data.get("result"), list)
    ):
        raise UsageError(
            f"Prometheus at {safe_url} returned no matrix for {promql!r}: check that "
            "--prometheus is the base URL of a Prometheus server."
        )
    result: list[Any] = data["result"]
    return result


def _request_error(
    error: requests.RequestException, url: str, safe_url: str, timeout_seconds: float
) -> EngineUnavailable | UsageError:
    """Map a failed request to the error to raise, without the URL's password."""
    reason = f"{type(error).__name__}: {error}"
    password = urllib.parse.urlsplit(url).password
    if password:
        reason = reason.replace(password, "***")
    # ConnectTimeout is both a Timeout and a ConnectionError.
    if isinstance(error, requests.Timeout):
        return EngineUnavailable(
            f"Prometheus at {safe_url} did not answer within {timeout_seconds:g} s "
            f"({reason}): check that the server is running and not overloaded, or "
            "raise --prometheus-timeout."
        )
    if isinstance(error, requests.exceptions.SSLError):
        return UsageError(
            f"The TLS handshake with Prometheus at {safe_url} failed ({reason}): "
            "check the URL's scheme (http or https) and the server's certificate."
        )
    # requests also raises ConnectionError for a read timeout while the body
    # arrives, and ChunkedEncodingError when the server drops the connection then.
    if isinstance(
        error, requests.ConnectionError | requests.exceptions.ChunkedEncodingError
    ):
        return EngineUnavailable(
            f"Prometheus at {safe_url} could not be reached or dropped the "
            f"connection ({reason}): check --prometheus and that the server is "
            "running."
        )
    return UsageError(
        f"The request to Prometheus at {safe_url} failed ({reason}): check "
        "--prometheus."
    )


def _check_status(
    status: int, document: Any, url: str, safe_url: str, promql: str
) -> None:
    """Raise for rejected credentials (401, 403) and for server errors (5xx)."""
    if status in (401, 403):
        # NOTE: only basic authentication is supported, so a server that expects a
        # bearer token rejects every query.
        if urllib.parse.urlsplit(url).username is not None:
            rejected = "rejected the credentials in the URL"
        else:
            rejected = "rejected the request, which carried no credentials"
        example = safe_url.replace("://", "://USER:PASSWORD@", 1)
        raise UsageError(
            f"Prometheus at {safe_url} {rejected} (HTTP {status}). Pass a valid user "
            f"name and password in the URL, e.g. --prometheus {example}, which "
            "hyperlane sends as basic authentication, with @, : and / in them "
            "percent-encoded."
        )
    if status >= 500:
        detail = ""
        if isinstance(document, dict) and document.get("status") == "error":
            detail = f" ({document.get('errorType')}: {document.get('error')})"
        raise EngineUnavailable(
            f"Prometheus at {safe_url} returned HTTP {status} for the query "
            f"{promql!r}{detail}, so the server or a proxy in front of it failed: "
            "check that both are running and retry, or shorten --history to ask "
            "for fewer points."
        )


def _json_or_none(response: requests.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None
