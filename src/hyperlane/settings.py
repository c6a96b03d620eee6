"""Typed settings for every command, declared once.

Each field's type, bounds, default and description feed the command-line flags, the
``HYPERLANE_*`` environment variables and the ``hyperlane.toml`` keys alike. Precedence
is flag, then environment, then the command's section of the config file, then the
default.
"""

# This module leaves out `from __future__ import annotations`, because pydantic
# would then evaluate every field annotation from a string. Importing the module
# took 7.4 ms with it and 6.2 ms without (medians of 15 runs, pydantic and
# pydantic-settings already imported).
import difflib
import os
import re
from contextvars import ContextVar
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, TypeVar

from pydantic import BeforeValidator, Field, ValidationError, field_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from hyperlane.errors import UsageError
from hyperlane.units import (
    parse_bandwidth_bits_per_second,
    parse_cpu_cores,
    parse_duration_seconds,
    parse_memory_bytes,
)

CONFIG_FILE_NAME = "hyperlane.toml"
KNOWN_SECTIONS = frozenset({"audit", "load", "image", "top", "monitor", "rightsize"})
ENV_PREFIX = "HYPERLANE_"
_PLATFORM = re.compile(r"^[a-z0-9]+/[a-z0-9_]+(/[a-z0-9]+)?$")
_REQUEST_PATH = re.compile(r"^/[\x21\x22\x24-\x7e]*$")

Seconds = Annotated[float, BeforeValidator(parse_duration_seconds)]
Cores = Annotated[float, BeforeValidator(parse_cpu_cores)]
Bytes = Annotated[int, BeforeValidator(parse_memory_bytes)]
BitsPerSecond = Annotated[float, BeforeValidator(parse_bandwidth_bits_per_second)]
_OFF_WORDS = frozenset({"off", "none", "no", "false"})


def _off_to_none(value: object) -> object:
    """Map "off" and its synonyms to None, so a flag can turn a default gate off."""
    if isinstance(value, str) and value.strip().lower() in _OFF_WORDS:
        return None
    return value


def _optional_memory_bytes(value: object) -> int | None:
    value = _off_to_none(value)
    return None if value is None else parse_memory_bytes(value)


OptionalBytes = Annotated[int | None, BeforeValidator(_optional_memory_bytes)]


def _percent_number(value: object) -> object:
    """Accept "10%" for 10, and "off" and its synonyms for None."""
    value = _off_to_none(value)
    if isinstance(value, str) and value.strip().endswith("%"):
        return value.strip()[:-1].strip()
    return value


OptionalPercent = Annotated[
    float | None,
    Field(ge=0, le=100, allow_inf_nan=False),
    BeforeValidator(_percent_number),
]
# dive's user wasted percent exceeds 100 when a base-layer file is rewritten.
OptionalUnboundedPercent = Annotated[
    float | None,
    Field(ge=0, allow_inf_nan=False),
    BeforeValidator(_percent_number),
]


def _ratio_number(value: object) -> object:
    """Reject a percentage where a ratio is meant, with the ratio to write instead."""
    value = _off_to_none(value)
    try:
        number = float(str(value).strip().removesuffix("%")) if value is not None else 0
    except ValueError:
        return value
    if (isinstance(value, str) and value.strip().endswith("%")) or 1 < number <= 100:
        raise ValueError(
            f"a ratio from 0 to 1 is expected; write {number / 100:g} for {number:g} %"
        )
    return value


OptionalRatio = Annotated[
    float | None, Field(ge=0, le=1, allow_inf_nan=False), BeforeValidator(_ratio_number)
]


def _time_seconds(value: object) -> object:
    if not isinstance(value, str):
        return value
    # Imported here because hyperlane.metrics loads the Docker SDK and requests,
    # which `hyperlane --help` must not.
    from hyperlane.metrics.prometheus import parse_time_seconds  # noqa: PLC0415

    return parse_time_seconds(value)


# Unix seconds, given as a number or as RFC 3339 text.
TimeSeconds = Annotated[float, BeforeValidator(_time_seconds)]

EngineName = Literal["auto", "docker", "podman"]
MetricsSource = Literal["auto", "cgroup", "api"]


