"""``hyperlane load`` and ``hyperlane merge`` through the command line, on loopback."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from hyperlane.exitcodes import ExitCode
from tests.unit.load.servers import keep_alive, serving

HYPERLANE = str(Path(sys.executable).parent / "hyperlane")


def _run(*arguments: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [HYPERLANE, *arguments],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=cwd,
    )


def test_requests_exact_with_workers(tmp_path: Path) -> None:
    with serving(keep_alive) as server:
        result = _run(
            "load",
            server.url,
            "--requests",
            "301",
            "--connections",
            "4",
            "--workers",
            "2",
            "--duration",
            "20s",
            "--json",
            cwd=tmp_path,
        )
        received = server.requests_received
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["workers"] == 2
    assert document["load"]["requests_sent"] == 301
    assert document["load"]["requests_total"] == 301
    assert received == 301


def test_merge_adds_runs(tmp_path: Path) -> None:
    paths = []
    counts = []
    with serving(keep_alive) as server:
        for index, requests in enumerate((50, 70)):
            result = _run(
                "load",
                server.url,
                "--requests",
                str(requests),
                "--workers",
                "1",
                "--connections",
                "2",
                "--json",
                cwd=tmp_path,
            )
            assert result.returncode == 0, result.stderr
            path = tmp_path / f"run{index}.json"
            path.write_text(result.stdout)
            paths.append(str(path))
            counts.append(json.loads(result.stdout)["load"]["latency"]["count"])
    hgrm = tmp_path / "merged.hgrm"
    merged = _run("merge", *paths, "--json", "--hgrm", str(hgrm), cwd=tmp_path)
    assert merged.returncode == 0, merged.stderr
    load = json.loads(merged.stdout)["load"]
    assert load["requests_total"] == 120
    assert load["latency"]["count"] == sum(counts)
    assert "Percentile" in hgrm.read_text()

    copy = tmp_path / "copy.json"
    copy.write_text(Path(paths[0]).read_text())
    twice = _run("merge", paths[0], str(copy), paths[1], cwd=tmp_path)
    assert twice.returncode == ExitCode.USAGE_ERROR
    assert "same run" in twice.stderr
    assert twice.stdout == ""


def test_merge_rejects_single_file(tmp_path: Path) -> None:
    path = tmp_path / "one.json"
    path.write_text("{}")
    result = _run("merge", str(path), cwd=tmp_path)
    assert result.returncode == ExitCode.USAGE_ERROR
    assert "at least two" in result.stderr


def test_threshold_sets_exit_code(tmp_path: Path) -> None:
    scenario = tmp_path / "scenario.toml"
    scenario.write_text('thresholds = ["p99 < 1us"]\n\n[[requests]]\npath = "/"\n')
    with serving(keep_alive) as server:
        result = _run(
            "load",
            server.url,
            "--requests",
            "20",
            "--workers",
            "1",
            "--scenario",
            str(scenario),
            "--json",
            cwd=tmp_path,
        )
    if result.returncode == ExitCode.USAGE_ERROR:
        pytest.fail(f"scenario format not accepted: {result.stderr}")
    assert result.returncode == ExitCode.THRESHOLD_FAILED, result.stderr
    document = json.loads(result.stdout)
    assert document["thresholds"][0]["passed"] is False


def test_all_requests_fail(tmp_path: Path) -> None:
    result = _run(
        "load",
        "http://127.0.0.1:1/",
        "--duration",
        "500ms",
        "--workers",
        "1",
        cwd=tmp_path,
    )
    assert result.returncode == ExitCode.SERVICE_NOT_READY
    assert "no request to http://127.0.0.1:1/ completed" in result.stderr
