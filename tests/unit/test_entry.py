"""The script's quick start of ``hyperlane image`` against the full command line."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from hyperlane import settings
from hyperlane.cli import entry
from hyperlane.images.pull import DEFAULT_PULL_BANDWIDTH_BITS_PER_SECOND
from tests.unit.images.builders import (
    docker_archive,
    file,
    layer_tar,
    oci_archive_members,
    write_directory,
    write_tar,
)
from tests.unit.probes import (
    HYPERLANE,
    environment_without_settings,
    run_python,
    run_script,
)

LOWER = layer_tar([file("bin/tool", b"tool" * 100), file("etc/conf", b"x")])
UPPER = layer_tar([file("etc/conf", b"y" * 30), file("etc/.wh.tool", b"")])
# The full command line, as the script ran it before the quick start existed.
FULL_CLI = (
    "import sys; from hyperlane.cli.main import run; sys.argv[0] = 'hyperlane'; run()"
)


def without_created(stdout: str) -> str:
    """Return STDOUT with the creation time of a JSON document removed."""
    if not stdout.startswith("{"):
        return stdout
    document = json.loads(stdout)
    document.pop("created", None)
    return json.dumps(document)


@pytest.fixture
def sources(tmp_path: Path) -> dict[str, str]:
    """Return image sources of several kinds, good and bad, by name."""
    archive = docker_archive(tmp_path / "image.tar", [LOWER, UPPER])
    truncated = tmp_path / "truncated.tar"
    truncated.write_bytes(archive.read_bytes()[:3000])
    oci_tar = write_tar(tmp_path / "oci.tar", oci_archive_members([LOWER, UPPER]))
    layout = write_directory(tmp_path / "layout", oci_archive_members([LOWER, UPPER]))
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    return {
        "fifo": str(fifo),
        "prefixed fifo": f"docker-archive:{fifo}",
        "archive": str(archive),
        "truncated": str(truncated),
        "prefixed": f"docker-archive:{archive}",
        "wrong kind": f"docker-archive:{oci_tar}",
        "layout": f"oci:{layout}",
        "missing": str(tmp_path / "missing.tar"),
        "empty value": "oci:",
    }


def test_defaults_match_settings(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in list(os.environ):
        if name.upper().startswith("HYPERLANE_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    defaults = settings.load_settings(settings.ImageSettings, {})
    assert defaults.platform is None
    assert defaults.ci is False
    assert defaults.pull_bandwidth == DEFAULT_PULL_BANDWIDTH_BITS_PER_SECOND
    assert entry._ENV_PREFIX == settings.ENV_PREFIX
    assert entry._CONFIG_FILE_NAME == settings.CONFIG_FILE_NAME


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        (["image", "x.tar"], ("x.tar", False)),
        (["image", "--json", "x.tar"], ("x.tar", True)),
        (["image", "x.tar", "--json"], ("x.tar", True)),
        (["image", "--json", "--json", "x.tar"], None),
        (["image", "--ci", "x.tar"], None),
        (["image", "-q", "x.tar"], None),
        (["image", "--", "x.tar"], None),
        (["image", "x.tar", "y.tar"], None),
        (["image", ""], None),
        (["image"], None),
        (["load", "x.tar"], None),
        ([], None),
    ],
)
def test_quick_request_arguments(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    arguments: list[str],
    expected: tuple[str, bool] | None,
) -> None:
    for name in list(os.environ):
        if name.upper().startswith("HYPERLANE_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    assert entry._quick_image_request(arguments) == expected


def test_quick_request_needs_no_settings(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.upper().startswith("HYPERLANE_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("hyperlane_platform", "linux/arm64")
    assert entry._quick_image_request(["image", "x.tar"]) is None
    monkeypatch.delenv("hyperlane_platform")
    (tmp_path / "hyperlane.toml").write_text("[image]\n")
    assert entry._quick_image_request(["image", "x.tar"]) is None


@pytest.mark.parametrize("json_output", [True, False])
@pytest.mark.parametrize(
    "name",
    [
        "archive",
        "truncated",
        "prefixed",
        "wrong kind",
        "layout",
        "missing",
        "empty value",
        "fifo",
        "prefixed fifo",
    ],
)
def test_script_matches_full_cli(
    tmp_path: Path, sources: dict[str, str], name: str, json_output: bool
) -> None:
    arguments = ["image", *(["--json"] if json_output else []), sources[name]]
    environment = environment_without_settings()
    script = run_script(*arguments, cwd=tmp_path, env=environment)
    full = run_python(FULL_CLI, *arguments, cwd=tmp_path, env=environment)
    assert script.returncode == full.returncode
    assert without_created(script.stdout) == without_created(full.stdout)
    assert script.stderr == full.stderr


def test_quick_start_skips_heavy_imports(tmp_path: Path) -> None:
    archive = docker_archive(tmp_path / "image.tar", [LOWER])
    probe = (
        f"import sys; sys.argv = ['hyperlane', 'image', '--json', {str(archive)!r}]\n"
        "from hyperlane.cli.entry import run\n"
        "try:\n    run()\nexcept SystemExit as exit:\n    code = exit.code\n"
        "heavy = ('typer', 'click', 'pydantic', 'pydantic_settings', 'rich',\n"
        "    'docker')\n"
        "loaded = ','.join(m for m in heavy if m in sys.modules)\n"
        "print(f'exit:{code} loaded:{loaded}', file=sys.stderr)"
    )
    result = run_python(probe, cwd=tmp_path, env=environment_without_settings())
    assert result.stderr.strip().splitlines()[-1] == "exit:0 loaded:"
    assert json.loads(result.stdout)["image"]["files_total"] == 2


def test_settings_still_apply(tmp_path: Path) -> None:
    archive = str(docker_archive(tmp_path / "image.tar", [LOWER]))
    (tmp_path / "hyperlane.toml").write_text('[image]\npull-bandwidth = "1Mbit/s"\n')
    from_file = run_script(
        "image", "--json", archive, cwd=tmp_path, env=environment_without_settings()
    )
    assert from_file.returncode == 0, from_file.stderr
    pull = json.loads(from_file.stdout)["image"]["pull"]
    assert pull["bandwidth_bits_per_second"] == 1e6

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    environment = {
        **environment_without_settings(),
        "HYPERLANE_PULL_BANDWIDTH": "2Mbit/s",
    }
    from_environment = run_script(
        "image", "--json", archive, cwd=elsewhere, env=environment
    )
    assert from_environment.returncode == 0, from_environment.stderr
    pull = json.loads(from_environment.stdout)["image"]["pull"]
    assert pull["bandwidth_bits_per_second"] == 2e6


# Forces the full command line: a variable whose value is the setting's default.
FULL_CLI_ENVIRONMENT = {"HYPERLANE_ENGINE": "auto"}


@pytest.mark.parametrize("full_cli", [False, True], ids=["quick", "full"])
@pytest.mark.parametrize("json_output", [True, False], ids=["json", "terminal"])
def test_broken_pipe_reported(
    tmp_path: Path, full_cli: bool, json_output: bool
) -> None:
    archive = str(docker_archive(tmp_path / "image.tar", [LOWER, UPPER]))
    environment = environment_without_settings()
    if full_cli:
        environment.update(FULL_CLI_ENVIRONMENT)
    read_end, write_end = os.pipe()
    # With no reader left, every write to the pipe fails with EPIPE.
    os.close(read_end)
    try:
        result = subprocess.run(
            [HYPERLANE, "image", *(["--json"] if json_output else []), archive],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
            check=False,
            cwd=tmp_path,
            env=environment,
        )
    finally:
        os.close(write_end)
    assert result.returncode == 1
    assert result.stderr == (
        "hyperlane: error: the reader of stdout closed it before the output was "
        "complete (broken pipe)\n"
    )


@pytest.mark.parametrize("full_cli", [False, True], ids=["quick", "full"])
@pytest.mark.parametrize("json_flag", ["--json", ""], ids=["json", "terminal"])
def test_closed_stdout_rejected(tmp_path: Path, full_cli: bool, json_flag: str) -> None:
    archive = str(docker_archive(tmp_path / "image.tar", [LOWER, UPPER]))
    environment = environment_without_settings()
    if full_cli:
        environment.update(FULL_CLI_ENVIRONMENT)
    result = subprocess.run(
        ["sh", "-c", f'exec "$0" image {json_flag} "$1" >&-', HYPERLANE, archive],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
        env=environment,
    )
    assert result.returncode == 2
    assert "stdout is closed, so the output has nowhere to go" in result.stderr


@pytest.mark.parametrize("full_cli", [False, True], ids=["quick", "full"])
def test_deleted_working_directory(tmp_path: Path, full_cli: bool) -> None:
    archive = str(docker_archive(tmp_path / "image.tar", [LOWER, UPPER]))
    deleted_directory = tmp_path / "deleted"
    deleted_directory.mkdir()
    environment = environment_without_settings()
    if full_cli:
        environment.update(FULL_CLI_ENVIRONMENT)
    script = 'cd "$1" && rmdir "$1" && exec "$0" image --json "$2"'
    result = subprocess.run(
        ["sh", "-c", script, HYPERLANE, str(deleted_directory), archive],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=environment,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["image"]["files_total"] == 2
