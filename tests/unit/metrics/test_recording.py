"""Recording files: round trip, truncation, schema versions and the JSON Schema."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import zstandard

from hyperlane.errors import UsageError
from hyperlane.metrics.recording import (
    SAMPLE_KEYS,
    RecordingInvalid,
    RecordingReader,
    RecordingTruncated,
    RecordingWriter,
    read_recording,
)
from hyperlane.metrics.sample import DeviceCounters, InterfaceCounters, Sample
from tests.unit.metrics.fakes import BASE, CONTAINER_ID

SCHEMA_PATH = Path(__file__).parents[3] / "docs" / "schema" / "recording.schema.json"
ENGINE = {"name": "docker", "version": "20.10.24", "api_version": "1.41"}
# A sample with every field set, each to a different value of its type.
FULL_VALUES: dict[str, Any] = {
    item.name: (
        True
        if item.name in ("memory_limit_set", "memory_under_oom")
        else 1.5 + index
        if "float" in str(item.type)
        else 100 + index
    )
    for index, item in enumerate(dataclasses.fields(Sample))
    if item.name not in ("network_interfaces", "block_devices")
}
FULL = Sample(
    **FULL_VALUES,
    network_interfaces=(
        InterfaceCounters(
            name="eth0",
            receive_bytes=1200,
            receive_packets=10,
            receive_errors=1,
            receive_dropped=2,
            transmit_bytes=300,
            transmit_packets=3,
            transmit_errors=0,
            transmit_dropped=1,
        ),
        InterfaceCounters(
            name="eth1",
            receive_bytes=34,
            receive_packets=None,
            receive_errors=None,
            receive_dropped=None,
            transmit_bytes=7,
            transmit_packets=1,
            transmit_errors=2,
            transmit_dropped=0,
        ),
    ),
    block_devices=(
        DeviceCounters(
            major=8,
            minor=0,
            read_bytes=4096,
            write_bytes=16785408,
            read_operations=1,
            write_operations=7,
        ),
        DeviceCounters(
            major=254,
            minor=0,
            read_bytes=8192,
            write_bytes=0,
            read_operations=None,
            write_operations=None,
        ),
    ),
)


def write_two_containers(path: Path, samples_each: int) -> RecordingWriter:
    """Write alternating samples of two containers and return the open writer."""
    writer = RecordingWriter(
        path,
        engine=ENGINE,
        interval_seconds=0.5,
        monotonic_origin_seconds=100.0,
        unix_origin_seconds=1_700_000_000.0,
        host="test-host",
    )
    for step in range(samples_each):
        writer.write_sample(
            CONTAINER_ID,
            "web",
            "localhost/web:1.0",
            "cgroup-v1",
            dataclasses.replace(FULL, timestamp_seconds=100.0 + step / 2, threads=step),
            labels={"team": "blue"},
            cpu_limit_cores=0.5,
        )
        writer.write_sample(
            "b" * 64,
            "idle",
            "localhost/idle:1.0",
            "api",
            dataclasses.replace(
                BASE, timestamp_seconds=100.0 + step / 2, cpu_usage_seconds_total=step
            ),
        )
        writer.flush()
    return writer


@pytest.mark.parametrize("name", ["run.jsonl", "run.jsonl.zst"])
def test_round_trip(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    write_two_containers(path, samples_each=5).close("duration")

    with RecordingReader(path) as reader:
        pairs = list(reader)
        footer = reader.footer
        header = reader.header
    assert header.engine == ENGINE
    assert header.host == "test-host"
    assert header.interval_seconds == 0.5
    assert len(pairs) == 10
    web = [sample for container, sample in pairs if container.name == "web"]
    idle = [sample for container, sample in pairs if container.name == "idle"]
    assert web[3] == dataclasses.replace(FULL, timestamp_seconds=101.5, threads=3)
    assert idle[4] == dataclasses.replace(
        BASE, timestamp_seconds=102.0, cpu_usage_seconds_total=4.0
    )
    assert header.unix_seconds(web[2]) == 1_700_000_001.0
    container = pairs[0][0]
    assert container.container_id == CONTAINER_ID
    assert container.source == "cgroup-v1"
    assert container.labels == {"team": "blue"}
    assert container.cpu_limit_cores == 0.5
    assert footer is not None
    assert footer.samples == 10
    assert footer.containers == 2
    assert footer.reason == "duration"


def test_zst_is_compressed(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl.zst"
    write_two_containers(path, samples_each=3).close()
    text = zstandard.ZstdDecompressor().decompress(
        path.read_bytes(), max_output_size=10**6
    )
    assert text.startswith(b'{"t":"header"')


def test_lines_match_json_schema(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    write_two_containers(path, samples_each=3).close("interrupted")
    schema = json.loads(SCHEMA_PATH.read_text())
    validator = jsonschema.Draft202012Validator(schema)
    lines = path.read_text().splitlines()
    kinds = [json.loads(line)["t"] for line in lines]
    assert kinds[0] == "header"
    assert kinds[-1] == "footer"
    for line in lines:
        validator.validate(json.loads(line))


def test_schema_lists_every_sample_key() -> None:
    schema = json.loads(SCHEMA_PATH.read_text())
    properties = set(schema["$defs"]["sample"]["properties"])
    assert properties == {"t", "c", *SAMPLE_KEYS.values()}
    assert set(SAMPLE_KEYS) == {item.name for item in dataclasses.fields(Sample)}
    assert len(set(SAMPLE_KEYS.values())) == len(SAMPLE_KEYS)


def test_missing_footer_is_truncated(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl.zst"
    writer = write_two_containers(path, samples_each=4)
    # The bytes on disk after flush() are what a crash would leave.
    crashed = tmp_path / "crashed.jsonl.zst"
    crashed.write_bytes(path.read_bytes())
    writer.close()

    with pytest.raises(RecordingTruncated, match="without a footer"):
        read_recording(crashed)
    reader = RecordingReader(crashed, allow_truncated=True)
    assert len(list(reader)) == 8
    assert reader.truncated
    assert reader.footer is None
    reader.close()


@pytest.mark.parametrize("name", ["run.jsonl", "run.jsonl.zst"])
def test_cut_file_is_truncated(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    write_two_containers(path, samples_each=20).close()
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])

    with pytest.raises(RecordingTruncated):
        read_recording(path)
    header, pairs = read_recording(path, allow_truncated=True)
    assert header.host == "test-host"
    assert 0 < len(pairs) < 40


def test_abandoned_writer_is_truncated(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    with pytest.raises(RuntimeError), write_two_containers(path, samples_each=2):
        raise RuntimeError("sampling failed")
    with pytest.raises(RecordingTruncated):
        read_recording(path)


def _rewrite_header(path: Path, **changes: object) -> None:
    lines = path.read_text().splitlines()
    header = json.loads(lines[0])
    header.update(changes)
    lines[0] = json.dumps(header)
    path.write_text("\n".join(lines) + "\n")


def test_unknown_major_version_rejected(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    write_two_containers(path, samples_each=1).close()
    _rewrite_header(path, schema_version="2.0")
    with pytest.raises(UsageError, match=r"schema_version '2\.0'"):
        RecordingReader(path)


def test_newer_minor_version_accepted(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    write_two_containers(path, samples_each=2).close()
    _rewrite_header(path, schema_version="1.7", added_later=True)
    header, pairs = read_recording(path)
    assert header.schema_version == "1.7"
    assert len(pairs) == 4


def test_schema_1_0_file_read(tmp_path: Path) -> None:
    # Version 1.0 wrote only the totals, without the net_if and blk_dev lists.
    path = tmp_path / "run.jsonl"
    write_two_containers(path, samples_each=2).close()
    _rewrite_header(path, schema_version="1.0")
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    for line in lines:
        line.pop("net_if", None)
        line.pop("blk_dev", None)
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    header, pairs = read_recording(path)
    web = [sample for container, sample in pairs if container.name == "web"]
    assert header.schema_version == "1.0"
    assert len(web) == 2
    assert web[0].network_interfaces is None
    assert web[0].block_devices is None
    assert web[0].network_receive_bytes_total == FULL.network_receive_bytes_total


def test_per_interface_and_device_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    write_two_containers(path, samples_each=1).close()
    sample_line = json.loads(path.read_text().splitlines()[2])
    assert sample_line["net_if"][1] == {
        "name": "eth1",
        "rb": 34,
        "tb": 7,
        "tp": 1,
        "te": 2,
        "td": 0,
    }
    assert sample_line["blk_dev"][1] == {"maj": 254, "min": 0, "rb": 8192, "wb": 0}
    _, pairs = read_recording(path)
    assert pairs[0][1].network_interfaces == FULL.network_interfaces
    assert pairs[0][1].block_devices == FULL.block_devices


def test_footer_count_mismatch_invalid(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    write_two_containers(path, samples_each=2).close()
    lines = path.read_text().splitlines()
    del lines[-2]
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(RecordingInvalid, match="footer counts 4 samples"):
        read_recording(path)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"t":"sample","c":9,"ts":1,"cpu":1}', "unknown container 9"),
        ('{"t":"sample","c":0,"ts":1}', "without numeric 'cpu'"),
        ('{"t":"sample","c":0,"ts":1,"cpu":1,"mem":"big"}', "expected an integer"),
        ('{"t":"sample","c":0,"ts":1,"cpu":1,"mem_lim_set":1}', "true or false"),
        ('{"t":"sample","c":0,"ts":1,"cpu":1,"net_if":{}}', "list of objects"),
        ('{"t":"sample","c":0,"ts":1,"cpu":1,"net_if":[{"rb":1}]}', "no 'name'"),
        ('{"t":"sample","c":0,"ts":1,"cpu":1,"blk_dev":[{"maj":8}]}', "no 'min'"),
        (
            '{"t":"sample","c":0,"ts":1,"cpu":1,"blk_dev":[{"maj":8,"min":0,"rb":1.5}]}',
            "'rb' 1.5, expected an integer",
        ),
        ('{"t":"other"}', "unknown line type"),
        ("[1]", "not a JSON object"),
        ("{oops", "not JSON"),
    ],
)
def test_invalid_line_rejected(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "run.jsonl"
    write_two_containers(path, samples_each=1).close()
    lines = path.read_text().splitlines()
    lines.insert(2, line)
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(RecordingInvalid, match=message):
        read_recording(path)


def test_not_a_recording_rejected(tmp_path: Path) -> None:
    path = tmp_path / "report.json"
    path.write_text('{"schema_version": "0.1", "kind": "audit"}\n')
    with pytest.raises(RecordingInvalid, match="not a hyperlane-recording header"):
        RecordingReader(path)
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"")
    with pytest.raises(RecordingTruncated, match="empty"):
        RecordingReader(empty)


def test_writer_keeps_other_file(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("keep me\n")
    with pytest.raises(UsageError, match="not a Hyperlane recording"):
        RecordingWriter(path, engine={"name": "docker"}, interval_seconds=1.0)
    assert path.read_text() == "keep me\n"


def test_writer_replaces_earlier_recording(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    with RecordingWriter(path, engine={"name": "docker"}, interval_seconds=1.0):
        pass
    with RecordingWriter(path, engine={"name": "podman"}, interval_seconds=2.0):
        pass
    with RecordingReader(path) as reader:
        assert reader.header.interval_seconds == 2.0
