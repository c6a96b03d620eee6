"""Run a command body: logging, signals, and the exit code of each outcome.

This module imports neither Typer nor the settings models, so that the quick
start-up path of ``hyperlane image`` can use it too.
"""

from __future__ import annotations

import errno
import io
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

from hyperlane.exitcodes import ExitCode

logger = logging.getLogger("hyperlane")

# Set by the first SIGINT or SIGTERM.
_interrupted = threading.Event()


def configure_logging(verbose: bool, quiet: bool) -> None:
    """Send the package's log records to stderr, at DEBUG, INFO or WARNING."""
    level = logging.INFO
    if verbose:
        level = logging.DEBUG
    elif quiet:
        level = logging.WARNING
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    root = logging.getLogger("hyperlane")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False


def _interrupt_once(signum: int, frame: FrameType | None) -> None:
    """Raise KeyboardInterrupt for the first SIGINT or SIGTERM and ignore the rest.

    A second Ctrl-C would otherwise break off the removal of the containers that the
    first one started.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _interrupted.set()
    # Without asyncio loaded there is no event loop to cancel. The handler does not
    # import it, since the signal may arrive in the middle of another import.
    asyncio = sys.modules.get("asyncio")
    if asyncio is None:
        raise KeyboardInterrupt
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        raise KeyboardInterrupt from None
    # Inside the load's event loop an exception raised here could surface in a
    # protocol callback, where the loop reports it and carries on. Cancelling the
    # tasks ends the run instead, and run_action maps the cancellation to an
    # interrupt.
    for task in asyncio.all_tasks(loop):
        task.cancel()


def _cancelled_error() -> type[BaseException]:
    """Import asyncio and return its CancelledError.

    run_action calls this only when an exception reaches its handler, so that
    commands without an event loop need not import asyncio at start-up.
    NOTE: pydantic_settings 2.16, which hyperlane.settings imports, imports asyncio
    itself, so every command but the quick start of ``hyperlane image`` still loads
    it.
    """
    import asyncio

    return asyncio.CancelledError


def _check_stdout() -> None:
    """Raise UsageError when stdout is closed, so that no report is lost unseen."""
    if sys.stdout is None:
        from hyperlane.errors import UsageError

        raise UsageError(
            "stdout is closed, so the output has nowhere to go; redirect it to a "
            "file or to /dev/null"
        )


def print_json(document: dict[str, Any]) -> None:
    """Write DOCUMENT to stdout as the indented JSON of every --json output.

    The flush raises a closed pipe's BrokenPipeError here, where run_action
    reports it, and not at interpreter exit.
    """
    from hyperlane.report.document import dumps

    _check_stdout()
    sys.stdout.write(dumps(document))
    sys.stdout.flush()


def stdout_console() -> Any:
    """Return a Rich console on stdout for the terminal summaries.

    A closed pipe raises BrokenPipeError from its writes, where Rich would exit
    with code 1 and no message.
    """
    from rich.console import Console

    _check_stdout()

    class _StdoutConsole(Console):
        def on_broken_pipe(self) -> None:
            raise BrokenPipeError(errno.EPIPE, os.strerror(errno.EPIPE))

    return _StdoutConsole(highlight=False, soft_wrap=False)


def _discard_stdout() -> None:
    """Point stdout's descriptor at /dev/null, so that the flush at exit writes
    there instead of failing again on the closed pipe."""
    try:
        descriptor = sys.stdout.fileno()
    except (AttributeError, ValueError, OSError):
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, descriptor)
    finally:
        os.close(devnull)


def escape_surrogates_on_output() -> None:
    """Make stdout and stderr write a lone surrogate as a \\udcXX escape.

    A file name that is not UTF-8 contains lone surrogates, which a strict UTF-8
    stream cannot write.
    """
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(errors="backslashreplace")


def _print_error(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run_action(action: Callable[[], int], verbose: bool) -> int:
    """Run a command body and return the documented exit code of its outcome.

    Errors are printed to stderr as one line each, and the traceback of an
    unexpected error is logged only when VERBOSE.
    """
    from hyperlane.errors import HyperlaneError

    previous_term = signal.signal(signal.SIGTERM, _interrupt_once)
    previous_int = signal.signal(signal.SIGINT, _interrupt_once)
    try:
        return action()
    except HyperlaneError as error:
        _print_error(f"hyperlane: error: {error}")
        return int(error.exit_code)
    except (KeyboardInterrupt, _cancelled_error()) as error:
        if not isinstance(error, KeyboardInterrupt) and not _interrupted.is_set():
            raise
        _print_error("hyperlane: interrupted; any containers it started were removed")
        return int(ExitCode.INTERRUPTED)
    except BrokenPipeError:
        _discard_stdout()
        _print_error(
            "hyperlane: error: the reader of stdout closed it before the output was "
            "complete (broken pipe)"
        )
        return int(ExitCode.UNEXPECTED_ERROR)
    except Exception as error:
        if verbose:
            logger.exception("unexpected error")
        if isinstance(error, OSError) and error.filename is not None:
            _print_error(
                f"hyperlane: error: cannot write or read {error.filename!r}: "
                f"{error.strerror}; check the free space and permissions there"
            )
            return int(ExitCode.UNEXPECTED_ERROR)
        _print_error(
            f"hyperlane: unexpected error: {type(error).__name__}: {error} "
            "(run with -v for the traceback)"
        )
        return int(ExitCode.UNEXPECTED_ERROR)
    finally:
        signal.signal(signal.SIGTERM, previous_term)
        signal.signal(signal.SIGINT, previous_int)
