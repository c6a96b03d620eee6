"""Load generation in several worker processes, each with its own uvloop loop.

The parent splits the connections and, through LoadSpec.share_index and
share_count, the open-model schedule and the request budget. Workers start
together on a shared monotonic time, report progress through a pipe, and send
their LoadResult as a dict, which the parent merges exactly.
"""

from __future__ import annotations

import ctypes
import dataclasses
import logging
import multiprocessing
import os
import signal
import time
import traceback
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection, wait
from multiprocessing.context import SpawnProcess
from typing import Any

from hyperlane import errors
from hyperlane.errors import HyperlaneError, UsageError
from hyperlane.load.merge import load_result_from_dict, merge_results
from hyperlane.load.result import LoadProgress, LoadResult
from hyperlane.load.runner import run_load
from hyperlane.load.spec import LoadSpec, build_target

logger = logging.getLogger(__name__)

RunLoad = Callable[..., LoadResult]

# Time for every worker to import the load generator and report that it is ready.
STARTUP_TIMEOUT_SECONDS = 60.0
# Delay from the moment all workers are ready to their common start, so that the
# start message reaches every worker before the start time.
START_DELAY_SECONDS = 0.05
# Time after the planned end of the run for every worker to send its result.
FINISH_GRACE_SECONDS = 30.0
# Time for a worker to exit after SIGTERM before it is killed.
TERMINATE_TIMEOUT_SECONDS = 2.0
# From <linux/prctl.h>.
_PR_SET_PDEATHSIG = 1


class LoadWorkerFailed(HyperlaneError):
    """A load worker process raised an exception or exited without a result."""


def run_load_workers(
    spec: LoadSpec,
    workers: int,
    progress: Callable[[LoadProgress], None] | None = None,
    progress_interval_seconds: float = 1.0,
    *,
    run: RunLoad = run_load,
) -> LoadResult:
    """Run ``spec`` in ``workers`` processes and return their merged result.

    Each worker gets at least one of the connections, and the open-model schedule
    and any request budget are split so that the workers together send what one
    process would. ``workers=1`` calls ``run`` in this process. ``progress``
    receives the sum of the workers' latest snapshots. ``run`` is the function each
    worker calls, run_load unless a test replaces it, and must be importable by
    name in a new interpreter.

    Raises UsageError for an invalid spec or worker count, LoadWorkerFailed, or the
    worker's own HyperlaneError class, when a worker fails. KeyboardInterrupt stops
    every worker before it propagates.
    """
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise UsageError(
            f"Invalid workers {workers!r}: must be an integer >= 1. Pass --workers 1 "
            "or more."
        )
    if workers == 1:
        return with_error_warning(
            run(
                spec,
                progress=progress,
                progress_interval_seconds=progress_interval_seconds,
            )
        )
    build_target(spec)
    if workers > spec.connections:
        raise UsageError(
            f"Invalid workers {workers!r}: more than the {spec.connections!r} "
            "connections, but each worker needs at least one. Pass --workers at "
            f"most {spec.connections}, or --connections {workers} or more."
        )
    if spec.share_count != 1:
        raise UsageError(
            f"Invalid share_count {spec.share_count!r}: the spec is already a share "
            "of a split load, so it cannot be split again. Pass share_count 1."
        )
    shares = split_spec(spec, workers)
    if len(shares) < workers:
        logger.info(
            "Running %d load workers instead of %d because only %d requests are "
            "to be sent",
            len(shares),
            workers,
            spec.requests,
        )
    pool = _WorkerPool(shares, run, progress, progress_interval_seconds)
    return with_error_warning(pool.run())


# Above this share of failed requests, the figures describe a failing service.
ERROR_SHARE_WARNING = 0.01


def with_error_warning(result: LoadResult) -> LoadResult:
    """Return the result with a warning when over 1 % of its requests failed."""
    attempts, failed = result.failure_counts()
    if attempts == 0 or failed <= ERROR_SHARE_WARNING * attempts:
        return result
    kinds = ", ".join(
        f"{kind} {count}" for kind, count in result.errors.items() if count
    )
    detail = f" (errors: {kinds})" if kinds else ""
    message = (
        f"{failed} of {attempts} requests failed ({failed / attempts * 100:.1f} %)"
        f"{detail}, so latency, rate and sizing describe a failing service; "
        "lower --connections or --rate, or check the server"
    )
    logger.warning("%s", message)
    return dataclasses.replace(result, warnings=[*result.warnings, message])


def split_spec(spec: LoadSpec, workers: int) -> list[LoadSpec]:
    """Return the specs of the workers that share ``spec``.

    Connections are split as evenly as possible, the first workers taking the
    remainder. With a request budget smaller than ``workers``, only that many
    workers are returned, so that each has at least one request.
    """
    count = workers if spec.requests is None else min(workers, spec.requests)
    base, remainder = divmod(spec.connections, count)
    return [
        dataclasses.replace(
            spec,
            connections=base + (1 if index < remainder else 0),
            share_index=index,
            share_count=count,
        )
        for index in range(count)
    ]


