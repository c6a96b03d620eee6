"""Exact merging of load results and reading them back from JSON."""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from typing import Any

import pytest
from hdrh.histogram import HdrHistogram

from hyperlane.errors import UsageError
from hyperlane.load import LoadResult, LoadSpec, run_load
from hyperlane.load.latency import LatencyRecorder
from hyperlane.load.merge import _merge_dataclass, load_result_from_dict, merge_results
from hyperlane.report.document import document_header
from tests.unit.load import servers

PERCENTILE_FIELDS = {
    "p50_seconds": 50.0,
    "p90_seconds": 90.0,
    "p99_seconds": 99.0,
    "p999_seconds": 99.9,
}


@pytest.fixture(scope="module")
def closed_results() -> list[LoadResult]:
    """Three closed-model runs of different sizes against one server."""
    with servers.serving(servers.keep_alive) as server:
        return [
            run_load(LoadSpec(url=server.url, connections=2, requests=count))
            for count in (150, 90, 40)
        ]


@pytest.fixture(scope="module")
def open_results() -> list[LoadResult]:
    """Two open-model runs, which carry corrected and uncorrected histograms."""
    with servers.serving(servers.delayed(0.002)) as server:
        return [
            run_load(
                LoadSpec(
                    url=server.url,
                    connections=2,
                    rate_per_second=rate,
                    duration_seconds=0.4,
                )
            )
            for rate in (200.0, 100.0)
        ]


def _bucket_values(encoding: str) -> list[int]:
    """Every recorded latency as the upper end of its bucket, in microseconds."""
    histogram = HdrHistogram.decode(encoding)
    values: list[int] = []
    for step in histogram.get_recorded_iterator():
        values.extend([step.value_iterated_to] * step.count_at_value_iterated_to)
    return values


def _nearest_rank_seconds(
    ordered_microseconds: list[int], percentile: float, max_seconds: float
) -> float:
    rank = max(1, math.ceil(round(percentile * len(ordered_microseconds) / 100, 6)))
    return min(ordered_microseconds[rank - 1] / 1e6, max_seconds)


