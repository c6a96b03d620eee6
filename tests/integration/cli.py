"""Run the ``hyperlane`` command in a subprocess, as a user would."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

HYPERLANE = str(Path(sys.executable).parent / "hyperlane")
OWNER_LABEL = "io.hyperlane.owner=hyperlane"


def run_hyperlane(
    *arguments: str,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    timeout_seconds: float = 240,
) -> subprocess.CompletedProcess[str]:
    """Run ``hyperlane ARGUMENTS`` and return the finished process."""
    environment = {**os.environ, **(env or {})}
    return subprocess.run(
        [HYPERLANE, *arguments],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=timeout_seconds,
        check=False,
    )
