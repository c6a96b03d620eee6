"""Body of ``hyperlane monitor``: sample running containers, export and record them."""

from __future__ import annotations

import dataclasses
import logging
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from hyperlane.engines import Engine, connect
from hyperlane.errors import (
    EngineUnavailable,
    HyperlaneError,
    ServiceNotReady,
    UsageError,
)
from hyperlane.metrics.discovery import (
    ContainerDiscovery,
    OomKillTracker,
    TrackedContainer,
    inspect_state,
)
from hyperlane.metrics.exporter import (
    ContainerIdentity,
    ContainerSnapshot,
    MetricsServer,
    SampleStore,
    format_listen_address,
    identity_from_info,
    parse_listen_address,
    serve_metrics,
)
from hyperlane.metrics.recording import RecordingWriter
from hyperlane.settings import MonitorSettings

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class MonitorResult:
    """Counts of one monitor run."""

    containers: int
    """Containers sampled at least once."""
    samples: int
    failed_reads: int
    """Reads that raised an error other than the container having stopped."""
    duration_seconds: float
    stop_reason: str
    """"duration" or "interrupted"."""
    listen: str | None
    """Address that served /metrics, with the bound port."""
    record: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "containers": self.containers,
            "samples": self.samples,
            "failed_reads": self.failed_reads,
            "duration_seconds": self.duration_seconds,
            "stop_reason": self.stop_reason,
            "listen": self.listen,
            "record": self.record,
        }


@dataclass
class _Watched:
    tracked: TrackedContainer
    identity: ContainerIdentity
    failed_reads: int = 0
    ended: bool = False
    """True after the instance exited while the engine restarts the container."""


