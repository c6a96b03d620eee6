"""Unit tests of the deploy files: schemas, shell syntax and header comments."""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from hyperlane.errors import UsageError
from hyperlane.report.deploy import CpuClock, write_deploy_files
from hyperlane.sizing import Recommendation, SizingPolicy, recommend

MIB = 2**20
REPO_ROOT = Path(__file__).resolve().parents[3]
COMPOSE_SCHEMA_PATH = REPO_ROOT / "tests" / "data" / "compose-spec.json"
# kubernetes-validate 1.37.0 ships strict schemas for Kubernetes 1.25 to 1.37.
KUBERNETES_VERSION = "1.30"
IMAGE = "localhost/hyperlane-demo:1.0"
PORT = 8080
# A fixed clock keeps the Nomad figures independent of the test machine.
CLOCK = CpuClock(mhz=2600, source="test clock")


@pytest.fixture(scope="module")
def compose_schema() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(COMPOSE_SCHEMA_PATH.read_text(encoding="utf-8"))
    jsonschema.Draft7Validator.check_schema(schema)
    return schema


@pytest.fixture
def measured() -> Recommendation:
    # p95 of 100 samples at 137m is 137m, and peak 120 MiB * 1.15 = 138 MiB.
    return recommend([0.137] * 100, [120 * MIB] * 100, 120.0)


@pytest.fixture
def floored_estimate() -> Recommendation:
    # 4m and 10 MiB * 1.15 = 12 MiB are below the 10m and 100 MiB floors.
    return recommend([0.004] * 20, [10 * MIB] * 20, 10.0)


def validate_compose(document: Any, schema: dict[str, Any]) -> None:
    # The schema declares draft-07 as "https://json-schema.org/draft-07/schema",
    # a URI that jsonschema does not recognise, so the validator is chosen here.
    jsonschema.Draft7Validator(schema).validate(document)


def read_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def header_lines(path: Path) -> list[str]:
    lines = path.read_text(encoding="utf-8").splitlines()
    if lines[0].startswith("#!"):
        lines = lines[1:]
    header = []
    for line in lines:
        if not line.startswith("#"):
            break
        header.append(line)
    return header


def header_text(path: Path) -> str:
    """Return the header comments joined into one line, without the # marks."""
    return " ".join(line.lstrip("#").strip() for line in header_lines(path))


def commented(paths: list[Path]) -> list[Path]:
    """Return the files that can carry comments, which excludes nomad.json."""
    return [path for path in paths if path.suffix != ".json"]


def run_arguments(path: Path) -> list[str]:
    command = path.read_text(encoding="utf-8").splitlines()[-1]
    return shlex.split(command)


# Files and names


def test_writes_five_files(tmp_path: Path, measured: Recommendation) -> None:
    out_dir = tmp_path / "deploy" / "nested"
    paths = write_deploy_files(out_dir, IMAGE, PORT, measured, cpu_clock=CLOCK)
    names = [path.name for path in paths]
    assert names == [
        "kubernetes.yaml",
        "compose.yaml",
        "docker-run.sh",
        "nomad.hcl",
        "nomad.json",
    ]
    # No temporary file is left beside them.
    assert sorted(path.name for path in out_dir.iterdir()) == sorted(names)


def test_overwrites_existing_files(tmp_path: Path, measured: Recommendation) -> None:
    (tmp_path / "compose.yaml").write_text("old", encoding="utf-8")
    write_deploy_files(tmp_path, IMAGE, PORT, measured)
    assert read_yaml(tmp_path / "compose.yaml")["services"]["app"]["image"] == IMAGE


def test_not_enough_data_writes_nothing(tmp_path: Path) -> None:
    out_dir = tmp_path / "deploy"
    empty = recommend([], [], 0.0)
    with pytest.raises(UsageError, match="no measurement to size from"):
        write_deploy_files(out_dir, IMAGE, PORT, empty)
    assert not out_dir.exists()


@pytest.mark.parametrize("name", ["App", "-app", "app_1", "a" * 64, ""])
def test_invalid_name_raises(
    tmp_path: Path, measured: Recommendation, name: str
) -> None:
    with pytest.raises(UsageError, match="Invalid name"):
        write_deploy_files(tmp_path, IMAGE, PORT, measured, name=name)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("port", [0, 65536])
