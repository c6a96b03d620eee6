#!/usr/bin/env python3
"""Measure the user-space cost per response of Hyperlane's receive path, without
sockets: httptools with different callback sets, and Hyperlane's own connection
protocol fed from memory.

The response is the one nginx 1.22 sends for the 256-byte file of
bench/load_vs_wrk.py, with its 8 header lines. Run it with the project's
interpreter:

    .venv/bin/python bench/parser_callbacks.py --responses 200000
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import statistics
import time
from collections.abc import Callable
from typing import Any

import httptools

RESPONSE = (
    b"HTTP/1.1 200 OK\r\n"
    b"Server: nginx/1.22.1\r\n"
    b"Date: Fri, 04 Dec 2026 14:59:52 GMT\r\n"
    b"Content-Type: text/html\r\n"
    b"Content-Length: 256\r\n"
    b"Last-Modified: Fri, 04 Dec 2026 14:59:52 GMT\r\n"
    b"Connection: keep-alive\r\n"
    b'ETag: "6b12d568-100"\r\n'
    b"Accept-Ranges: bytes\r\n"
    b"\r\n" + b"x" * 256
)


class CompleteOnly:
    """Callbacks: on_message_complete only."""

    def __init__(self) -> None:
        self.completed = 0

    def on_message_complete(self) -> None:
        self.completed += 1


class WithHeadersComplete(CompleteOnly):
    """Callbacks: on_headers_complete, reading status and keep-alive, and
    on_message_complete."""

    def __init__(self) -> None:
        super().__init__()
        self.parser: httptools.HttpResponseParser | None = None
        self.status = 0
        self.keep_alive = True

    def on_headers_complete(self) -> None:
        assert self.parser is not None
        self.status = self.parser.get_status_code()
        self.keep_alive = self.parser.should_keep_alive()


class WithHeader(WithHeadersComplete):
    """Callbacks: the above plus on_header with a length-header check, as
    Hyperlane's runner has them."""

    def __init__(self) -> None:
        super().__init__()
        self.has_length = False

    def on_header(self, name: bytes, value: bytes) -> None:
        if len(name) in (14, 17) and name.lower() in (
            b"content-length",
            b"transfer-encoding",
        ):
            self.has_length = True


def time_parser(protocol_type: type[CompleteOnly], responses: int) -> float:
    """Return nanoseconds per response for feeding RESPONSE ``responses`` times."""
    protocol = protocol_type()
    parser = httptools.HttpResponseParser(protocol)
    if isinstance(protocol, WithHeadersComplete):
        protocol.parser = parser
    feed = parser.feed_data
    started = time.perf_counter_ns()
    for _ in range(responses):
        feed(RESPONSE)
    elapsed = time.perf_counter_ns() - started
    assert protocol.completed == responses, protocol.completed
    return elapsed / responses


class NullTransport(asyncio.Transport):
    """Transport whose writes go nowhere, so only Python-side work is timed."""

    def write(self, data: bytes | bytearray | memoryview) -> None:
        pass

    def is_closing(self) -> bool:
        return False

    def get_extra_info(self, name: str, default: object = None) -> object:
        return default


def time_hyperlane_connection(responses: int) -> float | None:
    """Return nanoseconds per response through Hyperlane's connection protocol:
    data_received, the httptools callbacks, the latency append and the next send.

    Returns None when the runner's private classes changed shape.
    """
    try:
        # NOTE: these are private names of the runner, typed as Any so that type
        # checks do not depend on them. The case reports None when they change.
        runner: Any = importlib.import_module("hyperlane.load.runner")
        spec_module: Any = importlib.import_module("hyperlane.load.spec")

        loop = asyncio.new_event_loop()
        spec = spec_module.LoadSpec(
            url="http://127.0.0.1:8080/small.html", duration_seconds=60
        )
        state = runner._RunState(spec, spec_module.build_target(spec))
        connection = runner._connection_class(state)(state, loop)
        connection.connection_made(NullTransport())
        # The closed model's first reservation, whatever type the runner uses.
        connection.send(state.acquire())
        started = time.perf_counter_ns()
        for _ in range(responses):
            connection.data_received(RESPONSE)
        elapsed = time.perf_counter_ns() - started
        completed: int = connection.responses
        connection._cancel_timers()
        loop.close()
    except (ImportError, AttributeError, TypeError) as error:
        print(f"Hyperlane connection case skipped: {error!r}")
        return None
    assert completed == responses, completed
    return elapsed / responses


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--responses", type=int, default=200_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    cases: list[tuple[str, Callable[[], float | None]]] = [
        (
            "httptools, on_message_complete only",
            lambda: time_parser(CompleteOnly, args.responses),
        ),
        (
            "httptools, + on_headers_complete",
            lambda: time_parser(WithHeadersComplete, args.responses),
        ),
        (
            "httptools, + on_header (8 headers)",
            lambda: time_parser(WithHeader, args.responses),
        ),
        (
            "Hyperlane _Connection.data_received",
            lambda: time_hyperlane_connection(args.responses),
        ),
    ]
    print(f"{len(RESPONSE)}-byte response, {args.responses} responses, median of")
    print(f"{args.repeats} repeats, user-space nanoseconds per response:\n")
    for name, case in cases:
        timings = [case() for _ in range(args.repeats)]
        figures = [timing for timing in timings if timing is not None]
        if figures:
            print(f"  {name:40} {statistics.median(figures):7.0f} ns")


if __name__ == "__main__":
    main()
