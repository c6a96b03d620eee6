"""The audit: image, cold start, load, monitor, size and report for one image.

Each stage lives in its own subpackage, and this module runs them in order. It tracks
every container it starts, so that all are removed on any exit path, and it writes the
report directory only when every stage has finished.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import docker.errors
from docker.models.containers import Container
from docker.models.images import Image

from hyperlane.engines import Engine, connect
from hyperlane.errors import ServiceNotReady, UsageError
from hyperlane.images import ImageAnalysis, analyze_archive, parse_source
from hyperlane.images.config import first_tcp_port
from hyperlane.load import LoadProgress, LoadResult
from hyperlane.load.config import spec_from_settings, worker_count
from hyperlane.load.hgrm import write_hgrm
from hyperlane.load.scenario import evaluate_thresholds, load_scenario
from hyperlane.load.workers import run_load_workers
from hyperlane.metrics import MetricsSeries, Sampler, open_reader
from hyperlane.metrics.recording import RecordingWriter
from hyperlane.probes import StartResult, measure_cold_starts, wait_until_ready
from hyperlane.report.deploy import write_deploy_files
from hyperlane.report.document import document_header, dumps, write_text_atomically
from hyperlane.report.outdir import (
    HGRM_FILE_NAME,
    RECORDING_FILE_NAME,
    REPORT_FILE_NAME,
    StagedDirectory,
)
from hyperlane.settings import AuditSettings
from hyperlane.sizing import Recommendation, SizingPolicy, recommend

logger = logging.getLogger(__name__)

SAMPLE_DIRECTORY = Path(__file__).parent / "samples" / "static-site"
SAMPLE_TAG = "localhost/hyperlane-sample:latest"
SAMPLE_CONTAINERFILE = "Containerfile"
BUSYBOX_PATH = Path("/bin/busybox")


class AuditObserver(Protocol):
    """Receives progress of a running audit, for a terminal display or logs."""

    def stage(self, name: str, description: str) -> None: ...

    def export_progress(self, written_bytes: int) -> None: ...

    def load_progress(self, progress: LoadProgress) -> None: ...


class SilentObserver:
    """An observer that ignores every event."""

    def stage(self, name: str, description: str) -> None:
        return None

    def export_progress(self, written_bytes: int) -> None:
        return None

    def load_progress(self, progress: LoadProgress) -> None:
        return None


@dataclass
class AuditOutcome:
    """Result of an audit: the report document and the files written beside it."""

    document: dict[str, Any]
    out_dir: Path
    files: list[Path] = field(default_factory=list)


class _ContainerTracker:
    """Remembers every container an audit created, to remove them all at the end."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._containers: list[Container] = []

    def track(self, container: Container) -> None:
        self._containers.append(container)

    def remove_all(self) -> None:
        for container in self._containers:
            self._engine.remove_container(container)
        self._containers.clear()


def _sample_image(engine: Engine) -> Image:
    if not BUSYBOX_PATH.exists():
        raise UsageError(
            f"{BUSYBOX_PATH} is missing, and the bundled sample needs it; install "
            "Debian's busybox-static (scripts/setup.sh does) or pass an IMAGE"
        )
    return engine.build(
        SAMPLE_DIRECTORY,
        SAMPLE_CONTAINERFILE,
        SAMPLE_TAG,
        extra_files={"busybox": BUSYBOX_PATH},
    )


def _resolve_image(engine: Engine, reference: str | None) -> tuple[Image, str]:
    if reference is None:
        return _sample_image(engine), SAMPLE_TAG
    source = parse_source(reference)
    if source.kind != "engine":
        raise UsageError(
            f"audit runs images from the engine, and {reference!r} is a "
            f"{source.kind} source; load it into the engine first (docker load or "
            "podman load), then pass its reference; `hyperlane image` analyses "
            "archives without an engine"
        )
    return engine.get_image(source.value), source.value


def _container_port(settings: AuditSettings, analysis: ImageAnalysis) -> int:
    if settings.port is not None:
        return settings.port
    port = first_tcp_port(analysis.config.exposed_ports)
    if port is not None:
        return port
    raise UsageError(
        f"image {analysis.reference or analysis.image_id!r} exposes no TCP port; pass "
        "--port with the port the service listens on inside the container"
    )


