"""Free loopback ports and bounded polling, for the tests that run the monitor."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

import pytest

POLL_SECONDS = 0.2


def free_port(family: socket.AddressFamily = socket.AF_INET) -> int:
    """Return a TCP port that is free on the loopback address of FAMILY."""
    host = "::1" if family == socket.AF_INET6 else "127.0.0.1"
    with socket.socket(family) as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


def wait_for(check: Callable[[], object], timeout_seconds: float, label: str) -> None:
    """Poll CHECK until it returns a true value, or fail the test after the timeout.

    An OSError from CHECK, such as a refused connection, counts as not yet.
    """
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except OSError:
            pass
        time.sleep(POLL_SECONDS)
    pytest.fail(f"timed out after {timeout_seconds} s waiting for {label}")
