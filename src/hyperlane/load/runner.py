"""HTTP/1.1 load generator on uvloop with httptools, one request in flight per
connection.

Each connection is an ``asyncio.Protocol`` that writes the next request from inside
the response callback, so a keep-alive connection runs without a coroutine switch per
request. One worker coroutine per connection only (re)connects. The schedulers live
in ``_RunState.acquire``, which hands out the next request and its intended send
time, so another protocol class could serve the same schedule.
"""

from __future__ import annotations

import asyncio
import logging
import math
import socket
import ssl
import time
from collections.abc import Callable
from typing import cast

import httptools
import uvloop

from hyperlane.errors import UsageError
from hyperlane.load.result import ErrorKind, LoadProgress, LoadResult
from hyperlane.load.schedule import ArrivalSchedule, WeightedPicker, share_size
from hyperlane.load.selfcheck import SelfCheck
from hyperlane.load.spec import LoadSpec, PreparedRequest, Target, build_target
from hyperlane.load.stats import RunStats, build_result

logger = logging.getLogger(__name__)

# Pause after a failed connection before the next attempt, so that a closed port
# costs a few hundred attempts per second per connection instead of a busy loop.
RECONNECT_BACKOFF_SECONDS = 0.02
# Length of one tick of the timeline and of the CPU self-check.
TIMELINE_TICK_SECONDS = 1.0
_NANOSECONDS_PER_SECOND = 1_000_000_000
_LENGTH_HEADERS = (b"content-length", b"transfer-encoding")

_clock_ns = time.perf_counter_ns


class _Endpoint:
    """One endpoint's request and its measured and warm-up figures."""

    def __init__(self, request: PreparedRequest, method: str, open_model: bool):
        self.request_bytes = request.request_bytes
        self.is_head = request.is_head
        self.retry_allowed = request.retry_allowed
        self.stats = RunStats(open_model)
        self.name = request.name
        self.method = method
        self.weight = request.weight


class _Slot:
    """One reserved request: its endpoint, intended send time and figures to update."""

    __slots__ = ("endpoint", "intended_ns", "sinks")

    def __init__(
        self, endpoint: _Endpoint, intended_ns: int, sinks: tuple[RunStats, ...]
    ) -> None:
        self.endpoint = endpoint
        # 0 in the closed model, which means "send now".
        self.intended_ns = intended_ns
        self.sinks = sinks


