"""Cold start: the time from container create to the first 2xx response on a path."""

from __future__ import annotations

import http.client
import logging
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import docker.errors
from docker.models.containers import Container

from hyperlane.engines import Engine
from hyperlane.errors import ServiceNotReady

logger = logging.getLogger(__name__)

POLL_INTERVAL_SECONDS = 0.01
PROBE_TIMEOUT_SECONDS = 1.0
LOG_TAIL_LINES = 5


@dataclass(frozen=True)
class StartAttempt:
    """One cold start, timed with the monotonic clock of this host."""

    create_seconds: float
    """From the create request to its response."""
    start_seconds: float
    """From the start request to its response."""
    create_to_ready_seconds: float
    """From the create request to the first 2xx response on the path."""
    probes: int
    """HTTP requests sent until the first 2xx, failures included."""


@dataclass(frozen=True)
class StartResult:
    """Cold starts of one image, each in a fresh container."""

    attempts: tuple[StartAttempt, ...]
    path: str
    container_port: int
    method: str = (
        "create → start → GET PATH on 127.0.0.1 every 10 ms until a 2xx response; "
        "each attempt in a new container"
    )

    @property
    def median_seconds(self) -> float:
        return statistics.median(a.create_to_ready_seconds for a in self.attempts)

    def to_dict(self) -> dict[str, Any]:
        ready = [a.create_to_ready_seconds for a in self.attempts]
        return {
            "attempts": [asdict(a) for a in self.attempts],
            "path": self.path,
            "container_port": self.container_port,
            "method": self.method,
            "cold_start_min_seconds": min(ready),
            "cold_start_median_seconds": self.median_seconds,
            "cold_start_max_seconds": max(ready),
        }


def _get_status(port: int, path: str) -> int | None:
    connection = http.client.HTTPConnection(
        "127.0.0.1", port, timeout=PROBE_TIMEOUT_SECONDS
    )
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        response.read()
        return response.status
    except (OSError, http.client.HTTPException):
        return None
    finally:
        connection.close()


def _log_tail(container: Container) -> str:
    try:
        text = container.logs(tail=LOG_TAIL_LINES).decode(errors="replace").strip()
    except docker.errors.APIError:
        return ""
    return f" Last output: {text!r}." if text else " It printed nothing."


def _raise_if_exited(container: Container, container_port: int) -> None:
    state = container.attrs["State"]
    if state.get("Status") in ("exited", "dead") or not state.get("Running", True):
        raise ServiceNotReady(
            f"container {container.name} exited with code {state.get('ExitCode')} "
            f"before responding on port {container_port}.{_log_tail(container)} "
            "Check the image's command, or run it by hand to see why it stops"
        )


def wait_until_ready(
    engine: Engine,
    container: Container,
    container_port: int,
    path: str,
    deadline_seconds: float,
    clock: Callable[[], float] = time.monotonic,
) -> int:
    """Poll ``path`` until a 2xx response and return the number of requests sent.

    Raises ServiceNotReady when the container exits or the deadline (a ``clock``
    reading) passes first; the message gives the last status or error seen.
    """
    probes = 0
    last_status: int | None = None
    host_port: int | None = None
    while True:
        container.reload()
        _raise_if_exited(container, container_port)
        if host_port is None:
            try:
                host_port = engine.host_port(container, container_port)
            except ServiceNotReady:
                # The container may have exited between the two inspections.
                container.reload()
                _raise_if_exited(container, container_port)
                raise
        probes += 1
        last_status = _get_status(host_port, path)
        succeeded = last_status is not None and 200 <= last_status < 300
        if succeeded and clock() <= deadline_seconds:
            return probes
        if clock() > deadline_seconds:
            if succeeded:
                seen = f"the first 2xx came after the deadline, HTTP {last_status}"
            elif last_status is not None:
                seen = f"the last response was HTTP {last_status}"
            else:
                seen = "nothing answered"
            raise ServiceNotReady(
                f"container {container.name} gave no 2xx response on port "
                f"{container_port} path {path!r} within --start-timeout ({seen})."
                f"{_log_tail(container)} Check --port and --path, or raise "
                "--start-timeout"
            )
        time.sleep(POLL_INTERVAL_SECONDS)


def measure_cold_starts(
    engine: Engine,
    image: str,
    container_port: int,
    path: str,
    starts: int,
    timeout_seconds: float,
    name_prefix: str,
    track: Callable[[Container], None],
    clock: Callable[[], float] = time.monotonic,
) -> StartResult:
    """Start ``image`` ``starts`` times in fresh containers and time each start.

    ``track`` receives each container as soon as it exists, so that the caller can
    remove it on any exit path. This function removes each one after its attempt.
    """
    attempts: list[StartAttempt] = []
    for index in range(starts):
        began = clock()
        container = engine.create_container(
            image, container_port, name=f"{name_prefix}-start{index}"
        )
        track(container)
        created = clock()
        engine.start_container(container)
        started = clock()
        probes = wait_until_ready(
            engine, container, container_port, path, began + timeout_seconds, clock
        )
        ready = clock()
        attempts.append(
            StartAttempt(
                create_seconds=created - began,
                start_seconds=started - created,
                create_to_ready_seconds=ready - began,
                probes=probes,
            )
        )
        logger.info("cold start %d: %.3f s", index + 1, ready - began)
        engine.remove_container(container)
    return StartResult(tuple(attempts), path, container_port)
