"""HTTP/1.1 load generator on uvloop with httptools, one request in flight per
connection.

Each connection is an ``asyncio.Protocol`` that writes the next request from inside
the response callback, so a keep-alive connection runs without a coroutine switch per
request. One worker coroutine per connection only (re)connects.
"""

from __future__ import annotations

import asyncio
import logging
import math
import socket
import time
from collections.abc import Callable
from typing import cast

import httptools
import uvloop

from hyperlane.errors import UsageError
from hyperlane.load.latency import LatencyRecorder
from hyperlane.load.result import (
    ERROR_KINDS,
    STATUS_CLASSES,
    ErrorKind,
    LoadProgress,
    LoadResult,
)
from hyperlane.load.spec import LoadSpec, Target, build_target

logger = logging.getLogger(__name__)

# Pause after a failed connection before the next attempt, so that a closed port
# costs a few hundred attempts per second per connection instead of a busy loop.
RECONNECT_BACKOFF_SECONDS = 0.02
# Idempotent HTTP methods, which may be sent again when a reused connection closes
# before any byte of the response arrives.
_IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS", "TRACE"})
_NANOSECONDS_PER_SECOND = 1_000_000_000
_LENGTH_HEADERS = (b"content-length", b"transfer-encoding")

_clock_ns = time.perf_counter_ns


class _RunState:
    """Counters and settings shared by all connections of one run."""

    def __init__(self, spec: LoadSpec, target: Target) -> None:
        self.request_bytes = target.request_bytes
        self.timeout_ns = int(spec.timeout_seconds * _NANOSECONDS_PER_SECOND)
        self.timeout_seconds = spec.timeout_seconds
        self.retry_allowed = spec.method.upper() in _IDEMPOTENT_METHODS
        self.is_head = spec.method.upper() == "HEAD"
        self.remaining = spec.requests
        self.stopped = False

        self.sent = 0
        self.completed = 0
        self.retries = 0
        self.errors: dict[ErrorKind, int] = dict.fromkeys(ERROR_KINDS, 0)
        self.errors_total = 0
        self.bytes_received = 0
        self.status_counts = [0] * 10
        self.connections_opened = 0
        self.keep_alive = False
        self.connections: set[_Connection] = set()

        self.recorder = LatencyRecorder()
        self.uncorrected: LatencyRecorder | None = None
        self.interval_ns = 0
        self.late_sends = 0
        self.next_slot = 0
        self.start_ns = _clock_ns()
        if spec.rate_per_second is not None:
            self.uncorrected = LatencyRecorder()
            self.interval_ns = max(
                1, round(_NANOSECONDS_PER_SECOND / spec.rate_per_second)
            )

    def acquire(self) -> int | None:
        """Reserve the next request and return its intended send time.

        Returns None when the run is stopped or the request budget is used up. The
        closed model returns 0, which means "send now".
        """
        if self.stopped:
            return None
        if self.remaining is not None:
            if self.remaining <= 0:
                return None
            self.remaining -= 1
        if self.interval_ns == 0:
            return 0
        slot = self.next_slot
        self.next_slot += 1
        return self.start_ns + slot * self.interval_ns

    def record_error(self, kind: ErrorKind, detail: object) -> None:
        if self.errors[kind] == 0:
            # Only the first error of each kind is logged, because a closed port
            # repeats the same error hundreds of times per second.
            logger.info("First %s error in the load run: %r", kind, detail)
        self.errors[kind] += 1
        self.errors_total += 1

    def record_connect_failure(self, kind: ErrorKind, detail: object) -> None:
        # A request whose connection attempt failed counts as sent and failed, so
        # requests_sent == requests_total + errors_total + in flight stays true.
        self.sent += 1
        self.record_error(kind, detail)


