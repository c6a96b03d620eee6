"""Write and read recordings: container samples streamed to a JSON Lines file.

A recording has one header line, a "container" line the first time each container
appears, one "sample" line per sample, and a footer line with counts that only a
clean stop writes. A file that ends without the footer is truncated, and the reader
says so. Files whose name ends in .zst are zstd-compressed. docs/schema/recording.md
describes the format, and docs/schema/recording.schema.json is its JSON Schema.
"""

from __future__ import annotations

import io
import json
import logging
import os
import socket
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import zstandard

from hyperlane import __version__
from hyperlane.errors import UsageError
from hyperlane.metrics.sample import DeviceCounters, InterfaceCounters, Sample

logger = logging.getLogger(__name__)

RECORDING_FORMAT = "hyperlane-recording"
RECORDING_SCHEMA_VERSION = "1.1"
"""MAJOR.MINOR. Readers reject another major version and accept any minor one,
because a minor version only adds fields that old readers may skip. Version 1.1
added the net_if and blk_dev lists of a sample line."""
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"

# Short key of every Sample field in a sample line. A None field is left out.
SAMPLE_KEYS: dict[str, str] = {
    "timestamp_seconds": "ts",
    "cpu_usage_seconds_total": "cpu",
    "cpu_user_seconds_total": "cpu_usr",
    "cpu_system_seconds_total": "cpu_sys",
    "cpu_cfs_periods_total": "cfs_p",
    "cpu_cfs_throttled_periods_total": "cfs_tp",
    "cpu_cfs_throttled_seconds_total": "cfs_ts",
    "cpu_pressure_some_seconds_total": "psi_cpu_s",
    "cpu_pressure_full_seconds_total": "psi_cpu_f",
    "memory_usage_bytes": "mem",
    "memory_working_set_bytes": "mem_ws",
    "memory_rss_bytes": "mem_rss",
    "memory_cache_bytes": "mem_cache",
    "memory_swap_bytes": "mem_swap",
    "memory_limit_bytes": "mem_lim",
    "memory_limit_set": "mem_lim_set",
    "memory_oom_kills_total": "oom_kills",
    "memory_oom_events_total": "oom_events",
    "memory_under_oom": "under_oom",
    "memory_pressure_some_seconds_total": "psi_mem_s",
    "memory_pressure_full_seconds_total": "psi_mem_f",
    "block_io_read_bytes_total": "io_rb",
    "block_io_write_bytes_total": "io_wb",
    "block_io_read_operations_total": "io_rops",
    "block_io_write_operations_total": "io_wops",
    "io_pressure_some_seconds_total": "psi_io_s",
    "io_pressure_full_seconds_total": "psi_io_f",
    "network_receive_bytes_total": "net_rb",
    "network_receive_packets_total": "net_rp",
    "network_receive_errors_total": "net_re",
    "network_receive_packets_dropped_total": "net_rd",
    "network_transmit_bytes_total": "net_tb",
    "network_transmit_packets_total": "net_tp",
    "network_transmit_errors_total": "net_te",
    "network_transmit_packets_dropped_total": "net_td",
    "processes": "procs",
    "threads": "threads",
    "network_interfaces": "net_if",
    "block_devices": "blk_dev",
}
# Short keys of the InterfaceCounters and DeviceCounters objects in the net_if and
# blk_dev lists. A None counter is left out.
INTERFACE_KEYS: dict[str, str] = {
    "name": "name",
    "receive_bytes": "rb",
    "receive_packets": "rp",
    "receive_errors": "re",
    "receive_dropped": "rd",
    "transmit_bytes": "tb",
    "transmit_packets": "tp",
    "transmit_errors": "te",
    "transmit_dropped": "td",
}
DEVICE_KEYS: dict[str, str] = {
    "major": "maj",
    "minor": "min",
    "read_bytes": "rb",
    "write_bytes": "wb",
    "read_operations": "rops",
    "write_operations": "wops",
}
_REQUIRED_ITEM_KEYS = {"net_if": ("name",), "blk_dev": ("maj", "min")}
_FIELD_BY_KEY = {key: name for name, key in SAMPLE_KEYS.items()}
_REQUIRED_KEYS = ("ts", "cpu")
_BOOLEAN_FIELDS = {"memory_limit_set", "memory_under_oom"}
_LIST_FIELDS = {"network_interfaces", "block_devices"}
_FLOAT_FIELDS = (
    {item.name for item in fields(Sample) if "float" in str(item.type)}
    - _BOOLEAN_FIELDS
    - _LIST_FIELDS
)


