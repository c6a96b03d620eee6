"""Deploy files that apply a sizing recommendation.

write_deploy_files writes a Kubernetes Deployment, a Compose file and a docker run
script. Each file starts with comments that map its numbers to the recommendation.
None of them sets a CPU limit, because the recommendation has none: the CPU request
(or CPU shares) gives the container its share under contention without throttling
its bursts.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shlex
import tempfile
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import yaml

from hyperlane.errors import UsageError
from hyperlane.sizing import Recommendation

logger = logging.getLogger(__name__)

MIB = 2**20

# The kernel's smallest cpu.shares value, as noted beside linuxMinCPUShares in moby's
# daemon/daemon_unix.go.
MIN_CPU_SHARES = 2

# Docker's default CPU shares per container, which these files equate to one core.
SHARES_PER_CORE = 1024

# A Kubernetes container name is a DNS-1123 label, which also fits Compose service
# names and docker container names.
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_DNS_LABEL_MAX_LENGTH = 63

KUBERNETES_FILE = "kubernetes.yaml"
COMPOSE_FILE = "compose.yaml"
DOCKER_RUN_FILE = "docker-run.sh"


def write_deploy_files(
    out_dir: Path,
    image: str,
    container_port: int | None,
    recommendation: Recommendation,
    name: str = "app",
) -> list[Path]:
    """Write kubernetes.yaml, compose.yaml and docker-run.sh into out_dir.

    out_dir is created when missing. Each file is written to a temporary name and
    renamed, so a failure leaves no half-written file. Return the paths written.
    Raise UsageError for a recommendation without figures, an invalid name, image
    or port.
    """
    sizes = _sizes_of(recommendation)
    _validate_target(image, container_port, name)

    contents = {
        KUBERNETES_FILE: _render_kubernetes(image, container_port, sizes, name),
        COMPOSE_FILE: _render_compose(image, container_port, sizes, name),
        DOCKER_RUN_FILE: _render_docker_run(image, container_port, sizes, name),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for file_name, text in contents.items():
        mode = 0o755 if file_name == DOCKER_RUN_FILE else 0o644
        path = out_dir / file_name
        _write_atomically(path, text, mode)
        paths.append(path)
    logger.debug("wrote deploy files %s", [str(path) for path in paths])
    return paths


@dataclass(frozen=True)
class _Sizes:
    """The figures of an "ok" recommendation, with None ruled out."""

    recommendation: Recommendation
    cpu_millicores: int
    memory_request_bytes: int
    memory_limit_bytes: int

    @property
    def cpu_shares(self) -> int:
        # Exact arithmetic on millicores, so that no half-way case can appear.
        shares = round(Fraction(SHARES_PER_CORE * self.cpu_millicores, 1000))
        return max(MIN_CPU_SHARES, shares)


def _sizes_of(recommendation: Recommendation) -> _Sizes:
    if recommendation.status == "not_enough_data":
        raise UsageError(
            "Cannot write deploy files: there is no measurement to size from "
            f"({recommendation.cpu_explanation}) Run the load against the "
            "container so that CPU and memory samples are recorded, then size it "
            "again."
        )
    millicores = recommendation.cpu_request_millicores
    request_bytes = recommendation.memory_request_bytes
    limit_bytes = recommendation.memory_limit_bytes
    if millicores is None or request_bytes is None or limit_bytes is None:
        raise UsageError(
            f"Cannot write deploy files: the recommendation with status "
            f"{recommendation.status!r} has no CPU or memory figure. Size the "
            "container again with recommend()."
        )
    return _Sizes(recommendation, millicores, request_bytes, limit_bytes)


def _render_kubernetes(
    image: str, container_port: int | None, sizes: _Sizes, name: str
) -> str:
    """Return the text of a one-container Deployment with the recommended resources."""
    container: dict[str, Any] = {
        "name": name,
        "image": image,
        "imagePullPolicy": "IfNotPresent",
    }
    if container_port is not None:
        container["ports"] = [{"containerPort": container_port, "protocol": "TCP"}]
    container["resources"] = {
        "requests": {
            "cpu": f"{sizes.cpu_millicores}m",
            "memory": _kubernetes_quantity(sizes.memory_request_bytes),
        },
        "limits": {"memory": _kubernetes_quantity(sizes.memory_limit_bytes)},
    }
    # Separate dicts, because safe_dump writes a shared dict as a YAML anchor.
    labels = {"app.kubernetes.io/name": name}
    document = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": dict(labels)},
            "template": {
                "metadata": {"labels": dict(labels)},
                "spec": {"containers": [container]},
            },
        },
    }
    mapping = [
        f"resources.requests.cpu {sizes.cpu_millicores}m is the recommended CPU "
        f"request ({_floored_text(sizes.recommendation.cpu_floored)}).",
        f"resources.requests.memory "
        f"{_kubernetes_quantity(sizes.memory_request_bytes)} and "
        f"resources.limits.memory {_kubernetes_quantity(sizes.memory_limit_bytes)} "
        "are the recommended memory request and limit "
        f"({_floored_text(sizes.recommendation.memory_floored)}).",
        "No CPU limit is set, so the container is not throttled above its request.",
    ]
    return _header(sizes, mapping) + _dump_yaml(document)


def _render_compose(
    image: str, container_port: int | None, sizes: _Sizes, name: str
) -> str:
    """Return the text of a Compose file with one service and the recommended sizes."""
    service: dict[str, Any] = {"image": image}
    if container_port is not None:
        service["ports"] = [f"127.0.0.1:{container_port}:{container_port}"]
    service["mem_limit"] = f"{sizes.memory_limit_bytes}b"
    service["mem_reservation"] = f"{sizes.memory_request_bytes}b"
    service["cpu_shares"] = sizes.cpu_shares
    mapping = [
        f"mem_limit {sizes.memory_limit_bytes}b is the recommended memory limit and "
        f"mem_reservation {sizes.memory_request_bytes}b the memory request "
        f"({_floored_text(sizes.recommendation.memory_floored)}).",
        _cpu_shares_text(sizes, "cpu_shares"),
        "No cpus key is set, so the container is not throttled above its share.",
    ]
    return _header(sizes, mapping) + _dump_yaml({"services": {name: service}})


def _render_docker_run(
    image: str, container_port: int | None, sizes: _Sizes, name: str
) -> str:
    """Return the text of a shell script that starts the container with docker run."""
    arguments = [
        "docker",
        "run",
        "-d",
        "--name",
        name,
        "--memory",
        f"{sizes.memory_limit_bytes}b",
        "--memory-reservation",
        f"{sizes.memory_request_bytes}b",
        "--cpu-shares",
        str(sizes.cpu_shares),
    ]
    if container_port is not None:
        arguments += ["-p", f"127.0.0.1:{container_port}:{container_port}"]
    arguments.append(image)
    mapping = [
        f"--memory {sizes.memory_limit_bytes}b is the recommended memory limit and "
        f"--memory-reservation {sizes.memory_request_bytes}b the memory request "
        f"({_floored_text(sizes.recommendation.memory_floored)}).",
        _cpu_shares_text(sizes, "--cpu-shares"),
        "No --cpus is set, so the container is not throttled above its share.",
    ]
    command = " ".join(shlex.quote(argument) for argument in arguments)
    return "#!/usr/bin/env bash\n" + _header(sizes, mapping) + f"set -eu\n{command}\n"


def _header(sizes: _Sizes, mapping: Sequence[str]) -> str:
    """Return comment lines that map the file's numbers to the recommendation."""
    recommendation = sizes.recommendation
    paragraphs = [
        "Generated by hyperlane from a sizing recommendation.",
        *mapping,
        recommendation.cpu_explanation,
        recommendation.memory_explanation,
    ]
    if recommendation.estimate:
        paragraphs.append(f"ESTIMATE: {recommendation.estimate_reason}")
    lines = []
    for paragraph in paragraphs:
        wrapped = textwrap.wrap(paragraph, width=86, break_on_hyphens=False)
        lines.append("# " + wrapped[0])
        lines.extend("#   " + line for line in wrapped[1:])
    return "\n".join(lines) + "\n"


