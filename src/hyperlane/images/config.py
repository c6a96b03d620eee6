"""Read the fields of an image config blob, checking the type of each field read.

The types follow the Go structs that Docker and Podman decode the config into: a
JSON null is the field's zero value, and any other wrong type makes the image
invalid.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from hyperlane.errors import ImageInvalid
from hyperlane.images.model import ImageConfig


@dataclass(frozen=True)
class ConfigBlob:
    """The fields of a config blob that the analysis uses."""

    # "sha256:..." digest of each uncompressed layer tar, bottom first.
    diff_ids: list[str]
    # created_by of each history entry that made a layer, bottom first.
    layer_history: list[str | None]
    os: str | None
    architecture: str | None
    # Creation time as the config stores it (RFC 3339), or None.
    created: str | None
    settings: ImageConfig


def _invalid(where: str, key: str, value: object, expected: str) -> ImageInvalid:
    return ImageInvalid(
        f"{where} has {key} {value!r}, expected {expected}; export the image again"
    )


def _object(value: object, where: str, key: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _invalid(where, key, value, "a JSON object")
    return value


def _optional_string(value: object, where: str, key: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise _invalid(where, key, value, "a string")


def _string_list(value: object, where: str, key: str) -> list[str] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _invalid(where, key, value, "a list of strings")
    return value


def _command(value: object, where: str, key: str) -> list[str] | None:
    # Docker's strslice type also accepts a single string for Cmd and Entrypoint.
    if isinstance(value, str):
        return [value]
    return _string_list(value, where, key)


def _settings(settings: dict[str, Any], where: str) -> ImageConfig:
    ports = []
    for port in _object(settings.get("ExposedPorts"), where, "config.ExposedPorts"):
        ports.append(port if "/" in port else f"{port}/tcp")
    return ImageConfig(
        exposed_ports=sorted(ports),
        cmd=_command(settings.get("Cmd"), where, "config.Cmd"),
        entrypoint=_command(settings.get("Entrypoint"), where, "config.Entrypoint"),
        env=_string_list(settings.get("Env"), where, "config.Env") or [],
        working_dir=_optional_string(
            settings.get("WorkingDir"), where, "config.WorkingDir"
        )
        or None,
        user=_optional_string(settings.get("User"), where, "config.User") or None,
    )


def _layer_history(entries: object, where: str) -> list[str | None]:
    """Return created_by of the history entries that made a layer, in order."""
    if entries is None:
        return []
    if not isinstance(entries, list):
        raise _invalid(where, "history", entries, "a list")
    history = []
    for index, entry in enumerate(entries):
        key = f"history[{index}]"
        entry_fields = _object(entry, where, key)
        if not entry_fields.get("empty_layer", False):
            created_by = entry_fields.get("created_by")
            history.append(_optional_string(created_by, where, key + ".created_by"))
    return history


def parse_config(document: object, where: str) -> ConfigBlob:
    """Check the config blob DOCUMENT and return the fields the analysis uses.

    WHERE names the blob in messages, for example "config 'abc.json' in 'x.tar'".
    Raises ImageInvalid when rootfs.diff_ids is missing or a field has a wrong type.
    """
    if not isinstance(document, dict):
        raise ImageInvalid(
            f"{where} is {type(document).__name__}, expected a JSON object; export "
            "the image again"
        )
    rootfs = document.get("rootfs")
    if not isinstance(rootfs, dict) or "diff_ids" not in rootfs:
        raise ImageInvalid(
            f"{where} has no rootfs.diff_ids, so its layers cannot be checked; export "
            "the image again"
        )
    diff_ids = _string_list(rootfs["diff_ids"], where, "rootfs.diff_ids") or []
    settings = _object(document.get("config"), where, "config")
    return ConfigBlob(
        diff_ids=diff_ids,
        layer_history=_layer_history(document.get("history"), where),
        os=_optional_string(document.get("os"), where, "os"),
        architecture=_optional_string(
            document.get("architecture"), where, "architecture"
        ),
        created=_optional_string(document.get("created"), where, "created"),
        settings=_settings(settings, where),
    )


def first_tcp_port(exposed_ports: Iterable[str]) -> int | None:
    """Return the first TCP port of an image's exposed ports, e.g. 8080 of "8080/tcp".

    A port without a protocol is TCP, as in a Dockerfile's EXPOSE. None when the
    image exposes no TCP port.
    """
    for exposed in exposed_ports:
        number, _, protocol = str(exposed).partition("/")
        if protocol in ("", "tcp") and number.isdigit():
            return int(number)
    return None