class _RunState:
    """Schedule, counters and settings shared by all connections of one run."""

    def __init__(self, spec: LoadSpec, target: Target) -> None:
        open_model = spec.is_open
        self.open_model = open_model
        self.timeout_ns = int(spec.timeout_seconds * _NANOSECONDS_PER_SECOND)
        self.timeout_seconds = spec.timeout_seconds
        self.think_time_seconds = spec.think_time_seconds
        self.stopped = False
        self.remaining: int | None = None
        if spec.requests is not None:
            self.remaining = share_size(
                spec.requests, spec.share_index, spec.share_count
            )

        methods = [endpoint.method for endpoint in spec.endpoints] or [spec.method]
        self.endpoints = [
            _Endpoint(request, method, open_model)
            for request, method in zip(target.requests, methods, strict=True)
        ]
        self.picker = WeightedPicker([endpoint.weight for endpoint in self.endpoints])
        self.warmup = RunStats(open_model)
        self.warmup_sinks = (self.warmup,)
        self.measured_sinks: list[tuple[RunStats, ...]]
        if len(self.endpoints) == 1:
            # With one endpoint, every request counts for it and for the run alike,
            # so one RunStats serves both and each response updates it once.
            self.total = self.endpoints[0].stats
            self.measured_sinks = [(self.total,)]
        else:
            self.total = RunStats(open_model)
            self.measured_sinks = [
                (endpoint.stats, self.total) for endpoint in self.endpoints
            ]
        # Closed-model slots carry no intended send time, so one slot per endpoint
        # and figure set is reused instead of a new slot per request.
        self.measured_slots = [
            _Slot(endpoint, 0, sinks)
            for endpoint, sinks in zip(self.endpoints, self.measured_sinks, strict=True)
        ]
        self.warmup_slots = [
            _Slot(endpoint, 0, self.warmup_sinks) for endpoint in self.endpoints
        ]

        self.retries = 0
        self.bytes_sent = 0
        self.connections_opened = 0
        self.keep_alive = False
        self.connections: set[_Connection] = set()
        self.first_errors: set[ErrorKind] = set()
        self.late_sends = 0

        self.start_ns = _clock_ns()
        self.warmup_end_ns = self.start_ns + int(
            spec.warmup_seconds * _NANOSECONDS_PER_SECOND
        )
        # The closed model reads the clock in acquire only until the warm-up ends.
        self.warming_up = self.warmup_end_ns > self.start_ns
        self.share_index = spec.share_index
        self.share_count = spec.share_count
        self.next_share_slot = 0
        self.schedule: ArrivalSchedule | None = None
        if open_model:
            self.schedule = ArrivalSchedule(
                self.start_ns,
                spec.rate_per_second,
                spec.stages,
                spec.share_index,
                spec.share_count,
            )

    def acquire(self) -> _Slot | None:
        """Reserve the next request, its endpoint and its intended send time.

        Returns None when the run is stopped, the request budget is used up or the
        stages have ended.
        """
        if self.stopped:
            return None
        if self.remaining is not None and self.remaining <= 0:
            return None
        schedule = self.schedule
        if schedule is None:
            if self.remaining is not None:
                self.remaining -= 1
            index = self.picker.pick()
            if self.warming_up:
                if _clock_ns() < self.warmup_end_ns:
                    return self.warmup_slots[index]
                self.warming_up = False
            return self.measured_slots[index]
        number = self.next_share_slot * self.share_count + self.share_index
        intended_ns = schedule.intended_ns(number)
        if intended_ns is None:
            return None
        self.next_share_slot += 1
        # The open model assigns a request to the warm-up by its intended send
        # time, so that requests_scheduled counts exactly the measured sends.
        warm = intended_ns < self.warmup_end_ns
        if self.remaining is not None:
            self.remaining -= 1
        index = self.picker.pick()
        sinks = self.warmup_sinks if warm else self.measured_sinks[index]
        return _Slot(self.endpoints[index], intended_ns, sinks)

    def record_error(
        self, sinks: tuple[RunStats, ...], kind: ErrorKind, detail: object
    ) -> None:
        if kind not in self.first_errors:
            # Only the first error of each kind is logged, because a closed port
            # repeats the same error hundreds of times per second.
            self.first_errors.add(kind)
            logger.info("First %s error in the load run: %r", kind, detail)
        for stats in sinks:
            stats.errors[kind] += 1
            stats.errors_total += 1

    def record_connect_failure(
        self, slot: _Slot, kind: ErrorKind, detail: object
    ) -> None:
        # A request whose connection attempt failed counts as sent and failed, so
        # requests_sent == requests_total + errors_total + in flight stays true.
        for stats in slot.sinks:
            stats.sent += 1
        self.record_error(slot.sinks, kind, detail)


