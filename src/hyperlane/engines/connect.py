"""Find and connect to a container engine."""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import docker
import docker.errors
import requests

from hyperlane.engines.engine import Engine, EngineInfo
from hyperlane.errors import EngineUnavailable, UsageError

logger = logging.getLogger(__name__)

DOCKER_SOCKET = Path("/var/run/docker.sock")
PODMAN_SOCKETS = (Path("/run/podman/podman.sock"),)
CONNECT_TIMEOUT_SECONDS = 60
# Every engine serves /version here, and the client then uses the version it reports.
PROBE_API_VERSION = "1.24"
PROBE_TIMEOUT_SECONDS = 5.0


def _podman_sockets(environ: Mapping[str, str]) -> list[Path]:
    sockets = list(PODMAN_SOCKETS)
    runtime_dir = environ.get("XDG_RUNTIME_DIR")
    if runtime_dir:
        sockets.append(Path(runtime_dir) / "podman" / "podman.sock")
    return sockets


def candidate_urls(engine: str, environ: Mapping[str, str]) -> list[str]:
    """Return the API addresses to try for ``engine``, in order."""
    docker_host = environ.get("DOCKER_HOST")
    if engine == "docker":
        return [docker_host or f"unix://{DOCKER_SOCKET}"]
    if engine == "podman":
        container_host = environ.get("CONTAINER_HOST")
        if container_host:
            return [container_host]
        return [f"unix://{path}" for path in _podman_sockets(environ)]
    if engine == "auto":
        urls = [docker_host] if docker_host else []
        sockets = [DOCKER_SOCKET, *_podman_sockets(environ)]
        urls += [f"unix://{path}" for path in sockets if path.exists()]
        return urls
    raise UsageError(f"invalid engine {engine!r}; use --engine docker, podman or auto")


def _is_local(base_url: str) -> bool:
    parsed = urlparse(base_url)
    if parsed.scheme in ("unix", "npipe", ""):
        return True
    return parsed.hostname in ("localhost", "127.0.0.1", "::1")


def _check_reachable(url: str) -> None:
    """Open and close a plain connection to ``url``, raising OSError on failure.

    docker-py leaves its socket open when a connection fails, so unreachable
    addresses are caught here first.
    """
    parsed = urlparse(url)
    if parsed.scheme == "unix":
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
            connection.settimeout(PROBE_TIMEOUT_SECONDS)
            connection.connect(parsed.path)
    elif parsed.scheme in ("tcp", "http", "https") and parsed.hostname:
        port = parsed.port or (2376 if parsed.scheme == "https" else 2375)
        with socket.create_connection(
            (parsed.hostname, port), timeout=PROBE_TIMEOUT_SECONDS
        ):
            pass


def _server_version(url: str) -> dict[str, Any]:
    """Read the engine's unversioned /version endpoint.

    A client pinned to an old API version does this, because letting the SDK detect
    the version leaks its socket when the engine does not respond.
    """
    probe = docker.APIClient(
        base_url=url, version=PROBE_API_VERSION, timeout=CONNECT_TIMEOUT_SECONDS
    )
    try:
        version: dict[str, Any] = probe.version(api_version=False)
    finally:
        probe.close()
    return version


def _describe(version: dict[str, Any], base_url: str) -> EngineInfo:
    components = version.get("Components") or []
    component_names = [str(item.get("Name", "")) for item in components]
    is_podman = any("podman" in name.lower() for name in component_names)
    return EngineInfo(
        name="podman" if is_podman else "docker",
        version=str(version.get("Version", "unknown")),
        api_version=str(version.get("ApiVersion", "unknown")),
        base_url=base_url,
        local=_is_local(base_url),
    )


def _report_failure(
    url: str, error: Exception, environ: Mapping[str, str], failures: list[str]
) -> None:
    failures.append(f"{url} ({type(error).__name__})")
    if url == environ.get("DOCKER_HOST"):
        # The user chose this address, so falling back to another engine silently
        # would audit something they did not ask for.
        logger.warning("DOCKER_HOST=%s did not respond (%s)", url, error)
    else:
        logger.debug("engine at %s did not respond: %s", url, error)


def connect(engine: str = "auto", environ: Mapping[str, str] | None = None) -> Engine:
    """Connect to ``engine`` (docker, podman or auto) and return the adapter.

    Raises EngineUnavailable when no candidate address responds, naming each address
    tried and how to start the engine.
    """
    environ = os.environ if environ is None else environ
    urls = candidate_urls(engine, environ)
    failures: list[str] = []
    for url in urls:
        try:
            _check_reachable(url)
            version = _server_version(url)
        except (
            OSError,
            docker.errors.DockerException,
            requests.RequestException,
        ) as error:
            _report_failure(url, error, environ, failures)
            continue
        info = _describe(version, url)
        client = docker.DockerClient(
            base_url=url, version=info.api_version, timeout=CONNECT_TIMEOUT_SECONDS
        )
        if engine in ("docker", "podman") and info.name != engine:
            logger.warning(
                "--engine %s was requested but %s responds at %s",
                engine,
                info.name,
                url,
            )
        logger.info("using %s %s at %s", info.name, info.version, url)
        return Engine(client, info)
    tried = ", ".join(failures) if failures else "no engine socket found"
    raise EngineUnavailable(
        f"no container engine responded for --engine {engine} (tried: {tried}). "
        "Start dockerd or `podman system service` (scripts/setup.sh does both), "
        "or set DOCKER_HOST to the engine's API address"
    )