class _TomlSectionSource(PydanticBaseSettingsSource):
    """Reads one command's section of ``hyperlane.toml``."""

    def __init__(self, settings_cls: type[BaseSettings], values: dict[str, Any]):
        super().__init__(settings_cls)
        self._values = values

    def get_field_value(
        self, field: FieldInfo, field_name: str
    ) -> tuple[Any, str, bool]:
        return self._values.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self._values)


def _check_request_path(value: str) -> str:
    """Return an HTTP path setting unchanged, or raise ValueError for an invalid one."""
    # A fragment is never sent to a server, and HTTP/1.1 request targets are
    # printable ASCII, so other characters must be percent-encoded.
    if not _REQUEST_PATH.match(value):
        raise ValueError(
            "a path starts with / and contains only printable ASCII without "
            "spaces or '#'; percent-encode other characters, e.g. /caf%C3%A9"
        )
    return value


def _cpu_floor_field() -> Any:
    """Return the field of the lowest CPU request, shared by audit and rightsize."""
    return Field(
        0.010,
        # 1m is the smallest CPU quantity Kubernetes accepts, and 256 cores is
        # 262144 CPU shares, the kernel's maximum.
        ge=0.001,
        le=256,
        description="Lowest CPU request to recommend, e.g. 10m.",
    )


def _memory_floor_field() -> Any:
    """Return the field of the lowest memory figure, shared by audit and rightsize."""
    return Field(
        100 * 2**20,
        # Docker rejects memory limits below 6 MiB.
        ge=6 * 2**20,
        le=2**40,
        description="Lowest memory to recommend, e.g. 100Mi.",
    )


class CommandSettings(BaseSettings):
    """Settings that every command shares."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        extra="forbid",
        frozen=True,
        validate_default=True,
        # A run validates the settings of one command, so each model builds its
        # validator on first use. Importing this module then took 6.3 ms instead
        # of 13.8 ms, and the first ImageSettings 1.9 ms instead of 1.0 ms
        # (medians of 15 runs, time.perf_counter, bytecode cached).
        defer_build=True,
    )

    # The config-file section this model reads; subclasses set it.
    section: ClassVar[str] = ""

    engine: EngineName = Field(
        "auto",
        description="Container engine: docker, podman, or auto (DOCKER_HOST, then the "
        "Docker socket, then the Podman socket).",
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        file_values = (_FILE_VALUES.get() or {}).get(cls.section, {})
        return (
            init_settings,
            env_settings,
            _TomlSectionSource(settings_cls, file_values),
        )


class LoadSettings(CommandSettings):
    """Settings of the HTTP load, for ``hyperlane load`` and the audit's load stage."""

    section: ClassVar[str] = "load"

    connections: int = Field(
        8, ge=1, le=10_000, description="Concurrent connections (closed model)."
    )
    duration: Seconds = Field(
        10.0, gt=0, le=86_400, description="Length of the load, e.g. 10s or 2m."
    )
    rate: float | None = Field(
        None,
        gt=0,
        allow_inf_nan=False,
        le=10_000_000,
        description="Target arrival rate in requests per second; selects the open "
        "model.",
    )
    requests: int | None = Field(
        None, ge=1, description="Exact number of requests to send, then stop."
    )
    workers: int | None = Field(
        None,
        ge=1,
        le=256,
        description="Load-generator worker processes, each with its own event loop "
        "(default: one per core, at most one per connection).",
    )
    timeout: Seconds = Field(
        5.0, gt=0, le=3600, description="Read timeout of one request, e.g. 5s."
    )
    connect_timeout: Seconds = Field(
        2.0, gt=0, le=3600, description="Connect timeout of one connection, e.g. 2s."
    )
    insecure: bool = Field(
        False, description="Skip TLS certificate and host name verification."
    )
    think_time: Seconds = Field(
        0.0,
        ge=0,
        le=3600,
        description="Pause between a response and the next request on a connection "
        "(closed model), e.g. 100ms.",
    )
    method: str = Field(
        "GET", pattern=r"^[A-Z]+$", description="HTTP method, e.g. GET or POST."
    )
    header: list[str] = Field(
        default_factory=list,
        description="Extra request header 'Name: value'; repeat the flag for more.",
    )
    body_file: Path | None = Field(
        None, description="File whose bytes are sent as the request body."
    )
    hgrm: Path | None = Field(
        None,
        description="Also write the latency percentile distribution (milliseconds) "
        "to this .hgrm file.",
    )
    scenario: Path | None = Field(
        None,
        description="TOML scenario file: weighted requests, stages, warm-up and "
        "thresholds (a failed threshold exits with code 3).",
    )