class _Connection(asyncio.Protocol):
    """Protocol for one TCP connection, which writes a request, parses its response
    and repeats."""

    def __init__(self, state: _RunState, loop: asyncio.AbstractEventLoop) -> None:
        self.state = state
        self.loop = loop
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.closed: asyncio.Future[None] = loop.create_future()
        self.failed = False
        self.retry_slot: int | None = None
        self.responses = 0
        self.timer: asyncio.TimerHandle | None = None
        self.scheduled_send: asyncio.TimerHandle | None = None
        self.scheduled_intended_ns = 0

        self.in_flight = False
        self.sent_ns = 0
        self.intended_ns = 0
        self.response_started = False
        self.headers_done = False
        self.has_length = False
        self.replace_parser = False
        self.status = 0
        self.keep_alive = True

    # Connection events.

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TCPTransport implements asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            # Small chunked responses and back-to-back requests must not wait for
            # Nagle's algorithm.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.state.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        state = self.state
        state.connections.discard(self)
        if self.scheduled_send is not None:
            # A request reserved for a later send goes back to the worker, which
            # sends it on the next connection.
            self.retry_slot = self.scheduled_intended_ns
        self._cancel_timers()
        if self.in_flight and not state.stopped:
            self._fail_on_close(exc)
        if not self.closed.done():
            self.closed.set_result(None)

    def _fail_on_close(self, exc: Exception | None) -> None:
        state = self.state
        self.in_flight = False
        if not self.response_started and self.responses > 0 and state.retry_allowed:
            # No byte of the response arrived, so the server most likely closed an
            # idle keep-alive connection before it read the request. The method is
            # idempotent, so the request is sent again.
            state.sent -= 1
            state.retries += 1
            # The closed model measures the retry from its own write.
            self.retry_slot = self.intended_ns if state.interval_ns else 0
            return
        if exc is None and self.headers_done and not self.has_length:
            # Without Content-Length or chunked encoding, the close ends the body.
            self.in_flight = True
            self.keep_alive = False
            self._complete_response()
            return
        self.failed = True
        if isinstance(exc, ConnectionResetError | BrokenPipeError):
            state.record_error("reset", exc)
        elif exc is None:
            state.record_error("closed_mid_response", "connection closed by peer")
        else:
            state.record_error("other", exc)

    def fail(self, kind: ErrorKind, detail: object) -> None:
        """Count the in-flight request as failed and abort the connection."""
        self.in_flight = False
        self.failed = True
        if not self.state.stopped:
            self.state.record_error(kind, detail)
        if self.transport is not None:
            self.transport.abort()

    def _cancel_timers(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.scheduled_send is not None:
            self.scheduled_send.cancel()
            self.scheduled_send = None

    # Sending.

    def schedule(self, intended_ns: int) -> None:
        """Send now, or at ``intended_ns`` on the clock if that is in the future."""
        delay_ns = intended_ns - _clock_ns()
        if delay_ns <= 0:
            self.send(intended_ns)
            return
        self.scheduled_intended_ns = intended_ns
        self.scheduled_send = self.loop.call_later(
            delay_ns / _NANOSECONDS_PER_SECOND, self._send_scheduled, intended_ns
        )

    def _send_scheduled(self, intended_ns: int) -> None:
        self.scheduled_send = None
        self.send(intended_ns)

    def send(self, intended_ns: int) -> None:
        state = self.state
        transport = self.transport
        if state.stopped or transport is None:
            return
        if transport.is_closing():
            self.retry_slot = intended_ns
            return
        now = _clock_ns()
        self.sent_ns = now
        if intended_ns == 0:
            self.intended_ns = now
        else:
            # uvloop 0.23 timers have millisecond resolution and were seen to fire
            # up to a millisecond early. Measuring from the earlier of both times
            # keeps the corrected latency at least as large as the uncorrected one.
            self.intended_ns = min(intended_ns, now)
            if now - intended_ns > state.interval_ns:
                state.late_sends += 1
        self.in_flight = True
        self.response_started = False
        self.headers_done = False
        self.has_length = False
        state.sent += 1
        transport.write(state.request_bytes)
        if self.timer is None:
            self.timer = self.loop.call_later(
                state.timeout_seconds, self._check_timeout
            )

    def _check_timeout(self) -> None:
        # One timer per connection is re-armed lazily for the request in flight,
        # instead of one timer per request.
        self.timer = None
        if not self.in_flight:
            return
        elapsed_ns = _clock_ns() - self.sent_ns
        remaining_ns = self.state.timeout_ns - elapsed_ns
        if remaining_ns <= 0:
            self.fail("timeout", f"no complete response within {elapsed_ns} ns")
            return
        self.timer = self.loop.call_later(
            remaining_ns / _NANOSECONDS_PER_SECOND, self._check_timeout
        )

    # Receiving.

    def data_received(self, data: bytes) -> None:
        state = self.state
        state.bytes_received += len(data)
        if not self.in_flight:
            # Bytes that arrive with no request in flight put the stream out of
            # step with the requests, so the connection is aborted.
            logger.debug(
                "Closing a connection that sent %d unrequested bytes", len(data)
            )
            if self.transport is not None:
                self.transport.abort()
            return
        self.response_started = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as error:
            self.fail("other", error)
        except httptools.HttpParserError as error:
            self.fail("parse", error)
        if self.replace_parser:
            self.replace_parser = False
            self.parser = httptools.HttpResponseParser(self)

    def on_header(self, name: bytes, value: bytes) -> None:
        # The length test skips the lower() copy for almost every other header.
        if len(name) in (14, 17) and name.lower() in _LENGTH_HEADERS:
            self.has_length = True

    def on_headers_complete(self) -> None:
        self.headers_done = True
        self.status = self.parser.get_status_code()
        self.keep_alive = self.parser.should_keep_alive()
        if self.state.is_head and self.status >= 200:
            # httptools has no option for HEAD responses, which have no body, so
            # the message ends here and a new parser reads the next response.
            self.replace_parser = True
            self._complete_response()

    def on_message_complete(self) -> None:
        if 100 <= self.status < 200:
            # An informational response such as 103 Early Hints precedes the
            # final response to the same request.
            self.headers_done = False
            self.has_length = False
            return
        # A HEAD response was already completed at the end of its headers.
        if self.in_flight and not self.replace_parser:
            self._complete_response()

    def _complete_response(self) -> None:
        state = self.state
        now = _clock_ns()
        self.in_flight = False
        if state.stopped:
            return
        latency_ns = now - self.sent_ns
        if latency_ns > state.timeout_ns:
            # The timer fires late under load, but a response slower than the
            # timeout never counts as a success.
            state.record_error("timeout", f"response took {latency_ns} ns")
        else:
            state.completed += 1
            state.status_counts[min(self.status // 100, 9)] += 1
            state.recorder.pending.append(now - self.intended_ns)
            if state.uncorrected is not None:
                state.uncorrected.pending.append(latency_ns)
        self.responses += 1
        if self.responses > 1:
            state.keep_alive = True

        transport = self.transport
        if transport is None or not self.keep_alive or transport.is_closing():
            if transport is not None:
                transport.close()
            return
        slot = state.acquire()
        if slot is None:
            transport.close()
            return
        self.schedule(slot)


async def _connect_and_serve(
    state: _RunState, target: Target, connect_timeout_seconds: float
) -> None:
    """Open connections one after another until the run stops or the budget ends."""
    loop = asyncio.get_running_loop()
    retry_slot: int | None = None
    while not state.stopped:
        slot = retry_slot if retry_slot is not None else state.acquire()
        retry_slot = None
        if slot is None:
            return
        try:
            _, connection = await asyncio.wait_for(
                loop.create_connection(
                    lambda: _Connection(state, loop), target.host, target.port
                ),
                connect_timeout_seconds,
            )
        except ConnectionRefusedError as error:
            state.record_connect_failure("refused", error)
        except TimeoutError as error:
            state.record_connect_failure("connect_timeout", error)
        except OSError as error:
            state.record_connect_failure("other", error)
        else:
            state.connections_opened += 1
            connection.schedule(slot)
            await connection.closed
            retry_slot = connection.retry_slot
            if not connection.failed:
                continue
        await asyncio.sleep(RECONNECT_BACKOFF_SECONDS)


def _build_result(spec: LoadSpec, state: _RunState, stop_ns: int) -> LoadResult:
    duration_seconds = (stop_ns - state.start_ns) / _NANOSECONDS_PER_SECOND
    in_flight = state.sent - state.completed - state.errors_total
    uncorrected = state.uncorrected
    return LoadResult(
        url=spec.url,
        model="closed" if uncorrected is None else "open",
        connections=spec.connections,
        duration_seconds=duration_seconds,
        requests_sent=state.sent,
        requests_total=state.completed,
        requests_in_flight_at_stop=in_flight,
        requests_per_second=state.completed / duration_seconds,
        bytes_received=state.bytes_received,
        status_classes={
            name: state.status_counts[int(name[0])] for name in STATUS_CLASSES
        },
        errors={kind: state.errors[kind] for kind in ERROR_KINDS},
        errors_total=state.errors_total,
        connections_opened=state.connections_opened,
        keep_alive=state.keep_alive,
        latency=state.recorder.summary(),
        histogram=state.recorder.encoded_histogram(),
        latency_uncorrected=None if uncorrected is None else uncorrected.summary(),
        histogram_uncorrected=(
            None if uncorrected is None else uncorrected.encoded_histogram()
        ),
        late_sends_total=None if uncorrected is None else state.late_sends,
        target_rate_per_second=spec.rate_per_second,
        retries_total=state.retries,
    )


def _report_progress(
    state: _RunState,
    progress: Callable[[LoadProgress], None],
    previous: tuple[int, int],
) -> tuple[int, int]:
    """Call ``progress`` and return the (clock, completed) pair it was based on."""
    now = _clock_ns()
    previous_ns, previous_completed = previous
    interval_seconds = (now - previous_ns) / _NANOSECONDS_PER_SECOND
    rate = (state.completed - previous_completed) / max(interval_seconds, 1e-9)
    progress(
        LoadProgress(
            elapsed_seconds=(now - state.start_ns) / _NANOSECONDS_PER_SECOND,
            requests_total=state.completed,
            errors_total=state.errors_total,
            rate_per_second=rate,
            p99_seconds=state.recorder.percentile_seconds(99.0),
        )
    )
    return now, state.completed


async def _run(
    spec: LoadSpec,
    target: Target,
    progress: Callable[[LoadProgress], None] | None,
    progress_interval_seconds: float,
) -> LoadResult:
    state = _RunState(spec, target)
    deadline_ns = state.start_ns + int(spec.duration_seconds * _NANOSECONDS_PER_SECOND)
    interval_ns = int(progress_interval_seconds * _NANOSECONDS_PER_SECOND)
    next_progress_ns = state.start_ns + interval_ns
    previous = (state.start_ns, 0)
    workers = [
        asyncio.create_task(
            _connect_and_serve(state, target, spec.connect_timeout_seconds)
        )
        for _ in range(spec.connections)
    ]
    pending: set[asyncio.Task[None]] = set(workers)
    try:
        while pending:
            now = _clock_ns()
            if now >= deadline_ns:
                break
            wake_ns = deadline_ns
            if progress is not None:
                wake_ns = min(wake_ns, next_progress_ns)
            done, pending = await asyncio.wait(
                pending, timeout=max(0, wake_ns - now) / _NANOSECONDS_PER_SECOND
            )
            for task in done:
                # Re-raise a bug in a worker instead of reporting a short run.
                task.result()
            if progress is not None and _clock_ns() >= next_progress_ns:
                previous = _report_progress(state, progress, previous)
                while next_progress_ns <= _clock_ns():
                    next_progress_ns += interval_ns
        stop_ns = _clock_ns()
        state.stopped = True
        return _build_result(spec, state, stop_ns)
    finally:
        state.stopped = True
        for connection in list(state.connections):
            if connection.transport is not None:
                connection.transport.abort()
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)


def run_load(
    spec: LoadSpec,
    progress: Callable[[LoadProgress], None] | None = None,
    progress_interval_seconds: float = 1.0,
) -> LoadResult:
    """Run the load described by ``spec`` and return its result.

    Blocks the calling thread, which must not be running an event loop, and runs a
    new uvloop event loop that is closed before returning. ``progress`` is called
    about every ``progress_interval_seconds`` from that thread. Raises UsageError
    for an invalid spec or interval.
    """
    target = build_target(spec)
    if (
        isinstance(progress_interval_seconds, bool)
        or not isinstance(progress_interval_seconds, int | float)
        or not math.isfinite(progress_interval_seconds)
        or progress_interval_seconds <= 0
    ):
        raise UsageError(
            f"Invalid progress_interval_seconds {progress_interval_seconds!r}: "
            "must be a number greater than 0, such as 1.0."
        )
    model = "closed" if spec.rate_per_second is None else "open"
    logger.info(
        "Starting %s-model load on %s with %d connections for %.3f s",
        model,
        spec.url,
        spec.connections,
        spec.duration_seconds,
    )
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        result = runner.run(_run(spec, target, progress, progress_interval_seconds))
    logger.info(
        "Finished load on %s: %d requests, %d errors in %.3f s",
        spec.url,
        result.requests_total,
        result.errors_total,
        result.duration_seconds,
    )
    return result
