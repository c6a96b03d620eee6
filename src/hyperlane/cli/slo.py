"""The body of ``hyperlane rightsize --strategy slo``: search, render, write files."""

from __future__ import annotations

import json
import logging
import math
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from rich import box
from rich.console import Console
from rich.table import Table

from hyperlane.errors import ThresholdFailed, UsageError
from hyperlane.images.config import first_tcp_port
from hyperlane.settings import RightsizeSettings
from hyperlane.sizing.policy import MIB, SizingPolicy
from hyperlane.sizing.recommend import Recommendation
from hyperlane.sizing.slo import (
    SearchBounds,
    SloSearchResult,
    SloTarget,
    SloTrial,
    TrialLimits,
    TrialMeasurement,
    search_limits,
)
from hyperlane.sizing.slo_trials import TrialPlan

if TYPE_CHECKING:
    from hyperlane.load import LoadProgress

logger = logging.getLogger(__name__)

REPORT_FILE_NAME = "report.json"


@dataclass(frozen=True)
class SloService:
    """The image, port and path that the trials run and load."""

    image: str
    container_port: int | None
    """None until read from the image's exposed ports."""
    path: str
    engine: str = "auto"
    """Engine to run the trials on: the flag, or the audit report's engine."""


@dataclass
class SloOutcome:
    """The search result, the service it ran and the deploy files written."""

    service: SloService
    engine: dict[str, Any]
    result: SloSearchResult
    recommendation: Recommendation | None
    deploy_files: list[str]
    """Deploy files written, relative to --out."""

    def to_dict(self) -> dict[str, Any]:
        """Return the outcome as the JSON document's fields."""
        return {
            "service": {
                "image": self.service.image,
                "container_port": self.service.container_port,
                "path": self.service.path,
            },
            "engine": self.engine,
            "slo": self.result.to_dict(),
            "recommendation": (
                None if self.recommendation is None else self.recommendation.to_dict()
            ),
            "deploy": {"files": self.deploy_files},
        }


def slo_target(settings: RightsizeSettings) -> SloTarget:
    """Return the target that the slo settings describe, or raise UsageError."""
    if settings.slo_rate is None:
        raise UsageError(
            "--strategy slo needs the rate the service must sustain: pass "
            "--slo-rate, e.g. --slo-rate 300 (requests per second)."
        )
    return SloTarget(
        rate_per_second=settings.slo_rate,
        latency_seconds=settings.slo_latency,
        latency_percentile=settings.slo_percentile,
        max_error_ratio=settings.slo_errors,
    )


def slo_service(inputs: list[Path], settings: RightsizeSettings) -> SloService:
    """Return the service to search: the flags, else the one audit report INPUT."""
    if settings.prometheus is not None:
        raise UsageError(
            "--strategy slo measures the service by running its image, and "
            "--prometheus only reads past usage: drop --prometheus, or use "
            "--strategy percentile or histogram with it."
        )
    if settings.image is not None:
        if inputs:
            raise UsageError(
                "--strategy slo runs the image of --image or of one audit report, "
                f"and got both --image {settings.image!r} and INPUT "
                f"{str(inputs[0])!r}: pass one of them."
            )
        return SloService(settings.image, settings.port, settings.path, settings.engine)
    if len(inputs) != 1:
        raise UsageError(
            "--strategy slo needs the image to run: pass --image REFERENCE, or one "
            f"audit report directory as INPUT (got {len(inputs)} inputs)."
        )
    report = inputs[0] / REPORT_FILE_NAME if inputs[0].is_dir() else inputs[0]
    try:
        document = json.loads(report.read_text(encoding="utf-8"))
        image = document["image"]["reference"]
        audit_settings = document.get("settings") or {}
        audit_engine = (document.get("engine") or {}).get("name")
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError):
        raise UsageError(
            f"{str(report)!r} is not an audit report that names its image: pass the "
            "--out directory of `hyperlane audit`, or --image REFERENCE."
        ) from None
    port = settings.port or audit_settings.get("port")
    path = audit_settings.get("path") if settings.path == "/" else settings.path
    engine = settings.engine
    if engine == "auto" and audit_engine in ("docker", "podman"):
        # The image of the audit exists in the engine that the audit ran on.
        engine = audit_engine
    return SloService(str(image), port, str(path or "/"), engine)


