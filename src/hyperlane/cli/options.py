"""Turn a settings model into Typer options, so every option is declared once."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import typer

from hyperlane.units import format_bandwidth

if TYPE_CHECKING:
    from pydantic.fields import FieldInfo

    from hyperlane.settings import CommandSettings

# Options every command takes besides its settings.
COMMON_PARAMETERS = [
    inspect.Parameter(
        "config",
        inspect.Parameter.KEYWORD_ONLY,
        default=typer.Option(
            None,
            "--config",
            help="Config file to read (default: ./hyperlane.toml when it exists).",
            show_default=False,
        ),
        annotation=str | None,
    ),
    inspect.Parameter(
        "json_output",
        inspect.Parameter.KEYWORD_ONLY,
        default=typer.Option(
            False,
            "--json",
            help="Print one JSON document on stdout instead of a table.",
        ),
        annotation=bool,
    ),
    inspect.Parameter(
        "verbose",
        inspect.Parameter.KEYWORD_ONLY,
        default=typer.Option(False, "--verbose", "-v", help="Log debug details."),
        annotation=bool,
    ),
    inspect.Parameter(
        "quiet",
        inspect.Parameter.KEYWORD_ONLY,
        default=typer.Option(
            False, "--quiet", "-q", help="Log warnings and errors only, no progress."
        ),
        annotation=bool,
    ),
]


def _format_default(value: Any, unit: str | None) -> str:
    if unit == "seconds":
        # The largest unit that divides the value, as a flag would be written.
        for suffix, length_seconds in (("d", 86_400), ("h", 3_600), ("m", 60)):
            if value >= length_seconds and value % length_seconds == 0:
                return f"{value / length_seconds:g}{suffix}"
        if 0 < value < 1:
            return f"{value * 1000:g}ms"
        return f"{value:g}s"
    if unit == "cores":
        return f"{value * 1000:g}m"
    if unit == "bits/s":
        return format_bandwidth(value, separator="")
    if unit == "bytes" and value % 2**20 == 0:
        return f"{value // 2**20}Mi"
    return str(value)


def _help_for(name: str, field: FieldInfo) -> str:
    # Imported here so that cli/main.py can import this module before the settings
    # models, which `hyperlane.cli.main.run` imports with the collector paused.
    from hyperlane.settings import ENV_PREFIX, unit_of

    default = field.get_default(call_default_factory=True)
    parts = [field.description or ""]
    if default not in (None, [], False):
        parts.append(f"(default: {_format_default(default, unit_of(field))})")
    parts.append(f"(env: {ENV_PREFIX}{name.upper()})")
    return " ".join(part for part in parts if part)


def settings_parameters(model: type[CommandSettings]) -> list[inspect.Parameter]:
    """Return one ``--flag`` parameter per settings field, all defaulting to None.

    A None value means "not given", so the environment, the config file or the
    model's default decides; pydantic parses and bounds-checks the text.
    """
    parameters = []
    for name, field in model.model_fields.items():
        flag = "--" + name.replace("_", "-")
        help_text = _help_for(name, field)
        if field.annotation is bool:
            option = typer.Option(None, f"{flag}/--no-{flag[2:]}", help=help_text)
            annotation: Any = bool | None
        elif field.annotation == list[str]:
            option = typer.Option(
                None, flag, help=help_text, metavar=name.upper(), show_default=False
            )
            annotation = list[str] | None
        else:
            option = typer.Option(
                None, flag, help=help_text, metavar=name.upper(), show_default=False
            )
            annotation = str | None
        parameters.append(
            inspect.Parameter(
                name,
                inspect.Parameter.KEYWORD_ONLY,
                default=option,
                annotation=annotation,
            )
        )
    return parameters


def with_parameters(
    function: Callable[..., Any], parameters: list[inspect.Parameter]
) -> Callable[..., Any]:
    """Give ``function`` (which takes ``**kwargs``) the signature Typer reads."""
    ordered = sorted(
        parameters,
        key=lambda item: item.kind != inspect.Parameter.POSITIONAL_OR_KEYWORD,
    )
    function.__signature__ = inspect.Signature(ordered)  # type: ignore[attr-defined]
    function.__annotations__ = {item.name: item.annotation for item in ordered}
    return function
