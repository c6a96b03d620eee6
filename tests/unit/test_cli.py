"""The command line without an engine: help, version, usage errors, exit codes."""

import json
import subprocess
from pathlib import Path

import pytest

from hyperlane import __version__
from hyperlane.exitcodes import ExitCode
from tests.unit.images.builders import docker_archive, file, layer_tar
from tests.unit.probes import run_python, run_script


def _run(*arguments: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return run_script(*arguments, cwd=cwd)


def test_help_lists_commands() -> None:
    result = _run("--help")
    assert result.returncode == 0
    for command in ("audit", "image", "load", "report"):
        assert command in result.stdout


def test_help_skips_heavy_imports() -> None:
    probe = (
        "import sys; sys.argv = ['hyperlane', '--help']\n"
        "from hyperlane.cli.main import app\n"
        "try:\n    app()\nexcept SystemExit:\n    pass\n"
        "print('loaded:' + ','.join(m for m in ('docker', 'uvloop', 'hdrh', 'yaml') "
        "if m in sys.modules))"
    )
    result = run_python(probe)
    assert result.stdout.strip().splitlines()[-1] == "loaded:"


def test_image_json_skips_heavy_imports(tmp_path: Path) -> None:
    layer = layer_tar([file("bin/tool", b"tool" * 100), file("etc/conf", b"x")])
    archive = docker_archive(tmp_path / "image.tar", [layer])
    probe = (
        f"import sys; sys.argv = ['hyperlane', 'image', '--json', {str(archive)!r}]\n"
        "from hyperlane.cli.main import app\n"
        "try:\n    app()\nexcept SystemExit as exit:\n    code = exit.code\n"
        # NOTE: asyncio is not in the list because pydantic_settings 2.16 imports
        # it at module level, which the settings models need.
        "heavy = ('docker', 'rich', 'uvloop', 'hdrh', 'yaml')\n"
        "loaded = ','.join(m for m in heavy if m in sys.modules)\n"
        "print(f'exit:{code} loaded:{loaded}', file=sys.stderr)"
    )
    result = run_python(probe)
    assert result.stderr.strip().splitlines()[-1] == "exit:0 loaded:"
    document = json.loads(result.stdout)
    assert document["image"]["files_total"] == 2


@pytest.mark.parametrize("command", ["audit", "image", "load", "merge", "report"])
def test_command_help_renders(command: str) -> None:
    result = _run(command, "--help")
    assert result.returncode == 0, result.stderr
    assert "Usage: hyperlane " + command in result.stdout


@pytest.mark.parametrize(
    "arguments",
    [
        ["--help"],
        ["--version"],
        *(
            [command, "--help"]
            for command in (
                "audit",
                "image",
                "load",
                "merge",
                "report",
                "top",
                "monitor",
                "rightsize",
            )
        ),
        ["image"],
        ["image", "--no-such-flag"],
        ["imag"],
    ],
)
def test_script_matches_full_app(arguments: list[str]) -> None:
    # The script registers only the command named in its first argument, and the
    # module's `app` registers all of them, so both must print the same.
    probe = (
        f"import sys; sys.argv = ['hyperlane', *{arguments!r}]\n"
        "from hyperlane.cli.main import app\n"
        "try:\n    app()\nexcept SystemExit as exit:\n    code = exit.code\n"
        "print(f'exit:{code}', file=sys.stderr)"
    )
    full_app = run_python(probe)
    script = _run(*arguments)
    assert script.stdout == full_app.stdout
    assert script.stderr + f"exit:{script.returncode}\n" == full_app.stderr


def test_script_restores_collector_state() -> None:
    # run() pauses the garbage collector while it imports the settings models, and
    # must leave it on or off as it found it.
    probe = (
        "import gc, sys; sys.argv = ['hyperlane', '--version']\n"
        "from hyperlane.cli.main import run\n"
        "for enabled in (True, False):\n"
        "    if enabled:\n        gc.enable()\n"
        "    else:\n        gc.disable()\n"
        "    try:\n        run()\n    except SystemExit:\n        pass\n"
        "    print(f'{enabled}:{gc.isenabled()}', file=sys.stderr)"
    )
    result = run_python(probe)
    assert result.stderr.splitlines() == ["True:True", "False:False"]


def test_version() -> None:
    result = _run("--version")
    assert result.stdout.strip() == f"hyperlane {__version__}"


def test_audit_help_shows_units() -> None:
    result = _run("audit", "--help")
    assert "--duration" in result.stdout
    assert "HYPERLANE_DURATION" in result.stdout
    assert "10s" in result.stdout


def test_usage_error_exit_code(tmp_path: Path) -> None:
    result = _run("audit", "--duration", "forever", cwd=tmp_path)
    assert result.returncode == ExitCode.USAGE_ERROR
    assert "invalid value 'forever' for --duration" in result.stderr
    assert result.stdout == ""


def test_config_typo_suggests(tmp_path: Path) -> None:
    (tmp_path / "hyperlane.toml").write_text("[audit]\ndurration = '3s'\n")
    result = _run("audit", cwd=tmp_path)
    assert result.returncode == ExitCode.USAGE_ERROR
    assert "did you mean 'duration'?" in result.stderr


def test_report_missing_file(tmp_path: Path) -> None:
    result = _run("report", str(tmp_path / "absent.json"))
    assert result.returncode == ExitCode.USAGE_ERROR
    assert "not found" in result.stderr


def test_report_rejects_other_major(tmp_path: Path) -> None:
    path = tmp_path / "report.json"
    path.write_text(json.dumps({"schema_version": "9.0.0", "kind": "audit"}))
    result = _run("report", str(path))
    assert result.returncode == ExitCode.USAGE_ERROR
    assert "'9.0.0'" in result.stderr


def test_exit_codes_distinct() -> None:
    values = [int(code) for code in ExitCode]
    assert len(values) == len(set(values))
    assert int(ExitCode.INTERRUPTED) == 130