def check_trial_size(settings: RightsizeSettings, target: SloTarget) -> None:
    """Raise UsageError when a trial has too few requests to measure the target.

    A percentile p needs at least 1 / (1 - p / 100) requests to have one above it.
    An error budget below one request per trial is only logged, because it still
    means "no error", a stricter target.
    """
    requests = target.rate_per_second * settings.slo_trial_duration
    needed = math.ceil(round(100 / (100 - target.latency_percentile), 6))
    if requests < needed:
        raise UsageError(
            f"A trial of {settings.slo_trial_duration:g} s at "
            f"{target.rate_per_second:g} requests/s sends {requests:.0f} requests, "
            f"and p{target.latency_percentile:g} needs at least {needed}: raise "
            "--slo-trial-duration or --slo-rate, or lower --slo-percentile."
        )
    if target.max_error_ratio > 0 and requests * target.max_error_ratio < 1:
        logger.warning(
            "The error budget of %.2f %% is below one request in the %.0f of a "
            "trial, so any failed request fails the trial",
            target.max_error_ratio * 100,
            requests,
        )


def check_cpu_max(settings: RightsizeSettings) -> float:
    """Return the baseline's CPU limit, or raise UsageError above the host's cores."""
    host = _host_cores()
    if settings.slo_cpu_max is None:
        return host
    if settings.slo_cpu_max > host:
        raise UsageError(
            f"Invalid --slo-cpu-max {settings.slo_cpu_max:g}: this host has "
            f"{host:g} cores, and the engines reject a CPU limit above that. Pass "
            f"--slo-cpu-max {host:g} or less."
        )
    return settings.slo_cpu_max


def _host_cores() -> float:
    if hasattr(os, "sched_getaffinity"):
        return float(len(os.sched_getaffinity(0)))
    return float(os.cpu_count() or 1)


def _exposed_port(attributes: dict[str, Any], image: str) -> int:
    exposed = (attributes.get("Config") or {}).get("ExposedPorts") or {}
    port = first_tcp_port(sorted(exposed))
    if port is not None:
        return port
    raise UsageError(
        f"Image {image!r} exposes no TCP port: pass --port with the port the "
        "service listens on inside the container."
    )


class SloObserver(Protocol):
    """Receives the progress of a search: trial starts, load counters, trial ends."""

    def stage(self, name: str, description: str) -> None: ...

    def load_progress(self, progress: LoadProgress) -> None: ...

    def trial_done(self, trial: SloTrial) -> None: ...


def run_slo_search(
    inputs: list[Path], settings: RightsizeSettings, observer: SloObserver
) -> SloOutcome:
    """Run the SLO search on the engine, and write the deploy files when it holds."""
    from hyperlane.engines import connect
    from hyperlane.sizing.slo_trials import EngineTrialRunner

    target = slo_target(settings)
    service = slo_service(inputs, settings)
    check_trial_size(settings, target)
    bounds = SearchBounds(
        cpu_max_cores=check_cpu_max(settings),
        cpu_min_cores=settings.slo_cpu_min,
        cpu_tolerance_ratio=settings.slo_tolerance,
        cpu_margin_ratio=settings.slo_cpu_margin,
        max_trials=settings.slo_max_trials,
        memory_margin_ratio=settings.margin,
        memory_floor_bytes=settings.memory_floor,
    )
    engine = connect(service.engine)
    engine.remove_orphans()
    try:
        image = engine.get_image(service.image)
        port = service.container_port or _exposed_port(image.attrs, service.image)
        service = SloService(service.image, port, service.path, service.engine)
        plan = TrialPlan(
            image=service.image,
            container_port=port,
            path=service.path,
            duration_seconds=settings.slo_trial_duration,
            warmup_seconds=settings.slo_warmup,
            connections=settings.slo_connections,
            start_timeout_seconds=settings.start_timeout,
        )
        runner = EngineTrialRunner(
            engine,
            plan,
            target,
            f"hyperlane-slo-{uuid.uuid4().hex[:8]}",
            progress=observer.load_progress,
        )
        count = 0

        def announced(limits: TrialLimits) -> TrialMeasurement:
            nonlocal count
            count += 1
            memory = limits.memory_bytes
            memory_text = (
                "no memory limit" if memory is None else f"{memory / MIB:.0f} MiB"
            )
            observer.stage(
                "slo",
                f"trial {count}: CPU {limits.cpu_cores * 1000:.0f}m, {memory_text}, "
                f"{settings.slo_warmup:g} s warm-up + {settings.slo_trial_duration:g} "
                f"s measured at {target.rate_per_second:g} req/s",
            )
            return runner(limits)

        result = search_limits(announced, target, bounds, observer.trial_done)
        engine_info = engine.info.to_dict()
    finally:
        engine.close()

    recommendation = slo_recommendation(result, settings)
    return SloOutcome(service, engine_info, result, recommendation, [])


def write_slo_deploy_files(outcome: SloOutcome, deploy_dir: Path) -> list[str]:
    """Write the deploy files of the limits found into DEPLOY_DIR.

    Return their paths relative to DEPLOY_DIR's parent, or nothing when the search
    found no limits.
    """
    from hyperlane.report.deploy import write_deploy_files

    if outcome.recommendation is None:
        return []
    written = write_deploy_files(
        deploy_dir,
        outcome.service.image,
        outcome.service.container_port,
        outcome.recommendation,
        probe_path=outcome.service.path,
        cpu_limit_millicores=outcome.result.cpu_limit_millicores,
    )
    return [f"{deploy_dir.name}/{path.name}" for path in written]