class AuditSettings(LoadSettings):
    """Settings of ``hyperlane audit``: image, start, load, monitor, size, report."""

    section: ClassVar[str] = "audit"

    out: Path = Field(
        Path("hyperlane-audit"),
        description="Directory for report.json and deploy/; replaced only when the "
        "audit completes.",
    )
    port: int | None = Field(
        None,
        ge=1,
        le=65535,
        description="Container port to test; default: the image's first exposed TCP "
        "port.",
    )
    path: str = Field(
        "/",
        description="HTTP path (and query) for readiness and load, percent-encoded, "
        "e.g. /health?full=1.",
    )
    starts: int = Field(3, ge=1, le=50, description="Cold starts to measure.")
    start_timeout: Seconds = Field(
        30.0,
        gt=0,
        le=3600,
        description="Time allowed from create to the first 2xx on PATH, e.g. 30s.",
    )
    metrics_source: MetricsSource = Field(
        "auto",
        description="Where container metrics come from: cgroup files, the engine "
        "API's stats, or auto (cgroup when the engine is local).",
    )
    sample_interval: Seconds = Field(
        0.5, ge=0.05, le=60, description="Time between metric samples, e.g. 0.5s."
    )
    cpu_floor: Cores = _cpu_floor_field()
    memory_floor: Bytes = _memory_floor_field()

    _check_path = field_validator("path")(_check_request_path)


class ImageSettings(CommandSettings):
    """Settings of ``hyperlane image``, its CI gates included."""

    section: ClassVar[str] = "image"

    platform: str | None = Field(
        None,
        description="Image of a multi-platform index to analyse: OS/ARCHITECTURE or "
        "OS/ARCHITECTURE/VARIANT, e.g. linux/arm64 (default: linux/amd64, else the "
        "first).",
    )
    pull_bandwidth: BitsPerSecond = Field(
        100e6,
        description="Network rate for the pull-time estimate, e.g. 100Mbit/s or "
        "12.5MB/s.",
    )
    ci: bool = Field(
        False,
        description="Check the gates below and exit with code 3 when one fails.",
    )
    max_hidden_bytes: OptionalBytes = Field(
        50 * 2**20,
        description="CI gate: most hidden bytes (shipped in layers, not visible in "
        "the final file system), e.g. 50Mi; off to disable.",
    )
    max_hidden_percent: OptionalPercent = Field(
        10.0,
        description="CI gate: most hidden bytes as a percent of all layer file "
        "bytes; off to disable.",
    )
    hidden_percent_floor: Bytes = Field(
        2**20,
        ge=0,
        description="Hidden bytes below which max-hidden-percent passes, so that "
        "tiny images do not fail on a few bytes.",
    )
    min_dive_efficiency: OptionalRatio = Field(
        None,
        description="CI gate: lowest dive-compatible efficiency, 0 to 1 (dive's "
        "lowestEfficiency); off by default.",
    )
    dive_efficiency_floor: Bytes = Field(
        2**20,
        ge=0,
        description="Dive-compatible wasted bytes below which min-dive-efficiency "
        "passes.",
    )
    max_dive_wasted_bytes: OptionalBytes = Field(
        None,
        description="CI gate: most dive-compatible wasted bytes (dive's "
        "highestWastedBytes); off by default.",
    )
    max_dive_wasted_percent: OptionalUnboundedPercent = Field(
        None,
        description="CI gate: most dive-compatible user wasted percent (dive's "
        "highestUserWastedPercent times 100); off by default.",
    )
    dive_wasted_percent_floor: Bytes = Field(
        2**20,
        ge=0,
        description="Dive-compatible wasted bytes below which max-dive-wasted-percent "
        "passes.",
    )
    max_image_size: OptionalBytes = Field(
        None,
        description="CI gate: largest total layer content size, e.g. 200Mi; off by "
        "default.",
    )

    @field_validator("platform")
    @classmethod
    def _check_platform(cls, value: str | None) -> str | None:
        # Platform names compare case-insensitively, as the image analysis does.
        if value is not None:
            value = value.lower()
        if value is not None and not _PLATFORM.match(value):
            raise ValueError(
                "a platform is OS/ARCHITECTURE or OS/ARCHITECTURE/VARIANT, e.g. "
                "linux/arm64 or linux/arm/v7"
            )
        return value


