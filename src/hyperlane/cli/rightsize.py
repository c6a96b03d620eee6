"""The body of ``hyperlane rightsize``: read samples, size each container, render."""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import shlex
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from hyperlane.errors import UsageError
from hyperlane.images.config import first_tcp_port
from hyperlane.metrics.prometheus import read_prometheus
from hyperlane.metrics.recording import RecordingReader
from hyperlane.metrics.sample import Sample
from hyperlane.settings import RightsizeSettings
from hyperlane.sizing.hints import runtime_hints
from hyperlane.sizing.policy import SizingPolicy
from hyperlane.sizing.strategies import size_container
from hyperlane.sizing.strategy import Sizing, StrategyParameters
from hyperlane.sizing.throttling import ThrottlingReport, analyse_throttling
from hyperlane.sizing.usage import usage_from_samples
from hyperlane.urls import display_url

logger = logging.getLogger(__name__)

RECORDING_FILE_NAME = "metrics.jsonl"
REPORT_FILE_NAME = "report.json"
_SAMPLE_FIELDS = {item.name for item in fields(Sample)}


@dataclass
class ContainerInput:
    """The samples of one container, with its image's env and command from the input."""

    source: str
    """The input file that the samples came from."""
    name: str
    samples: list[Sample] = field(default_factory=list)
    cpu_limit_cores: float | None = None
    env: list[str] = field(default_factory=list)
    command: list[str] = field(default_factory=list)
    image: str | None = None
    """Image reference of the container, when the input names it."""
    container_port: int | None = None
    """Port the service listens on inside the container, when the input names it."""
    probe_path: str | None = None


@dataclass(frozen=True)
class ContainerResult:
    """One container's sizing, throttling report and runtime hints."""

    source: str
    sizing: Sizing
    throttling: ThrottlingReport
    hints: list[str]
    image: str | None = None
    container_port: int | None = None
    probe_path: str | None = None
    deploy_files: list[str] = field(default_factory=list)
    """Deploy files written for this container, relative to --out."""

    def to_dict(self) -> dict[str, Any]:
        """Return the result as a JSON-ready dict."""
        return {
            "source": self.source,
            "image": self.image,
            **self.sizing.to_dict(),
            "throttling": self.throttling.to_dict(),
            "runtime_hints": self.hints,
            "deploy_files": self.deploy_files,
        }


def read_inputs(path: Path) -> list[ContainerInput]:
    """Read the containers of an audit directory, a report.json or a recording.

    Raise UsageError naming the file when it is missing or not one of these.
    """
    if not path.exists():
        raise UsageError(
            f"Input {str(path)!r} not found: pass an audit report directory, its "
            "report.json, or a recording (.jsonl or .jsonl.zst)."
        )
    if path.is_dir():
        report = path / REPORT_FILE_NAME
        if not report.is_file() and not (path / RECORDING_FILE_NAME).is_file():
            raise UsageError(
                f"Directory {str(path)!r} contains neither {REPORT_FILE_NAME} nor "
                f"{RECORDING_FILE_NAME}: pass the --out directory of "
                "`hyperlane audit`."
            )
        if report.is_file():
            return _read_report(report)
        return _read_recording(path / RECORDING_FILE_NAME)
    if path.name.endswith(".json"):
        return _read_report(path)
    return _read_recording(path)


def _read_report(path: Path) -> list[ContainerInput]:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise UsageError(
            f"Report {str(path)!r} is not valid JSON ({error}): pass the "
            "report.json that `hyperlane audit` wrote."
        ) from None
    if not isinstance(document, dict) or document.get("kind") != "audit":
        raise UsageError(
            f"Report {str(path)!r} is not an audit report (kind "
            f"{document.get('kind') if isinstance(document, dict) else None!r}): "
            "pass the report.json that `hyperlane audit` wrote."
        )
    config = (document.get("image") or {}).get("config") or {}
    env = list(config.get("env") or [])
    command = [*(config.get("entrypoint") or []), *(config.get("cmd") or [])]
    recording = path.parent / RECORDING_FILE_NAME
    if recording.is_file():
        containers = _read_recording(recording)
    else:
        containers = [_report_samples(path, document)]
    image = (document.get("image") or {}).get("reference")
    audit_settings = document.get("settings") or {}
    port = audit_settings.get("port") or first_tcp_port(
        config.get("exposed_ports") or []
    )
    for container in containers:
        container.env = env
        container.command = command
        container.image = container.image or (str(image) if image else None)
        container.container_port = port
        container.probe_path = audit_settings.get("path")
    return containers


