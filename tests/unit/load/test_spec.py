"""LoadSpec validation and request serialisation."""

from __future__ import annotations

import pytest

from hyperlane import __version__
from hyperlane.errors import UsageError
from hyperlane.load import Endpoint, LoadSpec, Stage, run_load
from hyperlane.load.spec import build_target

URL = "http://127.0.0.1:8080/"


@pytest.mark.parametrize(
    ("spec", "named"),
    [
        (LoadSpec(url=URL, connections=0), "connections"),
        (LoadSpec(url=URL, duration_seconds=0), "duration_seconds"),
        (LoadSpec(url=URL, duration_seconds=float("nan")), "duration_seconds"),
        (LoadSpec(url=URL, requests=0), "requests"),
        (LoadSpec(url=URL, rate_per_second=-1.0), "rate_per_second"),
        (LoadSpec(url=URL, timeout_seconds=0), "timeout_seconds"),
        (LoadSpec(url=URL, connect_timeout_seconds=0), "connect_timeout_seconds"),
        (LoadSpec(url=URL, method="GE T"), "method"),
        (LoadSpec(url=URL, headers=(("X:A", "1"),)), "header name"),
        (LoadSpec(url=URL, headers=(("X-A", "1\r\nX-B: 2"),)), "header"),
        (LoadSpec(url="ftp://127.0.0.1/"), "url"),
        (LoadSpec(url="wss://127.0.0.1/"), "https"),
        (LoadSpec(url=URL, think_time_seconds=-1.0), "think_time_seconds"),
        (LoadSpec(url=URL, rate_per_second=5.0, think_time_seconds=1.0), "think"),
        (LoadSpec(url=URL, warmup_seconds=10.0), "warmup_seconds"),
        (LoadSpec(url=URL, share_index=2, share_count=2), "share_index"),
        (LoadSpec(url=URL, stages=(Stage(0.0, 5.0),)), "stages[0]"),
        (LoadSpec(url=URL, stages=(Stage(1.0, 0.0),)), "stages"),
        (LoadSpec(url=URL, endpoints=(Endpoint("a"), Endpoint("a"))), "name"),
        (LoadSpec(url=URL, endpoints=(Endpoint("a", path="x"),)), "path"),
        (LoadSpec(url=URL, endpoints=(Endpoint("a", weight=0.0),)), "weight"),
        (LoadSpec(url="http:///path"), "host"),
        (LoadSpec(url="http://127.0.0.1:99999/"), "url"),
        (LoadSpec(url="http://127.0.0.1:0/"), "port 0"),
    ],
)
def test_spec_invalid_rejected(spec: LoadSpec, named: str) -> None:
    with pytest.raises(UsageError) as raised:
        build_target(spec)
    assert named in str(raised.value)


@pytest.mark.parametrize(
    "url",
    [
        "http://user:hunter2@127.0.0.1:8080/",
        "http://user:hunter2@127.0.0.1:99999/",
        "ftp://user:hunter2@127.0.0.1/",
    ],
)
def test_url_errors_hide_the_password(url: str) -> None:
    with pytest.raises(UsageError) as raised:
        build_target(LoadSpec(url=url))
    message = str(raised.value)
    assert "hunter2" not in message
    assert "127.0.0.1" in message


def test_run_load_validates_first() -> None:
    with pytest.raises(UsageError):
        run_load(LoadSpec(url=URL, connections=-3))


def test_progress_interval_rejected() -> None:
    with pytest.raises(UsageError) as raised:
        run_load(LoadSpec(url=URL), progress_interval_seconds=0)
    assert "progress_interval_seconds" in str(raised.value)


def test_request_bytes_default_headers() -> None:
    target = build_target(LoadSpec(url="http://localhost:9000/a/b?x=1"))
    assert target.host == "localhost"
    assert target.port == 9000
    assert target.request_bytes == (
        b"GET /a/b?x=1 HTTP/1.1\r\n"
        b"Host: localhost:9000\r\n"
        b"User-Agent: hyperlane/" + __version__.encode() + b"\r\n"
        b"Connection: keep-alive\r\n\r\n"
    )


def test_request_default_port_omitted() -> None:
    target = build_target(LoadSpec(url="http://example.test"))
    assert target.port == 80
    assert target.request_bytes.startswith(b"GET / HTTP/1.1\r\nHost: example.test\r\n")


def test_request_ipv6_host_bracketed() -> None:
    target = build_target(LoadSpec(url="http://[::1]:8080/"))
    assert target.host == "::1"
    assert b"\r\nHost: [::1]:8080\r\n" in target.request_bytes


def test_request_header_overrides_default() -> None:
    spec = LoadSpec(url=URL, headers=(("User-Agent", "probe"), ("Host", "svc")))
    request = build_target(spec).request_bytes
    assert request.count(b"User-Agent:") == 1
    assert b"\r\nUser-Agent: probe\r\n" in request
    assert request.count(b"Host:") == 1
    assert b"\r\nHost: svc\r\n" in request


def test_request_body_framed() -> None:
    spec = LoadSpec(url=URL, method="POST", body=b'{"a": 1}')
    request = build_target(spec).request_bytes
    assert b"\r\nContent-Length: 8\r\n" in request
    assert request.endswith(b'\r\n\r\n{"a": 1}')


def test_request_post_empty_length() -> None:
    request = build_target(LoadSpec(url=URL, method="POST")).request_bytes
    assert b"\r\nContent-Length: 0\r\n" in request


def test_request_get_no_length() -> None:
    request = build_target(LoadSpec(url=URL)).request_bytes
    assert b"Content-Length" not in request


def test_https_default_port() -> None:
    target = build_target(LoadSpec(url="https://example.test/"))
    assert target.port == 443
    assert target.tls is True
    assert b"\r\nHost: example.test\r\n" in target.request_bytes


def test_endpoints_prepared_in_order() -> None:
    spec = LoadSpec(
        url=URL,
        headers=(("X-Run", "1"),),
        endpoints=(
            Endpoint("home", path="/"),
            Endpoint("probe", path="/health", method="HEAD", headers=(("X-E", "2"),)),
        ),
    )
    prepared = build_target(spec).requests
    assert [request.name for request in prepared] == ["home", "probe"]
    assert prepared[1].request_bytes.startswith(b"HEAD /health HTTP/1.1\r\n")
    assert b"\r\nX-Run: 1\r\nX-E: 2\r\n" in prepared[1].request_bytes
    assert prepared[1].is_head is True
    assert prepared[0].is_head is False
