"""Rich terminal summaries of Hyperlane's JSON documents."""

from __future__ import annotations

from typing import Any

from rich import box
from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from hyperlane.report.image_findings import findings_table
from hyperlane.units import format_bytes, format_seconds

# Characters of a layer's history command shown in the table; report.json keeps all.
CREATED_BY_WIDTH = 20


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f} %"


def _short_command(created_by: str | None) -> str:
    """Drop the shell prefix that builders put before each history command."""
    text = " ".join((created_by or "").split())
    for prefix in ("/bin/sh -c #(nop) ", "/bin/sh -c "):
        text = text.removeprefix(prefix)
    if len(text) > CREATED_BY_WIDTH:
        text = text[: CREATED_BY_WIDTH - 1] + "…"
    return text


def _image_table(image: dict[str, Any], origin: str) -> Table:
    table = Table(
        title=f"Image layers (read from {origin})",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
    )
    for name in ("#", "size", "added", "modified", "removed", "hidden"):
        table.add_column(name, justify="right", no_wrap=True)
    table.add_column("created by", no_wrap=True)
    for layer in image.get("layers", []):
        table.add_row(
            str(layer["index"]),
            format_bytes(layer["size_bytes"]),
            str(layer["files_added"]),
            str(layer["files_modified"]),
            str(layer["files_removed"]),
            format_bytes(layer["hidden_bytes"]),
            _short_command(layer.get("created_by")),
        )
    return table


def _image_summary(image: dict[str, Any]) -> Text:
    total = format_bytes(image["total_size_bytes"])
    visible = format_bytes(image["visible_bytes"])
    return Text.from_markup(
        f"[bold]{image.get('reference')}[/]  total {total} (content bytes of all"
        f" layers), visible {visible}, hidden {format_bytes(image['hidden_bytes'])}"
        f" ({_percent(image['hidden_percent'])} of regular-file bytes: shipped in a"
        " layer but deleted or overwritten by a later one)"
    )


def _start_text(start: dict[str, Any]) -> Text:
    attempts = len(start["attempts"])
    return Text(
        f"Cold start (create → first 2xx on {start['path']}, {attempts} starts): "
        f"median {format_seconds(start['cold_start_median_seconds'])}, "
        f"min {format_seconds(start['cold_start_min_seconds'])}, "
        f"max {format_seconds(start['cold_start_max_seconds'])}"
    )


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _latency_rows(table: Table, latency: dict[str, Any], label: str) -> None:
    for name, key in (
        ("p50", "p50_seconds"),
        ("p90", "p90_seconds"),
        ("p99", "p99_seconds"),
        ("max", "max_seconds"),
    ):
        table.add_row(f"{label} {name}", format_seconds(latency.get(key)))


def _load_table(load: dict[str, Any]) -> Table:
    table = Table(
        title=f"Load: {load['model']} model, "
        f"{_plural(load['connections'], 'connection')}, "
        f"{load['duration_seconds']:.1f} s measured",
        title_justify="left",
        caption_justify="left",
    )
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_row("requests sent", f"{load['requests_sent']}")
    table.add_row("responses (any status)", f"{load['requests_total']}")
    for status_class, count in load["status_classes"].items():
        if count:
            table.add_row(f"  HTTP {status_class}", f"{count}")
    table.add_row("rate", f"{load['requests_per_second']:.0f} responses/s")
    target = load.get("target_rate_per_second")
    if target is not None:
        table.add_row("target rate (open model)", f"{target:g} requests/s")
        table.add_row(
            "sends late by over one interval", f"{load.get('late_sends_total') or 0}"
        )
        if load.get("requests_unsent") is not None:
            table.add_row("scheduled but never sent", f"{load['requests_unsent']}")
    errors = ", ".join(
        f"{kind} {count}" for kind, count in load["errors"].items() if count
    )
    table.add_row(
        "errors", f"{load['errors_total']}" + (f" ({errors})" if errors else "")
    )
    table.add_row("in flight at stop", f"{load['requests_in_flight_at_stop']}")
    table.add_row("connections opened", f"{load['connections_opened']}")
    if load["model"] == "open":
        _latency_rows(table, load["latency"], "latency from intended send")
        if load.get("latency_uncorrected"):
            _latency_rows(
                table, load["latency_uncorrected"], "latency from actual send"
            )
    else:
        _latency_rows(table, load["latency"], "latency")
    table.caption = "Latency percentiles: HDR histogram, 3 significant digits."
    return table