def _report_samples(path: Path, document: dict[str, Any]) -> ContainerInput:
    rows = (document.get("metrics") or {}).get("samples")
    if not isinstance(rows, list):
        raise UsageError(
            f"Report {str(path)!r} has no metrics.samples list and no "
            f"{RECORDING_FILE_NAME} beside it: rerun `hyperlane audit`."
        )
    name = str((document.get("container") or {}).get("name") or "container")
    container = ContainerInput(source=str(path), name=name)
    for index, row in enumerate(rows):
        try:
            values = {key: value for key, value in row.items() if key in _SAMPLE_FIELDS}
            container.samples.append(Sample(**values))
        except (AttributeError, TypeError) as error:
            raise UsageError(
                f"Report {str(path)!r}: metrics.samples[{index}] is not a sample "
                f"({error}): rerun `hyperlane audit` with this version."
            ) from None
    return container


def _read_recording(path: Path) -> list[ContainerInput]:
    by_index: dict[int, ContainerInput] = {}
    # A recording whose writer stopped early is still worth sizing from; the
    # reader logs a warning for it.
    with RecordingReader(path, allow_truncated=True) as reader:
        for recorded, sample in reader:
            container = by_index.get(recorded.index)
            if container is None:
                container = ContainerInput(
                    source=str(path),
                    name=recorded.name,
                    cpu_limit_cores=recorded.cpu_limit_cores,
                    image=recorded.image or None,
                )
                by_index[recorded.index] = container
            container.samples.append(sample)
    if not by_index:
        logger.warning("Recording %s contains no samples", path)
    return [by_index[index] for index in sorted(by_index)]


def _read_prometheus_inputs(settings: RightsizeSettings) -> list[ContainerInput]:
    """Read the containers that --prometheus-selector matches over the range."""
    if settings.prometheus is None:
        raise ValueError("_read_prometheus_inputs needs settings.prometheus")
    end_seconds = settings.end if settings.end is not None else time.time()
    start_seconds = (
        settings.start if settings.start is not None else end_seconds - settings.history
    )
    # read_prometheus validates the range before it logs what it reads.
    containers = read_prometheus(
        settings.prometheus,
        start_seconds=start_seconds,
        end_seconds=end_seconds,
        step_seconds=settings.step,
        selector=settings.prometheus_selector or "",
        timeout_seconds=settings.prometheus_timeout,
    )
    source = display_url(settings.prometheus)
    return [
        ContainerInput(
            source=source,
            name=container.name,
            samples=container.samples,
            cpu_limit_cores=container.cpu_limit_cores,
            image=container.labels.get("image") or None,
        )
        for container in containers
    ]


def _input_groups(
    inputs: list[Path], settings: RightsizeSettings
) -> Iterator[list[ContainerInput]]:
    """Yield the containers of Prometheus, or of each input file in turn."""
    if settings.prometheus is not None:
        yield _read_prometheus_inputs(settings)
        return
    for path in inputs:
        yield read_inputs(path)


def sizing_rules(
    settings: RightsizeSettings,
) -> tuple[SizingPolicy, StrategyParameters]:
    """Return the policy and strategy parameters that the settings describe."""
    policy = SizingPolicy(
        cpu_percentile=settings.cpu_percentile,
        memory_margin_ratio=settings.margin,
        cpu_floor_cores=settings.cpu_floor,
        memory_floor_bytes=settings.memory_floor,
        min_history_samples=settings.min_history_samples,
        min_history_seconds=settings.min_history,
    )
    parameters = StrategyParameters(
        target_utilization=settings.target_utilization,
        histogram_half_life_seconds=settings.histogram_half_life,
        histogram_target_percentile=settings.histogram_target_percentile,
        histogram_lower_percentile=settings.histogram_lower_percentile,
        histogram_upper_percentile=settings.histogram_upper_percentile,
        histogram_memory_aggregation_seconds=settings.histogram_memory_window,
    )
    return policy, parameters


def rightsize(inputs: list[Path], settings: RightsizeSettings) -> list[ContainerResult]:
    """Size every container of every input with the chosen strategy."""
    policy, parameters = sizing_rules(settings)
    results = []
    for containers in _input_groups(inputs, settings):
        for container in containers:
            usage = usage_from_samples(
                container.name, container.samples, container.cpu_limit_cores
            )
            sizing = size_container(usage, settings.strategy, policy, parameters)
            throttling = analyse_throttling(usage, settings.throttling_threshold)
            recommendation = sizing.recommendation
            command = (
                shlex.split(settings.command)
                if settings.command is not None
                else container.command
            )
            cpu_for_hints = (
                container.cpu_limit_cores or recommendation.cpu_request_cores
            )
            hints = runtime_hints(
                [*container.env, *settings.env],
                command,
                cpu_for_hints,
                recommendation.memory_limit_bytes,
            )
            results.append(
                ContainerResult(
                    container.source,
                    sizing,
                    throttling,
                    hints,
                    image=container.image,
                    container_port=container.container_port,
                    probe_path=container.probe_path,
                )
            )
    if not results:
        raise UsageError(
            "No container samples in "
            + (", ".join(repr(str(path)) for path in inputs) or "the inputs")
            + ": record while a container runs, e.g. `hyperlane monitor --record "
            "FILE` during a load, or pass the --out directory of `hyperlane audit`."
        )
    return results


