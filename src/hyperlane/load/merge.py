"""Exact merging of load results from several processes or machines.

Counters add up, histograms add bucket by bucket after decoding their HdrHistogram
encodings, and every latency summary is recomputed from the merged histogram, so
merging gives the same percentiles as one histogram of all the raw latencies. The
rule for each field follows from its type and name, and a field that no rule fits
raises TypeError, so a new LoadResult field cannot be merged wrongly in silence.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any, Literal, TypeVar, Union

from hdrh.histogram import HdrHistogram

from hyperlane.errors import UsageError
from hyperlane.load.latency import LatencyRecorder, LatencySummary
from hyperlane.load.result import LoadResult
from hyperlane.report.document import SCHEMA_VERSION

_T = TypeVar("_T")

# Rates recomputed from the merged counters, divided by the merged duration.
_DERIVED_RATES = {"requests_per_second": "requests_total"}
# Fields that name what was measured, so results of different values cannot merge.
_IDENTITY_TYPES = (str,)
_IDENTITY_FIELDS = frozenset({"weight"})
# CPU time of several processes adds up, unlike their wall time.
_SUMMED_SECONDS_SUFFIX = "_cpu_seconds"
_EARLIEST_SECONDS_FIELDS = frozenset({"start_seconds"})
_HISTOGRAM_PREFIX = "histogram"
_LATENCY_PREFIX = "latency"
_NANOSECONDS_PER_SECOND = 1_000_000_000
_MICROSECONDS_PER_SECOND = 1_000_000


class _Derived:
    """Placeholder for a field computed after the others are merged."""


_DERIVED = _Derived()


def load_result_from_dict(
    document: Mapping[str, Any], source: str = "document"
) -> LoadResult:
    """Build a LoadResult from ``hyperlane load --json`` output or its "load" dict.

    ``source`` names the input, such as a file path, in error messages. Raises
    UsageError naming the source and the field when the document is not a load
    result, a field is missing or has the wrong type, or a histogram cannot be
    decoded.
    """
    if not isinstance(document, Mapping):
        raise UsageError(
            f"{source!r} is not a load result: expected a JSON object, got "
            f"{type(document).__name__}. Pass the output of 'hyperlane load --json'."
        )
    body: Any = document
    if "schema_version" in document or "kind" in document:
        body = _unwrap_document(document, source)
    result = _dataclass_from_json(LoadResult, body, source, "load")
    for field in dataclasses.fields(LoadResult):
        if field.name.startswith(_HISTOGRAM_PREFIX):
            encoding = getattr(result, field.name)
            if encoding is not None:
                decode_histogram(encoding, f"{source!r} field load.{field.name}")
    return result


def merge_results(
    results: Sequence[LoadResult | Mapping[str, Any]],
    sources: Sequence[str] | None = None,
) -> LoadResult:
    """Merge results of runs that loaded the same URL at the same time.

    Counts add up, ``duration_seconds`` is the longest run, rates are recomputed
    from the merged counts and durations, and latency summaries from the merged
    histograms. A Mapping is read with load_result_from_dict. ``sources`` names the
    inputs in error messages. Raises UsageError for no input, for inputs with
    different URLs or models, and for invalid documents.
    """
    if not results:
        raise UsageError("No load results to merge: pass at least one result.")
    if sources is None:
        sources = [f"result {index + 1}" for index in range(len(results))]
    if len(sources) != len(results):
        raise UsageError(
            f"Invalid sources {list(sources)!r}: expected one name per result "
            f"({len(results)})."
        )
    parsed = [
        item
        if isinstance(item, LoadResult)
        else load_result_from_dict(item, source=source)
        for item, source in zip(results, sources, strict=True)
    ]
    return _merge_dataclass(LoadResult, parsed, list(sources), "load", ())


def decode_histogram(encoding: str, label: str) -> HdrHistogram:
    """Decode an HdrHistogram base64 compressed encoding.

    Raises UsageError naming ``label`` when the text is not such an encoding.
    """
    if not isinstance(encoding, str) or not encoding:
        raise UsageError(
            f"Invalid histogram in {label}: expected a base64 HdrHistogram encoding, "
            f"got {encoding!r}. Pass a result written by 'hyperlane load --json'."
        )
    try:
        histogram: HdrHistogram = HdrHistogram.decode(encoding)
    except Exception as error:
        # Besides base64 and zlib errors, hdrh raises its own exception classes for
        # a bad cookie or payload length.
        raise UsageError(
            f"Invalid histogram in {label}: {encoding[:40]!r}... cannot be decoded "
            f"({type(error).__name__}: {error}). Pass a result written by "
            "'hyperlane load --json'."
        ) from error
    return histogram


def merge_histograms(encodings: Sequence[str], label: str) -> str:
    """Add histograms bucket by bucket and return the encoding of the sum."""
    total = decode_histogram(encodings[0], label)
    for encoding in encodings[1:]:
        other = decode_histogram(encoding, label)
        try:
            total.add(other)
        except IndexError as error:
            raise UsageError(
                f"Cannot merge the histograms of {label}: {error}. Merge results "
                "written by the same Hyperlane version."
            ) from error
    encoded: bytes = total.encode()
    return encoded.decode("ascii")


def latency_from_histogram(
    histogram_encoding: str, summaries: Sequence[LatencySummary], label: str
) -> LatencySummary:
    """Compute the summary of a merged histogram, with the exact count, mean and max
    of the input ``summaries``."""
    histogram = decode_histogram(histogram_encoding, label)
    count = sum(summary.count for summary in summaries)
    above_range = sum(summary.above_range_count for summary in summaries)
    in_range: int = histogram.get_total_count()
    if in_range != count - above_range:
        raise UsageError(
            f"Inconsistent latency in {label}: the histograms hold {in_range} "
            f"latencies but the summaries count {count - above_range} in range. "
            "Pass results written by 'hyperlane load --json', unedited."
        )
    maxima = [s.max_seconds for s in summaries if s.max_seconds is not None]
    if count == 0 or not maxima:
        return LatencySummary(None, None, None, None, None, None, 0, 0)
    max_seconds = max(maxima)
    weighted = sum((s.mean_seconds or 0.0) * s.count for s in summaries if s.count > 0)
    recorder = LatencyRecorder()
    recorder.histogram = histogram
    recorder.count = count
    recorder.max_nanoseconds = round(max_seconds * _NANOSECONDS_PER_SECOND)
    # NOTE: a result keeps only the number of latencies above the histogram's range
    # (1 h), not their values, so percentiles that fall among them are the maximum.
    recorder.above_range_microseconds = [
        math.ceil(max_seconds * _MICROSECONDS_PER_SECOND)
    ] * above_range
    summary = recorder.summary()
    return dataclasses.replace(
        summary,
        max_seconds=max_seconds,
        mean_seconds=weighted / count,
        count=count,
        above_range_count=above_range,
    )


# Reading JSON.


def _unwrap_document(document: Mapping[str, Any], source: str) -> Any:
    kind = document.get("kind")
    if kind != "load":
        raise UsageError(
            f"{source!r} is not a load result: its kind is {kind!r}, expected "
            "'load'. Pass the output of 'hyperlane load --json'."
        )
    found = str(document.get("schema_version"))
    supported_major = SCHEMA_VERSION.split(".", 1)[0]
    if found.split(".", 1)[0] != supported_major:
        raise UsageError(
            f"{source!r} has schema_version {found!r}, but this Hyperlane reads "
            f"{supported_major}.x. Re-run the load with this version."
        )
    if "load" not in document:
        raise UsageError(
            f"{source!r} is not a load result: the field 'load' is missing. Pass "
            "the output of 'hyperlane load --json'."
        )
    return document["load"]


def _strip_optional(hint: Any) -> tuple[Any, bool]:
    """Return the type inside ``X | None`` and whether None was allowed."""
    origin = typing.get_origin(hint)
    if origin is Union or origin is types.UnionType:
        arguments = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        if len(arguments) == 1:
            return arguments[0], True
    return hint, False


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _from_json(hint: Any, value: Any, source: str, path: str) -> Any:
    """Convert JSON ``value`` to ``hint``, raising UsageError at ``path``."""
    inner, optional = _strip_optional(hint)
    if value is None:
        if optional:
            return None
        raise UsageError(
            f"Invalid {source!r} field {path}: it is null. Pass the output of "
            "'hyperlane load --json'."
        )
    if dataclasses.is_dataclass(inner) and isinstance(inner, type):
        return _dataclass_from_json(inner, value, source, path)
    origin = typing.get_origin(inner)
    if origin is Literal:
        allowed = typing.get_args(inner)
        if value not in allowed:
            raise UsageError(
                f"Invalid {source!r} field {path}: {value!r} is not one of "
                f"{list(allowed)!r}."
            )
        return value
    if origin is dict:
        _, value_hint = typing.get_args(inner)
        _expect(isinstance(value, Mapping), value, "an object", source, path)
        return {
            str(key): _from_json(value_hint, item, source, f"{path}.{key}")
            for key, item in value.items()
        }
    if origin in (list, tuple):
        arguments = typing.get_args(inner)
        _expect(isinstance(value, list), value, "an array", source, path)
        items = [
            _from_json(arguments[0], item, source, f"{path}[{index}]")
            for index, item in enumerate(value)
        ]
        return items if origin is list else tuple(items)
    return _scalar_from_json(inner, value, source, path)


def _scalar_from_json(hint: Any, value: Any, source: str, path: str) -> Any:
    if hint is bool:
        _expect(isinstance(value, bool), value, "true or false", source, path)
        return value
    if hint is int:
        is_int = isinstance(value, int) and not isinstance(value, bool)
        _expect(is_int, value, "an integer", source, path)
        return value
    if hint is float:
        is_number = isinstance(value, int | float) and not isinstance(value, bool)
        _expect(is_number, value, "a number", source, path)
        return float(value)
    if hint is str:
        _expect(isinstance(value, str), value, "a string", source, path)
        return value
    if hint is Any:
        return value
    raise TypeError(f"No JSON conversion for field {path} of type {hint!r}")


def _expect(ok: bool, value: Any, expected: str, source: str, path: str) -> None:
    if not ok:
        raise UsageError(
            f"Invalid {source!r} field {path}: expected {expected}, got "
            f"{_type_name(value)} {value!r}. Pass the output of "
            "'hyperlane load --json'."
        )


def _dataclass_from_json(cls: type[_T], value: Any, source: str, path: str) -> _T:
    if not isinstance(value, Mapping):
        raise UsageError(
            f"{source!r} is not a load result: field {path} is "
            f"{_type_name(value)}, expected an object. Pass the output of "
            "'hyperlane load --json'."
        )
    hints = typing.get_type_hints(cls)
    fields = dataclasses.fields(cls)  # type: ignore[arg-type]
    names = {field.name for field in fields}
    unknown = sorted(set(value) - names)
    if unknown:
        raise UsageError(
            f"Invalid {source!r} field {path}: unknown fields {unknown!r}. It was "
            "probably written by a newer Hyperlane, so merge it with that version."
        )
    arguments: dict[str, Any] = {}
    for field in fields:
        has_default = (
            field.default is not dataclasses.MISSING
            or field.default_factory is not dataclasses.MISSING
        )
        if field.name not in value:
            if has_default:
                continue
            raise UsageError(
                f"{source!r} is not a complete load result: field "
                f"{path}.{field.name} is missing. Pass the output of "
                "'hyperlane load --json'."
            )
        arguments[field.name] = _from_json(
            hints[field.name], value[field.name], source, f"{path}.{field.name}"
        )
    return cls(**arguments)


# Merging.


def _merge_dataclass(
    cls: type[_T],
    items: list[_T],
    sources: list[str],
    path: str,
    parents: tuple[dict[str, Any], ...],
) -> _T:
    hints = typing.get_type_hints(cls)
    fields = dataclasses.fields(cls)  # type: ignore[arg-type]
    merged: dict[str, Any] = {}
    context = (merged, *parents)
    # Plain values first, so that nested results can read the merged duration.
    ordered = sorted(fields, key=lambda field: _is_container(hints[field.name]))
    for field in ordered:
        values = [getattr(item, field.name) for item in items]
        merged[field.name] = _merge_field(
            field.name,
            hints[field.name],
            values,
            sources,
            f"{path}.{field.name}",
            context,
        )
    for name, value in list(merged.items()):
        if value is _DERIVED:
            merged[name] = _derive(name, context, items, path)
    return cls(**merged)


def _is_container(hint: Any) -> bool:
    inner, _ = _strip_optional(hint)
    is_dataclass = dataclasses.is_dataclass(inner) and isinstance(inner, type)
    return is_dataclass or typing.get_origin(inner) in (dict, list, tuple)


def _merge_field(
    name: str,
    hint: Any,
    values: list[Any],
    sources: list[str],
    path: str,
    context: tuple[dict[str, Any], ...],
) -> Any:
    inner, optional = _strip_optional(hint)
    present = [value is not None for value in values]
    if optional and inner is float and name.endswith("_seconds"):
        # A latency that is None where a process completed no request in that
        # tick or endpoint: the others decide.
        values = [value for value in values if value is not None]
        return _merge_scalar(name, inner, values, path) if values else None
    if optional and not all(present):
        if not any(present):
            return None
        first_set = present.index(True)
        first_unset = present.index(False)
        raise UsageError(
            f"Cannot merge field {path}: {sources[first_set]} sets it but "
            f"{sources[first_unset]} does not. Merge results of the same model "
            "and options."
        )
    if inner is LatencySummary or name in _DERIVED_RATES:
        return _DERIVED
    if name.startswith(_HISTOGRAM_PREFIX) and inner is str:
        return merge_histograms(values, path)
    if dataclasses.is_dataclass(inner) and isinstance(inner, type):
        return _merge_dataclass(inner, values, sources, path, context)
    origin = typing.get_origin(inner)
    if origin is dict:
        value_hint = typing.get_args(inner)[1]
        return _merge_dicts(value_hint, values, sources, path, context)
    if origin is list and typing.get_args(inner)[0] is str:
        # Messages such as warnings: each distinct one once, in order of appearance.
        return list(dict.fromkeys(item for value in values for item in value))
    if origin in (list, tuple):
        return _merge_sequences(inner, values, sources, path, context)
    if origin is Literal or inner in _IDENTITY_TYPES or name in _IDENTITY_FIELDS:
        return _merge_identical(values, sources, path)
    return _merge_scalar(name, inner, values, path)


def _merge_scalar(name: str, hint: Any, values: list[Any], path: str) -> Any:
    if hint is bool:
        return any(values)
    if hint is int:
        return sum(values)
    if hint is float and name.endswith("_per_second"):
        # Target rates of processes that split one load add up to the whole rate.
        return float(sum(values))
    if hint is float and name.endswith(_SUMMED_SECONDS_SUFFIX):
        return float(sum(values))
    if hint is float and name in _EARLIEST_SECONDS_FIELDS:
        return min(values)
    if hint is float and name.endswith("_seconds"):
        # Runs that overlap in time last as long as the longest of them.
        # NOTE: a percentile kept without its histogram, such as a timeline tick's
        # p99_seconds, becomes the highest of the inputs, an upper bound of the
        # exact percentile of all their latencies.
        return max(values)
    raise TypeError(
        f"No merge rule for field {path} of type {hint!r}: add one to "
        "hyperlane.load.merge."
    )


def _merge_identical(values: list[Any], sources: list[str], path: str) -> Any:
    for value, source in zip(values[1:], sources[1:], strict=True):
        if value != values[0]:
            raise UsageError(
                f"Cannot merge field {path}: {sources[0]} has {values[0]!r} but "
                f"{source} has {value!r}. Merge only results of the same target "
                "and model."
            )
    return values[0]


def _merge_dicts(
    value_hint: Any,
    values: list[dict[str, Any]],
    sources: list[str],
    path: str,
    context: tuple[dict[str, Any], ...],
) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    keys = list(dict.fromkeys(key for value in values for key in value))
    for key in keys:
        holders = [index for index, value in enumerate(values) if key in value]
        merged[key] = _merge_field(
            key,
            value_hint,
            [values[index][key] for index in holders],
            [sources[index] for index in holders],
            f"{path}.{key}",
            context,
        )
    return merged


def _merge_sequences(
    hint: Any,
    values: list[Sequence[Any]],
    sources: list[str],
    path: str,
    context: tuple[dict[str, Any], ...],
) -> Any:
    """Merge sequences element by element, such as per-second timelines."""
    element_hint = typing.get_args(hint)[0]
    length = max(len(value) for value in values)
    merged = []
    for index in range(length):
        holders = [
            position for position, value in enumerate(values) if index < len(value)
        ]
        merged.append(
            _merge_field(
                f"{path}[{index}]",
                element_hint,
                [values[position][index] for position in holders],
                [sources[position] for position in holders],
                f"{path}[{index}]",
                context,
            )
        )
    return merged if typing.get_origin(hint) is list else tuple(merged)


def _derive(
    name: str, context: tuple[dict[str, Any], ...], items: list[Any], path: str
) -> Any:
    merged = context[0]
    if name in _DERIVED_RATES:
        seconds = _measured_seconds(context, f"{path}.{name}")
        count: int = merged[_DERIVED_RATES[name]]
        return count / seconds if seconds > 0 else 0.0
    histogram_name = _HISTOGRAM_PREFIX + name.removeprefix(_LATENCY_PREFIX)
    if not name.startswith(_LATENCY_PREFIX) or histogram_name not in merged:
        raise TypeError(
            f"No histogram field {histogram_name!r} to recompute {path}.{name} from: "
            "name a LatencySummary field latency<suffix> beside histogram<suffix>."
        )
    encoding = merged[histogram_name]
    if encoding is None:
        return None
    summaries = [getattr(item, name) for item in items]
    return latency_from_histogram(encoding, summaries, f"{path}.{name}")


def _measured_seconds(context: tuple[dict[str, Any], ...], path: str) -> float:
    """Return the time a rate divides by: a tick's length, or the nearest enclosing
    duration_seconds, as for an endpoint's rate over the whole run."""
    merged = context[0]
    if "start_seconds" in merged and "end_seconds" in merged:
        length: float = merged["end_seconds"] - merged["start_seconds"]
        return length
    for values in context:
        if "duration_seconds" in values:
            duration: float = values["duration_seconds"]
            return duration
    raise TypeError(f"No duration to compute the rate {path} from.")