class TopSettings(CommandSettings):
    """Settings of ``hyperlane top``, the live view of running containers."""

    section: ClassVar[str] = "top"

    interval: Seconds = Field(
        1.0,
        ge=0.1,
        le=3600,
        description="Time between refreshes, and between the two samples of --once, "
        "e.g. 1s.",
    )
    sort: Literal["cpu", "memory", "name", "net", "io"] = Field(
        "cpu",
        description="Row order: cpu, memory, net or io (largest first), or name.",
    )
    once: bool = Field(
        False,
        description="Take two samples --interval apart, print one table (or JSON "
        "document with --json) and exit.",
    )
    metrics_source: MetricsSource = Field(
        "auto",
        description="Where container metrics come from: cgroup files, the engine "
        "API's stats, or auto (cgroup when the engine is local).",
    )
    label: list[str] = Field(
        default_factory=list,
        description="Show only containers with this label, 'key' or 'key=value'; "
        "repeat the flag to require more.",
    )


class MonitorSettings(CommandSettings):
    """Settings of ``hyperlane monitor``: the Prometheus exporter and the recorder."""

    section: ClassVar[str] = "monitor"

    interval: Seconds = Field(
        1.0, ge=0.05, le=3600, description="Time between samples, e.g. 1s or 500ms."
    )
    container: list[str] = Field(
        default_factory=list,
        description="Monitor only this container, by name or id prefix; repeat the "
        "flag for more (default: every running container).",
    )
    label: list[str] = Field(
        default_factory=list,
        description="Monitor only containers with this label, 'key' or 'key=value'; "
        "repeat the flag to require more.",
    )
    metrics_source: MetricsSource = Field(
        "auto",
        description="Where container metrics come from: cgroup files, the engine "
        "API's stats, or auto (cgroup when the engine is local).",
    )
    listen: str | None = Field(
        None,
        description="Serve Prometheus metrics with cAdvisor's names on "
        "http://HOST:PORT/metrics, e.g. 127.0.0.1:9560 or [::1]:9560 (an empty "
        "host means 127.0.0.1).",
    )
    record: Path | None = Field(
        None,
        description="Stream the samples to this JSON Lines recording, "
        "zstd-compressed when the name ends in .zst.",
    )
    duration: Seconds | None = Field(
        None,
        gt=0,
        le=31_536_000,
        description="Stop after this long, e.g. 10m (default: run until Ctrl-C or "
        "SIGTERM).",
    )

    @field_validator("listen")
    @classmethod
    def _check_listen(cls, value: str | None) -> str | None:
        if value is None:
            return None
        # Imported here because the exporter loads prometheus-client and the
        # Docker SDK, which `hyperlane --help` must not.
        from hyperlane.metrics.exporter import (  # noqa: PLC0415
            format_listen_address,
            parse_listen_address,
        )

        host, port = parse_listen_address(value)
        return format_listen_address(host, port)


