"""The ``hyperlane`` command: parse flags, call the library, render, set the exit code.

Library modules are imported inside each command, so ``hyperlane --help`` loads only
Typer and the settings models.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from hyperlane import __version__
from hyperlane.cli.options import (
    COMMON_PARAMETERS,
    settings_parameters,
    with_parameters,
)
from hyperlane.cli.running import (
    configure_logging,
    escape_surrogates_on_output,
    print_json,
    run_action,
    stdout_console,
)
from hyperlane.exitcodes import ExitCode

if TYPE_CHECKING:
    from hyperlane.report.outdir import StagedDirectory
    from hyperlane.settings import RightsizeSettings

logger = logging.getLogger("hyperlane")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"hyperlane {__version__}")
        raise typer.Exit()


def _main(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version."
    ),
) -> None:
    """Measure and right-size containerised deployments on real container engines."""


def _run(action: Callable[[], int], verbose: bool) -> None:
    """Run a command body and exit with the documented exit code of its outcome."""
    raise typer.Exit(run_action(action, verbose))


def _split(kwargs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    common_names = {parameter.name for parameter in COMMON_PARAMETERS}
    common = {key: kwargs.pop(key) for key in list(kwargs) if key in common_names}
    return common, kwargs


def _config_path(common: dict[str, Any]) -> Path | None:
    return Path(common["config"]) if common["config"] else None


def audit_command(**kwargs: Any) -> None:
    """Audit an image: layers, cold start, load, container metrics and sizing.

    With no IMAGE, builds and audits the bundled sample (a busybox httpd site). The
    report goes to --out: report.json, deploy/ and logs/.
    """
    common, flags = _split(kwargs)
    image = flags.pop("image")
    configure_logging(common["verbose"], common["quiet"])

    def action() -> int:
        from hyperlane.audit import run_audit
        from hyperlane.cli.progress import make_observer
        from hyperlane.errors import ThresholdFailed
        from hyperlane.report.terminal import render_audit
        from hyperlane.settings import AuditSettings, load_settings

        settings = load_settings(AuditSettings, flags, _config_path(common))
        with make_observer(quiet=common["quiet"]) as observer:
            outcome = run_audit(settings, image, observer)
        if common["json_output"]:
            print_json(outcome.document)
        else:
            render_audit(outcome.document, stdout_console())
            for outcome_of_threshold in outcome.document["thresholds"]:
                typer.echo(outcome_of_threshold["message"])
            typer.echo(f"Report: {outcome.out_dir / 'report.json'}")
        failed = [
            item["message"]
            for item in outcome.document["thresholds"]
            if not item["passed"]
        ]
        if failed:
            # The report is complete and kept; only the exit code marks the failure.
            raise ThresholdFailed(" ".join(failed))
        return int(ExitCode.SUCCESS)

    _run(action, common["verbose"])


def image_command(**kwargs: Any) -> None:
    """Analyse an image's layers: sizes, files added, modified, removed, hidden bytes.

    SOURCE is docker-archive:PATH, oci-archive:PATH, oci:DIR, engine:REF, a path
    (detected by content) or an image reference in the engine.
    """
    common, flags = _split(kwargs)
    source_text = flags.pop("source")
    configure_logging(common["verbose"], common["quiet"])

    def action() -> int:
        from hyperlane.cli.images import analyze_source
        from hyperlane.settings import ImageSettings, load_settings

        settings = load_settings(ImageSettings, flags, _config_path(common))
        document = analyze_source(source_text, settings)
        failed: list[str] = []
        if settings.ci:
            from hyperlane.images.gates import evaluate_image_gates

            gates = evaluate_image_gates(document["image"], settings)
            if not gates:
                logger.warning(
                    "--ci is set but every gate is off, so nothing was checked; set "
                    "a gate such as --max-hidden-bytes 50Mi"
                )
            failed = [gate.message for gate in gates if not gate.passed]
            document["ci"] = {
                "passed": not failed,
                "gates": [gate.to_dict() for gate in gates],
            }
        if common["json_output"]:
            print_json(document)
        else:
            # Rich and the renderers add about 25 ms, which --json does not need.
            from hyperlane.report.terminal import render_image

            render_image(document, stdout_console())
        if failed:
            from hyperlane.errors import ThresholdFailed

            # The analysis is printed in full; only the exit code marks the failure.
            raise ThresholdFailed("; ".join(failed))
        return int(ExitCode.SUCCESS)

    _run(action, common["verbose"])


def load_command(**kwargs: Any) -> None:
    """Send HTTP/1.1 load to URL and report rate, errors and latency percentiles."""
    common, flags = _split(kwargs)
    url = flags.pop("url")
    configure_logging(common["verbose"], common["quiet"])

    def action() -> int:
        from hyperlane.cli.progress import make_observer
        from hyperlane.errors import ServiceNotReady, ThresholdFailed
        from hyperlane.load.config import spec_from_settings, worker_count
        from hyperlane.load.hgrm import write_hgrm
        from hyperlane.load.scenario import evaluate_thresholds, load_scenario
        from hyperlane.load.spec import build_target
        from hyperlane.load.workers import run_load_workers
        from hyperlane.report.document import document_header
        from hyperlane.report.terminal import render_load
        from hyperlane.settings import LoadSettings, load_settings
        from hyperlane.urls import display_url

        settings = load_settings(LoadSettings, flags, _config_path(common))
        spec = spec_from_settings(settings, url)
        thresholds = (
            load_scenario(settings.scenario).thresholds
            if settings.scenario is not None
            else ()
        )
        workers = worker_count(settings, spec)
        # Checked here, so that an invalid URL fails before any progress line.
        build_target(spec)
        with make_observer(quiet=common["quiet"]) as observer:
            observer.stage(
                "load",
                f"sending load to {display_url(url)} from {workers} worker process(es)",
            )
            result = run_load_workers(spec, workers, progress=observer.load_progress)
        document = document_header("load")
        document["load"] = result.to_dict()
        document["workers"] = workers
        outcomes = evaluate_thresholds(thresholds, result)
        document["thresholds"] = [outcome.to_dict() for outcome in outcomes]
        if settings.hgrm is not None:
            write_hgrm(result.histogram, settings.hgrm)
        if common["json_output"]:
            print_json(document)
        else:
            render_load(document, stdout_console())
            for outcome in outcomes:
                typer.echo(outcome.message)
        failed = [outcome for outcome in outcomes if not outcome.passed]
        if failed:
            raise ThresholdFailed(" ".join(outcome.message for outcome in failed))
        if result.requests_total == 0:
            # The figures above are still printed, since they show what failed.
            raise ServiceNotReady(
                f"no request to {url} completed ({result.errors_total} errors); "
                "check that the server is listening and the URL is right"
            )
        return int(ExitCode.SUCCESS)

    _run(action, common["verbose"])


def merge_command(
    results: list[str] = typer.Argument(
        ..., help="Two or more `hyperlane load --json` result files."
    ),
    json_output: bool = typer.Option(
        False, "--json", help="Print one JSON document on stdout instead of a table."
    ),
    hgrm: str | None = typer.Option(
        None,
        "--hgrm",
        help="Also write the merged latency percentile distribution to this .hgrm "
        "file (milliseconds).",
    ),
) -> None:
    """Merge load results from several processes or machines, exactly.

    Counters add up and HDR histograms add bucket by bucket, so the percentiles are
    those of one histogram of every latency.
    """
    configure_logging(False, True)

    def action() -> int:
        import json

        from hyperlane.errors import UsageError
        from hyperlane.load.hgrm import write_hgrm
        from hyperlane.load.merge import merge_results
        from hyperlane.report.document import document_header
        from hyperlane.report.terminal import render_load

        if len(results) < 2:
            raise UsageError(
                f"merge needs at least two result files, got {len(results)}; pass "
                "the --json output of several `hyperlane load` runs"
            )
        documents = []
        for name in results:
            try:
                documents.append(json.loads(Path(name).read_text(encoding="utf-8")))
            except FileNotFoundError:
                raise UsageError(f"result file {name!r} not found") from None
            except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
                raise UsageError(
                    f"result file {name!r} is not valid JSON: {error}"
                ) from None
        for later, document_b in enumerate(documents):
            for earlier in range(later):
                if documents[earlier] == document_b:
                    raise UsageError(
                        f"result files {results[earlier]!r} and {results[later]!r} "
                        "hold the same run, which would count each of its requests "
                        "twice; pass each run's result once"
                    )
        merged = merge_results(documents, sources=results)
        document = document_header("load")
        document["load"] = merged.to_dict()
        document["merged_from"] = list(results)
        if hgrm is not None:
            write_hgrm(merged.histogram, Path(hgrm))
        if json_output:
            print_json(document)
        else:
            render_load(document, stdout_console())
        return int(ExitCode.SUCCESS)

    _run(action, False)


def report_command(
    file: str = typer.Argument(..., help="A Hyperlane JSON document."),
) -> None:
    """Print the terminal summary of a report.json (or any Hyperlane JSON document)."""
    configure_logging(False, True)

    def action() -> int:
        from hyperlane.report.document import read_document
        from hyperlane.report.terminal import render_document

        path = Path(file)
        document = read_document(path)
        try:
            render_document(document, stdout_console())
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            from hyperlane.errors import UsageError

            raise UsageError(
                f"{file!r} is not a complete Hyperlane {document.get('kind')} "
                f"document: field {error} is missing or has the wrong type; "
                "regenerate it with this version of Hyperlane"
            ) from None
        return int(ExitCode.SUCCESS)

    _run(action, False)


def top_command(**kwargs: Any) -> None:
    """Show CPU, memory, network, block I/O and pids of running containers, live.

    Refreshes every --interval. Keys c, m, n, t and i sort by CPU, memory, name,
    network and block I/O, and q quits. --once --json prints one JSON document.
    """
    common, flags = _split(kwargs)
    configure_logging(common["verbose"], common["quiet"])

    def action() -> int:
        from hyperlane.cli.top import run_top_command
        from hyperlane.settings import TopSettings, load_settings

        settings = load_settings(TopSettings, flags, _config_path(common))
        return run_top_command(settings, common["json_output"])

    _run(action, common["verbose"])


def monitor_command(**kwargs: Any) -> None:
    """Export running containers' metrics to Prometheus and record them to a file.

    Samples every --interval. --listen serves /metrics with cAdvisor's names, and
    --record streams the samples to a file for later sizing. Runs until
    --duration ends or Ctrl-C (SIGINT) or SIGTERM, which close the recording.
    """
    common, flags = _split(kwargs)
    configure_logging(common["verbose"], common["quiet"])

    def action() -> int:
        from hyperlane.cli.monitor import run_monitor_command
        from hyperlane.settings import MonitorSettings, load_settings

        settings = load_settings(MonitorSettings, flags, _config_path(common))
        return run_monitor_command(settings, common["json_output"], common["quiet"])

    _run(action, common["verbose"])


def _rightsize_output(out: Path | None, inputs: list[Path]) -> StagedDirectory | None:
    """Return the staged --out directory, checked before any work, or None."""
    from hyperlane.report.outdir import StagedDirectory, check_output

    if out is None:
        return None
    check_output(out, inputs)
    return StagedDirectory(out)


def _finish_rightsize(
    staged: StagedDirectory | None, document: dict[str, Any], common: dict[str, Any]
) -> None:
    """Write report.json into the staged --out and commit it, then print."""
    from hyperlane.report.document import dumps, write_text_atomically
    from hyperlane.report.outdir import REPORT_FILE_NAME

    if staged is not None:
        write_text_atomically(staged.path / REPORT_FILE_NAME, dumps(document))
        out_dir = staged.commit()
        logger.info("wrote %s and its deploy/ files", out_dir / REPORT_FILE_NAME)
    if common["json_output"]:
        print_json(document)


def _rightsize_slo(
    inputs: list[Path], settings: RightsizeSettings, common: dict[str, Any]
) -> int:
    from hyperlane.cli.progress import make_observer
    from hyperlane.cli.slo import (
        check_outcome,
        render_slo,
        run_slo_search,
        write_slo_deploy_files,
    )
    from hyperlane.report.document import document_header

    staged = _rightsize_output(settings.out, inputs)
    with staged if staged is not None else contextlib.nullcontext():
        with make_observer(quiet=common["quiet"]) as observer:
            outcome = run_slo_search(inputs, settings, observer)
        document = document_header("rightsize")
        document["strategy"] = settings.strategy
        # A search that found no limits writes nothing, so --out stays as it was.
        kept = staged if outcome.recommendation is not None else None
        if kept is not None:
            outcome.deploy_files = write_slo_deploy_files(outcome, kept.path / "deploy")
        document.update(outcome.to_dict())
        _finish_rightsize(kept, document, common)
    if not common["json_output"]:
        render_slo(outcome, stdout_console())
        if kept is not None:
            typer.echo(f"Report: {kept.target / 'report.json'}")
    check_outcome(outcome)
    return int(ExitCode.SUCCESS)


def rightsize_command(**kwargs: Any) -> None:
    """Recommend CPU and memory per container from recorded samples.

    INPUT is an audit report directory, its report.json, or a recording (.jsonl or
    .jsonl.zst) that `hyperlane monitor --record` wrote. With --prometheus URL and no
    INPUT, the containers come from a Prometheus server's cAdvisor series. With
    --strategy slo, the image (--image, or the audit's) runs under candidate limits
    instead. Also reports CFS throttling and runtime settings (GOMAXPROCS, -Xmx,
    workers) that clash. --out writes report.json and deploy/.
    """
    common, flags = _split(kwargs)
    inputs = flags.pop("inputs")
    configure_logging(common["verbose"], common["quiet"])

    def action() -> int:
        from hyperlane.cli.rightsize import (
            render_results,
            rightsize,
            write_results_deploy_files,
        )
        from hyperlane.report.document import document_header
        from hyperlane.settings import RightsizeSettings, load_settings

        settings = load_settings(RightsizeSettings, flags, _config_path(common))
        paths = [Path(item) for item in inputs or []]
        if settings.strategy == "slo":
            return _rightsize_slo(paths, settings, common)
        _check_rightsize_sources(inputs, settings.prometheus)
        staged = _rightsize_output(settings.out, paths)
        with staged if staged is not None else contextlib.nullcontext():
            results = rightsize(paths, settings)
            if staged is not None:
                results = write_results_deploy_files(results, staged.path / "deploy")
            document = document_header("rightsize")
            document["strategy"] = settings.strategy
            document["containers"] = [result.to_dict() for result in results]
            _finish_rightsize(staged, document, common)
        if not common["json_output"]:
            render_results(results, stdout_console())
            if staged is not None:
                typer.echo(f"Report: {staged.target / 'report.json'}")
        return int(ExitCode.SUCCESS)

    _run(action, common["verbose"])


def _check_rightsize_sources(inputs: list[str] | None, prometheus: str | None) -> None:
    """Raise UsageError unless exactly one of INPUT and --prometheus is given."""
    from hyperlane.errors import UsageError

    if inputs and prometheus is not None:
        raise UsageError(
            "rightsize reads either INPUT files or --prometheus, not both: drop the "
            "INPUT arguments or the --prometheus flag."
        )
    if not inputs and prometheus is None:
        raise UsageError(
            "rightsize needs INPUT files or --prometheus URL: pass an audit "
            "directory, a report.json or a recording, or a Prometheus base URL."
        )


def _argument(name: str, annotation: Any, default: Any, help_text: str) -> Any:
    import inspect

    return inspect.Parameter(
        name,
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
        default=typer.Argument(
            default, help=help_text, show_default=False, metavar=name.upper()
        ),
        annotation=annotation,
    )


# The commands in the order that `hyperlane --help` lists them.
_COMMAND_NAMES = (
    "audit",
    "image",
    "load",
    "merge",
    "report",
    "top",
    "monitor",
    "rightsize",
)


def _command_function(name: str) -> Callable[..., Any]:
    """Return the function of command NAME, with the signature that Typer reads."""
    # Imported here because the settings models bring in pydantic and
    # pydantic-settings, which run() imports with the collector paused.
    from hyperlane import settings

    if name == "audit":
        return with_parameters(
            audit_command,
            [
                _argument(
                    "image",
                    str | None,
                    None,
                    "Image reference in the engine (default: the bundled sample).",
                ),
                *settings_parameters(settings.AuditSettings),
                *COMMON_PARAMETERS,
            ],
        )
    if name == "image":
        return with_parameters(
            image_command,
            [
                _argument("source", str, ..., "Image archive, directory or reference."),
                *settings_parameters(settings.ImageSettings),
                *COMMON_PARAMETERS,
            ],
        )
    if name == "load":
        return with_parameters(
            load_command,
            [
                _argument("url", str, ..., "Target URL, e.g. http://127.0.0.1:8080/."),
                *settings_parameters(settings.LoadSettings),
                *COMMON_PARAMETERS,
            ],
        )
    if name == "merge":
        return merge_command
    if name == "report":
        return report_command
    if name == "top":
        return with_parameters(
            top_command,
            [*settings_parameters(settings.TopSettings), *COMMON_PARAMETERS],
        )
    if name == "monitor":
        return with_parameters(
            monitor_command,
            [*settings_parameters(settings.MonitorSettings), *COMMON_PARAMETERS],
        )
    if name == "rightsize":
        return with_parameters(
            rightsize_command,
            [
                _argument(
                    "inputs",
                    list[str] | None,
                    None,
                    "Audit report directories, report.json files or recordings (none "
                    "with --prometheus).",
                ),
                *settings_parameters(settings.RightsizeSettings),
                *COMMON_PARAMETERS,
            ],
        )
    raise ValueError(f"unknown command {name!r}; expected one of {_COMMAND_NAMES}")


def _build_app(names: Sequence[str]) -> typer.Typer:
    """Return the Typer app with the commands NAMES, in the order given."""
    application = typer.Typer(
        name="hyperlane",
        help="Measure and right-size containerised deployments on real container "
        "engines.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
        # Plain help wraps long option names, where Rich's panels cut them at 80
        # columns.
        rich_markup_mode=None,
    )
    application.callback()(_main)
    for name in names:
        application.command(name)(_command_function(name))
    return application


def __getattr__(name: str) -> typer.Typer:
    """Build ``app``, the Typer app with every command, on first access (PEP 562).

    run() does not use it, because it builds only the command that it runs.
    """
    if name != "app":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    application = _build_app(_COMMAND_NAMES)
    globals()["app"] = application
    return application


def run() -> None:
    """Entry point of the ``hyperlane`` script."""
    # Typer builds a Click command for every registered command before it parses
    # the arguments. The group's only options are flags, so a first argument that
    # names a command selects it, and only that command is registered. For
    # `image`, that took 1.2 ms instead of 7.2 ms (medians of five runs).
    requested = sys.argv[1] if len(sys.argv) > 1 else ""
    names = (requested,) if requested in _COMMAND_NAMES else _COMMAND_NAMES
    # The settings models import pydantic and pydantic-settings, whose objects
    # live until exit. Importing them with the collector paused, then freezing,
    # saves about 50 young collections (5.5 ms by gc.callbacks timings), which
    # re-enabling without a freeze would only postpone. Freezing also keeps the
    # full collection at interpreter exit from walking these objects, which saved
    # 32 ms of 0.229 s in a process that imported the CLI and the image modules
    # (medians, docs/benchmarks.md).
    collector_enabled = gc.isenabled()
    gc.disable()
    try:
        application = _build_app(names)
    finally:
        gc.freeze()
        if collector_enabled:
            gc.enable()
    escape_surrogates_on_output()
    application()