def test_invalid_port_raises(
    tmp_path: Path, measured: Recommendation, port: int
) -> None:
    with pytest.raises(UsageError, match="Invalid container port"):
        write_deploy_files(tmp_path, IMAGE, port, measured)


def test_invalid_image_raises(tmp_path: Path, measured: Recommendation) -> None:
    with pytest.raises(UsageError, match="Invalid image"):
        write_deploy_files(tmp_path, "demo; rm -rf /", PORT, measured)


# Kubernetes


def test_kubernetes_validates(tmp_path: Path, measured: Recommendation) -> None:
    write_deploy_files(tmp_path, IMAGE, PORT, measured)
    document = read_yaml(tmp_path / "kubernetes.yaml")
    version = kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)
    assert version == KUBERNETES_VERSION


def test_kubernetes_resources(tmp_path: Path, measured: Recommendation) -> None:
    write_deploy_files(tmp_path, IMAGE, PORT, measured, name="web")
    document = read_yaml(tmp_path / "kubernetes.yaml")
    assert document["kind"] == "Deployment"
    assert document["metadata"]["name"] == "web"
    containers = document["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    container = containers[0]
    assert container["image"] == IMAGE
    assert container["imagePullPolicy"] == "IfNotPresent"
    assert container["ports"] == [{"containerPort": PORT, "protocol": "TCP"}]
    resources = container["resources"]
    assert resources["requests"] == {"cpu": "137m", "memory": "138Mi"}
    assert resources["limits"] == {"memory": "138Mi"}


def test_kubernetes_without_port(tmp_path: Path, measured: Recommendation) -> None:
    write_deploy_files(tmp_path, IMAGE, None, measured)
    document = read_yaml(tmp_path / "kubernetes.yaml")
    container = document["spec"]["template"]["spec"]["containers"][0]
    assert "ports" not in container
    kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)


# Compose


def test_compose_validates(
    tmp_path: Path, measured: Recommendation, compose_schema: dict[str, Any]
) -> None:
    write_deploy_files(tmp_path, IMAGE, PORT, measured)
    document = read_yaml(tmp_path / "compose.yaml")
    validate_compose(document, compose_schema)


def test_compose_service(tmp_path: Path, measured: Recommendation) -> None:
    write_deploy_files(tmp_path, IMAGE, PORT, measured)
    service = read_yaml(tmp_path / "compose.yaml")["services"]["app"]
    assert service["image"] == IMAGE
    assert service["ports"] == ["127.0.0.1:8080:8080"]
    assert service["mem_limit"] == f"{138 * MIB}b"
    assert service["mem_reservation"] == f"{138 * MIB}b"
    # round(1024 * 0.137) = round(140.288) = 140.
    assert service["cpu_shares"] == 140
    assert "cpus" not in service


def test_compose_shares_minimum(tmp_path: Path) -> None:
    # 1m gives round(1.024) = 1 share, below the kernel's minimum of 2.
    policy = SizingPolicy(cpu_floor_cores=0.001)
    tiny = recommend([0.001] * 100, [200 * MIB] * 100, 120.0, policy)
    write_deploy_files(tmp_path, IMAGE, PORT, tiny)
    service = read_yaml(tmp_path / "compose.yaml")["services"]["app"]
    assert service["cpu_shares"] == 2


def test_compose_without_port(
    tmp_path: Path, measured: Recommendation, compose_schema: dict[str, Any]
) -> None:
    write_deploy_files(tmp_path, IMAGE, None, measured)
    document = read_yaml(tmp_path / "compose.yaml")
    assert "ports" not in document["services"]["app"]
    validate_compose(document, compose_schema)


# docker run script


