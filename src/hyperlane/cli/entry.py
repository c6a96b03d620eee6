"""The ``hyperlane`` script: a quick start for ``image`` on an archive, else the CLI.

The full command line imports Typer, pydantic and pydantic-settings before it
parses anything, which takes longer than the whole analysis of a small archive.
``hyperlane image [--json] SOURCE``, where SOURCE is an archive or an OCI layout and
neither ./hyperlane.toml nor a HYPERLANE_ variable exists, has no setting to read:
its settings are ImageSettings' defaults. That command line runs here without
those imports. Every other command line goes to hyperlane.cli.main, which parses,
validates and reports errors as it always does, and so does a source that
parse_source rejects or that names an engine image.
"""

from __future__ import annotations

import gc
import os
import sys
from pathlib import Path

# The settings' environment prefix and config file name, as hyperlane.settings
# defines them. tests/unit/test_entry.py checks that they and the defaults below
# agree with that module.
_ENV_PREFIX = "HYPERLANE_"
_CONFIG_FILE_NAME = "hyperlane.toml"
_JSON_FLAG = "--json"
# The quick start's return value when the full CLI must run instead. Exit codes
# are 0 to 255, so no outcome of run_action is negative.
_FULL_CLI = -1


def _quick_image_request(arguments: list[str]) -> tuple[str, bool] | None:
    """Return the source and whether --json was given, for the ARGUMENTS of
    ``image [--json] SOURCE`` in either order, else None.

    None also when a setting could come from the environment or a config file.
    """
    if not arguments or arguments[0] != "image":
        return None
    rest = arguments[1:]
    json_output = rest.count(_JSON_FLAG) == 1
    if json_output:
        rest.remove(_JSON_FLAG)
    if len(rest) != 1 or not rest[0] or rest[0].startswith("-"):
        return None
    # Variable names are matched without regard to case, as the settings read them.
    if any(name.upper().startswith(_ENV_PREFIX) for name in os.environ):
        return None
    try:
        if (Path(os.getcwd()) / _CONFIG_FILE_NAME).exists():  # noqa: PTH109
            return None
    except FileNotFoundError:
        # A deleted working directory contains no config file.
        pass
    except OSError:
        # The full CLI reports a working directory that cannot be read.
        return None
    return rest[0], json_output


def _run_quick_image(source_text: str, json_output: bool) -> int | None:
    """Analyse the archive SOURCE_TEXT as ``hyperlane image`` does with default
    settings, and return the exit code, or None when the full CLI must run."""
    from hyperlane.cli.images import archive_document
    from hyperlane.cli.running import (
        configure_logging,
        escape_surrogates_on_output,
        print_json,
        run_action,
        stdout_console,
    )
    from hyperlane.errors import HyperlaneError
    from hyperlane.images import parse_source
    from hyperlane.images.pull import DEFAULT_PULL_BANDWIDTH_BITS_PER_SECOND

    # The imported modules live until exit, so the collector need not walk them
    # again, at exit included.
    gc.freeze()
    escape_surrogates_on_output()
    configure_logging(verbose=False, quiet=False)

    def action() -> int:
        # Detection reads the file, which may block or take a signal, so it runs
        # under run_action's signal handlers too.
        try:
            source = parse_source(source_text)
        except HyperlaneError:
            return _FULL_CLI
        if source.kind == "engine":
            return _FULL_CLI

        document = archive_document(
            source, platform=None, pull_bandwidth=DEFAULT_PULL_BANDWIDTH_BITS_PER_SECOND
        )
        if json_output:
            print_json(document)
        else:
            from hyperlane.report.terminal import render_image

            render_image(document, stdout_console())
        return 0

    code = run_action(action, verbose=False)
    return None if code == _FULL_CLI else code


def run() -> None:
    """Entry point of the ``hyperlane`` script."""
    request = _quick_image_request(sys.argv[1:])
    if request is not None:
        code = _run_quick_image(*request)
        if code is not None:
            sys.exit(code)

    from hyperlane.cli.main import run as run_cli

    run_cli()
