#!/usr/bin/env python3
"""Compare Hyperlane's HTTP load generator with wrk and Locust in requests per
CPU-second of the generator.

One run starts nginx with a private configuration on a free 127.0.0.1 port. Then
wrk (one thread), Hyperlane (``run_load``, closed model) and Locust (FastHttpUser,
headless) load the same small static file, with the same number of connections and
the same duration. Each generator runs ``--repeats`` times, interleaved, and the
medians are printed. The server can be the bottleneck, so the
figure to compare is requests per CPU-second of the generator process, not
requests per second.

Run it from the repository root with the project's interpreter:

    .venv/bin/python bench/load_vs_wrk.py --connections 32 --duration 5 --repeats 3

wrk and nginx come from Debian's ``wrk`` and ``nginx-light`` packages. Locust is
looked up in ``bench/.venv-locust`` and skipped if it is missing. ``--profile DIR``
adds three Hyperlane runs under py-spy and prints the hottest functions.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import grp
import json
import os
import platform
import pwd
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from benchlib import (
    ProcessGroup,
    cleanup_on_exit,
    first_line,
    positive_integer,
    print_table,
    signal_group,
)

BENCH_DIR = Path(__file__).resolve().parent
DEFAULT_LOCUST = BENCH_DIR / ".venv-locust" / "bin" / "locust"
DEFAULT_PY_SPY = BENCH_DIR / ".venv-locust" / "bin" / "py-spy"
STATIC_FILE_NAME = "small.html"
STATUS_PATH = "/nginx-status"
# 256 bytes, small enough that the per-request work outweighs copying the body.
STATIC_FILE_BYTES = (
    b"<!doctype html><title>hyperlane bench</title>" + b"x" * 210 + b"\n"
)
# Time a generator may take beyond --duration to start up and report before it is
# killed. Locust needs the most, because it imports gevent and spawns its users.
CHILD_GRACE_SECONDS = 30.0
NGINX_START_TIMEOUT_SECONDS = 10.0
POLL_SECONDS = 0.02
CLOCK_TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")

LOCUSTFILE = '''\
"""Locust user for bench/load_vs_wrk.py: one GET per task, no wait time."""

import json
import os
import resource

from locust import FastHttpUser, constant, events, task

_start = []


def _cpu_seconds():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@events.test_start.add_listener
def _on_start(environment, **kwargs):
    _start.append(_cpu_seconds())


@events.test_stop.add_listener
def _on_stop(environment, **kwargs):
    if not _start:
        return
    path = os.environ["BENCH_LOCUST_CPU_FILE"]
    with open(path, "w") as file:
        json.dump({"run_cpu_seconds": _cpu_seconds() - _start[0]}, file)


class StaticFileUser(FastHttpUser):
    wait_time = constant(0)

    @task
    def get_file(self):
        self.client.get(os.environ["BENCH_PATH"])
'''


# Results.


@dataclass(frozen=True)
class ChildUsage:
    """Outcome of one generator process."""

    returncode: int
    stdout: str
    stderr: str
    cpu_seconds: float
    """User plus system CPU time of the process and the children it waited for."""
    system_seconds: float
    """The system (kernel) part of cpu_seconds."""
    wall_seconds: float
    """Time from starting the process until it exited."""
    timed_out: bool


@dataclass(frozen=True)
class Measurement:
    """One run of one generator."""

    generator: str
    repeat: int
    requests_total: int
    """Completed requests, as the generator itself reports them."""
    errors_total: int
    """Failed requests or socket errors, as the generator reports them."""
    duration_seconds: float
    """Load phase duration as the generator reports it."""
    cpu_seconds: float
    """CPU time of the whole generator process, start-up included."""
    system_seconds: float
    """The system (kernel) part of cpu_seconds, which includes the loopback TCP
    processing that the generator's own send calls perform."""
    run_cpu_seconds: float | None
    """CPU time of the load phase only, measured inside the process, or None for wrk,
    whose start-up is negligible."""
    server_cpu_seconds: float
    """CPU time of the nginx worker during this run."""
    server_requests_total: int
    """Requests nginx handled during this run, from its stub_status counter. It can
    exceed requests_total by one request per connection, for the requests still in
    flight when the generator stopped."""
    load_average_1m: float
    """Machine's 1-minute load average just before this run."""
    source: str | None
    """File of the Hyperlane runner module that ran, None for other generators."""

    @property
    def requests_per_second(self) -> float:
        return self.requests_total / self.duration_seconds

    @property
    def requests_per_cpu_second(self) -> float:
        return self.requests_total / self.cpu_seconds

    @property
    def requests_per_run_cpu_second(self) -> float:
        cpu_seconds = self.cpu_seconds
        if self.run_cpu_seconds is not None:
            cpu_seconds = self.run_cpu_seconds
        return self.requests_total / cpu_seconds