def _deploy_name(container: str, used_names: set[str]) -> str:
    """Return a DNS label for the container's name, not yet in used_names."""
    label = re.sub(r"[^a-z0-9-]+", "-", container.lower()).strip("-")
    label = label[:50].strip("-") or "app"
    candidate, number = label, 2
    while candidate in used_names:
        candidate = f"{label}-{number}"
        number += 1
    used_names.add(candidate)
    return candidate


def write_results_deploy_files(
    results: list[ContainerResult], deploy_dir: Path
) -> list[ContainerResult]:
    """Write each sized container's deploy files into DEPLOY_DIR/NAME/.

    NAME is the container's name as a DNS label. A container without figures or
    without a known image gets no files, with a warning that gives the reason.
    """
    from hyperlane.report.deploy import write_deploy_files

    written: list[ContainerResult] = []
    used_names: set[str] = set()
    for result in results:
        name = _deploy_name(result.sizing.container, used_names)
        if result.sizing.recommendation.status != "ok":
            logger.warning(
                "No deploy files for %s: not enough data to size it",
                result.sizing.container,
            )
            written.append(result)
            continue
        if result.image is None:
            logger.warning(
                "No deploy files for %s: its input names no image",
                result.sizing.container,
            )
            written.append(result)
            continue
        paths = write_deploy_files(
            deploy_dir / name,
            result.image,
            result.container_port,
            result.sizing.recommendation,
            name=name,
            probe_path=result.probe_path,
        )
        files = [f"{deploy_dir.name}/{name}/{path.name}" for path in paths]
        written.append(dataclasses.replace(result, deploy_files=files))
    return written


def _cores_text(cores: float) -> str:
    """Return millicores below 10 cores and whole cores above, e.g. 6193 cores."""
    return f"{cores * 1000:.0f}m" if cores < 10 else f"{cores:,.0f} cores"


def _mebibytes_text(size_bytes: int) -> str:
    """Return MiB below 10 GiB and GiB above, e.g. 92.5 GiB."""
    if size_bytes < 10 * 2**30:
        return f"{size_bytes / 2**20:.0f} MiB"
    return f"{size_bytes / 2**30:,.1f} GiB"


def render_results(results: list[ContainerResult], console: Console) -> None:
    """Print one table per container with every figure and where it comes from."""
    if not results:
        console.print("No containers found in the inputs.")
    for result in results:
        sizing = result.sizing
        recommendation = sizing.recommendation
        title = f"{sizing.container} ({result.source}, strategy {sizing.strategy})"
        table = Table(title=title, show_lines=True)
        table.add_column("figure")
        table.add_column("value", justify="right")
        table.add_column("how it was derived")
        cpu = recommendation.cpu_request_millicores
        memory = recommendation.memory_request_bytes
        floored_cpu = " (floored)" if recommendation.cpu_floored else ""
        floored_memory = " (floored)" if recommendation.memory_floored else ""
        table.add_row(
            "CPU request",
            "none" if cpu is None else f"{cpu}m{floored_cpu}",
            recommendation.cpu_explanation,
        )
        table.add_row("CPU limit", "none", "No CPU limit is recommended.")
        table.add_row(
            "memory request = limit",
            "none" if memory is None else f"{memory // 2**20} MiB{floored_memory}",
            recommendation.memory_explanation,
        )
        bounds = sizing.bounds
        if bounds is not None:
            upper_cpu = (
                "unbounded"
                if bounds.cpu_upper_cores is None
                else _cores_text(bounds.cpu_upper_cores)
            )
            upper_memory = (
                "unbounded"
                if bounds.memory_upper_bytes is None
                else _mebibytes_text(bounds.memory_upper_bytes)
            )
            table.add_row(
                "bounds",
                f"CPU {(bounds.cpu_lower_cores or 0) * 1000:.0f}m..{upper_cpu}\n"
                f"memory {(bounds.memory_lower_bytes or 0) / 2**20:.0f} MiB.."
                f"{upper_memory}",
                bounds.explanation,
            )
        console.print(table)
        status = (
            "not enough data"
            if recommendation.status == "not_enough_data"
            else "estimate"
            if recommendation.estimate
            else "measured"
        )
        console.print(
            f"{status}: {recommendation.samples} samples over "
            f"{recommendation.history_seconds:.1f} s."
        )
        if recommendation.estimate_reason:
            console.print(f"Estimate: {recommendation.estimate_reason}")
        for note in sizing.notes:
            console.print(note)
        for sentence in result.throttling.sentences:
            console.print(f"Throttling: {sentence}")
        for hint in result.hints:
            console.print(f"Runtime: {hint}")
        console.print()