def test_docker_run_syntax(tmp_path: Path, measured: Recommendation) -> None:
    bash = shutil.which("bash")
    assert bash is not None, "bash is needed to check the script's syntax"
    write_deploy_files(tmp_path, IMAGE, PORT, measured)
    script = tmp_path / "docker-run.sh"
    result = subprocess.run(
        [bash, "-n", str(script)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr


def test_docker_run_executable(tmp_path: Path, measured: Recommendation) -> None:
    write_deploy_files(tmp_path, IMAGE, PORT, measured)
    assert os.access(tmp_path / "docker-run.sh", os.X_OK)


def test_docker_run_arguments(tmp_path: Path, measured: Recommendation) -> None:
    write_deploy_files(tmp_path, IMAGE, PORT, measured, name="web")
    script = tmp_path / "docker-run.sh"
    assert "set -eu" in script.read_text(encoding="utf-8").splitlines()
    memory = f"{138 * MIB}b"
    assert run_arguments(script) == [
        "docker",
        "run",
        "-d",
        "--name",
        "web",
        "--memory",
        memory,
        "--memory-reservation",
        memory,
        "--cpu-shares",
        "140",
        "-p",
        "127.0.0.1:8080:8080",
        IMAGE,
    ]


def test_docker_run_without_port(tmp_path: Path, measured: Recommendation) -> None:
    write_deploy_files(tmp_path, IMAGE, None, measured)
    arguments = run_arguments(tmp_path / "docker-run.sh")
    assert "-p" not in arguments
    assert "--cpus" not in arguments
    assert arguments[-1] == IMAGE


# Header comments


@pytest.mark.parametrize("file_name", ["kubernetes.yaml", "compose.yaml"])
def test_yaml_starts_with_comment(
    tmp_path: Path, measured: Recommendation, file_name: str
) -> None:
    write_deploy_files(tmp_path, IMAGE, PORT, measured)
    text = (tmp_path / file_name).read_text(encoding="utf-8")
    assert text.startswith("# ")


def test_script_comment_after_shebang(tmp_path: Path, measured: Recommendation) -> None:
    write_deploy_files(tmp_path, IMAGE, PORT, measured)
    lines = (tmp_path / "docker-run.sh").read_text(encoding="utf-8").splitlines()
    assert lines[0] == "#!/usr/bin/env bash"
    assert lines[1].startswith("# ")


def test_headers_give_rules(tmp_path: Path, measured: Recommendation) -> None:
    paths = write_deploy_files(tmp_path, IMAGE, PORT, measured)
    for path in commented(paths):
        text = header_text(path)
        assert "p95 of 100 readings of CPU cores used" in text, path.name
        assert "peak working set 120 MiB * 1.15" in text, path.name
        assert "measured, not floored" in text, path.name
        assert "floored:" not in text, path.name
        assert "ESTIMATE" not in text, path.name


def test_headers_map_figures(tmp_path: Path, measured: Recommendation) -> None:
    write_deploy_files(tmp_path, IMAGE, PORT, measured)
    kubernetes = header_text(tmp_path / "kubernetes.yaml")
    compose = header_text(tmp_path / "compose.yaml")
    script = header_text(tmp_path / "docker-run.sh")
    assert "resources.requests.cpu 137m" in kubernetes
    assert "resources.limits.memory 138Mi" in kubernetes
    assert "No CPU limit" in kubernetes
    assert "cpu_shares 140 = round(1024 * 0.137 cores" in compose
    assert f"mem_limit {138 * MIB}b" in compose
    assert "--cpu-shares 140" in script
    assert f"--memory {138 * MIB}b" in script


def test_headers_show_floored(tmp_path: Path, floored_estimate: Recommendation) -> None:
    paths = write_deploy_files(tmp_path, IMAGE, PORT, floored_estimate)
    for path in commented(paths):
        text = header_text(path)
        assert "floored: the measured figure was below the floor" in text, path.name
        assert "raised to the 10m floor" in text, path.name
        assert "raised to the 100 MiB floor" in text, path.name


def test_headers_show_estimate(
    tmp_path: Path, floored_estimate: Recommendation
) -> None:
    paths = write_deploy_files(tmp_path, IMAGE, PORT, floored_estimate)
    for path in commented(paths):
        text = header_text(path)
        assert (
            "ESTIMATE: Based on 20 CPU readings and 20 memory samples over 10.0 s"
            in text
        ), path.name


def test_floored_files_still_valid(
    tmp_path: Path,
    floored_estimate: Recommendation,
    compose_schema: dict[str, Any],
) -> None:
    write_deploy_files(tmp_path, IMAGE, PORT, floored_estimate)
    kubernetes = read_yaml(tmp_path / "kubernetes.yaml")
    compose = read_yaml(tmp_path / "compose.yaml")
    kubernetes_validate.validate(kubernetes, KUBERNETES_VERSION, strict=True)
    validate_compose(compose, compose_schema)
    container = kubernetes["spec"]["template"]["spec"]["containers"][0]
    assert container["resources"]["requests"] == {"cpu": "10m", "memory": "100Mi"}


# CPU limit and probes


@dataclass(frozen=True)
class RecommendationWithLimit(Recommendation):
    """A recommendation from a sizing strategy that also sets a CPU limit."""

    cpu_limit_millicores: int | None = None


def test_limit_in_every_file(tmp_path: Path, measured: Recommendation) -> None:
    write_deploy_files(
        tmp_path, IMAGE, PORT, measured, cpu_limit_millicores=2000, cpu_clock=CLOCK
    )
    kubernetes = read_yaml(tmp_path / "kubernetes.yaml")
    container = kubernetes["spec"]["template"]["spec"]["containers"][0]
    assert container["resources"]["limits"] == {"cpu": "2000m", "memory": "138Mi"}
    assert container["resources"]["requests"] == {"cpu": "137m", "memory": "138Mi"}
    service = read_yaml(tmp_path / "compose.yaml")["services"]["app"]
    assert service["cpus"] == 2.0
    assert service["cpu_shares"] == 140
    limits = service["deploy"]["resources"]["limits"]
    assert limits == {"cpus": "2", "memory": f"{138 * MIB}b"}
    arguments = run_arguments(tmp_path / "docker-run.sh")
    assert arguments[arguments.index("--cpus") + 1] == "2"
    assert arguments[arguments.index("--cpu-shares") + 1] == "140"


def test_fractional_limit_text(tmp_path: Path, measured: Recommendation) -> None:
    write_deploy_files(tmp_path, IMAGE, PORT, measured, cpu_limit_millicores=250)
    service = read_yaml(tmp_path / "compose.yaml")["services"]["app"]
    assert service["cpus"] == 0.25
    assert service["deploy"]["resources"]["limits"]["cpus"] == "0.25"
    arguments = run_arguments(tmp_path / "docker-run.sh")
    assert arguments[arguments.index("--cpus") + 1] == "0.25"
    assert "--cpus 0.25 is the requested CPU limit of 250m" in header_text(
        tmp_path / "docker-run.sh"
    )
    assert "resources.limits.cpu 250m is the requested CPU limit" in header_text(
        tmp_path / "kubernetes.yaml"
    )


def test_limit_files_validate(
    tmp_path: Path, measured: Recommendation, compose_schema: dict[str, Any]
) -> None:
    write_deploy_files(tmp_path, IMAGE, PORT, measured, cpu_limit_millicores=500)
    kubernetes = read_yaml(tmp_path / "kubernetes.yaml")
    kubernetes_validate.validate(kubernetes, KUBERNETES_VERSION, strict=True)
    validate_compose(read_yaml(tmp_path / "compose.yaml"), compose_schema)


def test_no_limit_leaves_cpu_free(tmp_path: Path, measured: Recommendation) -> None:
    write_deploy_files(tmp_path, IMAGE, PORT, measured)
    service = read_yaml(tmp_path / "compose.yaml")["services"]["app"]
    assert "cpus" not in service
    assert "cpus" not in service["deploy"]["resources"]["limits"]
    assert service["deploy"]["resources"]["reservations"] == {
        "cpus": "0.137",
        "memory": f"{138 * MIB}b",
    }
    assert "--cpus" not in run_arguments(tmp_path / "docker-run.sh")
    assert "No --cpus is set" in header_text(tmp_path / "docker-run.sh")
    assert "No cpus is set" in header_text(tmp_path / "compose.yaml")


def test_limit_from_recommendation(tmp_path: Path, measured: Recommendation) -> None:
    fields = {
        field.name: getattr(measured, field.name)
        for field in dataclasses.fields(Recommendation)
    }
    with_limit = RecommendationWithLimit(**fields, cpu_limit_millicores=300)
    write_deploy_files(tmp_path, IMAGE, PORT, with_limit)
    arguments = run_arguments(tmp_path / "docker-run.sh")
    assert arguments[arguments.index("--cpus") + 1] == "0.3"


def test_argument_overrides_limit(tmp_path: Path, measured: Recommendation) -> None:
    fields = {
        field.name: getattr(measured, field.name)
        for field in dataclasses.fields(Recommendation)
    }
    with_limit = RecommendationWithLimit(**fields, cpu_limit_millicores=300)
    write_deploy_files(tmp_path, IMAGE, PORT, with_limit, cpu_limit_millicores=1000)
    arguments = run_arguments(tmp_path / "docker-run.sh")
    assert arguments[arguments.index("--cpus") + 1] == "1"


@pytest.mark.parametrize("limit", [136, 0, -5, 1.5, True])
def test_invalid_limit_raises(
    tmp_path: Path, measured: Recommendation, limit: Any
) -> None:
    with pytest.raises(UsageError, match="Invalid CPU limit"):
        write_deploy_files(tmp_path, IMAGE, PORT, measured, cpu_limit_millicores=limit)
    assert list(tmp_path.iterdir()) == []


def test_limit_equal_to_request(tmp_path: Path, measured: Recommendation) -> None:
    write_deploy_files(tmp_path, IMAGE, PORT, measured, cpu_limit_millicores=137)
    kubernetes = read_yaml(tmp_path / "kubernetes.yaml")
    container = kubernetes["spec"]["template"]["spec"]["containers"][0]
    assert container["resources"]["limits"]["cpu"] == "137m"


def test_http_probes(tmp_path: Path, measured: Recommendation) -> None:
    write_deploy_files(tmp_path, IMAGE, PORT, measured, probe_path="/healthz")
    document = read_yaml(tmp_path / "kubernetes.yaml")
    container = document["spec"]["template"]["spec"]["containers"][0]
    for key in ["readinessProbe", "livenessProbe"]:
        assert container[key]["httpGet"] == {"path": "/healthz", "port": PORT}, key
        assert container[key]["periodSeconds"] == 10, key
    kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)
    assert "send GET /healthz to port 8080" in header_text(tmp_path / "kubernetes.yaml")


def test_tcp_probes_without_path(tmp_path: Path, measured: Recommendation) -> None:
    write_deploy_files(tmp_path, IMAGE, PORT, measured)
    document = read_yaml(tmp_path / "kubernetes.yaml")
    container = document["spec"]["template"]["spec"]["containers"][0]
    for key in ["readinessProbe", "livenessProbe"]:
        assert container[key]["tcpSocket"] == {"port": PORT}, key
        assert "httpGet" not in container[key], key


def test_no_probes_without_port(tmp_path: Path, measured: Recommendation) -> None:
    write_deploy_files(tmp_path, IMAGE, None, measured, probe_path="/healthz")
    document = read_yaml(tmp_path / "kubernetes.yaml")
    container = document["spec"]["template"]["spec"]["containers"][0]
    assert "readinessProbe" not in container
    assert "livenessProbe" not in container


@pytest.mark.parametrize("probe_path", ["healthz", "/a b", ""])
def test_invalid_probe_path_raises(
    tmp_path: Path, measured: Recommendation, probe_path: str
) -> None:
    with pytest.raises(UsageError, match="Invalid probe path"):
        write_deploy_files(tmp_path, IMAGE, PORT, measured, probe_path=probe_path)


def test_memory_quantity_rounds_up(tmp_path: Path, measured: Recommendation) -> None:
    # A strategy may return a byte count that is not whole MiB: Mi rounds it up.
    odd = dataclasses.replace(
        measured,
        memory_request_bytes=100 * MIB + 1,
        memory_limit_bytes=200 * MIB + 1,
    )
    write_deploy_files(tmp_path, IMAGE, PORT, odd, cpu_clock=CLOCK)
    container = read_yaml(tmp_path / "kubernetes.yaml")["spec"]["template"]["spec"][
        "containers"
    ][0]
    assert container["resources"]["requests"]["memory"] == "101Mi"
    assert container["resources"]["limits"]["memory"] == "201Mi"
    service = read_yaml(tmp_path / "compose.yaml")["services"]["app"]
    assert service["mem_reservation"] == f"{100 * MIB + 1}b"
    assert service["mem_limit"] == f"{200 * MIB + 1}b"
