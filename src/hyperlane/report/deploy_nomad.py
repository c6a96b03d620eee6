"""Writers of a Nomad job, as HCL (nomad.hcl) and as API JSON (nomad.json).

The JSON follows the structs in api/jobs.go, api/tasks.go and api/resources.go of
hashicorp/nomad 2.0.6-dev (commit aa026cc99cfb), the body that `nomad job run -json`
and the /v1/jobs endpoint take. Nomad counts CPU in MHz of the client's clock and
memory in MiB (its "MB"), and the docker driver applies `memory` as the memory
reservation and `memory_max` as the hard limit.
"""

from __future__ import annotations

import json
import logging
import math
import re
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

from hyperlane.report.deploy_common import DeploySizes, floored_text, render_header

logger = logging.getLogger(__name__)

CPUFREQ_MAX_PATH = Path("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq")
CPUINFO_PATH = Path("/proc/cpuinfo")

# Nomad's MinResources in api/resources.go: 1 MHz of CPU and 10 MiB of memory.
NOMAD_MIN_CPU_MHZ = 1
NOMAD_MIN_MEMORY_MIB = 10

# The port label that the group's network block and the docker config share.
PORT_LABEL = "http"

_CPU_MHZ_LINE = re.compile(r"^cpu MHz\s*:\s*([0-9.]+)\s*$", re.MULTILINE)


@dataclass(frozen=True)
class CpuClock:
    """A CPU clock frequency and the file it was read from."""

    mhz: int
    source: str


def read_cpu_clock(
    cpufreq_path: Path = CPUFREQ_MAX_PATH, cpuinfo_path: Path = CPUINFO_PATH
) -> CpuClock | None:
    """Read the host's CPU clock in MHz, or return None when neither file has it.

    cpuinfo_max_freq (kHz) comes first because it does not move with frequency
    scaling. The "cpu MHz" line of /proc/cpuinfo is the current clock of the first
    CPU, which a governor may have lowered.
    """
    try:
        kilohertz = int(cpufreq_path.read_text(encoding="ascii").strip())
    except (OSError, ValueError):
        kilohertz = 0
    if kilohertz > 0:
        return CpuClock(round(kilohertz / 1000), f"{cpufreq_path} (kHz)")

    try:
        cpuinfo = cpuinfo_path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    match = _CPU_MHZ_LINE.search(cpuinfo)
    if match is None or float(match.group(1)) <= 0:
        return None
    return CpuClock(round(float(match.group(1))), f"{cpuinfo_path} (cpu MHz line)")


@dataclass(frozen=True)
class _NomadFigures:
    cpu_mhz: int
    memory_mib: int
    memory_max_mib: int


def _figures(sizes: DeploySizes, clock: CpuClock) -> _NomadFigures:
    cpu_mhz = math.ceil(Fraction(sizes.cpu_request_millicores * clock.mhz, 1000))
    return _NomadFigures(
        cpu_mhz=max(NOMAD_MIN_CPU_MHZ, cpu_mhz),
        memory_mib=max(NOMAD_MIN_MEMORY_MIB, sizes.memory_request_mib),
        memory_max_mib=max(NOMAD_MIN_MEMORY_MIB, sizes.memory_limit_mib),
    )


def _mapping(sizes: DeploySizes, clock: CpuClock, figures: _NomadFigures) -> list[str]:
    mapping = [
        f"cpu {figures.cpu_mhz} MHz = ceil({sizes.cpu_request_millicores}m CPU "
        f"request * {clock.mhz} MHz), with the clock read from {clock.source} on "
        "the machine that wrote this file "
        f"({floored_text(sizes.recommendation.cpu_floored)}).",
        f"memory {figures.memory_mib} MiB is the recommended memory request and "
        f"memory_max {figures.memory_max_mib} MiB the memory limit "
        f"({floored_text(sizes.recommendation.memory_floored)}).",
    ]
    if sizes.cpu_limit_millicores is not None:
        mapping.append(
            f"NOTE: the requested CPU limit {sizes.cpu_limit_millicores}m is not "
            "set, because Nomad has one CPU figure per task and cpu is the request."
        )
    return mapping


def _meta(clock: CpuClock) -> dict[str, str]:
    return {
        "hyperlane_cpu_clock_mhz": str(clock.mhz),
        "hyperlane_cpu_clock_source": clock.source,
    }


def render_nomad_json(
    image: str,
    container_port: int | None,
    sizes: DeploySizes,
    name: str,
    clock: CpuClock,
) -> str:
    """Render the job as the JSON body of Nomad's job register API."""
    figures = _figures(sizes, clock)
    config: dict[str, Any] = {"image": image}
    group: dict[str, Any] = {"Name": name, "Count": 1}
    if container_port is not None:
        config["ports"] = [PORT_LABEL]
        group["Networks"] = [
            {"DynamicPorts": [{"Label": PORT_LABEL, "To": container_port}]}
        ]

    group["Tasks"] = [
        {
            "Name": name,
            "Driver": "docker",
            "Config": config,
            "Resources": {
                "CPU": figures.cpu_mhz,
                "MemoryMB": figures.memory_mib,
                "MemoryMaxMB": figures.memory_max_mib,
            },
        }
    ]

    # JSON has no comments, so the mapping and any estimate go into Meta entries.
    meta = _meta(clock)
    meta["hyperlane_sizing"] = " ".join(_mapping(sizes, clock, figures))
    recommendation = sizes.recommendation
    if recommendation.estimate:
        meta["hyperlane_estimate"] = f"ESTIMATE: {recommendation.estimate_reason}"

    job = {
        "ID": name,
        "Name": name,
        "Type": "service",
        "Datacenters": ["dc1"],
        "Meta": meta,
        "TaskGroups": [group],
    }
    return json.dumps({"Job": job}, indent=2) + "\n"


def render_nomad_hcl(
    image: str,
    container_port: int | None,
    sizes: DeploySizes,
    name: str,
    clock: CpuClock,
) -> str:
    """Render the same job as an HCL job specification."""
    figures = _figures(sizes, clock)
    lines = [
        f"job {_hcl_string(name)} {{",
        '  datacenters = ["dc1"]',
        '  type        = "service"',
        "",
        "  meta {",
    ]
    for key, value in _meta(clock).items():
        lines.append(f"    {key} = {_hcl_string(value)}")
    lines += ["  }", "", f"  group {_hcl_string(name)} {{", "    count = 1", ""]
    if container_port is not None:
        lines += [
            "    network {",
            f"      port {_hcl_string(PORT_LABEL)} {{",
            f"        to = {container_port}",
            "      }",
            "    }",
            "",
        ]
    lines += [
        f"    task {_hcl_string(name)} {{",
        '      driver = "docker"',
        "",
        "      config {",
        f"        image = {_hcl_string(image)}",
    ]
    if container_port is not None:
        lines.append(f"        ports = [{_hcl_string(PORT_LABEL)}]")
    lines += [
        "      }",
        "",
        "      resources {",
        f"        cpu        = {figures.cpu_mhz}",
        f"        memory     = {figures.memory_mib}",
        f"        memory_max = {figures.memory_max_mib}",
        "      }",
        "    }",
        "  }",
        "}",
    ]
    header = render_header(sizes, _mapping(sizes, clock, figures))
    return header + "\n".join(lines) + "\n"


def _hcl_string(value: str) -> str:
    """Quote value as an HCL string literal, with template sequences escaped."""
    # JSON string escapes are a subset of HCL's, and "${" and "%{" start templates.
    return json.dumps(value).replace("${", "$${").replace("%{", "%%{")