def _run_load_stage(
    engine: Engine,
    image_ref: str,
    container_port: int,
    settings: AuditSettings,
    name_prefix: str,
    tracker: _ContainerTracker,
    observer: AuditObserver,
    log_path: Path,
) -> tuple[LoadResult, MetricsSeries, dict[str, Any]]:
    """Run the load against a fresh container while sampling it.

    The container's own log is streamed to ``log_path``, because a long load makes it
    too large to hold in memory.
    """
    container = engine.create_container(
        image_ref, container_port, name=f"{name_prefix}-load"
    )
    tracker.track(container)
    engine.start_container(container)
    readiness_probes = wait_until_ready(
        engine,
        container,
        container_port,
        settings.path,
        time.monotonic() + settings.start_timeout,
    )
    host_port = engine.host_port(container, container_port)
    pid = engine.container_pid(container)
    reader = open_reader(
        settings.metrics_source, container, pid, local=engine.info.local
    )
    sampler = Sampler(reader, interval_seconds=settings.sample_interval)
    spec = spec_from_settings(settings, f"http://127.0.0.1:{host_port}{settings.path}")
    workers = worker_count(settings, spec)
    sampler.start()
    try:
        result = run_load_workers(spec, workers, progress=observer.load_progress)
    finally:
        series = sampler.stop()
    try:
        container.reload()
    except docker.errors.NotFound:
        raise ServiceNotReady(
            f"container {container.name} was removed during the load, so the run "
            "has no result; keep other tools from removing Hyperlane's containers "
            "and audit again"
        ) from None
    state = container.attrs["State"]
    if not state.get("Running"):
        raise ServiceNotReady(
            f"container {container.name} stopped during the load (exit code "
            f"{state.get('ExitCode')}, OOM killed: {bool(state.get('OOMKilled'))}); "
            "check its logs, or lower --connections"
        )
    if result.requests_total == 0:
        errors = ", ".join(
            f"{kind} {count}" for kind, count in result.errors.items() if count
        )
        raise ServiceNotReady(
            f"no request to {spec.url} completed during the load "
            f"({result.requests_sent} sent; errors: {errors or 'none'}), so there is "
            "nothing to size from; check --path, --timeout and the container's logs"
        )

    log_bytes = engine.write_logs(container, log_path)
    container_info = {
        "id": container.id,
        "image": image_ref,
        "name": container.name,
        "host_port": host_port,
        "readiness_probes": readiness_probes,
        "running_after_load": bool(state.get("Running")),
        "exit_code": state.get("ExitCode"),
        "oom_killed": bool(state.get("OOMKilled")),
        "log_file": f"logs/{log_path.name}",
        "log_bytes": log_bytes,
    }
    return result, series, container_info


def _write_recording(
    path: Path,
    engine: Engine,
    container_info: dict[str, Any],
    series: MetricsSeries,
) -> None:
    """Write the load stage's samples as a recording that later commands can read."""
    with RecordingWriter(
        path, engine.info.to_dict(), series.interval_seconds
    ) as recording:
        for sample in series.samples:
            recording.write_sample(
                container_info["id"],
                container_info["name"],
                container_info["image"],
                series.source,
                sample,
            )


def _size(series: MetricsSeries, settings: AuditSettings) -> Recommendation:
    working_sets = [
        sample.memory_working_set_bytes
        for sample in series.samples
        if sample.memory_working_set_bytes is not None
    ]
    memory_measure = "working set"
    if not working_sets:
        # Podman's stats API reports total usage but no working set. Usage includes
        # reclaimable page cache, so sizing from it errs on the generous side.
        working_sets = [
            sample.memory_usage_bytes
            for sample in series.samples
            if sample.memory_usage_bytes is not None
        ]
        memory_measure = "memory usage (page cache included; no working set)"
    summary = series.summary()
    policy = SizingPolicy(
        cpu_floor_cores=settings.cpu_floor, memory_floor_bytes=settings.memory_floor
    )
    return recommend(
        series.cpu_cores(),
        working_sets,
        history_seconds=summary.duration_seconds or 0.0,
        policy=policy,
        memory_measure=memory_measure,
    )