class RightsizeSettings(CommandSettings):
    """Settings of ``hyperlane rightsize``: the strategy and its parameters."""

    section: ClassVar[str] = "rightsize"

    strategy: Literal["percentile", "histogram", "slo"] = Field(
        "percentile",
        description="Sizing strategy: percentile (KRR's simple strategy), "
        "histogram (the Kubernetes VPA recommender), or slo (search the smallest "
        "limits that meet --slo-latency at --slo-rate by running the image).",
    )
    cpu_floor: Cores = _cpu_floor_field()
    memory_floor: Bytes = _memory_floor_field()
    margin: float = Field(
        0.15,
        ge=0,
        le=10,
        allow_inf_nan=False,
        description="Safety margin as a ratio: 0.15 adds 15 % to the peak memory "
        "(percentile) or to every histogram figure (histogram).",
    )
    cpu_percentile: float = Field(
        95.0,
        gt=0,
        le=100,
        description="percentile strategy: nearest-rank percentile of the CPU "
        "readings that sets the CPU request.",
    )
    target_utilization: float | None = Field(
        None,
        gt=0,
        le=1,
        description="Autoscaler target CPU utilisation, e.g. 0.7; keeps the CPU "
        "request at or above peak CPU / target.",
    )
    throttling_threshold: float = Field(
        0.05,
        ge=0,
        lt=1,
        description="Share of CFS periods throttled above which to report "
        "throttling, e.g. 0.05 for 5 %.",
    )
    min_history_samples: int = Field(
        60, ge=1, description="Samples below which a recommendation is an estimate."
    )
    min_history: Seconds = Field(
        60.0, ge=0, description="History below which a recommendation is an estimate."
    )
    histogram_half_life: Seconds = Field(
        86_400.0,
        gt=0,
        description="histogram strategy: time after which a sample weighs half, "
        "e.g. 24h.",
    )
    histogram_target_percentile: float = Field(
        90.0, gt=0, le=100, description="histogram strategy: percentile of the target."
    )
    histogram_lower_percentile: float = Field(
        50.0,
        gt=0,
        le=100,
        description="histogram strategy: percentile of the lower bound.",
    )
    histogram_upper_percentile: float = Field(
        95.0,
        gt=0,
        le=100,
        description="histogram strategy: percentile of the upper bound.",
    )
    histogram_memory_window: Seconds = Field(
        86_400.0,
        gt=0,
        description="histogram strategy: window whose peak memory is one sample, "
        "e.g. 24h.",
    )
    image: str | None = Field(
        None,
        description="slo strategy: image reference in the engine to run the trials "
        "on (default: the image of the audit report INPUT).",
    )
    port: int | None = Field(
        None,
        ge=1,
        le=65535,
        description="slo strategy: container port of the service (default: the "
        "image's first exposed TCP port).",
    )
    path: str = Field(
        "/",
        description="slo strategy: HTTP path (and query) for readiness and load, "
        "e.g. /health.",
    )
    slo_rate: float | None = Field(
        None,
        gt=0,
        le=1_000_000,
        allow_inf_nan=False,
        description="slo strategy: open-model arrival rate in requests per second "
        "that the service must sustain, e.g. 300.",
    )
    slo_latency: Seconds = Field(
        0.05,
        gt=0,
        le=3600,
        description="slo strategy: highest latency at --slo-percentile, corrected "
        "for coordinated omission, e.g. 50ms.",
    )
    slo_percentile: float = Field(
        99.0, gt=0, lt=100, description="slo strategy: latency percentile, e.g. 99."
    )
    slo_errors: float = Field(
        0.001,
        ge=0,
        lt=1,
        description="slo strategy: highest share of failed requests, e.g. 0.001 for "
        "0.1 %.",
    )
    slo_cpu_max: Cores | None = Field(
        None,
        gt=0,
        description="slo strategy: CPU limit of the baseline trial, the largest "
        "tried, e.g. 2 (default: the host's cores).",
    )
    slo_cpu_min: Cores = Field(
        0.01, description="slo strategy: smallest CPU limit the search tries."
    )
    slo_tolerance: float = Field(
        0.05,
        gt=0,
        lt=1,
        description="slo strategy: the search ends when passing and failing CPU "
        "limits are closer than this share, e.g. 0.05 for 5 %.",
    )
    slo_cpu_margin: float = Field(
        0.1,
        ge=0,
        le=10,
        description="slo strategy: headroom added to the smallest passing CPU "
        "limit before the verification trial, e.g. 0.1 for 10 %.",
    )
    slo_trial_duration: Seconds = Field(
        10.0,
        gt=0,
        le=3600,
        description="slo strategy: measured load of each trial, e.g. 10s.",
    )
    slo_warmup: Seconds = Field(
        2.0,
        ge=0,
        le=3600,
        description="slo strategy: unmeasured load before each trial, e.g. 2s.",
    )
    slo_max_trials: int = Field(
        12, ge=1, le=100, description="slo strategy: search trials at most."
    )
    slo_connections: int = Field(
        32,
        ge=1,
        le=10_000,
        description="slo strategy: connections the open-model load may hold open.",
    )
    start_timeout: Seconds = Field(
        30.0,
        gt=0,
        le=3600,
        description="slo strategy: time allowed from create to the first 2xx.",
    )
    out: Path | None = Field(
        None,
        description="Directory to write the deploy files into (docker-run.sh, "
        "compose.yaml, kubernetes.yaml, nomad.hcl, nomad.json).",
    )
    env: list[str] = Field(
        default_factory=list,
        description="Image environment 'NAME=VALUE' for the runtime hints, added to "
        "the report's; repeat the flag for more.",
    )
    command: str | None = Field(
        None,
        description="Container command line for the runtime hints, e.g. 'java "
        "-Xmx512m -jar app.jar' (default: the report's entrypoint and cmd).",
    )
    prometheus: str | None = Field(
        None,
        description="Read the containers from this Prometheus server's HTTP API "
        "(cAdvisor metric names) instead of INPUT files, e.g. http://127.0.0.1:9090.",
    )
    # The default is None, not "", because the help would append "(default: )".
    prometheus_selector: str | None = Field(
        None,
        description="Label matchers that select the containers, without braces, "
        'e.g. \'namespace="shop",container="api"\' (default: every container).',
    )
    prometheus_timeout: Seconds = Field(
        30.0,
        gt=0,
        le=3600,
        description="--prometheus: time to wait for the connection and for each "
        "part of the server's reply to a query, e.g. 30s.",
    )
    # KRR reads 336 h at a 1.25 min step. 7 days at 60 s is 10,080 points per
    # series, which fits in one query under Prometheus' 11,000-point limit.
    history: Seconds = Field(
        7 * 86_400.0,
        gt=0,
        le=400 * 86_400,
        description="--prometheus: length of the range to read, ending at --end, "
        "e.g. 7d or 168h.",
    )
    start: TimeSeconds | None = Field(
        None,
        description="--prometheus: start of the range, unix seconds or RFC 3339 "
        "(default: --end minus --history).",
    )
    end: TimeSeconds | None = Field(
        None,
        description="--prometheus: end of the range, unix seconds or RFC 3339 "
        "(default: now).",
    )
    step: Seconds = Field(
        60.0,
        ge=0.01,
        le=86_400,
        description="--prometheus: time between the points read, at least the "
        "scrape interval, e.g. 60s.",
    )

    _check_path = field_validator("path")(_check_request_path)

    @field_validator("env")
    @classmethod
    def _check_env(cls, values: list[str]) -> list[str]:
        for value in values:
            name, separator, _ = value.partition("=")
            if not separator or not name:
                raise ValueError(
                    f"{value!r} is not NAME=VALUE; pass e.g. --env GOMAXPROCS=4"
                )
        return values


