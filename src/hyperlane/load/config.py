"""The LoadSpec that the load settings and an optional scenario file describe."""

from __future__ import annotations

import os
from pathlib import Path
from typing import cast

from hyperlane.errors import UsageError
from hyperlane.load.scenario import load_scenario
from hyperlane.load.spec import LoadSpec
from hyperlane.settings import LoadSettings


def _setting(settings: LoadSettings, name: str, default: object) -> object:
    # NOTE: settings that LoadSettings may not declare yet fall back to the default,
    # so this module works before and after they are added.
    return getattr(settings, name, default)


def spec_from_settings(settings: LoadSettings, url: str) -> LoadSpec:
    """Build the LoadSpec that the load flags in ``settings`` describe for ``url``.

    With ``settings.scenario``, the scenario file supplies the endpoints, stages,
    warm-up and any values it sets, and the flags supply the rest. Raises
    UsageError for an invalid scenario.
    """
    spec = LoadSpec(
        url=url,
        connections=settings.connections,
        duration_seconds=settings.duration,
        requests=settings.requests,
        rate_per_second=settings.rate,
        timeout_seconds=settings.timeout,
        connect_timeout_seconds=settings.connect_timeout,
        insecure=bool(_setting(settings, "insecure", False)),
        think_time_seconds=float(cast(float, _setting(settings, "think_time", 0.0))),
        method=str(_setting(settings, "method", "GET")),
        headers=tuple(
            _parse_header_flag(text)
            for text in cast(list[str], _setting(settings, "header", []) or [])
        ),
        body=_read_body(cast(Path | None, _setting(settings, "body_file", None))),
    )
    if settings.scenario is not None:
        spec = load_scenario(settings.scenario).apply(spec)
    return spec


def worker_count(settings: LoadSettings, spec: LoadSpec) -> int:
    """Return the worker processes to run: the setting, or one per core.

    The default never exceeds the connections or an exact request count, since a
    worker needs at least one of each.
    """
    if settings.workers is not None:
        return settings.workers
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
    limits = [cores, spec.connections]
    if spec.requests is not None:
        limits.append(spec.requests)
    return max(1, min(limits))


def _read_body(path: Path | None) -> bytes:
    if path is None:
        return b""
    try:
        return Path(path).read_bytes()
    except OSError as error:
        raise UsageError(
            f"Cannot read request body file {str(path)!r}: {error.strerror}. Check "
            "the --body-file path."
        ) from error


def _parse_header_flag(text: str) -> tuple[str, str]:
    """Split a ``Name: value`` header flag."""
    name, separator, value = text.partition(":")
    if not separator or not name.strip():
        raise UsageError(
            f"Invalid header {text!r}: expected 'Name: value', such as "
            "'Accept: application/json'."
        )
    return name.strip(), value.strip()