def _cpu_shares_text(sizes: _Sizes, key: str) -> str:
    return (
        f"{key} {sizes.cpu_shares} = round({SHARES_PER_CORE} * "
        f"{sizes.cpu_millicores / 1000:g} cores of CPU request), at least "
        f"{MIN_CPU_SHARES} ({_floored_text(sizes.recommendation.cpu_floored)})."
    )


def _floored_text(floored: bool) -> str:
    if floored:
        return "floored: the measured figure was below the floor"
    return "measured, not floored"


def _kubernetes_quantity(size_bytes: int) -> str:
    # Recommendations are whole MiB, but a plain byte count keeps any other value exact.
    if size_bytes % MIB == 0:
        return f"{size_bytes // MIB}Mi"
    return str(size_bytes)


def _dump_yaml(document: dict[str, Any]) -> str:
    return yaml.safe_dump(document, sort_keys=False, default_flow_style=False)


def _validate_target(image: str, container_port: int | None, name: str) -> None:
    if len(name) > _DNS_LABEL_MAX_LENGTH or not _DNS_LABEL.fullmatch(name):
        raise UsageError(
            f"Invalid name {name!r}: use at most 63 lowercase letters, digits and "
            "hyphens, starting and ending with a letter or digit."
        )
    if not image or any(character.isspace() for character in image):
        raise UsageError(
            f"Invalid image {image!r}: pass an image reference such as "
            "'registry.example/app:1.0' without spaces."
        )
    if container_port is not None and not 1 <= container_port <= 65535:
        raise UsageError(
            f"Invalid container port {container_port!r}: pass a port from 1 to 65535, "
            "or None when the container listens on none."
        )


def _write_atomically(path: Path, text: str, mode: int) -> None:
    """Write text to a temporary file beside path, then rename it over path."""
    descriptor, temporary_name = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"
    )
    temporary = Path(temporary_name)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        temporary.chmod(mode)
        temporary.replace(path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
        raise