def run_audit(
    settings: AuditSettings,
    image_reference: str | None = None,
    observer: AuditObserver | None = None,
    engine_factory: Callable[[str], Engine] = connect,
) -> AuditOutcome:
    """Audit one image (the bundled sample when ``image_reference`` is None).

    Raises the errors of hyperlane.errors; on any exit the containers it started are
    removed and no report directory that looks complete is left behind.
    """
    observer = observer or SilentObserver()
    # Checked before any work, so an unsupported load option fails at once.
    spec_from_settings(settings, "http://127.0.0.1/")
    staged = StagedDirectory(settings.out)
    with staged:
        observer.stage("engine", f"connecting to the {settings.engine} engine")
        engine = engine_factory(settings.engine)
        engine.remove_orphans()
        tracker = _ContainerTracker(engine)
        try:
            outcome = _audit_stages(
                engine, settings, image_reference, observer, tracker, staged.path
            )
        finally:
            tracker.remove_all()
            engine.close()
        observer.stage("report", f"writing {settings.out}")
        relative_files = [path.relative_to(staged.path) for path in outcome.files]
        if settings.hgrm is not None:
            shutil.copyfile(staged.path / HGRM_FILE_NAME, settings.hgrm)
        outcome.out_dir = staged.commit()
        outcome.files = [outcome.out_dir / path for path in relative_files]
        return outcome


def _audit_stages(
    engine: Engine,
    settings: AuditSettings,
    image_reference: str | None,
    observer: AuditObserver,
    tracker: _ContainerTracker,
    staging: Path,
) -> AuditOutcome:
    name_prefix = f"hyperlane-audit-{uuid.uuid4().hex[:8]}"

    observer.stage(
        "image",
        "building the bundled sample"
        if image_reference is None
        else f"looking up {image_reference}",
    )
    image, image_ref = _resolve_image(engine, image_reference)
    observer.stage("image", f"exporting {image_ref} through the engine API")
    with tempfile.TemporaryDirectory(prefix="hyperlane-export-") as export_dir:
        archive = engine.export_image(
            image, Path(export_dir) / "image.tar", observer.export_progress
        )
        observer.stage("image", "reading the layers")
        analysis = analyze_archive(archive, kind="docker-archive")
    container_port = _container_port(settings, analysis)

    observer.stage("start", f"measuring {settings.starts} cold starts")
    starts: StartResult = measure_cold_starts(
        engine,
        image_ref,
        container_port,
        settings.path,
        settings.starts,
        settings.start_timeout,
        name_prefix,
        tracker.track,
    )

    observer.stage(
        "load",
        f"{settings.connections} connections for "
        f"{settings.duration:g} s while sampling the container's cgroup",
    )
    logs_dir = staging / "logs"
    logs_dir.mkdir()
    load, series, container_info = _run_load_stage(
        engine,
        image_ref,
        container_port,
        settings,
        name_prefix,
        tracker,
        observer,
        logs_dir / "load-container.log",
    )

    observer.stage("size", "computing the CPU and memory recommendation")
    recommendation = _size(series, settings)

    document = document_header("audit")
    document.update(
        {
            "engine": engine.info.to_dict(),
            "image": {
                **analysis.to_dict(),
                "reference": image_ref,
                "engine_size_bytes": image.attrs.get("Size"),
            },
            "start": starts.to_dict(),
            "load": load.to_dict(),
            "metrics": {
                "summary": series.summary().to_dict(),
                "samples": [asdict(sample) for sample in series.samples],
            },
            "sizing": recommendation.to_dict(),
            "container": container_info,
            "settings": settings.model_dump(mode="json"),
        }
    )

    thresholds = (
        load_scenario(settings.scenario).thresholds
        if settings.scenario is not None
        else ()
    )
    document["thresholds"] = [
        outcome.to_dict() for outcome in evaluate_thresholds(thresholds, load)
    ]

    files: list[Path] = []
    write_hgrm(load.histogram, staging / HGRM_FILE_NAME)
    files.append(staging / HGRM_FILE_NAME)
    _write_recording(staging / RECORDING_FILE_NAME, engine, container_info, series)
    files.append(staging / RECORDING_FILE_NAME)
    deploy_files: list[Path] = []
    if recommendation.status == "ok":
        deploy_files = write_deploy_files(
            staging / "deploy",
            image_ref,
            container_port,
            recommendation,
            probe_path=settings.path,
        )
    document["deploy"] = {
        "files": [f"deploy/{path.name}" for path in deploy_files],
    }
    write_text_atomically(staging / REPORT_FILE_NAME, dumps(document))
    files.append(staging / REPORT_FILE_NAME)
    files.extend(deploy_files)
    return AuditOutcome(document=document, out_dir=staging, files=files)