class GeneratorFailed(Exception):
    """A generator exited with an error or printed no usable result."""


# Child processes and clean-up.


def run_child(
    processes: ProcessGroup,
    argv: Sequence[str],
    timeout_seconds: float,
    env: dict[str, str] | None = None,
) -> ChildUsage:
    """Run ``argv`` to completion and return its output and CPU time.

    The CPU time comes from wait4, so it covers the process and every descendant it
    waited for, and never the server. A process still running after
    ``timeout_seconds`` is killed with its group.
    """
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.monotonic()
        process = processes.start(argv, stdout=out, stderr=err, env=env)
        deadline = started + timeout_seconds
        timed_out = False
        while True:
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid != 0:
                break
            if time.monotonic() >= deadline:
                timed_out = True
                signal_group(process, signal.SIGKILL)
                pid, status, usage = os.wait4(process.pid, 0)
                break
            time.sleep(POLL_SECONDS)
        wall_seconds = time.monotonic() - started
        # wait4 reaped the child, so Popen must not wait for it again.
        process.returncode = os.waitstatus_to_exitcode(status)
        signal_group(process, signal.SIGKILL)
        out.seek(0)
        err.seek(0)
        return ChildUsage(
            returncode=process.returncode,
            stdout=out.read().decode(errors="replace"),
            stderr=err.read().decode(errors="replace"),
            cpu_seconds=usage.ru_utime + usage.ru_stime,
            system_seconds=usage.ru_stime,
            wall_seconds=wall_seconds,
            timed_out=timed_out,
        )


def _check_child(name: str, usage: ChildUsage) -> None:
    if usage.timed_out:
        raise GeneratorFailed(
            f"{name} timed out after {usage.wall_seconds:.1f} s and was killed. "
            f"Its stderr ends with: {usage.stderr[-2000:]!r}"
        )
    if usage.returncode != 0:
        raise GeneratorFailed(
            f"{name} failed with exit code {usage.returncode}. "
            f"Its stderr ends with: {usage.stderr[-2000:]!r}"
        )


# CPU pinning.


@dataclass(frozen=True)
class Pinning:
    """CPUs for the server and for the generators, or empty tuples for no pinning."""

    server_cpus: tuple[int, ...]
    generator_cpus: tuple[int, ...]
    note: str
    """One-line description of the pinning, or of the reason for none."""

    def prefix(self, cpus: tuple[int, ...]) -> list[str]:
        if not cpus:
            return []
        return ["taskset", "-c", ",".join(str(cpu) for cpu in cpus)]


def choose_pinning(enabled: bool) -> Pinning:
    """Put nginx on the last allowed CPU and the generators on the others."""
    allowed = tuple(sorted(os.sched_getaffinity(0)))
    if not enabled:
        return Pinning((), (), "no pinning (--no-pin)")
    if shutil.which("taskset") is None:
        return Pinning((), (), "no pinning: taskset not found")
    if len(allowed) < 2:
        return Pinning((), (), f"no pinning: only CPU {allowed} is allowed")
    server = (allowed[-1],)
    generators = allowed[:-1]
    return Pinning(
        server,
        generators,
        f"nginx pinned to CPU {server[0]}, generators to CPU "
        f"{','.join(str(cpu) for cpu in generators)} (taskset -c)",
    )


# nginx.


def free_port() -> int:
    """Return a TCP port that is free on 127.0.0.1 at the time of the call."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def write_nginx_config(directory: Path, port: int) -> Path:
    """Write a one-worker nginx configuration that serves one static file."""
    www = directory / "www"
    www.mkdir()
    (www / STATIC_FILE_NAME).write_bytes(STATIC_FILE_BYTES)
    user_line = ""
    if os.geteuid() == 0:
        # A root master drops the worker to an unprivileged user, which must be
        # able to read the document root.
        nobody = pwd.getpwnam("nobody")
        group = grp.getgrgid(nobody.pw_gid).gr_name
        user_line = f"user nobody {group};"
        for path in (directory, www):
            path.chmod(0o755)
        (www / STATIC_FILE_NAME).chmod(0o644)
    temp_paths = "\n".join(
        f"    {kind}_temp_path {directory / ('temp-' + kind)};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    config = f"""\