def aggregate_progress(snapshots: Sequence[LoadProgress]) -> LoadProgress:
    """Combine the latest progress snapshot of every worker into one.

    Counts and rates add up, elapsed time is the longest, and the p99 is the highest
    of the workers' p99s, an upper bound of the p99 of all their latencies.
    """
    combined: dict[str, Any] = {}
    for field in dataclasses.fields(LoadProgress):
        values = [getattr(snapshot, field.name) for snapshot in snapshots]
        combined[field.name] = _aggregate_progress_field(field.name, values)
    return LoadProgress(**combined)


def _aggregate_progress_field(name: str, values: list[Any]) -> Any:
    if name.endswith(("_total", "_per_second")):
        return sum(values)
    if name.endswith("_seconds"):
        present = [value for value in values if value is not None]
        return max(present) if present else None
    raise TypeError(
        f"No rule to combine the progress field {name!r} of several workers: add "
        "one to hyperlane.load.workers."
    )


def _share_result(result: LoadResult, share: LoadSpec) -> LoadResult:
    """Give a share's result its part of the target rate, so that the merge, which
    adds target rates up, reports the whole rate once."""
    target = result.target_rate_per_second
    if target is None or share.share_count == 1 or target != share.rate_per_second:
        return result
    return dataclasses.replace(
        result, target_rate_per_second=target / share.share_count
    )


def _stop_with_parent(parent_pid: int) -> None:
    """Have the kernel send SIGTERM to this process when its parent dies.

    Without it, a worker whose parent was killed by SIGKILL keeps loading the
    target until its own duration ends. Linux only: elsewhere this does nothing.
    """
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        prctl = libc.prctl
    except (OSError, AttributeError):
        return
    if prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
        logger.debug("prctl(PR_SET_PDEATHSIG) failed: errno %d", ctypes.get_errno())
        return
    if os.getppid() != parent_pid:
        # The parent died before prctl took effect, so no signal will come.
        os._exit(1)


def _worker_main(
    index: int,
    spec: LoadSpec,
    connection: Connection,
    run: RunLoad,
    send_progress: bool,
    progress_interval_seconds: float,
    parent_pid: int,
) -> None:
    """Run one share of the load in a worker process and send back its result."""
    # The terminal sends Ctrl-C to the whole process group, and the parent stops
    # the workers itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _stop_with_parent(parent_pid)
    try:
        connection.send(("ready", None))
        if not connection.poll(STARTUP_TIMEOUT_SECONDS + START_DELAY_SECONDS):
            return
        kind, start_monotonic = connection.recv()
        if kind != "start":
            return
        time.sleep(max(0.0, start_monotonic - time.monotonic()))

        def report(snapshot: LoadProgress) -> None:
            connection.send(("progress", dataclasses.asdict(snapshot)))

        result = run(
            spec,
            progress=report if send_progress else None,
            progress_interval_seconds=progress_interval_seconds,
        )
        connection.send(("result", result.to_dict()))
    except BaseException as error:
        # Every failure, SystemExit included, goes to the parent with its traceback.
        connection.send(
            ("error", (type(error).__name__, str(error), traceback.format_exc()))
        )
    finally:
        connection.close()