def _rounded(value: Any) -> Any:
    """Round floats to 12 significant digits, so that sums in another order
    compare equal."""
    if isinstance(value, float):
        return float(f"{value:.12g}")
    if isinstance(value, dict):
        return {key: _rounded(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_rounded(item) for item in value]
    return value


def test_merge_counts_add(closed_results: list[LoadResult]) -> None:
    first, second, _ = closed_results
    merged = merge_results([first, second])
    assert merged.requests_total == 240
    assert merged.requests_sent == first.requests_sent + second.requests_sent
    assert merged.status_classes["2xx"] == 240
    assert merged.bytes_received == 240 * len(servers.OK_RESPONSE)
    assert merged.connections == 4
    assert merged.latency.count == 240
    for kind, count in merged.errors.items():
        assert count == first.errors[kind] + second.errors[kind]


def test_merge_duration_and_rate(closed_results: list[LoadResult]) -> None:
    first, second, _ = closed_results
    merged = merge_results([first, second])
    longest = max(first.duration_seconds, second.duration_seconds)
    assert merged.duration_seconds == longest
    assert merged.requests_per_second == pytest.approx(240 / longest)
    assert merged.keep_alive is True


def test_merge_percentiles_match_raw(closed_results: list[LoadResult]) -> None:
    first, second, _ = closed_results
    merged = merge_results([first, second])
    values = sorted(_bucket_values(first.histogram) + _bucket_values(second.histogram))
    max_seconds = max(first.latency.max_seconds or 0, second.latency.max_seconds or 0)
    assert merged.latency.max_seconds == max_seconds
    for name, percentile in PERCENTILE_FIELDS.items():
        expected = _nearest_rank_seconds(values, percentile, max_seconds)
        assert getattr(merged.latency, name) == expected, name


def test_merge_mean_exact(closed_results: list[LoadResult]) -> None:
    first, second, _ = closed_results
    merged = merge_results([first, second])
    total = (first.latency.mean_seconds or 0) * 150 + (
        second.latency.mean_seconds or 0
    ) * 90
    assert merged.latency.mean_seconds == pytest.approx(total / 240, rel=1e-12)


def test_merge_equals_one_recorder(closed_results: list[LoadResult]) -> None:
    # Raw latencies in nanoseconds, spread over several histogram magnitudes.
    first_raw = [1_000 + 7_919 * index for index in range(500)]
    second_raw = [250_000 + 104_729 * index for index in range(300)]
    parts = []
    for raw in (first_raw, second_raw):
        recorder = LatencyRecorder()
        recorder.pending.extend(raw)
        parts.append(
            dataclasses.replace(
                closed_results[0],
                latency=recorder.summary(),
                histogram=recorder.encoded_histogram(),
            )
        )
    both = LatencyRecorder()
    both.pending.extend(first_raw + second_raw)
    expected = both.summary()
    merged = merge_results(parts).latency
    for name in PERCENTILE_FIELDS:
        assert getattr(merged, name) == getattr(expected, name), name
    assert merged.max_seconds == expected.max_seconds
    assert merged.count == expected.count
    assert merged.mean_seconds == pytest.approx(expected.mean_seconds, rel=1e-12)
    assert merge_results(parts).histogram == both.encoded_histogram()


def test_merge_commutative(closed_results: list[LoadResult]) -> None:
    first, second, third = closed_results
    forward = merge_results([first, second, third]).to_dict()
    backward = merge_results([third, second, first]).to_dict()
    assert _rounded(forward) == _rounded(backward)


def test_merge_associative(closed_results: list[LoadResult]) -> None:
    first, second, third = closed_results
    left = merge_results([merge_results([first, second]), third]).to_dict()
    right = merge_results([first, merge_results([second, third])]).to_dict()
    assert _rounded(left) == _rounded(right)


def test_merge_open_model(open_results: list[LoadResult]) -> None:
    first, second = open_results
    merged = merge_results([first, second])
    assert merged.model == "open"
    assert merged.target_rate_per_second == 300.0
    assert merged.latency_uncorrected is not None
    assert merged.histogram_uncorrected is not None
    uncorrected = sorted(
        _bucket_values(first.histogram_uncorrected or "")
        + _bucket_values(second.histogram_uncorrected or "")
    )
    assert merged.latency_uncorrected.count == len(uncorrected)
    assert merged.requests_scheduled == (first.requests_scheduled or 0) + (
        second.requests_scheduled or 0
    )
    assert merged.late_sends_total == (first.late_sends_total or 0) + (
        second.late_sends_total or 0
    )


def test_merge_timeline_per_tick(open_results: list[LoadResult]) -> None:
    first, second = open_results
    merged = merge_results([first, second])
    assert len(merged.timeline) == max(len(first.timeline), len(second.timeline))
    tick = merged.timeline[0]
    sent = first.timeline[0].requests_sent + second.timeline[0].requests_sent
    assert tick.requests_sent == sent
    length = tick.end_seconds - tick.start_seconds
    assert tick.requests_per_second == pytest.approx(tick.requests_total / length)


def test_merge_endpoints(open_results: list[LoadResult]) -> None:
    first, second = open_results
    merged = merge_results([first, second])
    assert len(merged.endpoints) == 1
    endpoint = merged.endpoints[0]
    assert endpoint.requests_total == merged.requests_total
    assert endpoint.requests_per_second == pytest.approx(merged.requests_per_second)
    assert endpoint.latency.count == merged.latency.count


def test_merge_rejects_other_url(closed_results: list[LoadResult]) -> None:
    other = dataclasses.replace(closed_results[1], url="http://127.0.0.1:1/")
    with pytest.raises(UsageError, match=r"load\.url.*'b\.json'"):
        merge_results([closed_results[0], other], sources=["'a.json'", "'b.json'"])


def test_merge_rejects_other_model(
    closed_results: list[LoadResult], open_results: list[LoadResult]
) -> None:
    other = dataclasses.replace(open_results[0], url=closed_results[0].url)
    with pytest.raises(UsageError, match=r"load\.model.*closed.*open"):
        merge_results([closed_results[0], other])


def test_merge_rejects_empty() -> None:
    with pytest.raises(UsageError, match="No load results"):
        merge_results([])


def test_merge_unknown_type_raises() -> None:
    @dataclass(frozen=True)
    class Odd:
        members: set[int]

    with pytest.raises(TypeError, match="members"):
        _merge_dataclass(Odd, [Odd({1}), Odd({2})], ["a", "b"], "odd", ())


def test_from_document_round_trip(closed_results: list[LoadResult]) -> None:
    document = document_header("load")
    document["load"] = closed_results[0].to_dict()
    parsed = load_result_from_dict(json.loads(json.dumps(document)), "run.json")
    assert parsed == closed_results[0]


def test_from_bare_dict_round_trip(closed_results: list[LoadResult]) -> None:
    bare = json.loads(json.dumps(closed_results[1].to_dict()))
    assert load_result_from_dict(bare) == closed_results[1]


def test_merge_accepts_mappings(closed_results: list[LoadResult]) -> None:
    first, second, _ = closed_results
    merged = merge_results([first.to_dict(), second.to_dict()])
    assert merged == merge_results([first, second])


def test_from_dict_rejects_other_kind(closed_results: list[LoadResult]) -> None:
    document = document_header("audit")
    document["load"] = closed_results[0].to_dict()
    with pytest.raises(UsageError, match=r"'run\.json' is not a load result.*audit"):
        load_result_from_dict(document, "run.json")


def test_from_dict_missing_histogram(closed_results: list[LoadResult]) -> None:
    bare = closed_results[0].to_dict()
    del bare["histogram"]
    with pytest.raises(UsageError, match=r"'run\.json'.*load\.histogram is missing"):
        load_result_from_dict(bare, "run.json")


def test_from_dict_invalid_histogram(closed_results: list[LoadResult]) -> None:
    bare = closed_results[0].to_dict()
    bare["histogram"] = "bm90IGEgaGlzdG9ncmFt"
    with pytest.raises(UsageError, match=r"load\.histogram"):
        load_result_from_dict(bare, "run.json")


def test_from_dict_wrong_type(closed_results: list[LoadResult]) -> None:
    bare = closed_results[0].to_dict()
    bare["errors"]["reset"] = "3"
    with pytest.raises(UsageError, match=r"load\.errors\.reset: expected an integer"):
        load_result_from_dict(bare, "run.json")


def test_from_dict_unknown_field(closed_results: list[LoadResult]) -> None:
    bare = closed_results[0].to_dict()
    bare["requests_dropped"] = 1
    with pytest.raises(UsageError, match="requests_dropped"):
        load_result_from_dict(bare, "run.json")


def test_from_dict_schema_major(closed_results: list[LoadResult]) -> None:
    document = document_header("load")
    document["schema_version"] = "9.0.0"
    document["load"] = closed_results[0].to_dict()
    with pytest.raises(UsageError, match=r"schema_version '9\.0\.0'"):
        load_result_from_dict(document, "run.json")


def test_from_dict_rejects_list() -> None:
    with pytest.raises(UsageError, match="expected a JSON object"):
        load_result_from_dict([], "run.json")  # type: ignore[arg-type]