# Written by bench/load_vs_wrk.py for one benchmark run.
{user_line}
worker_processes 1;
daemon off;
pid {directory / "nginx.pid"};
error_log {directory / "error.log"} warn;

events {{
    worker_connections 4096;
}}

http {{
    access_log off;
    sendfile on;
    tcp_nodelay on;
    keepalive_timeout 65s;
    # The default of 1000 would make every generator reconnect during the run.
    keepalive_requests 100000000;
    open_file_cache max=16;
{temp_paths}

    server {{
        listen 127.0.0.1:{port};
        root {www};
        location / {{
        }}
        # Server-side request count, an independent check of each generator's.
        location = {STATUS_PATH} {{
            stub_status;
        }}
    }}
}}
"""
    path = directory / "nginx.conf"
    path.write_text(config)
    return path


def start_nginx(
    processes: ProcessGroup, directory: Path, port: int, pinning: Pinning
) -> subprocess.Popen[bytes]:
    """Start nginx in the foreground and wait until its port accepts connections."""
    config = write_nginx_config(directory, port)
    log = (directory / "nginx.stderr").open("wb")
    argv = [
        *pinning.prefix(pinning.server_cpus),
        "nginx",
        "-p",
        str(directory),
        "-c",
        str(config),
        "-e",
        str(directory / "error.log"),
    ]
    process = processes.start(argv, stdout=log, stderr=log)
    log.close()
    deadline = time.monotonic() + NGINX_START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"nginx exited with code {process.returncode} at start-up; see "
                f"{directory / 'error.log'}: "
                f"{(directory / 'error.log').read_text(errors='replace')[-2000:]!r}"
            )
        with contextlib.suppress(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return process
        time.sleep(0.05)
    raise RuntimeError(
        f"nginx did not accept connections on 127.0.0.1:{port} within "
        f"{NGINX_START_TIMEOUT_SECONDS} s; see {directory / 'error.log'}"
    )


def read_server_requests(port: int) -> int:
    """Return nginx's count of requests handled so far, this status request included."""
    request = (
        f"GET {STATUS_PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    chunks = []
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(request.encode("ascii"))
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    body = b"".join(chunks).decode("ascii", errors="replace")
    # stub_status prints "accepts handled requests" and then the three numbers.
    match = re.search(r"\n\s*(\d+) (\d+) (\d+)", body)
    if match is None:
        raise RuntimeError(
            f"Invalid nginx stub_status response {body!r}: expected the line of "
            "accepts, handled and requests counts."
        )
    return int(match.group(3))


def _parent_pid(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[1])


def find_children(parent: int) -> list[int]:
    """Return the pids whose parent is ``parent``, scanning /proc."""
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and _parent_pid(int(entry.name)) == parent:
            children.append(int(entry.name))
    return children


def process_cpu_seconds(pid: int) -> float:
    """Return user plus system CPU time of ``pid`` from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    # Fields 14 and 15 of proc(5), utime and stime, after the "(comm)" field.
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS_PER_SECOND


def find_nginx_worker(master: subprocess.Popen[bytes]) -> int:
    """Return the worker pid of a one-worker nginx, waiting briefly for its fork."""
    deadline = time.monotonic() + NGINX_START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        workers = find_children(master.pid)
        if len(workers) == 1:
            return workers[0]
        time.sleep(0.05)
    raise RuntimeError(
        f"nginx master {master.pid} did not start exactly one worker process within "
        f"{NGINX_START_TIMEOUT_SECONDS} s. Check worker_processes in its nginx.conf."
    )


# Generators.


@dataclass(frozen=True)
class RunSettings:
    """Target and load parameters shared by every generator."""

    url: str
    path: str
    base_url: str
    port: int
    connections: int
    duration_seconds: int
    pinning: Pinning
    hyperlane_env: dict[str, str] | None
    """Environment of the Hyperlane child, or None to inherit this one."""


@dataclass(frozen=True)
class GeneratorReport:
    """Figures that a generator reports about its own run."""

    requests_total: int
    """Completed requests."""
    errors_total: int
    """Failed requests, socket errors and non-2xx/3xx responses."""
    duration_seconds: float
    """Duration of the load phase."""
    run_cpu_seconds: float | None = None
    """CPU time of the load phase, measured inside the process, or None for wrk,
    whose start-up is negligible."""
    source: str | None = None
    """File of the Hyperlane runner module that ran, None for other generators."""


WRK_REQUESTS = re.compile(r"(\d+) requests in ([\d.]+)(us|ms|s|m|h),")
WRK_SOCKET_ERRORS = re.compile(
    r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)"
)
WRK_NON_2XX = re.compile(r"Non-2xx or 3xx responses: (\d+)")
WRK_TIME_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_wrk(stdout: str) -> GeneratorReport:
    """Read requests, errors and duration from wrk's summary."""
    match = WRK_REQUESTS.search(stdout)
    if match is None:
        raise GeneratorFailed(f"wrk printed no request count: {stdout[-2000:]!r}")
    errors = 0
    socket_errors = WRK_SOCKET_ERRORS.search(stdout)
    if socket_errors is not None:
        errors += sum(int(count) for count in socket_errors.groups())
    non_2xx = WRK_NON_2XX.search(stdout)
    if non_2xx is not None:
        errors += int(non_2xx.group(1))
    return GeneratorReport(
        requests_total=int(match.group(1)),
        errors_total=errors,
        duration_seconds=float(match.group(2)) * WRK_TIME_UNITS[match.group(3)],
    )


def run_wrk(
    processes: ProcessGroup, settings: RunSettings
) -> tuple[ChildUsage, GeneratorReport]:
    argv = [
        *settings.pinning.prefix(settings.pinning.generator_cpus),
        "wrk",
        "-t1",
        f"-c{settings.connections}",
        f"-d{settings.duration_seconds}s",
        "--latency",
        settings.url,
    ]
    usage = run_child(processes, argv, settings.duration_seconds + CHILD_GRACE_SECONDS)
    _check_child("wrk", usage)
    return usage, parse_wrk(usage.stdout)


def hyperlane_argv(settings: RunSettings) -> list[str]:
    """Return the command that runs this script's Hyperlane child mode."""
    return [
        sys.executable,
        str(Path(__file__).resolve()),
        "--hyperlane-child",
        "--url",
        settings.url,
        "--connections",
        str(settings.connections),
        "--duration",
        str(settings.duration_seconds),
    ]


def run_hyperlane(
    processes: ProcessGroup, settings: RunSettings
) -> tuple[ChildUsage, GeneratorReport]:
    argv = [
        *settings.pinning.prefix(settings.pinning.generator_cpus),
        *hyperlane_argv(settings),
    ]
    usage = run_child(
        processes,
        argv,
        settings.duration_seconds + CHILD_GRACE_SECONDS,
        env=settings.hyperlane_env,
    )
    _check_child("Hyperlane", usage)
    try:
        report = json.loads(usage.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError) as error:
        raise GeneratorFailed(
            f"Hyperlane child printed no JSON result: {usage.stdout[-2000:]!r}"
        ) from error
    return usage, GeneratorReport(
        requests_total=int(report["requests_total"]),
        errors_total=int(report["errors_total"]),
        duration_seconds=float(report["duration_seconds"]),
        run_cpu_seconds=float(report["run_cpu_seconds"]),
        source=str(report["runner_file"]),
    )


def hyperlane_child(url: str, connections: int, duration_seconds: int) -> None:
    """Run one closed-model load and print its figures as one JSON line."""
    from hyperlane.load import LoadSpec, run_load  # noqa: PLC0415

    spec = LoadSpec(url=url, connections=connections, duration_seconds=duration_seconds)
    before = resource.getrusage(resource.RUSAGE_SELF)
    result = run_load(spec)
    after = resource.getrusage(resource.RUSAGE_SELF)
    run_cpu_seconds = (after.ru_utime - before.ru_utime) + (
        after.ru_stime - before.ru_stime
    )
    report = {
        "requests_total": result.requests_total,
        "errors_total": result.errors_total,
        "duration_seconds": result.duration_seconds,
        "run_cpu_seconds": run_cpu_seconds,
        "runner_file": sys.modules[run_load.__module__].__file__,
    }
    print(json.dumps(report))


def run_locust(
    processes: ProcessGroup,
    settings: RunSettings,
    locust: Path,
    work_directory: Path,
    repeat: int,
) -> tuple[ChildUsage, GeneratorReport]:
    locustfile = work_directory / "locustfile.py"
    if not locustfile.exists():
        locustfile.write_text(LOCUSTFILE)

    csv_prefix = work_directory / f"locust-{repeat}"
    cpu_file = work_directory / f"locust-{repeat}-cpu.json"
    env = dict(os.environ)
    env["BENCH_PATH"] = settings.path
    env["BENCH_LOCUST_CPU_FILE"] = str(cpu_file)

    argv = [
        *settings.pinning.prefix(settings.pinning.generator_cpus),
        str(locust),
        "-f",
        str(locustfile),
        "--headless",
        "--host",
        settings.base_url,
        "--users",
        str(settings.connections),
        # All users start within the first second.
        "--spawn-rate",
        str(settings.connections),
        "--run-time",
        f"{settings.duration_seconds}s",
        "--csv",
        str(csv_prefix),
        "--only-summary",
        "--loglevel",
        "WARNING",
    ]

    usage = run_child(
        processes, argv, settings.duration_seconds + CHILD_GRACE_SECONDS, env=env
    )
    # Locust exits with 1 when any request failed, which the error count shows.
    if usage.returncode not in (0, 1) or usage.timed_out:
        _check_child("Locust", usage)
    return usage, parse_locust(
        Path(f"{csv_prefix}_stats.csv"), cpu_file, settings.duration_seconds
    )


def parse_locust(
    stats_path: Path, cpu_file: Path, duration_seconds: int
) -> GeneratorReport:
    """Read the Aggregated row of Locust's CSV statistics and the CPU file."""
    try:
        lines = stats_path.read_text().splitlines()
    except OSError as error:
        raise GeneratorFailed(f"Locust wrote no statistics to {stats_path}") from error
    for row in csv.DictReader(lines):
        if row.get("Name") == "Aggregated":
            break
    else:
        raise GeneratorFailed(f"{stats_path} has no Aggregated row")
    run_cpu_seconds = None
    if cpu_file.exists():
        run_cpu_seconds = float(json.loads(cpu_file.read_text())["run_cpu_seconds"])
    # NOTE: Locust's CSV gives no exact run time, so requests/s uses --run-time, and
    # the ramp-up of the first second lowers it slightly.
    return GeneratorReport(
        requests_total=int(row["Request Count"]),
        errors_total=int(row["Failure Count"]),
        duration_seconds=float(duration_seconds),
        run_cpu_seconds=run_cpu_seconds,
    )


# Runs and the table.


def run_generator(
    name: str,
    processes: ProcessGroup,
    settings: RunSettings,
    worker_pid: int,
    repeat: int,
    locust: Path | None,
    work_directory: Path,
) -> Measurement:
    """Run one generator once and measure it and the nginx worker."""
    load_average = os.getloadavg()[0]
    server_requests_before = read_server_requests(settings.port)
    server_before = process_cpu_seconds(worker_pid)
    if name == "wrk":
        usage, report = run_wrk(processes, settings)
    elif name == "hyperlane":
        usage, report = run_hyperlane(processes, settings)
    else:
        assert locust is not None
        usage, report = run_locust(processes, settings, locust, work_directory, repeat)
    server_cpu_seconds = process_cpu_seconds(worker_pid) - server_before
    # Minus 1 for the status request that read the starting count.
    server_requests = read_server_requests(settings.port) - server_requests_before - 1
    return Measurement(
        generator=name,
        repeat=repeat,
        requests_total=report.requests_total,
        errors_total=report.errors_total,
        duration_seconds=report.duration_seconds,
        cpu_seconds=usage.cpu_seconds,
        system_seconds=usage.system_seconds,
        run_cpu_seconds=report.run_cpu_seconds,
        server_cpu_seconds=server_cpu_seconds,
        server_requests_total=server_requests,
        load_average_1m=load_average,
        source=report.source,
    )


def print_runs(measurements: list[Measurement]) -> None:
    header = [
        "generator", "run", "requests", "errors", "req/s", "CPU s", "of it system s",
        "load-phase CPU s", "nginx requests", "nginx CPU s", "load avg 1m",
    ]  # fmt: skip
    rows = [
        [
            m.generator,
            str(m.repeat),
            str(m.requests_total),
            str(m.errors_total),
            f"{m.requests_per_second:.0f}",
            f"{m.cpu_seconds:.2f}",
            f"{m.system_seconds:.2f}",
            "-" if m.run_cpu_seconds is None else f"{m.run_cpu_seconds:.2f}",
            str(m.server_requests_total),
            f"{m.server_cpu_seconds:.2f}",
            f"{m.load_average_1m:.2f}",
        ]
        for m in measurements
    ]
    print_table("Every run", header, rows)


def print_medians(measurements: list[Measurement], generators: list[str]) -> None:
    """Print the median of each figure per generator and its ratio to wrk."""
    medians: dict[str, dict[str, float]] = {}
    for name in generators:
        runs = [m for m in measurements if m.generator == name]
        if not runs:
            continue
        medians[name] = {
            "requests": statistics.median(m.requests_total for m in runs),
            "rps": statistics.median(m.requests_per_second for m in runs),
            "cpu": statistics.median(m.cpu_seconds for m in runs),
            "per_cpu": statistics.median(m.requests_per_cpu_second for m in runs),
            "per_run_cpu": statistics.median(
                m.requests_per_run_cpu_second for m in runs
            ),
            "server_cpu": statistics.median(m.server_cpu_seconds for m in runs),
            "user_us": statistics.median(
                1e6 * (m.cpu_seconds - m.system_seconds) / m.requests_total
                for m in runs
            ),
            "system_us": statistics.median(
                1e6 * m.system_seconds / m.requests_total for m in runs
            ),
        }
    wrk = medians.get("wrk")
    header = [
        "generator", "requests", "req/s", "CPU s", "req/CPU-s", "vs wrk",
        "req/load-phase CPU-s", "vs wrk", "user µs/req", "system µs/req",
        "nginx CPU s",
    ]  # fmt: skip
    rows = []
    for name, median in medians.items():
        ratio = "-" if wrk is None else f"{median['per_cpu'] / wrk['per_cpu']:.2f}x"
        run_ratio = (
            "-" if wrk is None else f"{median['per_run_cpu'] / wrk['per_run_cpu']:.2f}x"
        )
        rows.append(
            [
                name,
                f"{median['requests']:.0f}",
                f"{median['rps']:.0f}",
                f"{median['cpu']:.2f}",
                f"{median['per_cpu']:.0f}",
                ratio,
                f"{median['per_run_cpu']:.0f}",
                run_ratio,
                f"{median['user_us']:.2f}",
                f"{median['system_us']:.2f}",
                f"{median['server_cpu']:.2f}",
            ]
        )
    print_table("Medians (each column is its own median)", header, rows)


# Machine description.


def print_machine(locust: Path | None) -> None:
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    print("Machine")
    print(
        f"  CPUs: {os.cpu_count()} ({model}), allowed {sorted(os.sched_getaffinity(0))}"
    )
    print(f"  kernel: {platform.release()}, Python {platform.python_version()}")
    print(f"  wrk: {first_line(['wrk', '-v'])}")
    print(f"  nginx: {first_line(['nginx', '-v'])}")
    if locust is not None:
        print(f"  locust: {first_line([str(locust), '--version'])}")
    print(f"  load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


# Profiling.


def profile_hyperlane(
    processes: ProcessGroup,
    settings: RunSettings,
    py_spy: Path,
    directory: Path,
    rate_hz: int,
) -> None:
    """Run Hyperlane three times under py-spy and print the hottest functions."""
    directory.mkdir(parents=True, exist_ok=True)
    svg = directory / "hyperlane-profile.svg"
    target = [
        *settings.pinning.prefix(settings.pinning.generator_cpus),
        *hyperlane_argv(settings),
    ]

    # Python frames are sampled without pausing the process. Native frames (uvloop,
    # httptools, libc) can only be read while it is paused, which slows the run and
    # overstates the share of system calls, so that run is a breakdown, not a share.
    python_raw = directory / "hyperlane-profile-python.txt"
    native_raw = directory / "hyperlane-profile-native.txt"
    runs = (
        (svg, ["--format", "flamegraph", "--nonblocking"]),
        (python_raw, ["--format", "raw", "--nonblocking"]),
        (native_raw, ["--format", "raw", "--native"]),
    )
    for output, options in runs:
        argv = [
            str(py_spy), "record", "--function", "--rate", str(rate_hz), *options,
            "--output", str(output), "--", *target,
        ]  # fmt: skip
        usage = run_child(
            processes,
            argv,
            settings.duration_seconds + CHILD_GRACE_SECONDS,
            env=settings.hyperlane_env,
        )
        _check_child("py-spy", usage)

    print(f"\nProfiles of Hyperlane runs in {directory}: flame graph {svg.name}")
    print(f"\nPython frames only ({python_raw.name})")
    print_profile_summary(python_raw)
    print(f"\nWith native frames, process paused per sample ({native_raw.name})")
    print_profile_summary(native_raw)


def print_profile_summary(raw: Path, top: int = 15) -> None:
    """Print the functions with the largest self and inclusive sample shares."""
    self_samples: Counter[str] = Counter()
    inclusive_samples: Counter[str] = Counter()
    file_samples: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        total += count
        self_samples[frames[-1]] += count
        # "name (file:line)" becomes "file", so the shares add up per library.
        file_samples[frames[-1].rpartition("(")[2].split(":")[0].rstrip(")")] += count
        for frame in set(frames):
            inclusive_samples[frame] += count
    if total == 0:
        print("py-spy recorded no samples")
        return
    print_table(
        f"Self share of {total} samples",
        ["share", "function"],
        [[f"{100 * n / total:.1f}%", f] for f, n in self_samples.most_common(top)],
    )
    print_table(
        "Self share per file or library",
        ["share", "file"],
        [[f"{100 * n / total:.1f}%", f] for f, n in file_samples.most_common(top)],
    )
    print_table(
        "Inclusive share",
        ["share", "function"],
        [[f"{100 * n / total:.1f}%", f] for f, n in inclusive_samples.most_common(top)],
    )


# Entry point.


def whole_seconds(text: str) -> int:
    seconds = int(text.removesuffix("s"))
    if seconds < 1:
        raise argparse.ArgumentTypeError(f"duration {text!r} must be 1s or more")
    return seconds


def parse_arguments(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--connections", type=positive_integer, default=32,
        help="concurrent connections of every generator (default 32)",
    )  # fmt: skip
    parser.add_argument(
        "--duration", type=whole_seconds, default=5,
        help="seconds per run, '5' or '5s', in whole seconds because wrk takes no "
        "fractions (default 5)",
    )  # fmt: skip
    parser.add_argument(
        "--repeats", type=positive_integer, default=3,
        help="runs per generator, whose medians the table shows (default 3)",
    )  # fmt: skip
    parser.add_argument(
        "--generators", default="wrk,hyperlane,locust",
        help="comma-separated subset of wrk,hyperlane,locust",
    )  # fmt: skip
    parser.add_argument(
        "--locust", type=Path, default=DEFAULT_LOCUST,
        help=f"locust executable (default {DEFAULT_LOCUST})",
    )  # fmt: skip
    parser.add_argument(
        "--hyperlane-src", type=Path, metavar="DIR",
        help="put DIR first on the Hyperlane child's PYTHONPATH, for example the "
        "src folder of a 'git archive' snapshot (default: the installed package)",
    )  # fmt: skip
    parser.add_argument(
        "--no-pin", action="store_true",
        help="do not pin nginx and the generators to separate CPUs",
    )  # fmt: skip

    parser.add_argument(
        "--profile", type=Path, metavar="DIR",
        help="afterwards, run Hyperlane three times under py-spy and write a flame "
        "graph and collapsed stacks to DIR",
    )  # fmt: skip
    parser.add_argument(
        "--py-spy", type=Path, default=DEFAULT_PY_SPY,
        help=f"py-spy executable for --profile (default {DEFAULT_PY_SPY})",
    )  # fmt: skip
    parser.add_argument(
        "--profile-rate", type=positive_integer, default=250,
        help="py-spy samples per second (default 250)",
    )  # fmt: skip

    # The script runs itself in this mode as the Hyperlane generator process.
    parser.add_argument(
        "--hyperlane-child", action="store_true", help=argparse.SUPPRESS
    )
    parser.add_argument("--url", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def _find_locust(requested: Path, generators: list[str]) -> Path | None:
    if "locust" not in generators:
        return None
    if requested.is_file() and os.access(requested, os.X_OK):
        return requested
    print(
        f"Locust skipped: {requested} not found. Create it with\n"
        f"  python3 -m venv {BENCH_DIR / '.venv-locust'} && "
        f"{BENCH_DIR / '.venv-locust' / 'bin' / 'pip'} install locust",
        file=sys.stderr,
    )
    return None


def _check_tools(generators: list[str]) -> None:
    missing = [tool for tool in ("nginx", "wrk") if shutil.which(tool) is None]
    if "wrk" not in generators and "wrk" in missing:
        missing.remove("wrk")
    if missing:
        sys.exit(
            f"Missing {', '.join(missing)}: install them with "
            "'apt-get install -y nginx-light wrk'."
        )
    if "hyperlane" in generators:
        try:
            import hyperlane.load  # noqa: F401, PLC0415
        except ImportError as error:
            sys.exit(
                f"Cannot import hyperlane.load ({error}); run the script with the "
                "project's interpreter, .venv/bin/python."
            )


def _hyperlane_env(source: Path | None) -> dict[str, str] | None:
    if source is None:
        return None
    if not (source / "hyperlane" / "load" / "__init__.py").is_file():
        sys.exit(
            f"Invalid --hyperlane-src {str(source)!r}: it has no "
            "hyperlane/load/__init__.py. Pass the folder that contains hyperlane/."
        )
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        part for part in (str(source.resolve()), env.get("PYTHONPATH")) if part
    )
    return env


def main(argv: Sequence[str]) -> int:
    args = parse_arguments(argv)
    if args.hyperlane_child:
        hyperlane_child(args.url, args.connections, args.duration)
        return 0

    generators = [name.strip() for name in args.generators.split(",") if name.strip()]
    unknown = set(generators) - {"wrk", "hyperlane", "locust"}
    if unknown:
        sys.exit(f"Unknown generators {sorted(unknown)!r}: use wrk, hyperlane, locust.")
    _check_tools(generators)
    locust = _find_locust(args.locust, generators)
    if "locust" in generators and locust is None:
        generators.remove("locust")
    pinning = choose_pinning(not args.no_pin)
    print_machine(locust)
    print(f"  pinning: {pinning.note}")

    processes = ProcessGroup()
    measurements: list[Measurement] = []
    with (
        cleanup_on_exit(processes),
        tempfile.TemporaryDirectory(prefix="hyperlane-bench-") as temporary,
    ):
        directory = Path(temporary)
        port = free_port()
        nginx = start_nginx(processes, directory, port, pinning)
        worker_pid = find_nginx_worker(nginx)
        base_url = f"http://127.0.0.1:{port}"
        settings = RunSettings(
            url=f"{base_url}/{STATIC_FILE_NAME}",
            path=f"/{STATIC_FILE_NAME}",
            base_url=base_url,
            port=port,
            connections=args.connections,
            duration_seconds=args.duration,
            pinning=pinning,
            hyperlane_env=_hyperlane_env(args.hyperlane_src),
        )
        print(
            f"  target: {settings.url} ({len(STATIC_FILE_BYTES)} bytes), nginx worker "
            f"pid {worker_pid}, {args.connections} connections, {args.duration} s, "
            f"{args.repeats} repeats"
        )
        for repeat in range(1, args.repeats + 1):
            for name in generators:
                measurement = run_generator(
                    name, processes, settings, worker_pid, repeat, locust, directory
                )
                measurements.append(measurement)
                if name == "hyperlane" and repeat == 1:
                    print(f"  Hyperlane runner: {measurement.source}")
                print(
                    f"  {name} run {repeat}: {measurement.requests_total} requests, "
                    f"{measurement.cpu_seconds:.2f} CPU s, "
                    f"{measurement.requests_per_cpu_second:.0f} req/CPU-s",
                    flush=True,
                )
        print_runs(measurements)
        print_medians(measurements, generators)
        if args.profile is not None:
            if args.py_spy.is_file():
                profile_hyperlane(
                    processes, settings, args.py_spy, args.profile, args.profile_rate
                )
            else:
                print(f"\nProfile skipped: py-spy not found at {args.py_spy}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except KeyboardInterrupt:
        print("Interrupted; nginx and every generator were stopped.", file=sys.stderr)
        sys.exit(130)
    except GeneratorFailed as failure:
        sys.exit(f"Benchmark failed: {failure}")
