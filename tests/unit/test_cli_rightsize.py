"""`hyperlane rightsize` on recordings written with RecordingWriter."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from hyperlane.exitcodes import ExitCode
from hyperlane.metrics.recording import RecordingWriter
from hyperlane.sizing.policy import MIB
from tests.unit.sizing.test_strategies import make_series

HYPERLANE = str(Path(sys.executable).parent / "hyperlane")
ENGINE = {"name": "docker", "version": "test", "api_version": "1.43", "base_url": ""}


def run_cli(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [HYPERLANE, *arguments],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        # A wide terminal keeps Rich from wrapping the explanations mid-phrase.
        env={**os.environ, "COLUMNS": "400"},
    )


def write_recording(path: Path) -> None:
    """Record three containers that each use less than the floors."""
    with RecordingWriter(path, ENGINE, 1.0, 0.0, 1_700_000_000.0, "test") as writer:
        for index, cores in enumerate((0.001, 0.003, 0.005)):
            for sample in make_series([cores] * 60, [(index + 2) * MIB] * 61):
                writer.write_sample(
                    f"id-{index}",
                    f"web-{index}",
                    "localhost/web:1",
                    "cgroup-v2",
                    sample,
                )


def test_rightsize_json_three_containers(tmp_path: Path) -> None:
    recording = tmp_path / "metrics.jsonl.zst"
    write_recording(recording)
    result = run_cli("rightsize", str(recording), "--json", "--cpu-floor", "20m")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["kind"] == "rightsize"
    assert document["strategy"] == "percentile"
    containers = document["containers"]
    assert [item["container"] for item in containers] == ["web-0", "web-1", "web-2"]
    for item in containers:
        recommendation = item["recommendation"]
        assert recommendation["cpu_request_millicores"] == 20
        assert recommendation["cpu_floored"] is True
        assert recommendation["memory_request_bytes"] == 100 * MIB
        assert recommendation["memory_floored"] is True
        assert recommendation["estimate"] is False


def test_rightsize_table_histogram(tmp_path: Path) -> None:
    recording = tmp_path / "metrics.jsonl"
    write_recording(recording)
    result = run_cli("rightsize", str(recording), "--strategy", "histogram")
    assert result.returncode == 0, result.stderr
    assert "strategy histogram" in result.stdout
    assert "(floored)" in result.stdout
    assert "p90 of a decaying histogram" in result.stdout


def test_rightsize_missing_input_exit_2(tmp_path: Path) -> None:
    missing = tmp_path / "nothing.jsonl"
    result = run_cli("rightsize", str(missing))
    assert result.returncode == ExitCode.USAGE_ERROR
    assert str(missing) in result.stderr
    assert "not found" in result.stderr


def test_rightsize_invalid_recording_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"t": "sample"}\n', encoding="utf-8")
    result = run_cli("rightsize", str(bad))
    assert result.returncode == ExitCode.USAGE_ERROR
    assert str(bad) in result.stderr


def test_rightsize_report_without_recording(tmp_path: Path) -> None:
    samples = make_series([0.2] * 10, [50 * MIB] * 11)
    document = {
        "kind": "audit",
        "image": {"config": {"env": ["GOMAXPROCS=4"], "cmd": ["/app"]}},
        "container": {"name": "audited"},
        "metrics": {"samples": [sample.__dict__ for sample in samples]},
    }
    report = tmp_path / "report.json"
    report.write_text(json.dumps(document), encoding="utf-8")
    result = run_cli("rightsize", str(tmp_path), "--json")
    assert result.returncode == 0, result.stderr
    item = json.loads(result.stdout)["containers"][0]
    assert item["container"] == "audited"
    assert item["recommendation"]["cpu_request_millicores"] == 200
    assert item["recommendation"]["estimate"] is True
    assert item["runtime_hints"][0].startswith("GOMAXPROCS=4")


def test_rightsize_out_writes_deploy_files_per_container(tmp_path: Path) -> None:
    recording = tmp_path / "metrics.jsonl"
    write_recording(recording)
    out = tmp_path / "deploy"
    result = run_cli("rightsize", str(recording), "--json", "--out", str(out))
    assert result.returncode == 0, result.stderr
    containers = json.loads(result.stdout)["containers"]
    assert [item["deploy_files"][0] for item in containers] == [
        "deploy/web-0/kubernetes.yaml",
        "deploy/web-1/kubernetes.yaml",
        "deploy/web-2/kubernetes.yaml",
    ]
    assert sorted(path.name for path in out.iterdir()) == ["deploy", "report.json"]
    names = sorted(path.name for path in (out / "deploy").iterdir())
    assert names == ["web-0", "web-1", "web-2"]
    kubernetes = (out / "deploy" / "web-1" / "kubernetes.yaml").read_text()
    assert "image: localhost/web:1" in kubernetes
    assert "memory: 100Mi" in kubernetes
    script = (out / "deploy" / "web-1" / "docker-run.sh").read_text()
    assert "--name web-1" in script
    report = json.loads((out / "report.json").read_text())
    assert report["containers"] == containers

    again = run_cli("rightsize", str(recording), "--out", str(out))
    assert again.returncode == 0, again.stderr
    assert f"Report: {out / 'report.json'}" in again.stdout


def test_rightsize_out_never_replaces_an_input(tmp_path: Path) -> None:
    recording = tmp_path / "audit" / "metrics.jsonl"
    recording.parent.mkdir()
    write_recording(recording)
    for out in (recording.parent, tmp_path):
        result = run_cli("rightsize", str(recording.parent), "--out", str(out))
        assert result.returncode == ExitCode.USAGE_ERROR
        assert "contains the input" in result.stderr
        assert recording.is_file()


def test_rightsize_recording_without_samples_exit_2(tmp_path: Path) -> None:
    recording = tmp_path / "metrics.jsonl"
    with RecordingWriter(recording, ENGINE, 1.0, 0.0, 1_700_000_000.0, "test"):
        pass
    result = run_cli("rightsize", str(recording))
    assert result.returncode == ExitCode.USAGE_ERROR
    assert "No container samples" in result.stderr


def test_rightsize_out_uses_report_image(
    tmp_path: Path,
) -> None:
    samples = make_series([0.2] * 10, [50 * MIB] * 11)
    document = {
        "kind": "audit",
        "image": {
            "reference": "localhost/app:2",
            "config": {"exposed_ports": ["80/tcp"]},
        },
        "settings": {"path": "/health"},
        "container": {"name": "audited"},
        "metrics": {"samples": [sample.__dict__ for sample in samples]},
    }
    (tmp_path / "report.json").write_text(json.dumps(document), encoding="utf-8")
    out = tmp_path / "deploy"
    result = run_cli("rightsize", str(tmp_path), "--json", "--out", str(out))
    assert result.returncode == 0, result.stderr
    item = json.loads(result.stdout)["containers"][0]
    assert item["image"] == "localhost/app:2"
    kubernetes = (out / "deploy" / "audited" / "kubernetes.yaml").read_text()
    assert "containerPort: 80" in kubernetes
    assert "path: /health" in kubernetes


def test_rightsize_slo_rejects_prometheus_and_a_missing_rate() -> None:
    with_prometheus = run_cli(
        "rightsize",
        "--strategy",
        "slo",
        "--slo-rate",
        "10",
        "--image",
        "localhost/app:1",
        "--prometheus",
        "http://127.0.0.1:9/",
    )
    assert with_prometheus.returncode == ExitCode.USAGE_ERROR
    assert "drop --prometheus" in with_prometheus.stderr

    without_rate = run_cli("rightsize", "--strategy", "slo", "--image", "x:1")
    assert without_rate.returncode == ExitCode.USAGE_ERROR
    assert "--slo-rate" in without_rate.stderr
