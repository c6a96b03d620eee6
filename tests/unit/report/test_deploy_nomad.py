"""Unit tests of the Nomad job files: API JSON structure, HCL figures, CPU clock.

No Nomad binary runs here, so nomad.json is checked against JSON_SCHEMA below, which
is written from the Job, TaskGroup, Task, Resources, NetworkResource and Port structs
in api/jobs.go, api/tasks.go and api/resources.go of hashicorp/nomad 2.0.6-dev
(commit aa026cc99cfb). The schema rejects unknown fields, so a misspelt field name
fails here instead of being dropped by a JSON decoder.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from hyperlane.report.deploy import CpuClock, write_deploy_files
from hyperlane.report.deploy_nomad import read_cpu_clock
from hyperlane.sizing import Recommendation, recommend

MIB = 2**20
IMAGE = "localhost/hyperlane-demo:1.0"
PORT = 8080
CLOCK = CpuClock(mhz=2600, source="test clock")

_INT = {"type": "integer"}
_STRING = {"type": "string"}
_STRING_MAP = {"type": "object", "additionalProperties": _STRING}

PORT_SCHEMA = {
    "type": "object",
    "properties": {
        "Label": _STRING,
        "Value": _INT,
        "To": _INT,
        "HostNetwork": _STRING,
        "IgnoreCollision": {"type": "boolean"},
    },
    "required": ["Label"],
    "additionalProperties": False,
}
NETWORK_SCHEMA = {
    "type": "object",
    "properties": {
        "Mode": _STRING,
        "Device": _STRING,
        "CIDR": _STRING,
        "IP": _STRING,
        "Hostname": _STRING,
        "ReservedPorts": {"type": "array", "items": PORT_SCHEMA},
        "DynamicPorts": {"type": "array", "items": PORT_SCHEMA},
    },
    "additionalProperties": False,
}
RESOURCES_SCHEMA = {
    "type": "object",
    "properties": {
        # Nomad's MinResources: 1 MHz of CPU and 10 MiB of memory.
        "CPU": {"type": "integer", "minimum": 1},
        "Cores": _INT,
        "MemoryMB": {"type": "integer", "minimum": 10},
        "MemoryMaxMB": {"type": "integer", "minimum": 10},
        "DiskMB": _INT,
    },
    "required": ["CPU", "MemoryMB"],
    "additionalProperties": False,
}
TASK_SCHEMA = {
    "type": "object",
    "properties": {
        "Name": _STRING,
        "Driver": _STRING,
        "User": _STRING,
        "Config": {"type": "object"},
        "Env": _STRING_MAP,
        "Resources": RESOURCES_SCHEMA,
        "Meta": _STRING_MAP,
    },
    "required": ["Name", "Driver", "Config", "Resources"],
    "additionalProperties": False,
}
TASK_GROUP_SCHEMA = {
    "type": "object",
    "properties": {
        "Name": _STRING,
        "Count": {"type": "integer", "minimum": 0},
        "Tasks": {"type": "array", "items": TASK_SCHEMA, "minItems": 1},
        "Networks": {"type": "array", "items": NETWORK_SCHEMA},
        "Meta": _STRING_MAP,
    },
    "required": ["Name", "Count", "Tasks"],
    "additionalProperties": False,
}
JSON_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "properties": {
        "Job": {
            "type": "object",
            "properties": {
                "Region": _STRING,
                "Namespace": _STRING,
                "ID": _STRING,
                "Name": _STRING,
                "Type": {"enum": ["service", "batch", "system", "sysbatch"]},
                "Priority": _INT,
                "Datacenters": {"type": "array", "items": _STRING, "minItems": 1},
                "TaskGroups": {
                    "type": "array",
                    "items": TASK_GROUP_SCHEMA,
                    "minItems": 1,
                },
                "Meta": _STRING_MAP,
            },
            "required": ["ID", "Name", "Type", "Datacenters", "TaskGroups"],
            "additionalProperties": False,
        }
    },
    "required": ["Job"],
    "additionalProperties": False,
}


@pytest.fixture
def measured() -> Recommendation:
    # p95 of 100 samples at 137m is 137m, and peak 120 MiB * 1.15 = 138 MiB.
    return recommend([0.137] * 100, [120 * MIB] * 100, 120.0)


@pytest.fixture
def floored_estimate() -> Recommendation:
    # 4m and 10 MiB * 1.15 = 12 MiB are below the 10m and 100 MiB floors.
    return recommend([0.004] * 20, [10 * MIB] * 20, 10.0)


def read_job(out_dir: Path) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(
        (out_dir / "nomad.json").read_text(encoding="utf-8")
    )
    return document


def hcl_number(text: str, key: str) -> int:
    match = re.search(rf"^\s*{key}\s*=\s*(\d+)\s*$", text, re.MULTILINE)
    assert match is not None, f"{key} not found in nomad.hcl"
    return int(match.group(1))


def test_schema_is_valid() -> None:
    jsonschema.Draft202012Validator.check_schema(JSON_SCHEMA)


def test_json_matches_api_schema(tmp_path: Path, measured: Recommendation) -> None:
    write_deploy_files(tmp_path, IMAGE, PORT, measured, cpu_clock=CLOCK)
    jsonschema.Draft202012Validator(JSON_SCHEMA).validate(read_job(tmp_path))


def test_schema_rejects_misspelt_field() -> None:
    # Checks the schema itself: Resources has MemoryMB, not Memory.
    job = {
        "Job": {
            "ID": "app",
            "Name": "app",
            "Type": "service",
            "Datacenters": ["dc1"],
            "TaskGroups": [
                {
                    "Name": "app",
                    "Count": 1,
                    "Tasks": [
                        {
                            "Name": "app",
                            "Driver": "docker",
                            "Config": {"image": IMAGE},
                            "Resources": {"CPU": 100, "Memory": 128},
                        }
                    ],
                }
            ],
        }
    }
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(JSON_SCHEMA).validate(job)


def test_json_figures(tmp_path: Path, measured: Recommendation) -> None:
    write_deploy_files(tmp_path, IMAGE, PORT, measured, name="web", cpu_clock=CLOCK)
    job = read_job(tmp_path)["Job"]
    assert job["ID"] == "web"
    assert job["Type"] == "service"
    [group] = job["TaskGroups"]
    assert group["Count"] == 1
    [task] = group["Tasks"]
    assert task["Driver"] == "docker"
    assert task["Config"] == {"image": IMAGE, "ports": ["http"]}
    # ceil(137 * 2600 / 1000) = ceil(356.2) = 357 MHz.
    assert task["Resources"] == {"CPU": 357, "MemoryMB": 138, "MemoryMaxMB": 138}
    assert group["Networks"] == [{"DynamicPorts": [{"Label": "http", "To": PORT}]}]


def test_json_meta_names_clock(tmp_path: Path, measured: Recommendation) -> None:
    write_deploy_files(tmp_path, IMAGE, PORT, measured, cpu_clock=CLOCK)
    meta = read_job(tmp_path)["Job"]["Meta"]
    assert meta["hyperlane_cpu_clock_mhz"] == "2600"
    assert meta["hyperlane_cpu_clock_source"] == "test clock"
    assert (
        "cpu 357 MHz = ceil(137m CPU request * 2600 MHz)" in (meta["hyperlane_sizing"])
    )


def test_hcl_figures(tmp_path: Path, measured: Recommendation) -> None:
    write_deploy_files(tmp_path, IMAGE, PORT, measured, cpu_clock=CLOCK)
    text = (tmp_path / "nomad.hcl").read_text(encoding="utf-8")
    assert hcl_number(text, "cpu") == 357
    assert hcl_number(text, "memory") == 138
    assert hcl_number(text, "memory_max") == 138
    assert hcl_number(text, "to") == PORT
    assert 'driver = "docker"' in text
    assert f'image = "{IMAGE}"' in text
    assert 'hyperlane_cpu_clock_mhz = "2600"' in text
    assert "# cpu 357 MHz = ceil(137m CPU request * 2600 MHz)" in text


def test_hcl_braces_balance(tmp_path: Path, measured: Recommendation) -> None:
    write_deploy_files(tmp_path, IMAGE, None, measured, cpu_clock=CLOCK)
    body = [
        line
        for line in (tmp_path / "nomad.hcl").read_text().splitlines()
        if not line.startswith("#")
    ]
    text = "\n".join(body)
    assert text.count("{") == text.count("}")
    assert "network" not in text
    assert "ports" not in text


def test_json_without_port(tmp_path: Path, measured: Recommendation) -> None:
    write_deploy_files(tmp_path, IMAGE, None, measured, cpu_clock=CLOCK)
    job = read_job(tmp_path)
    jsonschema.Draft202012Validator(JSON_SCHEMA).validate(job)
    [group] = job["Job"]["TaskGroups"]
    assert "Networks" not in group
    assert group["Tasks"][0]["Config"] == {"image": IMAGE}


def test_floored_estimate(tmp_path: Path, floored_estimate: Recommendation) -> None:
    write_deploy_files(tmp_path, IMAGE, PORT, floored_estimate, cpu_clock=CLOCK)
    resources = read_job(tmp_path)["Job"]["TaskGroups"][0]["Tasks"][0]["Resources"]
    # The 10m floor is 10 * 2600 / 1000 = 26 MHz, and the memory floor is 100 MiB.
    assert resources == {"CPU": 26, "MemoryMB": 100, "MemoryMaxMB": 100}
    text = (tmp_path / "nomad.hcl").read_text(encoding="utf-8")
    assert "floored: the measured figure was below the floor" in text
    assert "# ESTIMATE: Based on 20 CPU readings and 20 memory samples" in text
    meta = read_job(tmp_path)["Job"]["Meta"]
    assert meta["hyperlane_estimate"].startswith(
        "ESTIMATE: Based on 20 CPU readings and 20 memory samples"
    )
    assert "floored: the measured figure" in meta["hyperlane_sizing"]


def test_measured_has_no_estimate(tmp_path: Path, measured: Recommendation) -> None:
    write_deploy_files(tmp_path, IMAGE, PORT, measured, cpu_clock=CLOCK)
    assert "hyperlane_estimate" not in read_job(tmp_path)["Job"]["Meta"]
    text = (tmp_path / "nomad.hcl").read_text(encoding="utf-8")
    assert "ESTIMATE" not in text


def test_cpu_at_least_one_mhz(tmp_path: Path, measured: Recommendation) -> None:
    write_deploy_files(
        tmp_path, IMAGE, PORT, measured, cpu_clock=CpuClock(mhz=1, source="slow")
    )
    resources = read_job(tmp_path)["Job"]["TaskGroups"][0]["Tasks"][0]["Resources"]
    # ceil(137 * 1 / 1000) = 1 MHz, which is also Nomad's minimum.
    assert resources["CPU"] == 1


def test_limit_noted_not_set(tmp_path: Path, measured: Recommendation) -> None:
    write_deploy_files(
        tmp_path, IMAGE, PORT, measured, cpu_limit_millicores=2000, cpu_clock=CLOCK
    )
    text = (tmp_path / "nomad.hcl").read_text(encoding="utf-8")
    assert "# NOTE: the requested CPU limit 2000m is not set" in text
    assert hcl_number(text, "cpu") == 357
    job = read_job(tmp_path)
    assert "CPU limit 2000m is not set" in job["Job"]["Meta"]["hyperlane_sizing"]


def test_hcl_escapes_templates(tmp_path: Path, measured: Recommendation) -> None:
    image = "localhost/${NAME}:%{x}"
    write_deploy_files(tmp_path, image, PORT, measured, cpu_clock=CLOCK)
    text = (tmp_path / "nomad.hcl").read_text(encoding="utf-8")
    assert 'image = "localhost/$${NAME}:%%{x}"' in text


def test_clock_from_cpufreq(tmp_path: Path) -> None:
    cpufreq = tmp_path / "cpuinfo_max_freq"
    cpufreq.write_text("3400000\n", encoding="ascii")
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("cpu MHz\t\t: 1200.000\n", encoding="ascii")
    clock = read_cpu_clock(cpufreq, cpuinfo)
    assert clock == CpuClock(mhz=3400, source=f"{cpufreq} (kHz)")


def test_clock_from_cpuinfo(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(
        "processor\t: 0\nmodel name\t: Test CPU\ncpu MHz\t\t: 2599.998\n"
        "processor\t: 1\ncpu MHz\t\t: 1800.000\n",
        encoding="ascii",
    )
    clock = read_cpu_clock(tmp_path / "missing", cpuinfo)
    assert clock == CpuClock(mhz=2600, source=f"{cpuinfo} (cpu MHz line)")


def test_clock_missing(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nFeatures\t: fp asimd\n", encoding="ascii")
    assert read_cpu_clock(tmp_path / "missing", cpuinfo) is None
    assert read_cpu_clock(tmp_path / "missing", tmp_path / "absent") is None


def test_host_clock_readable() -> None:
    # NOTE: this expects an x86 host, whose /proc/cpuinfo has "cpu MHz" lines. An
    # ARM host without cpufreq has neither figure.
    clock = read_cpu_clock()
    assert clock is not None
    assert clock.mhz > 0