SettingsT = TypeVar("SettingsT", bound=CommandSettings)

# Sections of the config file that load_settings is reading, by name.
_FILE_VALUES: ContextVar[dict[str, dict[str, Any]] | None] = ContextVar(
    "hyperlane_config_sections", default=None
)


def find_config_file(explicit: Path | None) -> Path | None:
    """Return the config file to read: the given one, or ./hyperlane.toml if present."""
    if explicit is not None:
        if explicit.is_dir():
            raise UsageError(
                f"config file {str(explicit)!r} is a directory; pass a TOML file to "
                "--config"
            )
        if not explicit.is_file():
            raise UsageError(
                f"config file {str(explicit)!r} not found; pass an existing file to "
                "--config"
            )
        return explicit
    try:
        candidate = Path.cwd() / CONFIG_FILE_NAME
    except FileNotFoundError:
        # A working directory that was deleted contains no file.
        return None
    return candidate if candidate.is_file() else None


# The key of each setting as the config file spells it, by section and field name,
# so that an error names the key the user wrote.
_SPELLINGS: dict[tuple[str, str], str] = {}


def _read_config(path: Path | None) -> dict[str, dict[str, Any]]:
    if path is None:
        return {}
    # Imported here because only a run with a config file parses TOML, and the
    # import took 1.7 ms.
    import tomllib  # noqa: PLC0415

    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise UsageError(
            f"config file {str(path)!r} is not valid TOML: {error}"
        ) from None
    sections: dict[str, dict[str, Any]] = {}
    for name, value in document.items():
        if not isinstance(value, dict):
            raise UsageError(
                f"config file {str(path)!r}: top-level key {name!r} must be a section "
                f"such as [audit] or [load]"
            )
        sections[name] = {key.replace("-", "_"): item for key, item in value.items()}
        for key in value:
            _SPELLINGS[(name, key.replace("-", "_"))] = key
    return sections


