"""Writer of a Kubernetes Deployment for `kubectl apply` and `podman kube play`."""

from __future__ import annotations

from typing import Any

from hyperlane.report.deploy_common import (
    DeploySizes,
    dump_yaml,
    floored_text,
    render_header,
)

# Probe timing: the first check after 5 s, then every 10 s, with Kubernetes' default
# failure threshold of 3.
PROBE_INITIAL_DELAY_SECONDS = 5
PROBE_PERIOD_SECONDS = 10


def render_kubernetes(
    image: str,
    container_port: int | None,
    probe_path: str | None,
    sizes: DeploySizes,
    name: str,
) -> str:
    """Render a one-container Deployment (apps/v1) with the recommended resources.

    With a container port, readiness and liveness probes check it: an HTTP GET of
    probe_path when one is given, or else a TCP connect.
    """
    container: dict[str, Any] = {
        "name": name,
        "image": image,
        "imagePullPolicy": "IfNotPresent",
    }
    if container_port is not None:
        container["ports"] = [{"containerPort": container_port, "protocol": "TCP"}]
    container["resources"] = _resources(sizes)
    if container_port is not None:
        container["readinessProbe"] = _probe(container_port, probe_path)
        container["livenessProbe"] = _probe(container_port, probe_path)

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
    return render_header(sizes, _mapping(sizes, container_port, probe_path)) + (
        dump_yaml(document)
    )


def _resources(sizes: DeploySizes) -> dict[str, Any]:
    limits: dict[str, str] = {}
    if sizes.cpu_limit_millicores is not None:
        limits["cpu"] = f"{sizes.cpu_limit_millicores}m"
    limits["memory"] = f"{sizes.memory_limit_mib}Mi"
    return {
        "requests": {
            "cpu": f"{sizes.cpu_request_millicores}m",
            "memory": f"{sizes.memory_request_mib}Mi",
        },
        "limits": limits,
    }


def _probe(container_port: int, probe_path: str | None) -> dict[str, Any]:
    check: dict[str, Any]
    if probe_path is None:
        check = {"tcpSocket": {"port": container_port}}
    else:
        check = {"httpGet": {"path": probe_path, "port": container_port}}
    return {
        **check,
        "initialDelaySeconds": PROBE_INITIAL_DELAY_SECONDS,
        "periodSeconds": PROBE_PERIOD_SECONDS,
    }


def _mapping(
    sizes: DeploySizes, container_port: int | None, probe_path: str | None
) -> list[str]:
    request_mib = sizes.memory_request_mib
    limit_mib = sizes.memory_limit_mib
    mapping = [
        f"resources.requests.cpu {sizes.cpu_request_millicores}m is the recommended "
        f"CPU request ({floored_text(sizes.recommendation.cpu_floored)}).",
        f"resources.requests.memory {request_mib}Mi and resources.limits.memory "
        f"{limit_mib}Mi are the recommended memory request and limit, rounded up to "
        f"whole MiB ({floored_text(sizes.recommendation.memory_floored)}).",
    ]
    if sizes.cpu_limit_millicores is None:
        mapping.append(
            "No CPU limit is set because none was requested, so the container is "
            "not throttled above its request."
        )
    else:
        mapping.append(
            f"resources.limits.cpu {sizes.cpu_limit_millicores}m is the requested "
            "CPU limit, enforced as a CFS quota."
        )
    if container_port is not None and probe_path is not None:
        mapping.append(
            f"The readiness and liveness probes send GET {probe_path} to port "
            f"{container_port}."
        )
    elif container_port is not None:
        mapping.append(
            f"The readiness and liveness probes open a TCP connection to port "
            f"{container_port}, because no HTTP path is known."
        )
    return mapping
