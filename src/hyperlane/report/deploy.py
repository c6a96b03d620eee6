"""Deploy files that apply a sizing recommendation.

write_deploy_files writes a Kubernetes Deployment, a Compose file, a docker run
script and a Nomad job (HCL and API JSON). Each file maps its numbers to the
recommendation in comments, or in a Meta entry for JSON. A CPU limit is set only
when one is requested, because the CPU request (or CPU shares) alone gives the
container its share under contention without throttling its bursts.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from hyperlane.errors import UsageError
from hyperlane.report.deploy_common import (
    MIB,
    MIN_CPU_SHARES,
    SHARES_PER_CORE,
    DeploySizes,
)
from hyperlane.report.deploy_docker import render_compose, render_docker_run
from hyperlane.report.deploy_kubernetes import render_kubernetes
from hyperlane.report.deploy_nomad import (
    CpuClock,
    read_cpu_clock,
    render_nomad_hcl,
    render_nomad_json,
)
from hyperlane.report.document import write_text_atomically
from hyperlane.sizing import Recommendation

__all__ = [
    "COMPOSE_FILE",
    "DOCKER_RUN_FILE",
    "KUBERNETES_FILE",
    "MIB",
    "MIN_CPU_SHARES",
    "NOMAD_HCL_FILE",
    "NOMAD_JSON_FILE",
    "SHARES_PER_CORE",
    "CpuClock",
    "write_deploy_files",
]

logger = logging.getLogger(__name__)

# A Kubernetes container name is a DNS-1123 label, which also fits Compose service
# names, docker container names and Nomad job, group and task names.
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_DNS_LABEL_MAX_LENGTH = 63

KUBERNETES_FILE = "kubernetes.yaml"
COMPOSE_FILE = "compose.yaml"
DOCKER_RUN_FILE = "docker-run.sh"
NOMAD_HCL_FILE = "nomad.hcl"
NOMAD_JSON_FILE = "nomad.json"


def write_deploy_files(
    out_dir: Path,
    image: str,
    container_port: int | None,
    recommendation: Recommendation,
    name: str = "app",
    *,
    probe_path: str | None = None,
    cpu_limit_millicores: int | None = None,
    cpu_clock: CpuClock | None = None,
) -> list[Path]:
    """Write the Kubernetes, Compose, docker run and Nomad files into out_dir.

    probe_path is the HTTP path that the Kubernetes probes request, and without it
    they open a TCP connection to container_port. cpu_limit_millicores sets a CPU
    limit, and when it is None the recommendation's own cpu_limit_millicores
    applies if it has one. cpu_clock converts the CPU request to Nomad MHz and is
    read from the host when None. When no clock can be read, the Nomad files are
    left out with a warning.

    out_dir is created when missing. Each file is written to a temporary name and
    renamed, so a failure leaves no half-written file. Return the paths written.
    Raise UsageError for a recommendation without figures, an invalid name, image,
    port, probe path or CPU limit.
    """
    sizes = _sizes_of(recommendation, cpu_limit_millicores)
    _validate_target(image, container_port, name)
    _validate_probe_path(probe_path)

    contents = {
        KUBERNETES_FILE: render_kubernetes(
            image, container_port, probe_path, sizes, name
        ),
        COMPOSE_FILE: render_compose(image, container_port, sizes, name),
        DOCKER_RUN_FILE: render_docker_run(image, container_port, sizes, name),
    }
    clock = cpu_clock if cpu_clock is not None else read_cpu_clock()
    if clock is None:
        logger.warning(
            "Skipped %s and %s: no CPU clock in %s or %s to convert the CPU request "
            "to MHz",
            NOMAD_HCL_FILE,
            NOMAD_JSON_FILE,
            "/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq",
            "/proc/cpuinfo",
        )
    else:
        contents[NOMAD_HCL_FILE] = render_nomad_hcl(
            image, container_port, sizes, name, clock
        )
        contents[NOMAD_JSON_FILE] = render_nomad_json(
            image, container_port, sizes, name, clock
        )

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for file_name, text in contents.items():
        mode = 0o755 if file_name == DOCKER_RUN_FILE else 0o644
        path = out_dir / file_name
        write_text_atomically(path, text, mode)
        paths.append(path)
    logger.debug("wrote deploy files %s", [str(path) for path in paths])
    return paths


def _sizes_of(
    recommendation: Recommendation, cpu_limit_millicores: int | None
) -> DeploySizes:
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
    if cpu_limit_millicores is None:
        # Sizing strategies may add an optional CPU limit to the recommendation.
        cpu_limit_millicores = getattr(recommendation, "cpu_limit_millicores", None)
    if cpu_limit_millicores is not None:
        _validate_cpu_limit(cpu_limit_millicores, millicores)
    return DeploySizes(
        recommendation=recommendation,
        cpu_request_millicores=millicores,
        memory_request_bytes=request_bytes,
        memory_limit_bytes=limit_bytes,
        cpu_limit_millicores=cpu_limit_millicores,
    )


def _validate_cpu_limit(cpu_limit_millicores: object, request_millicores: int) -> None:
    if (
        not isinstance(cpu_limit_millicores, int)
        or isinstance(cpu_limit_millicores, bool)
        or cpu_limit_millicores < request_millicores
    ):
        raise UsageError(
            f"Invalid CPU limit {cpu_limit_millicores!r} millicores: pass a whole "
            f"number of millicores no lower than the {request_millicores}m CPU "
            "request, or None for no CPU limit."
        )


def _validate_probe_path(probe_path: str | None) -> None:
    if probe_path is None:
        return
    if not probe_path.startswith("/") or any(
        character.isspace() for character in probe_path
    ):
        raise UsageError(
            f"Invalid probe path {probe_path!r}: pass an HTTP path that starts "
            "with '/' and has no spaces, such as '/healthz', or None for a TCP "
            "probe."
        )


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