class RecordingInvalid(UsageError):
    """A recording line does not match the format."""


class RecordingTruncated(UsageError):
    """A recording ends without its footer: the writer stopped before closing it."""


@dataclass(frozen=True)
class RecordingHeader:
    """The first line of a recording."""

    schema_version: str
    host: str
    """Host name of the machine that recorded."""
    engine: Mapping[str, Any]
    """name, version, api_version and base_url of the engine."""
    interval_seconds: float
    """Requested time between samples, in seconds."""
    monotonic_origin_seconds: float
    """Monotonic clock reading at unix_origin_seconds.

    Sample timestamps are monotonic readings of the recording host, so a sample's
    Unix time is ts - monotonic_origin_seconds + unix_origin_seconds.
    """
    unix_origin_seconds: float
    """Unix time at which the recording started, in seconds."""
    started_at: str
    """The same instant in RFC 3339, UTC."""
    tool: Mapping[str, Any] = field(default_factory=dict)
    """Program and version that wrote the file."""

    def unix_seconds(self, sample: Sample) -> float:
        """Return the Unix time of a sample of this recording, in seconds."""
        return (
            sample.timestamp_seconds
            - self.monotonic_origin_seconds
            + self.unix_origin_seconds
        )


@dataclass(frozen=True)
class RecordedContainer:
    """A container line: one container as sampled by one reader."""

    index: int
    """Number that the container's sample lines refer to."""
    container_id: str
    name: str
    image: str
    source: str
    """Reader that took the samples: "cgroup-v1", "cgroup-v2" or "api"."""
    labels: Mapping[str, str] = field(default_factory=dict)
    cpu_limit_cores: float | None = None
    """CPU quota in cores, None when no CPU limit is set."""


@dataclass(frozen=True)
class RecordingFooter:
    """The last line of a complete recording."""

    samples: int
    containers: int
    ended_at: str
    """RFC 3339 time of the stop, UTC."""
    reason: str
    """Why the recording stopped: "duration", "interrupted" or "closed"."""


def _open_text_output(path: Path) -> tuple[IO[bytes], Any]:
    raw = path.open("wb")
    if path.name.endswith(".zst"):
        return raw, zstandard.ZstdCompressor(level=3).stream_writer(raw, closefd=False)
    return raw, None


def _check_overwritable(path: Path) -> None:
    """Raise UsageError when PATH contains something other than an earlier recording.

    A recording replaces only an empty file or an earlier recording, so that a
    mistyped --record never destroys another file.
    """
    if path.is_dir():
        raise UsageError(
            f"recording path {str(path)!r} is a directory; pass a file path to --record"
        )
    if not path.exists() or path.stat().st_size == 0:
        return
    try:
        with RecordingReader(path, allow_truncated=True):
            return
    except UsageError:
        pass
    raise UsageError(
        f"{str(path)!r} exists and is not a Hyperlane recording, so it is not "
        "replaced; remove it or pass another path to --record"
    )


