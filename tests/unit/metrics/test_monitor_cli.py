"""Usage errors of `hyperlane monitor`, reported before it contacts an engine."""

from __future__ import annotations

import pytest

from hyperlane.exitcodes import ExitCode
from tests.integration.cli import run_hyperlane


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (
            ["--listen", "127.0.0.1"],
            "invalid value '127.0.0.1' for --listen: missing port",
        ),
        (["--listen", "[::1]"], "invalid listen address '[::1]'"),
        (["--listen", "::1:9560"], "IPv6 address '::1' must be in brackets"),
        ([], "hyperlane monitor needs --listen HOST:PORT, --record FILE or both"),
    ],
)
def test_monitor_usage_errors(arguments: list[str], message: str) -> None:
    result = run_hyperlane("monitor", "--duration", "1s", *arguments)
    assert result.returncode == ExitCode.USAGE_ERROR
    assert message in result.stderr
    assert result.stdout == ""
