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


def trial_line(trial: SloTrial) -> str:
    """Return one SLO trial as a line: number, purpose, limits, verdict, figures."""
    memory = trial.limits.memory_bytes
    memory_text = "no memory limit" if memory is None else f"{memory / 2**20:.0f} MiB"
    verdict = "passed" if trial.passed else "failed"
    return (
        f"{trial.index} ({trial.purpose}): CPU {trial.limits.cpu_cores * 1000:.0f}m, "
        f"{memory_text}: {verdict}: {trial.reason}"
    )


if TYPE_CHECKING:
    from hyperlane.load import LoadProgress
    from hyperlane.sizing.slo import SloTrial

logger = logging.getLogger("hyperlane.progress")


class LogObserver:
    """Logs each stage once at INFO; byte and request counters stay out of logs."""

    def stage(self, name: str, description: str) -> None:
        logger.info("%s: %s", name, description)

    def export_progress(self, written_bytes: int) -> None:
        return None

    def load_progress(self, progress: LoadProgress) -> None:
        return None

    def trial_done(self, trial: SloTrial) -> None:
        logger.info("SLO trial %s", trial_line(trial))


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

    def trial_done(self, trial: SloTrial) -> None:
        self._status.console.print(f"trial {trial_line(trial)}", highlight=False)

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