class RecordingWriter:
    """Stream samples to a recording file.

    Call flush() once per sampling interval: it ends a zstd block and flushes
    and fsyncs the file, so a crash loses at most the samples since the last
    flush. close() writes the footer. Leaving the context on an exception
    closes the file without a footer, so the reader reports it as truncated.
    """

    def __init__(
        self,
        path: Path,
        engine: Mapping[str, Any],
        interval_seconds: float,
        monotonic_origin_seconds: float | None = None,
        unix_origin_seconds: float | None = None,
        host: str | None = None,
    ) -> None:
        self.path = path
        self.samples = 0
        self._indexes: dict[tuple[str, str], int] = {}
        _check_overwritable(path)
        try:
            self._raw, self._compressor = _open_text_output(path)
        except OSError as error:
            raise UsageError(
                f"cannot create recording {str(path)!r}: {error}; pass a writable "
                f"path to --record"
            ) from None
        self._closed = False
        if monotonic_origin_seconds is None:
            monotonic_origin_seconds = time.monotonic()
        if unix_origin_seconds is None:
            unix_origin_seconds = time.time()
        header = {
            "t": "header",
            "format": RECORDING_FORMAT,
            "schema_version": RECORDING_SCHEMA_VERSION,
            "tool": {"name": "hyperlane", "version": __version__},
            "host": socket.gethostname() if host is None else host,
            "engine": dict(engine),
            "interval_seconds": interval_seconds,
            "clock": {
                "monotonic_origin_seconds": monotonic_origin_seconds,
                "unix_origin_seconds": unix_origin_seconds,
                "started_at": _rfc3339(unix_origin_seconds),
            },
        }
        self._write(header)
        self.flush()

    @property
    def containers(self) -> int:
        """Number of container lines written."""
        return len(self._indexes)

    def write_sample(
        self,
        container_id: str,
        name: str,
        image: str,
        source: str,
        sample: Sample,
        labels: Mapping[str, str] | None = None,
        cpu_limit_cores: float | None = None,
    ) -> None:
        """Append one sample, after a container line the first time it appears.

        A container that comes back with another reader gets a new container line.
        """
        key = (container_id, source)
        index = self._indexes.get(key)
        if index is None:
            index = len(self._indexes)
            self._indexes[key] = index
            self._write(
                {
                    "t": "container",
                    "c": index,
                    "id": container_id,
                    "name": name,
                    "image": image,
                    "source": source,
                    "labels": dict(labels or {}),
                    "cpu_limit_cores": cpu_limit_cores,
                }
            )
        line: dict[str, Any] = {"t": "sample", "c": index}
        for name_of_field, short in SAMPLE_KEYS.items():
            value = getattr(sample, name_of_field)
            if value is None:
                continue
            if name_of_field == "network_interfaces":
                value = [_short_keys(item, INTERFACE_KEYS) for item in value]
            elif name_of_field == "block_devices":
                value = [_short_keys(item, DEVICE_KEYS) for item in value]
            line[short] = value
        self._write(line)
        self.samples += 1

    def flush(self) -> None:
        """Make every line written so far readable after a crash."""
        if self._compressor is not None:
            self._compressor.flush(zstandard.FLUSH_BLOCK)
        self._raw.flush()
        os.fsync(self._raw.fileno())

    def close(self, reason: str = "closed") -> None:
        """Write the footer and close the file. A second call does nothing."""
        if self._closed:
            return
        self._write(
            {
                "t": "footer",
                "samples": self.samples,
                "containers": self.containers,
                "ended_at": _rfc3339(time.time()),
                "reason": reason,
            }
        )
        self._finish()

    def abandon(self) -> None:
        """Close the file without a footer, so readers report it as truncated."""
        if not self._closed:
            self._finish()

    def _finish(self) -> None:
        self._closed = True
        if self._compressor is not None:
            self._compressor.flush(zstandard.FLUSH_FRAME)
            self._compressor.close()
        self._raw.flush()
        os.fsync(self._raw.fileno())
        self._raw.close()

    def _write(self, line: Mapping[str, Any]) -> None:
        data = (json.dumps(line, separators=(",", ":")) + "\n").encode()
        if self._compressor is not None:
            self._compressor.write(data)
        else:
            self._raw.write(data)

    def __enter__(self) -> RecordingWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abandon()


def _short_keys(
    item: InterfaceCounters | DeviceCounters, keys: Mapping[str, str]
) -> dict[str, Any]:
    values = {short: getattr(item, name) for name, short in keys.items()}
    return {short: value for short, value in values.items() if value is not None}


def _rfc3339(unix_seconds: float) -> str:
    return datetime.fromtimestamp(unix_seconds, UTC).isoformat(timespec="milliseconds")


