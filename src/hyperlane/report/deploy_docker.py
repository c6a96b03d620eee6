"""Writers of the Docker deploy files: a docker run script and a Compose file."""

from __future__ import annotations

import shlex
from typing import Any

from hyperlane.report.deploy_common import (
    DeploySizes,
    cores_text,
    cpu_limit_text,
    cpu_shares_text,
    dump_yaml,
    floored_text,
    memory_text,
    render_header,
)


def render_docker_run(
    image: str, container_port: int | None, sizes: DeploySizes, name: str
) -> str:
    """Render a shell script that starts the container with docker run."""
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
    cpus = None
    if sizes.cpu_limit_millicores is not None:
        cpus = cores_text(sizes.cpu_limit_millicores)
        arguments += ["--cpus", cpus]
    if container_port is not None:
        arguments += ["-p", f"127.0.0.1:{container_port}:{container_port}"]
    arguments.append(image)
    mapping = [
        memory_text(sizes, "--memory", "--memory-reservation"),
        cpu_shares_text(sizes, "--cpu-shares"),
        cpu_limit_text(sizes, "--cpus", cpus or ""),
    ]
    command = " ".join(shlex.quote(argument) for argument in arguments)
    header = render_header(sizes, mapping)
    return "#!/usr/bin/env bash\n" + header + f"set -eu\n{command}\n"


def render_compose(
    image: str, container_port: int | None, sizes: DeploySizes, name: str
) -> str:
    """Render a Compose file with one service and the recommended sizes.

    The service-level keys (mem_limit, mem_reservation, cpu_shares, cpus) are the
    ones that docker-compose 1.x and Compose v2 apply outside Swarm, and
    deploy.resources carries the same figures for docker stack deploy.
    docker-compose 1.29.2 also reads deploy.resources, with equal figures, and
    ignores reservations.cpus with a warning.
    """
    service: dict[str, Any] = {"image": image}
    if container_port is not None:
        service["ports"] = [f"127.0.0.1:{container_port}:{container_port}"]
    service["mem_limit"] = f"{sizes.memory_limit_bytes}b"
    service["mem_reservation"] = f"{sizes.memory_request_bytes}b"
    service["cpu_shares"] = sizes.cpu_shares

    limits: dict[str, Any] = {}
    cpus_text = ""
    if sizes.cpu_limit_millicores is not None:
        # A number of cores, such as 2.0, where Docker's NanoCpus is 2000000000.
        service["cpus"] = sizes.cpu_limit_millicores / 1000
        cpus_text = f"{service['cpus']}"
        limits["cpus"] = cores_text(sizes.cpu_limit_millicores)
    limits["memory"] = f"{sizes.memory_limit_bytes}b"
    service["deploy"] = {
        "resources": {
            "limits": limits,
            "reservations": {
                "cpus": cores_text(sizes.cpu_request_millicores),
                "memory": f"{sizes.memory_request_bytes}b",
            },
        }
    }
    mapping = [
        memory_text(sizes, "mem_limit", "mem_reservation"),
        cpu_shares_text(sizes, "cpu_shares"),
        cpu_limit_text(sizes, "cpus", cpus_text),
        "deploy.resources, for docker stack deploy, repeats the memory limit and "
        "any CPU limit as limits, and the memory request and the CPU request "
        f"{sizes.cpu_request_millicores}m as reservations "
        f"({floored_text(sizes.recommendation.cpu_floored)}).",
    ]
    header = render_header(sizes, mapping)
    return header + dump_yaml({"services": {name: service}})
