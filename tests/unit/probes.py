"""Run Python code or the ``hyperlane`` script in a fresh interpreter."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

HYPERLANE = str(Path(sys.executable).parent / "hyperlane")


def environment_without_settings() -> dict[str, str]:
    """Return this process's environment without the HYPERLANE_ settings variables.

    The settings read their variables without regard to case.
    """
    return {
        name: value
        for name, value in os.environ.items()
        if not name.upper().startswith("HYPERLANE_")
    }


def run_python(
    code: str,
    *arguments: str,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run CODE with ARGUMENTS in a new interpreter and capture its output as text."""
    return subprocess.run(
        [sys.executable, "-c", code, *arguments],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=cwd,
        env=env,
    )


def run_script(
    *arguments: str, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the installed ``hyperlane`` script and capture its output as text."""
    return subprocess.run(
        [HYPERLANE, *arguments],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=cwd,
        env=env,
    )
