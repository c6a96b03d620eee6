"""CI gates on image figures: limits, floors, missing figures and the exit code."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from hyperlane.errors import UsageError
from hyperlane.exitcodes import ExitCode
from hyperlane.images.gates import evaluate_image_gates
from hyperlane.settings import ImageSettings, load_settings
from tests.unit.images.builders import docker_archive, file, layer_tar

HYPERLANE = str(Path(sys.executable).parent / "hyperlane")
MIB = 2**20


def _image(**figures: Any) -> dict[str, Any]:
    image: dict[str, Any] = {
        "hidden_bytes": 0,
        "hidden_percent": 0.0,
        "total_size_bytes": 10 * MIB,
        "dive": {"efficiency": 1.0, "wasted_bytes": 0, "user_wasted_percent": 0.0},
    }
    image.update(figures)
    return image


def _settings(**values: str) -> ImageSettings:
    return load_settings(ImageSettings, values, None)


def test_default_gates_hidden_only() -> None:
    gates = evaluate_image_gates(_image(), _settings())
    assert [gate.name for gate in gates] == ["max_hidden_bytes", "max_hidden_percent"]
    assert all(gate.passed for gate in gates)


def test_hidden_bytes_over_limit() -> None:
    image = _image(hidden_bytes=60 * MIB, hidden_percent=5.0)
    gates = {gate.name: gate for gate in evaluate_image_gates(image, _settings())}
    assert not gates["max_hidden_bytes"].passed
    assert gates["max_hidden_bytes"].value == 60 * MIB
    assert gates["max_hidden_bytes"].limit == 50 * MIB
    assert "--max-hidden-bytes FAILED" in gates["max_hidden_bytes"].message
    assert gates["max_hidden_percent"].passed


def test_byte_gates_json_integers() -> None:
    image = _image(hidden_bytes=60 * MIB, hidden_percent=5.0)
    settings = _settings(max_image_size="200Mi", max_dive_wasted_bytes="1Mi")
    document = json.loads(
        json.dumps([gate.to_dict() for gate in evaluate_image_gates(image, settings)])
    )
    gates = {gate["name"]: gate for gate in document}
    for name in ("max_hidden_bytes", "max_image_size", "max_dive_wasted_bytes"):
        assert isinstance(gates[name]["value"], int), name
        assert isinstance(gates[name]["limit"], int), name
    assert gates["max_hidden_bytes"]["limit"] == 50 * MIB
    assert gates["max_image_size"]["value"] == 10 * MIB
    assert isinstance(gates["max_hidden_percent"]["limit"], float)


def test_limit_itself_passes() -> None:
    image = _image(hidden_bytes=50 * MIB, hidden_percent=10.0)
    gates = evaluate_image_gates(image, _settings())
    assert all(gate.passed for gate in gates)


def test_percent_floor_spares_tiny_image() -> None:
    # 40 % hidden, but only 512 KiB of it: below the 1 MiB floor.
    image = _image(hidden_bytes=512 * 1024, hidden_percent=40.0)
    gates = {gate.name: gate for gate in evaluate_image_gates(image, _settings())}
    percent = gates["max_hidden_percent"]
    assert percent.passed
    assert "below --hidden-percent-floor" in percent.message


def test_percent_over_floor_fails() -> None:
    image = _image(hidden_bytes=2 * MIB, hidden_percent=40.0)
    gates = {gate.name: gate for gate in evaluate_image_gates(image, _settings())}
    assert not gates["max_hidden_percent"].passed


def test_floor_zero_checks_every_byte() -> None:
    image = _image(hidden_bytes=10, hidden_percent=40.0)
    settings = _settings(hidden_percent_floor="0")
    gates = {gate.name: gate for gate in evaluate_image_gates(image, settings)}
    assert not gates["max_hidden_percent"].passed


def test_gates_turned_off() -> None:
    settings = _settings(max_hidden_bytes="off", max_hidden_percent="none")
    assert evaluate_image_gates(_image(hidden_bytes=10**12), settings) == []


def test_dive_efficiency_gate() -> None:
    settings = _settings(min_dive_efficiency="0.9")
    low = _image(dive={"efficiency": 0.5, "wasted_bytes": 5 * MIB})
    tiny = _image(dive={"efficiency": 0.5, "wasted_bytes": 1000})
    low_gate = evaluate_image_gates(low, settings)[-1]
    tiny_gate = evaluate_image_gates(tiny, settings)[-1]
    assert low_gate.name == "min_dive_efficiency"
    assert low_gate.direction == "min"
    assert not low_gate.passed
    assert tiny_gate.passed


def test_dive_wasted_gates() -> None:
    settings = _settings(
        max_dive_wasted_bytes="1Mi", max_dive_wasted_percent="5", max_image_size="8Mi"
    )
    image = _image(dive={"wasted_bytes": 3 * MIB, "user_wasted_percent": 30.0})
    gates = {gate.name: gate for gate in evaluate_image_gates(image, settings)}
    assert not gates["max_dive_wasted_bytes"].passed
    assert not gates["max_dive_wasted_percent"].passed
    assert not gates["max_image_size"].passed


def test_missing_figure_fails() -> None:
    settings = _settings(min_dive_efficiency="0.9")
    image = _image()
    del image["dive"]
    gate = evaluate_image_gates(image, settings)[-1]
    assert gate.value is None
    assert not gate.passed
    assert "no dive.efficiency figure" in gate.message


def test_single_layer_percent_undefined() -> None:
    settings = _settings(max_dive_wasted_percent="10")
    image = _image(
        dive={"wasted_bytes": 0, "user_wasted_percent": None, "user_size_bytes": 0}
    )
    gate = evaluate_image_gates(image, settings)[-1]
    assert gate.name == "max_dive_wasted_percent"
    assert gate.value is None
    assert gate.passed
    assert "undefined" in gate.message


def test_percent_above_hundred_fails() -> None:
    # A rewritten base-layer file can waste more than the user layers hold.
    settings = _settings(max_dive_wasted_percent="10")
    image = _image(
        dive={
            "wasted_bytes": 4 * MIB,
            "user_wasted_percent": 433.0,
            "user_size_bytes": MIB,
        }
    )
    gate = evaluate_image_gates(image, settings)[-1]
    assert not gate.passed


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("max_hidden_percent", "150"),
        ("min_dive_efficiency", "90"),
        ("max_hidden_bytes", "lots"),
        ("hidden_percent_floor", "off"),
    ],
)
def test_invalid_gate_rejected(name: str, text: str) -> None:
    with pytest.raises(UsageError) as raised:
        _settings(**{name: text})
    assert "--" + name.replace("_", "-") in str(raised.value)


def _run(*arguments: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [HYPERLANE, "image", *arguments],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=cwd,
    )


@pytest.fixture
def wasteful_archive(tmp_path: Path) -> Path:
    # 2 MiB written and then overwritten: 2 MiB hidden, 2/3 of the file bytes.
    lower = layer_tar([file("data.bin", b"a" * 2 * MIB), file("keep", b"k" * MIB)])
    upper = layer_tar([file("data.bin", b"b")])
    return docker_archive(tmp_path / "wasteful.tar", [lower, upper])


def test_cli_gate_failure_exit(wasteful_archive: Path, tmp_path: Path) -> None:
    result = _run(str(wasteful_archive), "--ci", "--json", cwd=tmp_path)
    assert result.returncode == ExitCode.THRESHOLD_FAILED, result.stderr
    document = json.loads(result.stdout)
    assert document["image"]["hidden_bytes"] == 2 * MIB
    assert document["ci"]["passed"] is False
    failed = [gate["name"] for gate in document["ci"]["gates"] if not gate["passed"]]
    assert failed == ["max_hidden_percent"]
    assert "--max-hidden-percent FAILED" in result.stderr


def test_cli_gate_off_passes(wasteful_archive: Path, tmp_path: Path) -> None:
    result = _run(
        str(wasteful_archive), "--ci", "--max-hidden-percent", "off", cwd=tmp_path
    )
    assert result.returncode == ExitCode.SUCCESS, result.stderr
    assert "CI gates (1): passed" in result.stdout


def test_cli_all_gates_off_warns(wasteful_archive: Path, tmp_path: Path) -> None:
    result = _run(
        str(wasteful_archive),
        "--ci",
        "--json",
        "--max-hidden-percent",
        "off",
        "--max-hidden-bytes",
        "off",
        cwd=tmp_path,
    )
    assert result.returncode == ExitCode.SUCCESS, result.stderr
    assert json.loads(result.stdout)["ci"] == {"passed": True, "gates": []}
    assert "every gate is off, so nothing was checked" in result.stderr


def test_cli_gates_from_config(wasteful_archive: Path, tmp_path: Path) -> None:
    (tmp_path / "hyperlane.toml").write_text(
        '[image]\nci = true\nmax_hidden_percent = "off"\nmax_hidden_bytes = "1Mi"\n',
        encoding="utf-8",
    )
    result = _run(str(wasteful_archive), "--json", cwd=tmp_path)
    assert result.returncode == ExitCode.THRESHOLD_FAILED, result.stderr
    gates = json.loads(result.stdout)["ci"]["gates"]
    assert [gate["name"] for gate in gates] == ["max_hidden_bytes"]


def test_cli_without_ci_ignores_gates(wasteful_archive: Path, tmp_path: Path) -> None:
    result = _run(str(wasteful_archive), "--json", cwd=tmp_path)
    assert result.returncode == ExitCode.SUCCESS, result.stderr
    assert "ci" not in json.loads(result.stdout)


def test_cli_invalid_gate_usage_error(wasteful_archive: Path, tmp_path: Path) -> None:
    result = _run(
        str(wasteful_archive), "--ci", "--max-hidden-percent", "200", cwd=tmp_path
    )
    assert result.returncode == ExitCode.USAGE_ERROR
    assert result.stdout == ""
    assert "--max-hidden-percent" in result.stderr