def _metrics_table(metrics: dict[str, Any]) -> Table:
    summary = metrics["summary"]
    samples = int(summary["samples"])
    duration = summary.get("duration_seconds") or 0.0
    spacing = (
        f", {duration / (samples - 1):.2f} s apart on average" if samples > 1 else ""
    )
    table = Table(
        title=f"Container during the load: {_plural(samples, 'sample')}"
        f"{spacing}, from {summary['source']}",
        title_justify="left",
    )
    table.add_column("figure")
    table.add_column("value", justify="right")

    def cores(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.3f} cores"

    table.add_row("CPU time", format_seconds(summary.get("cpu_seconds_total")))
    table.add_row("CPU used, mean", cores(summary.get("cpu_cores_mean")))
    table.add_row("CPU used, p95", cores(summary.get("cpu_cores_p95")))
    throttled = summary.get("cpu_throttled_periods")
    periods = summary.get("cpu_periods")
    table.add_row(
        "CFS periods throttled",
        "n/a (no CPU quota)" if periods in (None, 0) else f"{throttled} of {periods}",
    )
    table.add_row(
        "memory working set, max",
        format_bytes(summary.get("memory_working_set_max_bytes")),
    )
    table.add_row("network received", format_bytes(summary.get("network_rx_bytes")))
    table.add_row("network sent", format_bytes(summary.get("network_tx_bytes")))
    return table


def _sizing_text(sizing: dict[str, Any]) -> Text:
    if sizing["status"] != "ok":
        return Text(f"Sizing: not enough data. {sizing.get('cpu_explanation') or ''}")
    label = "Recommendation (ESTIMATE)" if sizing["estimate"] else "Recommendation"
    lines = [
        f"{label}: CPU request {sizing['cpu_request_millicores']}m"
        + (" (floored)" if sizing["cpu_floored"] else "")
        + f", memory {format_bytes(sizing['memory_limit_bytes'])}"
        + (" (floored)" if sizing["memory_floored"] else ""),
        f"  {sizing['cpu_explanation']}",
        f"  {sizing['memory_explanation']}",
    ]
    if sizing.get("estimate_reason"):
        lines.append(f"  Estimate: {sizing['estimate_reason']}")
    return Text("\n".join(lines))


def render_audit(document: dict[str, Any], console: Console) -> None:
    """Print the summary of an audit document."""
    engine = document["engine"]
    header = Text(
        f"Hyperlane audit on {engine['name']} {engine['version']} "
        f"(API {engine['api_version']}, {engine['base_url']})",
        style="bold",
    )
    image = document["image"]
    parts: list[Any] = [header, _image_summary(image)]
    if image.get("dive") is not None:
        parts.append(_dive_text(image["dive"]))
    console.print(Panel(Group(*parts), expand=False))
    console.print(_image_table(image, "the engine's export"))
    findings = findings_table(image)
    if findings is not None:
        console.print(findings)
    console.print(_start_text(document["start"]))
    console.print(_load_table(document["load"]))
    _print_warnings(document["load"], console)
    console.print(_metrics_table(document["metrics"]))
    console.print(_sizing_text(document["sizing"]))
    files = document.get("deploy", {}).get("files", [])
    if files:
        console.print("Deploy files: " + ", ".join(files))


def _dive_text(dive: dict[str, Any]) -> Text:
    user = dive.get("user_wasted_percent")
    user_text = "undefined (one layer)" if user is None else f"{user:.2f} %"
    return Text(
        f"dive-compatible (computed as dive 0.13 does): efficiency "
        f"{dive['efficiency'] * 100:.2f} %, wasted {format_bytes(dive['wasted_bytes'])}"
        f", user wasted {user_text}"
    )


def _print_gates(ci: dict[str, Any], console: Console) -> None:
    gates = ci.get("gates") or []
    if not gates:
        console.print("CI gates: none turned on")
        return
    verdict = "passed" if ci.get("passed") else "FAILED"
    console.print(f"CI gates ({len(gates)}): {verdict}")
    for gate in gates:
        console.print(
            "  " + gate["message"], style=None if gate["passed"] else "bold red"
        )


def render_image(document: dict[str, Any], console: Console) -> None:
    """Print the summary of an image analysis document."""
    image = document["image"]
    source = document.get("source") or {}
    if source.get("kind") == "engine":
        origin = "the engine's export"
    else:
        origin = f"{source.get('kind', 'archive')} {source.get('value', '')}".strip()
    console.print(_image_summary(image))
    dive = image.get("dive")
    if dive is not None:
        console.print(_dive_text(dive))
    console.print(_image_table(image, origin))
    findings = findings_table(image)
    if findings is not None:
        console.print(findings)
    if "ci" in document:
        _print_gates(document["ci"], console)


def _print_warnings(load: dict[str, Any], console: Console) -> None:
    for warning in load.get("warnings") or []:
        console.print(f"WARNING: {warning}", style="yellow")


def render_load(document: dict[str, Any], console: Console) -> None:
    """Print the summary of a load document."""
    console.print(_load_table(document["load"]))
    _print_warnings(document["load"], console)


def render_document(document: dict[str, Any], console: Console) -> None:
    """Print whichever kind of document this is."""
    kind = document.get("kind")
    if kind == "audit":
        render_audit(document, console)
    elif kind == "image":
        render_image(document, console)
    elif kind == "load":
        render_load(document, console)
    else:
        console.print_json(data=document)
