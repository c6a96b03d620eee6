"""Progress display for long commands: live on a terminal, milestones in logs."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from rich.console import Console
from rich.logging import RichHandler
from rich.status import Status

from hyperlane.units import format_bytes, format_seconds

if TYPE_CHECKING:
    from hyperlane.load import LoadProgress

logger = logging.getLogger("hyperlane.progress")


class LogObserver:
    """Logs each stage once at INFO; byte and request counters stay out of logs."""

    def stage(self, name: str, description: str) -> None:
        logger.info("%s: %s", name, description)

    def export_progress(self, written_bytes: int) -> None:
        return None

    def load_progress(self, progress: LoadProgress) -> None:
        return None


class TerminalObserver(LogObserver):
    """Shows the current stage and its counters in one live line on stderr."""

    def __init__(self, status: Status) -> None:
        self._status = status
        self._stage = ""

    def stage(self, name: str, description: str) -> None:
        self._stage = f"{name}: {description}"
        self._status.update(self._stage)

    def export_progress(self, written_bytes: int) -> None:
        self._status.update(f"{self._stage} ({format_bytes(written_bytes)} written)")

    def load_progress(self, progress: LoadProgress) -> None:
        self._status.update(
            f"{self._stage} | {progress.elapsed_seconds:.0f} s, "
            f"{progress.requests_total} requests, "
            f"{progress.rate_per_second:.0f} requests/s, "
            f"{progress.errors_total} errors, "
            f"p99 {format_seconds(progress.p99_seconds)}"
        )


@contextmanager
def make_observer(quiet: bool) -> Iterator[LogObserver]:
    """Yield a live observer when stderr is a terminal, else a logging one."""
    if quiet or not sys.stderr.isatty():
        yield LogObserver()
        return
    console = Console(stderr=True)
    # Log records go through the same console, so they print above the live line
    # instead of breaking it.
    root = logging.getLogger("hyperlane")
    previous_handlers = root.handlers[:]
    handler = RichHandler(console=console, show_path=False, markup=False)
    root.handlers[:] = [handler]
    try:
        with console.status("starting") as status:
            yield TerminalObserver(status)
    finally:
        root.handlers[:] = previous_handlers
