"""List the running containers of an engine and open a metrics reader for each.

ContainerDiscovery keeps the readers between refreshes, so a long-running view or
exporter lists the containers once per refresh (one API request) and inspects only
the containers it has not seen before.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import docker.errors
from docker.models.containers import Container

from hyperlane.engines.engine import Engine
from hyperlane.errors import EngineUnavailable, HyperlaneError, UsageError
from hyperlane.metrics.sample import SampleReader
from hyperlane.metrics.source import MetricsSource, open_reader

logger = logging.getLogger(__name__)

NANO_CPUS_PER_CORE = 1_000_000_000
# The kernel's and both engines' CFS period when the container sets none.
DEFAULT_CFS_PERIOD_MICROSECONDS = 100_000


@dataclass(frozen=True)
class ContainerInfo:
    """A running container as the engine's inspect endpoint reports it."""

    container_id: str
    """Full container id."""
    name: str
    """Container name without the leading "/"."""
    image: str
    """Image reference the container was created from (Config.Image)."""
    pid: int
    """Host PID of the container's init process."""
    labels: Mapping[str, str]
    """Container labels."""
    cpu_limit_cores: float | None
    """CPU quota in cores (NanoCpus, else CpuQuota / CpuPeriod), None when unset."""
    container: Container = field(repr=False, compare=False)
    """The docker-SDK object, with attrs from the inspect endpoint."""


@dataclass(frozen=True)
class TrackedContainer:
    """A running container and the reader that samples it."""

    info: ContainerInfo
    reader: SampleReader


def cpu_limit_cores(host_config: Mapping[str, Any]) -> float | None:
    """Return the CPU quota in cores from a HostConfig, or None when none is set.

    docker run --cpus sets NanoCpus. --cpu-quota sets CpuQuota in microseconds per
    CpuPeriod, and a CpuPeriod of 0 means the default of 100 000 microseconds.
    """
    nano_cpus = host_config.get("NanoCpus") or 0
    if isinstance(nano_cpus, int) and nano_cpus > 0:
        return nano_cpus / NANO_CPUS_PER_CORE
    quota = host_config.get("CpuQuota") or 0
    if isinstance(quota, int) and quota > 0:
        period = host_config.get("CpuPeriod") or DEFAULT_CFS_PERIOD_MICROSECONDS
        return quota / int(period)
    return None


def container_info(container: Container) -> ContainerInfo:
    """Build a ContainerInfo from a container whose attrs come from inspect.

    Raises UsageError when the container is not running (its PID is 0).
    """
    attrs = container.attrs
    state = attrs.get("State") or {}
    config = attrs.get("Config") or {}
    pid = int(state.get("Pid") or 0)
    name = str(attrs.get("Name") or container.name or "").lstrip("/")
    if pid <= 0:
        raise UsageError(
            f"container {name!r} has no process (State.Pid is {pid}); it is not "
            f"running, so start it first"
        )
    return ContainerInfo(
        container_id=str(attrs.get("Id") or container.id),
        name=name,
        image=str(config.get("Image") or attrs.get("Image") or ""),
        pid=pid,
        labels=dict(config.get("Labels") or {}),
        cpu_limit_cores=cpu_limit_cores(attrs.get("HostConfig") or {}),
        container=container,
    )


def list_running_containers(
    engine: Engine, label_filters: Sequence[str] = ()
) -> list[ContainerInfo]:
    """Inspect every running container of the engine, optionally filtered by label.

    Each label filter is "key" or "key=value", as for docker ps --filter label=.
    Containers that stop between the list and the inspect are left out.
    """
    infos = []
    for summary in _list_sparse(engine, label_filters):
        info = _inspect(engine, str(summary.id))
        if info is not None:
            infos.append(info)
    return infos


class ContainerDiscovery:
    """The running containers of an engine, each with an open SampleReader.

    refresh() lists the running containers, inspects and opens a reader for each
    new one, and drops those that are gone. A container whose reader cannot be
    opened is logged once at WARNING and retried at the next refresh.
    """

    def __init__(
        self,
        engine: Engine,
        source: MetricsSource = "auto",
        label_filters: Sequence[str] = (),
    ) -> None:
        self._engine = engine
        self._source: MetricsSource = source
        self._label_filters = tuple(label_filters)
        self._tracked: dict[str, TrackedContainer] = {}
        self._warned: set[str] = set()

    def refresh(self) -> list[TrackedContainer]:
        """List the running containers and return them in the engine's order.

        Raises EngineUnavailable when the list request fails, and UsageError when
        source is "cgroup" and a container's cgroup files cannot be read.
        """
        running = [
            str(item.id) for item in _list_sparse(self._engine, self._label_filters)
        ]
        for container_id in set(self._tracked) - set(running):
            logger.debug("container %s is gone", self._tracked[container_id].info.name)
            del self._tracked[container_id]
        for container_id in running:
            if container_id not in self._tracked:
                self._track(container_id)
        return [self._tracked[item] for item in running if item in self._tracked]

    def forget(self, container_id: str) -> None:
        """Drop a container, so the next refresh inspects it and opens a new reader.

        Callers use this after a read raised ServiceNotReady, because a restarted
        container has a new process and cgroup.
        """
        self._tracked.pop(container_id, None)

    def _track(self, container_id: str) -> None:
        info = _inspect(self._engine, container_id)
        if info is None:
            return
        try:
            reader = open_reader(
                self._source, info.container, info.pid, self._engine.info.local
            )
        except UsageError:
            raise
        except HyperlaneError as error:
            if container_id not in self._warned:
                self._warned.add(container_id)
                logger.warning(
                    "cannot open a metrics reader for container %s: %s",
                    info.name,
                    error,
                )
            return
        self._warned.discard(container_id)
        self._tracked[container_id] = TrackedContainer(info=info, reader=reader)
        logger.debug("sampling container %s from %s", info.name, reader.source)


