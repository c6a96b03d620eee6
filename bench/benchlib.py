"""Helpers that the benchmark scripts share: child process groups, clean-up on
signals, tool versions and Markdown tables.

The scripts import it as ``benchlib``, which works because Python puts the folder
of the script it runs first on ``sys.path``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import FrameType
from typing import IO, Any

# Time a child group has to exit after SIGTERM, and then after SIGKILL.
TERMINATE_WAIT_SECONDS = 3.0


class ProcessGroup:
    """Every child process started by this script, each in its own session, so that
    one killpg reaches the child and everything it started."""

    def __init__(self) -> None:
        self.processes: list[subprocess.Popen[bytes]] = []

    def start(
        self,
        argv: Sequence[str],
        stdout: int | IO[Any],
        stderr: int | IO[Any],
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> subprocess.Popen[bytes]:
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
            env=env,
            cwd=cwd,
            start_new_session=True,
        )
        self.processes.append(process)
        return process

    def stop_all(self) -> None:
        """Send SIGTERM to every live child group, then SIGKILL to what remains."""
        live = [process for process in self.processes if process.returncode is None]
        for process in live:
            signal_group(process, signal.SIGTERM)
        deadline = time.monotonic() + TERMINATE_WAIT_SECONDS
        for process in live:
            try:
                process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                signal_group(process, signal.SIGKILL)
                process.wait(TERMINATE_WAIT_SECONDS)
            # A group can outlive its leader, for example nginx workers.
            signal_group(process, signal.SIGKILL)
        self.processes.clear()


def signal_group(process: subprocess.Popen[bytes], signal_number: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal_number)


def raise_keyboard_interrupt(signal_number: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signal_number}")


def first_line(argv: Sequence[str]) -> str:
    try:
        completed = subprocess.run(
            argv, capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"unavailable ({error})"
    output = (completed.stdout + completed.stderr).strip().splitlines()
    return output[0] if output else "unavailable"


def format_row(cells: Sequence[str], widths: Sequence[int]) -> str:
    return (
        "| " + " | ".join(c.rjust(w) for c, w in zip(cells, widths, strict=True)) + " |"
    )


def print_table(title: str, header: Sequence[str], rows: list[list[str]]) -> None:
    """Print a Markdown table with right-aligned columns."""
    widths = [
        max(len(header[i]), *(len(r[i]) for r in rows)) for i in range(len(header))
    ]
    print(f"\n{title}\n")
    print(format_row(header, widths))
    print("|" + "|".join("-" * (w + 1) + ":" for w in widths) + "|")
    for row in rows:
        print(format_row(row, widths))


def positive_integer(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be 1 or more")
    return value


@contextlib.contextmanager
def cleanup_on_exit(processes: ProcessGroup) -> Iterator[None]:
    previous = {
        number: signal.signal(number, raise_keyboard_interrupt)
        for number in (signal.SIGTERM, signal.SIGHUP)
    }
    try:
        yield
    finally:
        processes.stop_all()
        for number, handler in previous.items():
            signal.signal(number, handler)