class _Monitor:
    """One run: the sampling schedule, the store, the recording and the counts."""

    def __init__(
        self,
        settings: MonitorSettings,
        engine: Engine,
        store: SampleStore,
        writer: RecordingWriter | None,
        stop: threading.Event,
    ) -> None:
        self._settings = settings
        self._engine = engine
        self._store = store
        self._writer = writer
        self._stop = stop
        self._discovery = ContainerDiscovery(
            engine, settings.metrics_source, settings.label
        )
        self._watched: dict[str, _Watched] = {}
        self._seen: set[str] = set()
        self._missing_names = set(settings.container)
        self._engine_failures = 0
        self._oom_kills = OomKillTracker()
        self.samples = 0
        self.failed_reads = 0
        # Converts the readers' monotonic timestamps to Unix time.
        self.unix_offset_seconds = time.time() - time.monotonic()

    @property
    def containers_seen(self) -> int:
        return len(self._seen)

    @property
    def containers_now(self) -> int:
        return len(self._watched)

    def run(self, status: Any) -> str:
        """Sample until the duration ends or stop is set, and return the reason."""
        interval = self._settings.interval
        started = time.monotonic()
        deadline = None
        if self._settings.duration is not None:
            deadline = started + self._settings.duration
        next_time = started
        first = True
        while True:
            self._tick()
            if first:
                self._report_missing()
                first = False
            if status is not None:
                status.update(self._status_text())
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                return "duration"
            next_time += interval
            # After a slow tick, restart the schedule instead of sampling in a burst.
            if next_time - now < interval / 2:
                next_time = now + interval
            wait = next_time - now
            if deadline is not None:
                wait = min(wait, deadline - now)
            if self._stop.wait(wait):
                return "interrupted"

    def _tick(self) -> None:
        self._refresh()
        for container_id, watched in list(self._watched.items()):
            self._sample(container_id, watched)
        if self._writer is not None:
            self._writer.flush()

    def _refresh(self) -> None:
        try:
            tracked = self._discovery.refresh()
        except EngineUnavailable as error:
            self._engine_failures += 1
            # The first failure is a warning, repeats would flood the log.
            level = logging.WARNING if self._engine_failures == 1 else logging.DEBUG
            logger.log(level, "container discovery failed, retrying: %s", error)
            return
        if self._engine_failures:
            logger.info("container discovery works again")
            self._engine_failures = 0
        current = {
            item.info.container_id: item for item in tracked if self._is_selected(item)
        }
        for container_id in set(self._watched) - set(current):
            if self._watched[container_id].ended and self._restarting(container_id):
                continue
            self._drop(container_id, "is no longer running")
        for container_id, item in current.items():
            watched = self._watched.get(container_id)
            if watched is not None and not watched.ended:
                if watched.tracked.info.pid == item.info.pid:
                    continue
                self._end_instance(container_id, watched)
            identity = identity_from_info(item.info, self._engine.info.local)
            self._watched[container_id] = _Watched(item, identity)
            self._seen.add(container_id)
            logger.info(
                "sampling container %s (%s) from %s",
                item.info.name,
                container_id[:12],
                item.reader.source,
            )

    def _is_selected(self, item: TrackedContainer) -> bool:
        names = self._settings.container
        if not names:
            return True
        for name in names:
            if item.info.name == name or (
                len(name) >= 4 and item.info.container_id.startswith(name)
            ):
                if name in self._missing_names:
                    self._missing_names.discard(name)
                return True
        return False

    def _report_missing(self) -> None:
        """Log the --container names that matched no running container."""
        for name in sorted(self._missing_names):
            logger.info("container %r is not running yet; waiting for it", name)

    def _sample(self, container_id: str, watched: _Watched) -> None:
        if watched.ended:
            return
        reader = watched.tracked.reader
        info = watched.tracked.info
        # A restart by the restart policy can reuse the cgroup path, so the
        # reader would go on without an error. An exited init process shows it.
        if self._engine.info.local and not (Path("/proc") / str(info.pid)).exists():
            logger.debug("process %d of container %s exited", info.pid, info.name)
            self._end_instance(container_id, watched)
            return
        try:
            sample = reader.read()
        except ServiceNotReady as error:
            logger.debug("reading container %s ended: %s", info.name, error)
            self._end_instance(container_id, watched)
            return
        except (HyperlaneError, OSError) as error:
            watched.failed_reads += 1
            self.failed_reads += 1
            # The first failure per container is a warning, repeats would flood.
            level = logging.WARNING if watched.failed_reads == 1 else logging.DEBUG
            logger.log(
                level,
                "read %d of container %s from %s failed: %s",
                watched.failed_reads,
                info.name,
                reader.source,
                error,
            )
            return
        self.samples += 1
        self._store.update(
            ContainerSnapshot(
                identity=watched.identity,
                source=reader.source,
                sample=sample,
                sample_unix_seconds=sample.timestamp_seconds + self.unix_offset_seconds,
                oom_kills_total=self._oom_kills.observe(
                    info, sample.memory_oom_kills_total
                ),
            )
        )
        if self._writer is not None:
            self._writer.write_sample(
                container_id,
                info.name,
                info.image,
                reader.source,
                sample,
                labels=info.labels,
                cpu_limit_cores=info.cpu_limit_cores,
            )

    def _end_instance(self, container_id: str, watched: _Watched) -> None:
        """Count the OOM kills of an exited instance and stop reading it.

        A container that the engine restarts keeps its last snapshot, with the
        new OOM kill total, until the next refresh opens a reader for the new
        process. Any other container is dropped.
        """
        info = watched.tracked.info
        self._discovery.forget(container_id)
        try:
            state = inspect_state(self._engine, container_id)
        except EngineUnavailable as error:
            logger.warning(
                "cannot inspect container %s after its exit, so an OOM kill that "
                "ended it is not counted: %s",
                info.name,
                error,
            )
            state = None
        self._oom_kills.end_instance(info, state is not None and state.oom_killed)
        if state is None or not state.running:
            self._drop(container_id, "stopped")
            return
        logger.info(
            "container %s exited (OOMKilled %s) and restarts (RestartCount %d)",
            info.name,
            state.oom_killed,
            state.restart_count,
        )
        watched.ended = True
        snapshot = self._store.get(container_id)
        if snapshot is not None:
            total = self._oom_kills.total(info.name)
            self._store.update(dataclasses.replace(snapshot, oom_kills_total=total))

    def _restarting(self, container_id: str) -> bool:
        """Return True while the engine is restarting an exited container."""
        try:
            state = inspect_state(self._engine, container_id)
        except EngineUnavailable as error:
            logger.debug("inspecting container %s failed: %s", container_id[:12], error)
            return False
        return state is not None and state.running

    def _drop(self, container_id: str, reason: str) -> None:
        watched = self._watched.pop(container_id, None)
        self._store.remove(container_id)
        if watched is not None:
            logger.info("container %s %s", watched.tracked.info.name, reason)

    def _status_text(self) -> str:
        scraped = self._store.last_scrape_unix_seconds
        scrape = "no scrape yet"
        if scraped is not None:
            scrape = f"last scrape {time.time() - scraped:.1f} s ago"
        return (
            f"monitor: {self.containers_now} containers, {self.samples} samples, "
            f"{scrape}"
        )


@contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """Set stop on SIGINT or SIGTERM, so the loop ends between two samples."""

    def handler(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous_int = signal.signal(signal.SIGINT, handler)
    previous_term = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous_int)
        signal.signal(signal.SIGTERM, previous_term)


@contextmanager
def _status_line(quiet: bool) -> Iterator[Any]:
    """Yield a live status line on a terminal's stderr, else None."""
    if quiet or not sys.stderr.isatty():
        yield None
        return
    from rich.console import Console
    from rich.logging import RichHandler

    console = Console(stderr=True)
    # Log records go through the same console, so they print above the line.
    root = logging.getLogger("hyperlane")
    previous_handlers = root.handlers[:]
    root.handlers[:] = [RichHandler(console=console, show_path=False, markup=False)]
    try:
        with console.status("monitor: starting") as status:
            yield status
    finally:
        root.handlers[:] = previous_handlers


def run_monitor(settings: MonitorSettings, quiet: bool) -> MonitorResult:
    """Sample the engine's running containers until the duration ends or a signal.

    Raises UsageError when neither --listen nor --record is given or the listen
    address cannot be bound, and EngineUnavailable when no engine responds.
    """
    if settings.listen is None and settings.record is None:
        raise UsageError(
            "hyperlane monitor needs --listen HOST:PORT, --record FILE or both; "
            "for a live table use hyperlane top"
        )
    engine = connect(settings.engine)
    store = SampleStore()
    server: MetricsServer | None = None
    writer: RecordingWriter | None = None
    stop = threading.Event()
    started = time.monotonic()
    try:
        if settings.listen is not None:
            host, port = parse_listen_address(settings.listen)
            # Device numbers of a remote engine's host mean nothing in this sysfs.
            sys_root = Path("/sys") if engine.info.local else None
            server = serve_metrics(host, port, store, sys_root)
            logger.info(
                "serving Prometheus metrics on http://%s/metrics",
                format_listen_address(host, server.port),
            )
        if settings.record is not None:
            writer = RecordingWriter(
                settings.record,
                engine={
                    "name": engine.info.name,
                    "version": engine.info.version,
                    "api_version": engine.info.api_version,
                    "base_url": engine.info.base_url,
                },
                interval_seconds=settings.interval,
            )
            logger.info("recording samples to %s", settings.record)
        monitor = _Monitor(settings, engine, store, writer, stop)
        logger.info(
            "monitoring the containers of %s every %g s%s",
            engine.info.name,
            settings.interval,
            "" if settings.duration is None else f" for {settings.duration:g} s",
        )
        with _stop_on_signals(stop), _status_line(quiet) as status:
            reason = monitor.run(status)
        if writer is not None:
            writer.close(reason)
        if monitor.containers_seen == 0:
            logger.warning(
                "no running container of %s matched the filters, so nothing was "
                "sampled; check --container and --label against `docker ps`",
                engine.info.name,
            )
        logger.info(
            "monitor stopped (%s) after %d samples of %d containers",
            reason,
            monitor.samples,
            monitor.containers_seen,
        )
        return MonitorResult(
            containers=monitor.containers_seen,
            samples=monitor.samples,
            failed_reads=monitor.failed_reads,
            duration_seconds=time.monotonic() - started,
            stop_reason=reason,
            listen=(
                None
                if server is None
                else format_listen_address(server.host, server.port)
            ),
            record=None if settings.record is None else str(settings.record),
        )
    finally:
        if writer is not None:
            # Without the footer written above, the file reads as truncated.
            writer.abandon()
        if server is not None:
            server.close()
        engine.close()


def run_monitor_command(
    settings: MonitorSettings, json_output: bool, quiet: bool
) -> int:
    """Run the monitor and print its counts on stdout, as JSON with --json."""
    from hyperlane.exitcodes import ExitCode
    from hyperlane.report.document import document_header, dumps

    result = run_monitor(settings, quiet)
    if json_output:
        document = document_header("monitor")
        document["monitor"] = result.to_dict()
        sys.stdout.write(dumps(document))
    else:
        target = f"; recording: {result.record}" if result.record else ""
        containers = "container" if result.containers == 1 else "containers"
        samples = "sample" if result.samples == 1 else "samples"
        sys.stdout.write(
            f"Monitored {result.containers} {containers}: {result.samples} {samples} "
            f"in {result.duration_seconds:.1f} s ({result.stop_reason}){target}\n"
        )
    return int(ExitCode.SUCCESS)
