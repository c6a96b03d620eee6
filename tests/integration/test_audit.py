"""The audit of the bundled sample on real Docker and Podman, checked independently.

Each figure is compared with a source that the code under test does not compute: the
engine's own inspect data and exports, the server's own request log, and the schema.
"""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path
from typing import Any, cast

import docker
import jsonschema
import kubernetes_validate
import pytest
import yaml

from hyperlane.exitcodes import ExitCode
from hyperlane.metrics.recording import RecordingReader
from tests.conftest import unique_name
from tests.integration.cli import OWNER_LABEL, run_hyperlane

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
SAMPLE_TAG = "localhost/hyperlane-sample:latest"


class AuditRun:
    """One finished ``hyperlane audit`` of the sample: its output and report."""

    def __init__(self, out_dir: Path, stdout: str, stderr: str, code: int) -> None:
        self.out_dir = out_dir
        self.stdout = stdout
        self.stderr = stderr
        self.code = code
        self.report: dict[str, Any] = json.loads(stdout) if code == 0 else {}


@pytest.fixture(scope="session")
def audit_run(engine_name: str, tmp_path_factory: pytest.TempPathFactory) -> AuditRun:
    out_dir = tmp_path_factory.mktemp(f"audit-{engine_name}") / "report"
    result = run_hyperlane(
        "audit",
        "--engine",
        engine_name,
        "--out",
        str(out_dir),
        "--duration",
        "3s",
        "--connections",
        "4",
        "--json",
    )
    return AuditRun(out_dir, result.stdout, result.stderr, result.returncode)


def _regular_file_bytes(archive: tarfile.TarFile) -> int:
    return sum(member.size for member in archive if member.isreg())


def _layer_regular_bytes(save_archive: Path) -> int:
    """Sum regular-file bytes over every layer tar of a legacy docker-archive."""
    total = 0
    with tarfile.open(save_archive) as outer:
        manifest = json.load(outer.extractfile("manifest.json"))  # type: ignore[arg-type]
        for layer_name in manifest[0]["Layers"]:
            layer_file = outer.extractfile(layer_name)
            assert layer_file is not None
            with tarfile.open(fileobj=io.BytesIO(layer_file.read())) as layer:
                total += _regular_file_bytes(layer)
    return total


def test_audit_succeeds(audit_run: AuditRun) -> None:
    assert audit_run.code == 0, audit_run.stderr
    assert (audit_run.out_dir / "report.json").is_file()


def test_report_matches_schema(audit_run: AuditRun) -> None:
    schema = json.loads((REPO / "docs/schema/report.schema.json").read_text())
    on_disk = json.loads((audit_run.out_dir / "report.json").read_text())
    jsonschema.validate(on_disk, schema)
    assert on_disk == audit_run.report


def test_report_names_engine(audit_run: AuditRun, engine_name: str) -> None:
    engine = audit_run.report["engine"]
    assert engine["name"] == engine_name
    assert engine["version"]
    assert f"using {engine_name} {engine['version']}" in audit_run.stderr


def test_total_size_matches_inspect(
    audit_run: AuditRun, engine_client: docker.DockerClient, engine_name: str
) -> None:
    image = audit_run.report["image"]
    inspect_size = engine_client.images.get(SAMPLE_TAG).attrs["Size"]
    if engine_name == "docker":
        # Docker 20.10 reports the sum of the layers' content bytes: regular files
        # plus symlink targets, as its graph driver measures the layer directories.
        assert image["total_size_bytes"] == inspect_size
    else:
        # Podman 4.3 adds up its stored blobs: the uncompressed layer tars (tar
        # headers and padding included), the config, and manifests and signatures
        # that a saved archive does not carry, a few KiB for this image.
        tar_bytes = sum(layer["tar_bytes"] for layer in image["layers"])
        metadata_bytes = inspect_size - tar_bytes - image["config_bytes"]
        assert 0 < metadata_bytes < 16 * 1024


def test_hidden_bytes_match_exports(
    audit_run: AuditRun,
    engine_client: docker.DockerClient,
    tmp_path: Path,
    reap: list[Any],
) -> None:
    save_path = tmp_path / "saved.tar"
    with save_path.open("wb") as output:
        for chunk in engine_client.images.get(SAMPLE_TAG).save(named=True):
            output.write(chunk)
    layer_bytes = _layer_regular_bytes(save_path)

    container = engine_client.containers.create(
        SAMPLE_TAG, name=unique_name("hl-export")
    )
    reap.append(container)
    export_path = tmp_path / "container.tar"
    with export_path.open("wb") as output:
        # types-docker annotates the chunks as str, but the SDK yields bytes.
        for chunk in container.export():
            output.write(cast(bytes, chunk))
    with tarfile.open(export_path) as exported:
        visible_bytes = _regular_file_bytes(exported)

    image = audit_run.report["image"]
    assert image["hidden_bytes"] == layer_bytes - visible_bytes
    assert image["visible_bytes"] == visible_bytes
    # The sample deletes a 512 KiB file in a later layer, so something is hidden.
    assert image["hidden_bytes"] >= 512 * 1024


def test_request_count_matches_server_log(audit_run: AuditRun) -> None:
    load = audit_run.report["load"]
    probes = audit_run.report["container"]["readiness_probes"]
    log = (audit_run.out_dir / "logs" / "load-container.log").read_text()
    served = sum(1 for line in log.splitlines() if "response:200" in line)
    assert load["requests_total"] > 0
    # Requests still in flight at the stop may or may not have reached the server.
    assert load["requests_total"] + probes <= served
    assert served <= load["requests_sent"] + probes


