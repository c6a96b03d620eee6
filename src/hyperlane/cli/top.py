"""Body of `hyperlane top`: sample every running container and show the figures.

Three outputs share one sampling loop:

- a terminal: one Rich Live table updated in place every interval, with keys that
  change the order (c, m, n, t, i) and q to quit;
- --once: two samples one interval apart, then one table or, with --json, one JSON
  document;
- any other stdout (a pipe or a file): one plain-text table per interval.

Ctrl-C ends every mode with ExitCode.INTERRUPTED (130), as it ends every other
hyperlane command, so a script can tell an interrupt from a finished run. q in the
live view is a normal end and exits with 0.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import sys
import termios
import time
import tty
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from types import TracebackType
from typing import IO, Any

from rich.console import Console
from rich.live import Live
from rich.table import Table

from hyperlane.engines.engine import Engine
from hyperlane.errors import HyperlaneError, ServiceNotReady, UsageError
from hyperlane.exitcodes import ExitCode
from hyperlane.metrics.discovery import ContainerDiscovery, TrackedContainer
from hyperlane.metrics.sample import Sample
from hyperlane.metrics.series import compute_rates
from hyperlane.report.top_view import (
    ContainerRow,
    SortKey,
    build_row,
    render_plain,
    render_table,
    sort_rows,
)
from hyperlane.settings import TopSettings

logger = logging.getLogger(__name__)

SORT_KEYS_BY_KEY: dict[str, SortKey] = {
    "c": "cpu",
    "m": "memory",
    "n": "name",
    "t": "net",
    "i": "io",
}
QUIT_KEY = "q"
KEYS_CAPTION = "keys: c cpu, m memory, n name, t net, i io, q quit"
# Threads that read the stats API at once. Docker responds to each request at the
# next tick of its 1 s stats collector, so reads in sequence would add up to 1 s each.
API_READ_THREADS = 16


class TopSampler:
    """Sample every running container and pair each sample with the one before it."""

    def __init__(self, discovery: ContainerDiscovery) -> None:
        self._discovery = discovery
        self._previous: dict[str, Sample] = {}
        self._failures: dict[str, int] = {}
        self._pool: ThreadPoolExecutor | None = None
        self._tracked: list[TrackedContainer] = []

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)

    def sample_all(self, refresh: bool = True) -> list[ContainerRow]:
        """Read every running container once and return a row for each read.

        With refresh False the containers of the previous call are read again
        without listing them, so no engine request delays the reads. A container
        first seen now has every rate None. A container whose read raised is left
        out, and one that exited is forgotten.
        """
        if refresh:
            self._tracked = self._discovery.refresh()
        tracked = self._tracked
        results = self._read_all(tracked)
        rows = []
        seen = set()
        for item, outcome in zip(tracked, results, strict=True):
            container_id = item.info.container_id
            seen.add(container_id)
            if isinstance(outcome, Exception):
                self._record_failure(item, outcome)
                continue
            rates = compute_rates(self._previous.get(container_id), outcome)
            self._previous[container_id] = outcome
            rows.append(
                build_row(
                    container_id=container_id,
                    name=item.info.name,
                    image=item.info.image,
                    cpu_limit_cores=item.info.cpu_limit_cores,
                    source=item.reader.source,
                    sample=outcome,
                    rates=rates,
                )
            )
        for container_id in set(self._previous) - seen:
            del self._previous[container_id]
        return rows

    def _read_all(self, tracked: list[TrackedContainer]) -> list[Sample | Exception]:
        api_items = [item for item in tracked if item.reader.source == "api"]
        if len(api_items) < 2:
            return [_read_one(item) for item in tracked]
        # A cgroup read takes well under a millisecond, but a Docker stats request
        # waits up to 1 s for the engine's collector, so API reads run in parallel.
        if self._pool is None:
            self._pool = ThreadPoolExecutor(
                max_workers=API_READ_THREADS, thread_name_prefix="hyperlane-top"
            )
        return list(self._pool.map(_read_one, tracked))

    def _record_failure(self, item: TrackedContainer, error: Exception) -> None:
        container_id = item.info.container_id
        self._previous.pop(container_id, None)
        if isinstance(error, ServiceNotReady):
            logger.debug("container %s stopped: %s", item.info.name, error)
            self._discovery.forget(container_id)
            return
        count = self._failures.get(container_id, 0) + 1
        self._failures[container_id] = count
        # The first failure of a container is a warning, repeats would flood the log.
        level = logging.WARNING if count == 1 else logging.DEBUG
        logger.log(
            level,
            "read %d of container %s from %s failed: %s",
            count,
            item.info.name,
            item.reader.source,
            error,
        )


def _read_one(item: TrackedContainer) -> Sample | Exception:
    try:
        return item.reader.read()
    except (HyperlaneError, OSError) as error:
        return error


def run_top_command(settings: TopSettings, json_output: bool) -> int:
    """Check the flags, connect to the engine, run top and return the exit code."""
    if json_output and not settings.once:
        raise UsageError(
            "--json prints one document and needs --once; run "
            "hyperlane top --once --json"
        )
    with connected_engine(settings.engine) as engine:
        return run_top(settings, json_output, engine)


def run_top(settings: TopSettings, json_output: bool, engine: Engine) -> int:
    """Run `hyperlane top` against a connected engine and return the exit code."""
    discovery = ContainerDiscovery(
        engine, source=settings.metrics_source, label_filters=settings.label
    )
    sampler = TopSampler(discovery)
    try:
        if settings.once:
            return _run_once(settings, json_output, engine, sampler)
        if sys.stdout.isatty():
            return _run_live(settings, engine, sampler)
        return _run_plain(settings, sampler, sys.stdout)
    except KeyboardInterrupt:
        logger.debug("top interrupted")
        return int(ExitCode.INTERRUPTED)
    finally:
        sampler.close()


def _run_once(
    settings: TopSettings, json_output: bool, engine: Engine, sampler: TopSampler
) -> int:
    # The first refresh inspects every container and opens its reader, which can
    # take longer than the interval, so the wait starts after it.
    sampler.sample_all()
    time.sleep(settings.interval)
    rows = sort_rows(sampler.sample_all(refresh=False), settings.sort)
    if json_output:
        from hyperlane.report.document import document_header, dumps

        document: dict[str, Any] = document_header("top")
        document["engine"] = engine.info.to_dict()
        document["interval_seconds"] = settings.interval
        document["sort"] = settings.sort
        document["containers"] = [row.to_dict() for row in rows]
        sys.stdout.write(dumps(document))
    elif sys.stdout.isatty():
        console = Console(highlight=False, soft_wrap=False)
        console.print(render_table(rows, _title(engine, settings, settings.sort), ""))
    else:
        _write_plain(sys.stdout, rows)
    return int(ExitCode.SUCCESS)


def _run_plain(settings: TopSettings, sampler: TopSampler, output: IO[str]) -> int:
    """Print one plain table per interval until interrupted."""
    next_time = time.monotonic()
    while True:
        rows = sort_rows(sampler.sample_all(), settings.sort)
        _write_plain(output, rows)
        next_time = _next_tick(next_time, settings.interval)
        time.sleep(max(0.0, next_time - time.monotonic()))


def _write_plain(output: IO[str], rows: list[ContainerRow]) -> None:
    stamp = datetime.now(UTC).isoformat(timespec="seconds")
    output.write(f"{stamp}  {len(rows)} containers\n")
    for line in render_plain(rows):
        output.write(line + "\n")
    output.write("\n")
    output.flush()


def _run_live(settings: TopSettings, engine: Engine, sampler: TopSampler) -> int:
    """Update one Live table in place every interval, and re-sort on a key press."""
    sort: SortKey = settings.sort
    console = Console(highlight=False)
    rows: list[ContainerRow] = []

    def view() -> Table:
        return render_table(
            sort_rows(rows, sort), _title(engine, settings, sort), KEYS_CAPTION
        )

    with (
        _KeyReader(sys.stdin) as keys,
        Live(console=console, auto_refresh=False, screen=False) as live,
    ):
        next_time = time.monotonic()
        while True:
            rows = sampler.sample_all()
            live.update(view(), refresh=True)
            next_time = _next_tick(next_time, settings.interval)
            while (remaining := next_time - time.monotonic()) > 0:
                key = keys.read(remaining)
                if key == QUIT_KEY:
                    return int(ExitCode.SUCCESS)
                if key in SORT_KEYS_BY_KEY:
                    sort = SORT_KEYS_BY_KEY[key]
                    live.update(view(), refresh=True)


def _next_tick(previous: float, interval: float) -> float:
    """Return the next refresh time, restarting the schedule after a slow refresh."""
    now = time.monotonic()
    tick = previous + interval
    return tick if tick > now else now + interval


def _title(engine: Engine, settings: TopSettings, sort: SortKey) -> str:
    return (
        f"hyperlane top: {engine.info.name} {engine.info.version}, every "
        f"{settings.interval:g} s, sorted by {sort}"
    )


class _KeyReader:
    """Single key presses from a terminal, read without waiting for Enter.

    The terminal is put in cbreak mode, which keeps Ctrl-C as SIGINT, and its
    previous mode is restored on exit. When the input is not a terminal, read()
    only waits.
    """

    def __init__(self, stream: IO[str]) -> None:
        self._fd: int | None = None
        self._terminal_fd: int | None = None
        self._saved: list[Any] | None = None
        with contextlib.suppress(AttributeError, OSError, ValueError):
            if stream.isatty():
                self._fd = stream.fileno()

    def __enter__(self) -> _KeyReader:
        if self._fd is not None:
            try:
                self._saved = termios.tcgetattr(self._fd)
                tty.setcbreak(self._fd)
                self._terminal_fd = self._fd
            except termios.error as error:
                logger.debug("keys disabled, cannot set cbreak mode: %s", error)
                self._fd = None
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._terminal_fd is not None and self._saved is not None:
            termios.tcsetattr(self._terminal_fd, termios.TCSADRAIN, self._saved)

    def read(self, timeout_seconds: float) -> str | None:
        """Return one key pressed within the timeout, or None."""
        if self._fd is None:
            time.sleep(timeout_seconds)
            return None
        ready, _, _ = select.select([self._fd], [], [], timeout_seconds)
        if not ready:
            return None
        data = os.read(self._fd, 1)
        if not data:
            # End of input: stop reading keys instead of polling a closed stream.
            self._fd = None
            return None
        return data.decode(errors="replace")


@contextlib.contextmanager
def connected_engine(name: str) -> Iterator[Engine]:
    """Connect to the engine and close its client on exit."""
    from hyperlane.engines.connect import connect

    engine = connect(name)
    try:
        yield engine
    finally:
        engine.close()
