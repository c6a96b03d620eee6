"""CI gates on an image analysis: limits on waste and size that set exit code 3.

The gates read the JSON form of the analysis (the ``image`` object of the
document), so that a saved report can be checked again without the image.
Percentage and efficiency gates each have an absolute floor in bytes: below it
they pass, because a few wasted bytes in a tiny image are a large share of
nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

from hyperlane.settings import ImageSettings
from hyperlane.units import format_bytes

GateUnit = Literal["bytes", "percent", "ratio"]


@dataclass(frozen=True)
class GateResult:
    """The outcome of one CI gate."""

    # The setting that defines the gate, e.g. "max_hidden_percent".
    name: str
    # The figure of the image's JSON that the gate reads, e.g. "hidden_percent".
    metric: str
    unit: GateUnit
    # The figure, or None when the analysis has no such figure. Byte counts are
    # ints.
    value: int | float | None
    limit: int | float
    # "max" fails above the limit, "min" below it.
    direction: Literal["max", "min"]
    passed: bool
    message: str

    def to_dict(self) -> dict[str, Any]:
        """Return the fields as a JSON-ready dict."""
        return asdict(self)


@dataclass(frozen=True)
class _Gate:
    name: str
    metric: str
    unit: GateUnit
    direction: Literal["max", "min"]
    # The setting that sets the floor, and the byte figure compared with it.
    floor_setting: str | None = None
    floor_metric: str | None = None
    # A byte figure whose value 0 leaves the metric undefined, so the gate passes.
    undefined_at_zero: str | None = None


_GATES = (
    _Gate("max_hidden_bytes", "hidden_bytes", "bytes", "max"),
    _Gate(
        "max_hidden_percent",
        "hidden_percent",
        "percent",
        "max",
        floor_setting="hidden_percent_floor",
        floor_metric="hidden_bytes",
    ),
    _Gate(
        "min_dive_efficiency",
        "dive.efficiency",
        "ratio",
        "min",
        floor_setting="dive_efficiency_floor",
        floor_metric="dive.wasted_bytes",
    ),
    _Gate("max_dive_wasted_bytes", "dive.wasted_bytes", "bytes", "max"),
    _Gate(
        "max_dive_wasted_percent",
        "dive.user_wasted_percent",
        "percent",
        "max",
        floor_setting="dive_wasted_percent_floor",
        floor_metric="dive.wasted_bytes",
        undefined_at_zero="dive.user_size_bytes",
    ),
    _Gate("max_image_size", "total_size_bytes", "bytes", "max"),
)


def _figure(image: Mapping[str, Any], metric: str) -> int | float | None:
    """Return the number at dotted path METRIC of IMAGE, or None if it is missing.

    A byte count stays an int, so that the gate's JSON shows it as one.
    """
    value: Any = image
    for key in metric.split("."):
        if not isinstance(value, Mapping) or key not in value:
            return None
        value = value[key]
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return value


def _format(value: int | float, unit: GateUnit) -> str:
    if unit == "bytes":
        return f"{format_bytes(value)} ({int(value)} bytes)"
    if unit == "percent":
        return f"{value:.2f} %"
    return f"{value:.4f}"


def _check(
    gate: _Gate, image: Mapping[str, Any], settings: ImageSettings
) -> GateResult:
    # Byte limits are ints in the settings, and stay ints in the JSON.
    limit: int | float = getattr(settings, gate.name)
    flag = "--" + gate.name.replace("_", "-")
    value = _figure(image, gate.metric)

    def result(passed: bool, message: str) -> GateResult:
        return GateResult(
            name=gate.name,
            metric=gate.metric,
            unit=gate.unit,
            value=value,
            limit=limit,
            direction=gate.direction,
            passed=passed,
            message=message,
        )

    if value is None:
        if gate.undefined_at_zero and _figure(image, gate.undefined_at_zero) == 0:
            # dive divides by the bytes above the base layer, so a single-layer
            # image has no such percentage, and dive's own check passes it too.
            return result(
                True,
                f"{flag} passed: {gate.metric} is undefined because "
                f"{gate.undefined_at_zero} is 0",
            )
        # A gate on a figure that the analysis lacks fails instead of passing
        # unseen.
        return result(False, f"{flag}: the analysis has no {gate.metric} figure")

    observed = f"{gate.metric} {_format(value, gate.unit)}"
    bound = _format(limit, gate.unit)
    if gate.direction == "max":
        passed = value <= limit
        comparison = f"{'<=' if passed else '>'} {bound}"
    else:
        passed = value >= limit
        comparison = f"{'>=' if passed else '<'} {bound}"
    if passed or gate.floor_setting is None or gate.floor_metric is None:
        status = "passed" if passed else "FAILED"
        return result(passed, f"{flag} {status}: {observed} {comparison}")

    floor: int = getattr(settings, gate.floor_setting)
    absolute = _figure(image, gate.floor_metric) or 0
    if absolute < floor:
        floor_flag = "--" + gate.floor_setting.replace("_", "-")
        return result(
            True,
            f"{flag} passed: {observed} {comparison}, but {gate.floor_metric} "
            f"{_format(absolute, 'bytes')} is below {floor_flag} "
            f"{_format(floor, 'bytes')}",
        )
    return result(False, f"{flag} FAILED: {observed} {comparison}")


def evaluate_image_gates(
    image: Mapping[str, Any], settings: ImageSettings
) -> list[GateResult]:
    """Check every gate that SETTINGS turns on against IMAGE, the analysis JSON.

    Gates whose setting is None are off and left out of the result.
    """
    return [
        _check(gate, image, settings)
        for gate in _GATES
        if getattr(settings, gate.name) is not None
    ]