def _list_sparse(engine: Engine, label_filters: Sequence[str]) -> list[Container]:
    filters: dict[str, Any] = {"status": "running"}
    if label_filters:
        filters["label"] = list(label_filters)
    try:
        # sparse=True skips one inspect request per container.
        return list(engine.client.containers.list(sparse=True, filters=filters))
    except (docker.errors.DockerException, OSError) as error:
        raise EngineUnavailable(
            f"listing the running containers of the {engine.info.name} engine at "
            f"{engine.info.base_url} failed: {error}; check that the engine is running"
        ) from error


def _inspect(engine: Engine, container_id: str) -> ContainerInfo | None:
    """Return the inspected container, or None when it stopped or was removed."""
    try:
        container = engine.client.containers.get(container_id)
    except docker.errors.NotFound:
        logger.debug("container %s was removed before inspect", container_id[:12])
        return None
    except (docker.errors.DockerException, OSError) as error:
        raise EngineUnavailable(
            f"inspecting container {container_id[:12]} on the {engine.info.name} "
            f"engine failed: {error}; check that the engine is running"
        ) from error
    try:
        return container_info(container)
    except UsageError:
        logger.debug("container %s stopped before inspect", container_id[:12])
        return None


@dataclass(frozen=True)
class ContainerState:
    """The State block of a container's inspect data, as far as restarts need it."""

    running: bool
    """True while the container runs or waits to be restarted (State.Restarting)."""
    pid: int
    """Host PID of the init process, 0 while the container is not running."""
    oom_killed: bool
    """State.OOMKilled: the kernel OOM-killed a process before the last exit.

    Docker resets it when the container starts again, so only an inspect between
    the exit and the restart returns True.
    """
    restart_count: int
    """State.RestartCount: restarts by the restart policy since docker run."""


def inspect_state(engine: Engine, container_id: str) -> ContainerState | None:
    """Inspect a container's state, or return None when it was removed.

    Raises EngineUnavailable when the inspect request fails for another reason.
    """
    try:
        attrs = engine.client.api.inspect_container(container_id)
    except docker.errors.NotFound:
        return None
    except (docker.errors.DockerException, OSError) as error:
        raise EngineUnavailable(
            f"inspecting container {container_id[:12]} on the {engine.info.name} "
            f"engine failed: {error}; check that the engine is running"
        ) from error
    state = attrs.get("State") or {}
    return ContainerState(
        running=bool(state.get("Running")) or bool(state.get("Restarting")),
        pid=int(state.get("Pid") or 0),
        oom_killed=bool(state.get("OOMKilled")),
        restart_count=int(attrs.get("RestartCount") or 0),
    )


@dataclass
class _OomHistory:
    instance: tuple[str, int]
    """(container id, pid) of the instance seen last."""
    carried: int = 0
    """OOM kills of the instances that ended before it."""
    current: int | None = None
    """Latest OOM kill count of the cgroup of that instance."""
    ended: bool = False
    """True once end_instance() has added current to carried."""


class OomKillTracker:
    """OOM kills per container name that survive restarts and replacements.

    The kernel's counters (memory.events oom_kill on cgroup v2, memory.oom_control
    oom_kill on v1) start at 0 in each new cgroup, which a restart by the restart
    policy and a replacement under the same name both create. The tracker adds
    the last count of each ended instance, and at least 1 when the engine reports
    that an OOM kill ended it, to the count of the running instance. An instance
    is a (container id, pid) pair, so a pid change is a restart.

    NOTE: the total is a lower bound. A kill that ended an instance counts only
    when a sample read the cgroup counter after it, or when an inspect returned
    State.OOMKilled before the engine restarted the container, because Docker
    clears that flag on start.
    """

    def __init__(self) -> None:
        self._by_name: dict[str, _OomHistory] = {}

    def observe(self, info: ContainerInfo, oom_kills: int | None) -> int | None:
        """Record a sample's OOM kill count and return the total for info.name.

        Returns None while no instance of that name reported a count or ended
        with an OOM kill.
        """
        instance = (info.container_id, info.pid)
        history = self._by_name.setdefault(info.name, _OomHistory(instance))
        if history.instance != instance:
            if not history.ended:
                history.carried += history.current or 0
            self._by_name[info.name] = history = _OomHistory(
                instance, carried=history.carried
            )
        if oom_kills is not None:
            if history.current is not None and oom_kills < history.current:
                # The counter went back, so a new cgroup replaced the old one
                # before this tracker saw a new pid. Keep what the old one counted.
                history.carried += history.current
            history.current = oom_kills
        if history.current is None and history.carried == 0:
            return None
        return history.carried + (history.current or 0)

    def end_instance(self, info: ContainerInfo, oom_killed: bool) -> None:
        """Add the kills of the instance in info to the name's total.

        oom_killed is State.OOMKilled from an inspect after the exit. Only the
        first call per instance counts.
        """
        instance = (info.container_id, info.pid)
        history = self._by_name.setdefault(info.name, _OomHistory(instance))
        if history.instance != instance or history.ended:
            return
        kills = history.current or 0
        if oom_killed:
            kills = max(kills, 1)
        history.carried += kills
        history.current = None
        history.ended = True

    def total(self, name: str) -> int | None:
        """Return the OOM kills of every instance of a container name, or None."""
        history = self._by_name.get(name)
        if history is None or (history.current is None and history.carried == 0):
            return None
        return history.carried + (history.current or 0)