def slo_recommendation(
    result: SloSearchResult, settings: RightsizeSettings
) -> Recommendation | None:
    """Return the search's limits as a Recommendation, requests equal to limits.

    None when the search found no passing limits.
    """
    if result.cpu_limit_cores is None or result.memory_limit_bytes is None:
        return None
    millicores = result.cpu_limit_millicores
    assert millicores is not None
    measured_seconds = settings.slo_trial_duration * len(result.trials)
    return Recommendation(
        status="ok",
        cpu_request_cores=millicores / 1000,
        cpu_request_millicores=millicores,
        cpu_floored=False,
        cpu_explanation=(
            f"{result.cpu_explanation} The CPU request equals the limit, so the "
            "service keeps the CPU it was tested with."
        ),
        memory_request_bytes=result.memory_limit_bytes,
        memory_limit_bytes=result.memory_limit_bytes,
        memory_floored=result.memory_limit_bytes == settings.memory_floor,
        memory_explanation=result.memory_explanation,
        estimate=False,
        estimate_reason=None,
        samples=len(result.trials),
        history_seconds=measured_seconds,
        policy=SizingPolicy(
            memory_margin_ratio=settings.margin,
            memory_floor_bytes=settings.memory_floor,
        ),
    )


def render_slo(outcome: SloOutcome, console: Console) -> None:
    """Print the trials, the limits found and how each was derived."""
    result = outcome.result
    table = Table(
        title=f"SLO search for {outcome.service.image}: {result.target.describe()}",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        collapse_padding=True,
    )
    percentile = f"p{result.target.latency_percentile:g}"

    for column in (
        "trial",
        "CPU\nlimit",
        "memory\nlimit",
        f"{percentile}\nms",
        "errors\n%",
        "req/s",
        "CPU\nused",
        "throttled\n%",
        "peak\nMiB",
        "SLO",
    ):
        table.add_column(column, justify="right", no_wrap=True)

    for trial in result.trials:
        measured = trial.measurement
        memory = trial.limits.memory_bytes
        table.add_row(
            f"{trial.index} {trial.purpose}",
            f"{trial.limits.cpu_cores * 1000:.0f}m",
            "none" if memory is None else f"{memory / MIB:.0f} MiB",
            _number(measured.latency_seconds, 1000, 1),
            f"{measured.error_ratio * 100:.2f}",
            f"{measured.completed_rate_per_second:.1f}",
            "-"
            if measured.cpu_used_cores is None
            else f"{measured.cpu_used_cores * 1000:.0f}m",
            _number(measured.throttled_period_ratio, 100, 0),
            _number(measured.peak_memory_bytes, 1 / MIB, 1),
            "pass" if trial.passed else "fail",
        )
    console.print(table)

    console.print(
        f"Per trial: {percentile} latency from the load's HDR histogram, timed "
        "from each request's intended send (corrected for coordinated omission); "
        "errors are failed and non-2xx/3xx requests; req/s are the successful "
        "responses per second; CPU used (mean), throttled share of CFS periods and "
        "peak working set come from the container's cgroup counters.",
        highlight=False,
    )
    if result.cpu_limit_cores is None:
        console.print(f"SLO not met: {result.cpu_explanation}", highlight=False)
        return

    memory_text = f"{(result.memory_limit_bytes or 0) / MIB:.0f} MiB"
    console.print(
        f"CPU request = limit: {result.cpu_limit_millicores}m. "
        f"{result.cpu_explanation}",
        highlight=False,
    )
    console.print(
        f"Memory request = limit: {memory_text}. {result.memory_explanation}",
        highlight=False,
    )
    for note in result.notes:
        console.print(f"Uncertain: {note}", highlight=False)
    if result.status == "unverified":
        console.print(
            "Unverified: the verification trial failed under these limits after "
            "its retries; see the last trials.",
            highlight=False,
        )


def _number(value: float | None, scale: float, digits: int) -> str:
    return "-" if value is None else f"{value * scale:.{digits}f}"


def check_outcome(outcome: SloOutcome) -> None:
    """Raise ThresholdFailed when the SLO was not met or not verified."""
    result = outcome.result
    if result.status == "slo_not_met":
        raise ThresholdFailed(result.cpu_explanation)
    if result.status == "unverified":
        raise ThresholdFailed(
            f"The SLO ({result.target.describe()}) did not hold in the verification "
            f"trial at CPU {result.cpu_limit_millicores}m and memory "
            f"{(result.memory_limit_bytes or 0) / MIB:.0f} MiB: "
            f"{result.trials[-1].reason}. Rerun with a longer --slo-trial-duration "
            "or a larger --slo-cpu-margin."
        )