def _suggest(name: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(name, choices, n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def unit_of(field: FieldInfo) -> str | None:
    """Return the unit a field's text is parsed into, or None for plain values."""
    for item in field.metadata:
        function = getattr(item, "func", None)
        if function is parse_duration_seconds:
            return "seconds"
        if function in (parse_memory_bytes, _optional_memory_bytes):
            return "bytes"
        if function is parse_cpu_cores:
            return "cores"
        if function is parse_bandwidth_bits_per_second:
            return "bits/s"
    return None


def _origin_of(
    name: str,
    flags: dict[str, Any],
    section: str,
    file_values: dict[str, Any],
    config_path: Path | None,
) -> tuple[str, Any]:
    """Return where the value of setting ``name`` came from, and the text given."""
    if name in flags:
        return "--" + name.replace("_", "-"), flags[name]
    variable = f"{ENV_PREFIX}{name.upper()}"
    if variable in os.environ:
        return variable, os.environ[variable]
    if name in file_values:
        key = _SPELLINGS.get((section, name), name.replace("_", "-"))
        file_name = str(config_path) if config_path is not None else CONFIG_FILE_NAME
        return f"{key} in [{section}] of {file_name}", file_values[name]
    return f"the default of {name}", None


def _describe_error(
    error: ValidationError,
    model: type[CommandSettings],
    flags: dict[str, Any],
    file_values: dict[str, Any],
    config_path: Path | None = None,
) -> str:
    fields = sorted(model.model_fields)
    messages = []
    for item in error.errors():
        name = str(item["loc"][0]) if item["loc"] else "?"
        if item["type"] == "extra_forbidden":
            key = _SPELLINGS.get((model.section, name), name)
            file_name = (
                str(config_path) if config_path is not None else "the config file"
            )
            suggestion = _suggest(name, fields)
            if "-" in key:
                suggestion = suggestion.replace("_", "-")
            messages.append(
                f"unknown setting {key!r} in [{model.section}] of {file_name}"
                f"{suggestion}"
            )
            continue
        origin, given_text = _origin_of(
            name, flags, model.section, file_values, config_path
        )
        reason = str(item["msg"]).removeprefix("Value error, ")
        field = model.model_fields.get(name)
        unit = unit_of(field) if field is not None else None
        if unit is not None and "than" in reason:
            reason = f"{reason} {unit}"
        value = given_text if given_text is not None else item.get("input")
        messages.append(f"invalid value {value!r} for {origin}: {reason}")
    return "; ".join(messages)


def load_settings(
    model: type[SettingsT],
    flags: dict[str, Any],
    config_file: Path | None = None,
) -> SettingsT:
    """Build the settings of one command from flags, environment and config file.

    Flags whose value is None were not given. Raises UsageError naming the setting, the
    value and the valid form.
    """
    config_path = find_config_file(config_file)
    sections = _read_config(config_path)
    for name in sections:
        if name not in KNOWN_SECTIONS:
            raise UsageError(
                f"unknown section [{name}] in the config file"
                f"{_suggest(name, sorted(KNOWN_SECTIONS))}"
            )
    # A repeatable flag that was not given arrives as an empty list.
    given_flags = {
        name: value for name, value in flags.items() if value not in (None, [], ())
    }
    token = _FILE_VALUES.set(sections)
    try:
        return model(**given_flags)
    except ValidationError as error:
        file_values = sections.get(model.section, {})
        raise UsageError(
            _describe_error(error, model, given_flags, file_values, config_path)
        ) from None
    finally:
        _FILE_VALUES.reset(token)