class _WorkerPool:
    """The worker processes of one run, their pipes and their latest messages."""

    def __init__(
        self,
        shares: list[LoadSpec],
        run: RunLoad,
        progress: Callable[[LoadProgress], None] | None,
        progress_interval_seconds: float,
    ) -> None:
        self.shares = shares
        self.run_function = run
        self.progress = progress
        self.progress_interval_seconds = progress_interval_seconds
        # spawn starts each worker in a fresh interpreter, so no thread or event
        # loop of the parent is copied into it, as fork after threads exist would.
        self.context = multiprocessing.get_context("spawn")
        self.processes: list[SpawnProcess] = []
        self.connections: list[Connection] = []
        self.ready: set[int] = set()
        self.results: dict[int, dict[str, Any]] = {}
        self.snapshots: dict[int, LoadProgress] = {}
        self.updated: set[int] = set()

    def run(self) -> LoadResult:
        finished = False
        try:
            self._start()
            self._wait_until_ready()
            start = time.monotonic() + START_DELAY_SECONDS
            for connection in self.connections:
                connection.send(("start", start))
            planned_seconds = max(share.run_seconds for share in self.shares)
            self._wait_for_results(start + planned_seconds + FINISH_GRACE_SECONDS)
            finished = True
        finally:
            self._stop(graceful=finished)
        count = len(self.shares)
        sources = [f"load worker {index} of {count}" for index in range(count)]
        parsed = [
            _share_result(
                load_result_from_dict(self.results[index], source=sources[index]),
                self.shares[index],
            )
            for index in range(count)
        ]
        return merge_results(parsed, sources=sources)

    def _start(self) -> None:
        for index, share in enumerate(self.shares):
            parent_end, child_end = self.context.Pipe(duplex=True)
            process = self.context.Process(
                target=_worker_main,
                args=(
                    index,
                    share,
                    child_end,
                    self.run_function,
                    self.progress is not None,
                    self.progress_interval_seconds,
                    os.getpid(),
                ),
                name=f"hyperlane-load-worker-{index}",
                # Daemon workers stop when this process exits normally or by
                # Ctrl-C, and PR_SET_PDEATHSIG stops them after a SIGKILL of it.
                daemon=True,
            )
            process.start()
            child_end.close()
            self.processes.append(process)
            self.connections.append(parent_end)
        logger.info(
            "Started %d load workers, pids %s",
            len(self.processes),
            [process.pid for process in self.processes],
        )

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
        while len(self.ready) < len(self.processes):
            if not self._receive_until(deadline):
                missing = sorted(set(range(len(self.processes))) - self.ready)
                raise LoadWorkerFailed(
                    f"Load workers {missing!r} did not start within "
                    f"{STARTUP_TIMEOUT_SECONDS} s. Check the machine's load, or pass "
                    "fewer --workers."
                )

    def _wait_for_results(self, deadline: float) -> None:
        while len(self.results) < len(self.processes):
            if not self._receive_until(deadline):
                missing = sorted(set(range(len(self.processes))) - set(self.results))
                raise LoadWorkerFailed(
                    f"Load workers {missing!r} sent no result within "
                    f"{FINISH_GRACE_SECONDS} s after the planned end of the run. "
                    "Pass a shorter --timeout, or fewer --workers."
                )

    def _receive_until(self, deadline: float) -> bool:
        """Handle the messages that arrive before ``deadline``.

        Returns False if none arrived. Raises LoadWorkerFailed for a worker that
        reported an error or exited without its result.
        """
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        waiting = [
            self.connections[index]
            for index in range(len(self.processes))
            if index not in self.results
        ]
        sentinels = [
            self.processes[index].sentinel
            for index in range(len(self.processes))
            if index not in self.results
        ]
        ready = wait([*waiting, *sentinels], timeout=remaining)
        if not ready:
            return False
        for index, connection in enumerate(self.connections):
            if index not in self.results and connection in ready:
                self._drain(index)
        for index, process in enumerate(self.processes):
            if index not in self.results and process.sentinel in ready:
                # The pipe may still hold the last messages of a worker that exited.
                self._drain(index)
                if index not in self.results:
                    raise self._exit_error(index)
        return True

    def _drain(self, index: int) -> None:
        connection = self.connections[index]
        try:
            while index not in self.results and connection.poll():
                kind, payload = connection.recv()
                self._handle(index, kind, payload)
        except (EOFError, OSError):
            if index not in self.results:
                raise self._exit_error(index) from None

    def _handle(self, index: int, kind: str, payload: Any) -> None:
        if kind == "ready":
            self.ready.add(index)
        elif kind == "progress":
            self._handle_progress(index, LoadProgress(**payload))
        elif kind == "result":
            self.results[index] = payload
        elif kind == "error":
            raise self._worker_error(index, *payload)

    def _handle_progress(self, index: int, snapshot: LoadProgress) -> None:
        self.snapshots[index] = snapshot
        self.updated.add(index)
        running = set(range(len(self.processes))) - set(self.results)
        if self.progress is None or not running <= self.updated:
            return
        # One callback per round of snapshots, once every running worker sent one.
        self.updated.clear()
        self.progress(aggregate_progress(list(self.snapshots.values())))

    def _worker_error(
        self, index: int, type_name: str, message: str, trace: str
    ) -> HyperlaneError:
        logger.debug("Traceback of load worker %d:\n%s", index, trace)
        label = f"Load worker {index} of {len(self.processes)}"
        error_class = getattr(errors, type_name, None)
        if isinstance(error_class, type) and issubclass(error_class, HyperlaneError):
            return error_class(f"{label} failed: {message}")
        return LoadWorkerFailed(
            f"{label} (pid {self.processes[index].pid}) failed with {type_name}: "
            f"{message}. Run with --workers 1 to see the error in this process."
        )

    def _exit_error(self, index: int) -> LoadWorkerFailed:
        process = self.processes[index]
        process.join(TERMINATE_TIMEOUT_SECONDS)
        return LoadWorkerFailed(
            f"Load worker {index} of {len(self.processes)} (pid {process.pid}) "
            f"exited with code {process.exitcode!r} before sending its result. "
            "Check the log and the machine's memory, or run with --workers 1."
        )

    def _stop(self, graceful: bool) -> None:
        """Stop every worker that is still running and close the pipes.

        ``graceful`` first gives workers that sent their result time to exit.
        """
        if graceful:
            for process in self.processes:
                process.join(TERMINATE_TIMEOUT_SECONDS)
        for process in self.processes:
            if process.is_alive():
                process.terminate()
        for process in self.processes:
            process.join(TERMINATE_TIMEOUT_SECONDS)
            if process.is_alive():
                logger.warning(
                    "Load worker %s (pid %s) ignored SIGTERM, killing it",
                    process.name,
                    process.pid,
                )
                process.kill()
                process.join(TERMINATE_TIMEOUT_SECONDS)
        for connection in self.connections:
            connection.close()