def test_load_reconnects_cleanly(audit_run: AuditRun) -> None:
    load = audit_run.report["load"]
    # busybox httpd closes the connection after each response.
    assert load["errors_total"] == 0
    assert load["connections_opened"] >= load["requests_total"]
    assert load["keep_alive"] is False


def test_metrics_cover_the_load(audit_run: AuditRun) -> None:
    summary = audit_run.report["metrics"]["summary"]
    load = audit_run.report["load"]
    assert summary["source"] == "cgroup-v1"
    assert summary["samples"] >= 5
    assert summary["cpu_seconds_total"] > 0
    assert summary["memory_working_set_max_bytes"] > 0
    # Every response crossed the container's network interface.
    assert summary["network_tx_bytes"] >= load["bytes_received"] * 0.9


def test_sizing_is_estimate(audit_run: AuditRun) -> None:
    sizing = audit_run.report["sizing"]
    assert sizing["status"] == "ok"
    assert sizing["estimate"] is True
    assert sizing["cpu_request_millicores"] >= 10
    assert sizing["memory_floored"] is True
    assert sizing["memory_limit_bytes"] == 100 * 2**20


def test_deploy_files_valid(audit_run: AuditRun) -> None:
    deploy = audit_run.out_dir / "deploy"
    sizing = audit_run.report["sizing"]
    documents = list(yaml.safe_load_all((deploy / "kubernetes.yaml").read_text()))
    for document in documents:
        kubernetes_validate.validate(document, "1.30.0", strict=True)
    resources = documents[0]["spec"]["template"]["spec"]["containers"][0]["resources"]
    assert resources["requests"]["cpu"] == f"{sizing['cpu_request_millicores']}m"
    assert "cpu" not in resources["limits"]
    run_script = (deploy / "docker-run.sh").read_text()
    assert f"--cpu-shares {max(2, round(1024 * sizing['cpu_request_cores']))}" in (
        run_script
    )


def test_no_container_left(
    audit_run: AuditRun, engine_client: docker.DockerClient
) -> None:
    assert audit_run.code == 0
    left = engine_client.containers.list(all=True, filters={"label": OWNER_LABEL})
    assert left == []


def test_terminal_summary(engine_name: str, tmp_path: Path) -> None:
    result = run_hyperlane(
        "audit",
        "--engine",
        engine_name,
        "--out",
        str(tmp_path / "report"),
        "--duration",
        "1s",
        "--starts",
        "1",
    )
    assert result.returncode == 0, result.stderr
    assert f"Hyperlane audit on {engine_name}" in result.stdout
    assert "hidden" in result.stdout
    assert "ESTIMATE" in result.stdout
    again = run_hyperlane("report", str(tmp_path / "report" / "report.json"))
    assert again.returncode == 0, again.stderr
    assert f"Hyperlane audit on {engine_name}" in again.stdout


def test_api_metrics_source(engine_name: str, tmp_path: Path) -> None:
    result = run_hyperlane(
        "audit",
        "--engine",
        engine_name,
        "--out",
        str(tmp_path / "report"),
        "--duration",
        "2s",
        "--starts",
        "1",
        "--metrics-source",
        "api",
        "--json",
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    summary = report["metrics"]["summary"]
    assert summary["source"] == "api"
    assert summary["samples"] >= 2
    assert summary["cpu_seconds_total"] > 0
    # Podman's stats carry no working set, so sizing falls back to total usage.
    assert report["sizing"]["status"] == "ok"


def test_threshold_gate_keeps_report(engine_name: str, tmp_path: Path) -> None:
    scenario = tmp_path / "gate.toml"
    scenario.write_text('thresholds = ["p99 < 1us"]\n\n[[requests]]\npath = "/"\n')
    out_dir = tmp_path / "report"
    copied_hgrm = tmp_path / "copy.hgrm"
    result = run_hyperlane(
        "audit",
        "--engine",
        engine_name,
        "--out",
        str(out_dir),
        "--duration",
        "1s",
        "--starts",
        "1",
        "--scenario",
        str(scenario),
        "--hgrm",
        str(copied_hgrm),
    )
    assert result.returncode == ExitCode.THRESHOLD_FAILED, result.stderr
    assert "p99 < 1us" in result.stderr
    report = json.loads((out_dir / "report.json").read_text())
    assert report["thresholds"][0]["passed"] is False
    assert "Percentile" in (out_dir / "latency.hgrm").read_text()
    assert copied_hgrm.read_text() == (out_dir / "latency.hgrm").read_text()


def test_audit_writes_hgrm(audit_run: AuditRun) -> None:
    text = (audit_run.out_dir / "latency.hgrm").read_text()
    count = audit_run.report["load"]["latency"]["count"]
    assert "Percentile" in text
    assert f"Total count    = {count:12d}]" in text


def test_audit_writes_recording(audit_run: AuditRun) -> None:
    report = audit_run.report
    with RecordingReader(audit_run.out_dir / "metrics.jsonl") as reader:
        recorded = list(reader)
        footer = reader.footer
    assert footer is not None
    assert footer.samples == report["metrics"]["summary"]["samples"]
    containers = {container.container_id for container, _ in recorded}
    assert containers == {report["container"]["id"]}
    sources = {container.source for container, _ in recorded}
    assert sources == {report["metrics"]["summary"]["source"]}
    cpu = [sample.cpu_usage_seconds_total for _, sample in recorded]
    assert cpu == [
        sample["cpu_usage_seconds_total"] for sample in report["metrics"]["samples"]
    ]