# TODO: HTTP/2 needs a second protocol class that multiplexes streams on one
# connection. _RunState.acquire and the schedules would serve it unchanged.
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
        self.retry_slot: _Slot | None = None
        self.responses = 0
        self.timer: asyncio.TimerHandle | None = None
        self.scheduled_send: asyncio.TimerHandle | None = None
        self.scheduled_slot: _Slot | None = None

        self.slot: _Slot | None = None
        self.sinks: tuple[RunStats, ...] = ()
        self.is_head = False
        self.in_flight = False
        self.sent_ns = 0
        self.intended_ns = 0
        self.response_started = False
        self.headers_done = False
        # True when the connection's close ends the body, because the response has
        # no keep-alive and neither Content-Length nor Transfer-Encoding.
        self.close_delimited = False
        # Bytes of the response from its start up to the chunk that ended its
        # headers, for the header scan of a response without keep-alive.
        self.head_data = b""
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
            self.retry_slot = self.scheduled_slot
        self._cancel_timers()
        if self.in_flight and not state.stopped:
            self._fail_on_close(exc)
        if not self.closed.done():
            self.closed.set_result(None)

    def _fail_on_close(self, exc: Exception | None) -> None:
        state = self.state
        slot = self.slot
        self.in_flight = False
        if (
            slot is not None
            and not self.response_started
            and self.responses > 0
            and slot.endpoint.retry_allowed
        ):
            # No byte of the response arrived, so the server most likely closed an
            # idle keep-alive connection before it read the request. The method is
            # idempotent, so the request is sent again.
            for stats in self.sinks:
                stats.sent -= 1
            state.retries += 1
            # The closed model measures the retry from its own write.
            self.retry_slot = slot
            return
        if exc is None and self.headers_done and self.close_delimited:
            # Without Content-Length or chunked encoding, the close ends the body.
            self.in_flight = True
            self.keep_alive = False
            self._complete_response()
            return
        self.failed = True
        if isinstance(exc, ConnectionResetError | BrokenPipeError):
            state.record_error(self.sinks, "reset", exc)
        elif isinstance(exc, ssl.SSLError):
            state.record_error(self.sinks, "tls", exc)
        elif exc is None:
            state.record_error(
                self.sinks, "closed_mid_response", "connection closed by peer"
            )
        else:
            state.record_error(self.sinks, "other", exc)

    def fail(self, kind: ErrorKind, detail: object) -> None:
        """Count the in-flight request as failed and abort the connection."""
        self.in_flight = False
        self.failed = True
        if not self.state.stopped:
            self.state.record_error(self.sinks, kind, detail)
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

    def schedule(self, slot: _Slot, delay_seconds: float = 0.0) -> None:
        """Send ``slot`` at its intended time, or after ``delay_seconds`` in the
        closed model, or now if that time has passed."""
        if slot.intended_ns:
            delay_seconds = (slot.intended_ns - _clock_ns()) / _NANOSECONDS_PER_SECOND
        if delay_seconds <= 0:
            self.send(slot)
            return
        self.scheduled_slot = slot
        self.scheduled_send = self.loop.call_later(
            delay_seconds, self._send_scheduled, slot
        )

    def _send_scheduled(self, slot: _Slot) -> None:
        self.scheduled_send = None
        self.scheduled_slot = None
        self.send(slot)

    def send(self, slot: _Slot) -> None:
        state = self.state
        transport = self.transport
        if state.stopped or transport is None:
            return
        if transport.is_closing():
            self.retry_slot = slot
            return

        now = _clock_ns()
        self.sent_ns = now
        intended_ns = slot.intended_ns
        if intended_ns == 0:
            self.intended_ns = now
        else:
            # uvloop 0.23 timers have millisecond resolution and were seen to fire
            # up to a millisecond early. Measuring from the earlier of both times
            # keeps the corrected latency at least as large as the uncorrected one.
            self.intended_ns = min(intended_ns, now)
            schedule = state.schedule
            if schedule is not None and slot.sinks is not state.warmup_sinks:
                rate = schedule.rate_at(intended_ns)
                if rate > 0 and (now - intended_ns) * rate > _NANOSECONDS_PER_SECOND:
                    state.late_sends += 1

        self.slot = slot
        self.sinks = slot.sinks
        self.is_head = slot.endpoint.is_head
        self.in_flight = True
        self.response_started = False
        self.headers_done = False
        for stats in slot.sinks:
            stats.sent += 1

        request_bytes = slot.endpoint.request_bytes
        state.bytes_sent += len(request_bytes)
        transport.write(request_bytes)
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
        for stats in self.sinks:
            stats.bytes_received += len(data)
        if not self.in_flight:
            # Bytes that arrive with no request in flight put the stream out of
            # step with the requests, so the connection is aborted.
            logger.debug(
                "Closing a connection that sent %d unrequested bytes", len(data)
            )
            if self.transport is not None:
                self.transport.abort()
            return
        if not self.headers_done:
            self.head_data = self.head_data + data if self.response_started else data
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

    # No on_header callback, because httptools calls it once per header line, which
    # cost more than the rest of the parse in bench/parser_callbacks.py. With
    # httptools 0.9.0, should_keep_alive() is False for every body that ends at the
    # close, so only responses without keep-alive need the header scan.
    def on_headers_complete(self) -> None:
        self.headers_done = True
        self.status = self.parser.get_status_code()
        keep_alive = self.parser.should_keep_alive()
        self.keep_alive = keep_alive
        self.close_delimited = not keep_alive and not _has_length_header(self.head_data)
        if self.is_head and self.status >= 200:
            # httptools has no option for HEAD responses, which have no body, so
            # the message ends here and a new parser reads the next response.
            self.replace_parser = True
            self._complete_response()

    def on_message_complete(self) -> None:
        if 100 <= self.status < 200:
            # An informational response such as 103 Early Hints precedes the
            # final response to the same request.
            self.headers_done = False
            self.close_delimited = False
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
            state.record_error(self.sinks, "timeout", f"response took {latency_ns} ns")
        else:
            status_index = min(self.status // 100, 9)
            corrected_ns = now - self.intended_ns
            for stats in self.sinks:
                stats.completed += 1
                stats.status_counts[status_index] += 1
                stats.recorder.pending.append(corrected_ns)
                if stats.uncorrected is not None:
                    stats.uncorrected.pending.append(latency_ns)
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
        if slot.intended_ns == 0 and state.think_time_seconds <= 0:
            # The closed model without think time sends at once, as schedule would.
            self.send(slot)
            return
        self.schedule(slot, state.think_time_seconds)


class _SteadyConnection(_Connection):
    """Connection of a closed-model run with one endpoint, no think time and no
    request budget, where each response sends the next request at once.

    It folds the general path's acquire, schedule and send into the response
    callback, which saves about a third of the Python time per response in
    bench/parser_callbacks.py. During the warm-up, and for any response that is
    not a plain success, it falls back to the general path.
    """

    def __init__(self, state: _RunState, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(state, loop)
        slot = state.measured_slots[0]
        self.steady_slot = slot
        self.steady_stats = slot.sinks[0]
        self.request_bytes = slot.endpoint.request_bytes
        self.request_length = len(self.request_bytes)

    def data_received(self, data: bytes) -> None:
        if self.sinks is not self.steady_slot.sinks or not self.in_flight:
            super().data_received(data)
            return
        # The general data_received, inlined for one figure set: a shared helper
        # would cost one more Python call per response.
        self.steady_stats.bytes_received += len(data)
        if not self.headers_done:
            self.head_data = self.head_data + data if self.response_started else data
        self.response_started = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as error:
            self.fail("other", error)
        except httptools.HttpParserError as error:
            self.fail("parse", error)

    def on_message_complete(self) -> None:
        state = self.state
        transport = self.transport
        now = _clock_ns()
        latency_ns = now - self.sent_ns
        status = self.status
        if (
            status < 200
            or not self.in_flight
            or self.slot is not self.steady_slot
            or state.stopped
            or state.warming_up
            or latency_ns > state.timeout_ns
            or not self.keep_alive
            or transport is None
            or transport.is_closing()
        ):
            super().on_message_complete()
            return

        stats = self.steady_stats
        stats.completed += 1
        stats.status_counts[min(status // 100, 9)] += 1
        stats.recorder.pending.append(latency_ns)
        self.responses += 1
        state.keep_alive = True

        # The next request goes out now. Its send time is the clock reading that
        # ended the previous response, which is at most the few hundred
        # nanoseconds of this callback earlier than the write.
        self.sent_ns = now
        self.intended_ns = now
        self.response_started = False
        self.headers_done = False
        stats.sent += 1
        state.bytes_sent += self.request_length
        transport.write(self.request_bytes)


def _connection_class(state: _RunState) -> type[_Connection]:
    """Return the protocol class for the connections of STATE's run."""
    steady = (
        state.schedule is None
        and state.remaining is None
        and state.think_time_seconds <= 0
        and len(state.endpoints) == 1
        and not state.endpoints[0].is_head
    )
    return _SteadyConnection if steady else _Connection


def _has_length_header(head: bytes) -> bool:
    """Return whether the final response head in ``head`` has a Content-Length or
    Transfer-Encoding header.

    ``head`` starts at a status line. Informational (1xx) heads before the final
    head are skipped, and bytes after the final head's blank line are ignored.
    """
    informational = False
    at_status_line = True
    found = False
    for raw_line in head.split(b"\n"):
        line = raw_line.rstrip(b"\r")
        if at_status_line:
            parts = line.split(None, 2)
            informational = len(parts) > 1 and parts[1].startswith(b"1")
            at_status_line = False
            found = False
        elif not line:
            if not informational:
                return found
            at_status_line = True
        elif line.partition(b":")[0].strip().lower() in _LENGTH_HEADERS:
            found = True
    return found


def _ssl_context(target: Target) -> ssl.SSLContext | None:
    if not target.tls:
        return None
    context = ssl.create_default_context()
    if target.insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    # HTTP/1.1 is the only protocol that _Connection speaks.
    context.set_alpn_protocols(["http/1.1"])
    return context


async def _connect_and_serve(
    state: _RunState, target: Target, connect_timeout_seconds: float
) -> None:
    """Open connections one after another until the run stops or the budget ends."""
    loop = asyncio.get_running_loop()
    context = _ssl_context(target)
    server_hostname = target.host if context is not None else None
    retry_slot: _Slot | None = None
    protocol = _connection_class(state)
    while not state.stopped:
        slot = retry_slot if retry_slot is not None else state.acquire()
        retry_slot = None
        if slot is None:
            return
        try:
            _, connection = await asyncio.wait_for(
                loop.create_connection(
                    lambda: protocol(state, loop),
                    target.host,
                    target.port,
                    ssl=context,
                    server_hostname=server_hostname,
                ),
                connect_timeout_seconds,
            )
        except ConnectionRefusedError as error:
            state.record_connect_failure(slot, "refused", error)
        except TimeoutError as error:
            state.record_connect_failure(slot, "connect_timeout", error)
        except ssl.SSLError as error:
            state.record_connect_failure(slot, "tls", error)
        except OSError as error:
            state.record_connect_failure(slot, "other", error)
        else:
            state.connections_opened += 1
            connection.schedule(slot)
            await connection.closed
            retry_slot = connection.retry_slot
            if not connection.failed:
                continue
        await asyncio.sleep(RECONNECT_BACKOFF_SECONDS)


def _report_progress(
    state: _RunState,
    progress: Callable[[LoadProgress], None],
    previous: tuple[int, int],
) -> tuple[int, int]:
    """Call ``progress`` and return the (clock, completed) pair it was based on."""
    now = _clock_ns()
    previous_ns, previous_completed = previous
    interval_seconds = (now - previous_ns) / _NANOSECONDS_PER_SECOND
    total = state.total
    rate = (total.completed - previous_completed) / max(interval_seconds, 1e-9)
    progress(
        LoadProgress(
            elapsed_seconds=(now - state.start_ns) / _NANOSECONDS_PER_SECOND,
            requests_total=total.completed,
            errors_total=total.errors_total,
            rate_per_second=rate,
            p99_seconds=total.recorder.percentile_seconds(99.0),
        )
    )
    return now, total.completed


class _Timeline:
    """Closes one timeline tick per second after the warm-up, on every figure set."""

    def __init__(self, state: _RunState) -> None:
        self.state = state
        self.tick_ns = int(TIMELINE_TICK_SECONDS * _NANOSECONDS_PER_SECOND)
        self.previous_ns = state.warmup_end_ns
        self.next_ns = state.warmup_end_ns + self.tick_ns

    def close_tick(self, now_ns: int) -> None:
        state = self.state
        start = (self.previous_ns - state.warmup_end_ns) / _NANOSECONDS_PER_SECOND
        end = (now_ns - state.warmup_end_ns) / _NANOSECONDS_PER_SECOND
        state.total.close_tick(start, end)
        for endpoint in state.endpoints:
            # A single endpoint shares the run's RunStats, closed just above.
            if endpoint.stats is not state.total:
                endpoint.stats.close_tick(start, end)
        self.previous_ns = now_ns
        while self.next_ns <= now_ns:
            self.next_ns += self.tick_ns


async def _run(
    spec: LoadSpec,
    target: Target,
    progress: Callable[[LoadProgress], None] | None,
    progress_interval_seconds: float,
    cpu_clock: Callable[[], float],
) -> LoadResult:
    state = _RunState(spec, target)
    check = SelfCheck(cpu_clock, state.start_ns)
    timeline = _Timeline(state)
    deadline_ns = state.start_ns + int(spec.run_seconds * _NANOSECONDS_PER_SECOND)
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
            wake_ns = min(deadline_ns, timeline.next_ns)
            if progress is not None:
                wake_ns = min(wake_ns, next_progress_ns)
            done, pending = await asyncio.wait(
                pending, timeout=max(0, wake_ns - now) / _NANOSECONDS_PER_SECOND
            )
            for task in done:
                # Re-raise a bug in a worker instead of reporting a short run.
                task.result()
            now = _clock_ns()
            if now >= timeline.next_ns:
                timeline.close_tick(now)
                check.check_cpu(now)
            if progress is not None and now >= next_progress_ns:
                previous = _report_progress(state, progress, previous)
                while next_progress_ns <= _clock_ns():
                    next_progress_ns += interval_ns
        stop_ns = _clock_ns()
        state.stopped = True
        if stop_ns > timeline.previous_ns and stop_ns > state.warmup_end_ns:
            timeline.close_tick(stop_ns)
        check.check_cpu(stop_ns, whole_run=True)
        return _finish(spec, state, check, stop_ns)
    finally:
        state.stopped = True
        for connection in list(state.connections):
            if connection.transport is not None:
                connection.transport.abort()
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)


def _finish(
    spec: LoadSpec, state: _RunState, check: SelfCheck, stop_ns: int
) -> LoadResult:
    measured_start_ns = min(state.warmup_end_ns, stop_ns)
    requests_unsent: int | None = None
    requests_scheduled: int | None = None
    schedule = state.schedule
    if schedule is not None:
        due = schedule.due_in_share(stop_ns, spec.requests) - schedule.due_in_share(
            measured_start_ns - 1, spec.requests
        )
        requests_unsent = max(0, due - state.total.sent)
        requests_scheduled = state.total.sent + requests_unsent
        check.check_rate(requests_scheduled, requests_unsent, state.late_sends)
    statuses = state.total.status_counts
    if state.total.completed > 0 and statuses[2] + statuses[3] == 0:
        # No counts in the text, so that the workers' copies merge into one.
        check.warn(
            "status",
            "no response had a 2xx or 3xx status, so the latency figures describe "
            "error responses; check the URL, --path and the server's logs",
        )
    return build_result(
        spec,
        total=state.total,
        endpoints=[
            (endpoint.name, endpoint.method, endpoint.weight, endpoint.stats)
            for endpoint in state.endpoints
        ],
        duration_seconds=(stop_ns - measured_start_ns) / _NANOSECONDS_PER_SECOND,
        connections_opened=state.connections_opened,
        keep_alive=state.keep_alive,
        retries_total=state.retries,
        late_sends_total=state.late_sends if schedule is not None else None,
        requests_unsent=requests_unsent,
        requests_scheduled=requests_scheduled,
        bytes_sent=state.bytes_sent,
        warmup_requests_total=state.warmup.sent,
        generator_cpu_seconds=check.cpu_seconds(),
        warnings=check.warnings,
    )


def _validate_interval(progress_interval_seconds: float) -> None:
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


def run_load(
    spec: LoadSpec,
    progress: Callable[[LoadProgress], None] | None = None,
    progress_interval_seconds: float = 1.0,
    cpu_clock: Callable[[], float] = time.thread_time,
) -> LoadResult:
    """Run the load described by ``spec`` and return its result.

    Blocks the calling thread, which must not be running an event loop, and runs a
    new uvloop event loop that is closed before returning. ``progress`` is called
    about every ``progress_interval_seconds`` from that thread. ``cpu_clock``
    returns the CPU seconds used by the event loop's thread, for the self-check.
    Raises UsageError for an invalid spec or interval.
    """
    target = build_target(spec)
    _validate_interval(progress_interval_seconds)
    model = "open" if spec.is_open else "closed"
    logger.info(
        "Starting %s-model load on %s with %d connections for %.3f s",
        model,
        spec.url,
        spec.connections,
        spec.run_seconds,
    )
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        result = runner.run(
            _run(spec, target, progress, progress_interval_seconds, cpu_clock)
        )
    logger.info(
        "Finished load on %s: %d requests, %d errors in %.3f s",
        spec.url,
        result.requests_total,
        result.errors_total,
        result.duration_seconds,
    )
    return result