class RecordingReader:
    """Iterate over the (container, sample) pairs of a recording.

    The header is read on open. Iteration raises RecordingTruncated after the
    last sample when the footer is missing or the last line is cut, unless
    allow_truncated is True, which logs a warning and sets `truncated` instead.
    It raises RecordingInvalid for a line that does not match the format, and
    for a footer whose counts differ from the lines read.
    """

    def __init__(self, path: Path, allow_truncated: bool = False) -> None:
        self.path = path
        self.allow_truncated = allow_truncated
        self.containers: dict[int, RecordedContainer] = {}
        self.footer: RecordingFooter | None = None
        self.truncated = False
        self._line_number = 0
        try:
            self._raw = path.open("rb")
        except OSError as error:
            raise UsageError(
                f"cannot open recording {str(path)!r}: {error}; pass the file that "
                f"`hyperlane monitor --record` wrote"
            ) from None
        stream: IO[bytes] = self._raw
        if self._raw.read(4) == ZSTD_MAGIC:
            self._raw.seek(0)
            stream = zstandard.ZstdDecompressor().stream_reader(self._raw)
        else:
            self._raw.seek(0)
        self._lines = io.TextIOWrapper(stream, encoding="utf-8", newline="\n")
        try:
            first = self._next_line()
            if first is None:
                raise RecordingTruncated(
                    f"recording {str(path)!r} is empty; the writer stopped before "
                    f"its header, so record again"
                )
            self.header = self._parse_header(first)
        except BaseException:
            self.close()
            raise

    def __iter__(self) -> Iterator[tuple[RecordedContainer, Sample]]:
        samples = 0
        while True:
            line = self._next_line()
            if line is None:
                break
            kind = line.get("t")
            if self.footer is not None:
                raise self._invalid("a line follows the footer")
            if kind == "container":
                container = self._parse_container(line)
                self.containers[container.index] = container
            elif kind == "sample":
                index = line.get("c")
                if not isinstance(index, int) or index not in self.containers:
                    raise self._invalid(f"sample of unknown container {index!r}")
                samples += 1
                yield self.containers[index], self._parse_sample(line)
            elif kind == "footer":
                self.footer = self._parse_footer(line, samples)
            else:
                raise self._invalid(f"unknown line type {kind!r}")
        if self.footer is None:
            self._report_truncated(f"it ends after {samples} samples without a footer")

    def close(self) -> None:
        self._lines.close()
        self._raw.close()

    def __enter__(self) -> RecordingReader:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _next_line(self) -> dict[str, Any] | None:
        """Return the next line as a JSON object, or None at the end of the data."""
        try:
            text = self._lines.readline()
        except zstandard.ZstdError as error:
            self._report_truncated(f"its zstd data is cut or damaged ({error})")
            return None
        if not text:
            return None
        self._line_number += 1
        if not text.endswith("\n"):
            self._report_truncated(f"line {self._line_number} is cut off")
            return None
        try:
            value = json.loads(text)
        except json.JSONDecodeError as error:
            raise self._invalid(f"not JSON ({error})") from None
        if not isinstance(value, dict):
            raise self._invalid("not a JSON object")
        return value

    def _report_truncated(self, detail: str) -> None:
        message = (
            f"recording {str(self.path)!r} is truncated: {detail}; the writer "
            f"stopped before closing it, so its last interval may be missing"
        )
        if not self.allow_truncated:
            raise RecordingTruncated(message)
        if not self.truncated:
            logger.warning("%s", message)
        self.truncated = True

    def _invalid(self, detail: str) -> RecordingInvalid:
        return RecordingInvalid(
            f"invalid line {self._line_number} in recording {str(self.path)!r}: "
            f"{detail}; pass a file that `hyperlane monitor --record` wrote"
        )

    def _parse_header(self, line: Mapping[str, Any]) -> RecordingHeader:
        if line.get("t") != "header" or line.get("format") != RECORDING_FORMAT:
            raise self._invalid(f"the first line is not a {RECORDING_FORMAT} header")
        version = line.get("schema_version")
        major = str(version).split(".", 1)[0]
        if major != RECORDING_SCHEMA_VERSION.split(".", 1)[0]:
            raise UsageError(
                f"recording {str(self.path)!r} has schema_version {version!r}, but "
                f"this version of Hyperlane reads only "
                f"{RECORDING_SCHEMA_VERSION.split('.', 1)[0]}.x; read it with the "
                f"Hyperlane version that wrote it"
            )

        clock = line.get("clock")
        engine = line.get("engine")
        interval: Any = line.get("interval_seconds")
        if not isinstance(clock, dict) or not isinstance(engine, dict):
            raise self._invalid("the header lacks the clock or engine object")
        if not _is_number(interval):
            raise self._invalid("the header lacks interval_seconds")

        monotonic: Any = clock.get("monotonic_origin_seconds")
        unix: Any = clock.get("unix_origin_seconds")
        if not _is_number(monotonic) or not _is_number(unix):
            raise self._invalid("the header clock lacks its origin readings")

        return RecordingHeader(
            schema_version=str(version),
            host=str(line.get("host", "")),
            engine=engine,
            interval_seconds=float(interval),
            monotonic_origin_seconds=float(monotonic),
            unix_origin_seconds=float(unix),
            started_at=str(clock.get("started_at", "")),
            tool=line.get("tool") or {},
        )

    def _parse_container(self, line: Mapping[str, Any]) -> RecordedContainer:
        index = line.get("c")
        if not isinstance(index, int) or isinstance(index, bool) or index < 0:
            raise self._invalid(f"container line with index {index!r}")
        if index in self.containers:
            raise self._invalid(f"container index {index} appears twice")
        for key in ("id", "name", "image", "source"):
            if not isinstance(line.get(key), str):
                raise self._invalid(f"container line without string {key!r}")
        limit: Any = line.get("cpu_limit_cores")
        return RecordedContainer(
            index=index,
            container_id=line["id"],
            name=line["name"],
            image=line["image"],
            source=line["source"],
            labels=dict(line.get("labels") or {}),
            cpu_limit_cores=float(limit) if _is_number(limit) else None,
        )

    def _parse_sample(self, line: Mapping[str, Any]) -> Sample:
        values: dict[str, Any] = dict.fromkeys(SAMPLE_KEYS)
        for key in _REQUIRED_KEYS:
            if not _is_number(line.get(key)):
                raise self._invalid(f"sample without numeric {key!r}")
        for key, value in line.items():
            if key in ("t", "c"):
                continue
            name = _FIELD_BY_KEY.get(key)
            if name is None:
                # A later minor version may add fields.
                continue
            values[name] = self._typed(name, key, value)
        return Sample(**values)

    def _typed(self, name: str, key: str, value: object) -> object:
        if name == "network_interfaces":
            return tuple(
                InterfaceCounters(**self._item(key, item, INTERFACE_KEYS))
                for item in self._items(key, value)
            )
        if name == "block_devices":
            return tuple(
                DeviceCounters(**self._item(key, item, DEVICE_KEYS))
                for item in self._items(key, value)
            )
        if name in _BOOLEAN_FIELDS:
            if not isinstance(value, bool):
                raise self._invalid(f"{key!r} is {value!r}, expected true or false")
            return value
        if name in _FLOAT_FIELDS:
            if not _is_number(value):
                raise self._invalid(f"{key!r} is {value!r}, expected a number")
            return float(value)  # type: ignore[arg-type]
        if not isinstance(value, int) or isinstance(value, bool):
            raise self._invalid(f"{key!r} is {value!r}, expected an integer")
        return value

    def _items(self, key: str, value: object) -> list[Mapping[str, Any]]:
        if not isinstance(value, list) or not all(
            isinstance(item, dict) for item in value
        ):
            raise self._invalid(f"{key!r} is {value!r}, expected a list of objects")
        return value

    def _item(
        self, key: str, item: Mapping[str, Any], keys: Mapping[str, str]
    ) -> dict[str, Any]:
        """Return the fields of one net_if or blk_dev object, None where absent."""
        for required in _REQUIRED_ITEM_KEYS[key]:
            if required not in item:
                raise self._invalid(f"{key!r} entry {item!r} has no {required!r}")
        values: dict[str, Any] = {}
        for name, short in keys.items():
            value = item.get(short)
            if name == "name":
                if not isinstance(value, str):
                    raise self._invalid(f"{key!r} entry {item!r} has no string name")
            elif value is not None and (
                not isinstance(value, int) or isinstance(value, bool)
            ):
                raise self._invalid(
                    f"{key!r} entry {item!r} has {short!r} {value!r}, expected an "
                    f"integer"
                )
            values[name] = value
        return values

    def _parse_footer(self, line: Mapping[str, Any], samples: int) -> RecordingFooter:
        expected_samples = line.get("samples")
        expected_containers = line.get("containers")
        if expected_samples != samples or expected_containers != len(self.containers):
            raise self._invalid(
                f"the footer counts {expected_samples!r} samples of "
                f"{expected_containers!r} containers, but the file has {samples} "
                f"of {len(self.containers)}"
            )
        return RecordingFooter(
            samples=samples,
            containers=len(self.containers),
            ended_at=str(line.get("ended_at", "")),
            reason=str(line.get("reason", "")),
        )


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def read_recording(
    path: Path, allow_truncated: bool = False
) -> tuple[RecordingHeader, list[tuple[RecordedContainer, Sample]]]:
    """Read a whole recording into memory; see RecordingReader for the errors."""
    with RecordingReader(path, allow_truncated=allow_truncated) as reader:
        pairs = list(reader)
        return reader.header, pairs
