#!/usr/bin/env python3
"""Measure what it costs to sample idle containers: Hyperlane's readers against
``docker stats --no-stream``.

The script starts ``--containers`` idle busybox containers (default 20) on one
engine and runs four phases of ``--seconds`` each, one round per ``--interval``:

- baseline: nothing samples, to measure the engine daemon's own idle CPU;
- cgroup: Hyperlane's CgroupReader reads every container once per round, in this
  process, and compute_rates() pairs each sample with the one before;
- api: Hyperlane's ApiStatsReader does the same through the engine's stats API,
  from a thread pool as ``hyperlane top`` does;
- docker-stats: ``docker stats --no-stream`` over the same containers, once per round.

Hyperlane's CPU is ``time.process_time()`` around the reads (all threads of this
process). The docker client's CPU is ``ru_utime + ru_stime`` from ``os.wait4``. The
daemon's CPU (dockerd, or ``podman system service``) is the change of utime + stime in
``/proc/<pid>/stat`` over each phase, minus the baseline phase's rate.

Run it from the repository root as root, with the project's interpreter:

    .venv/bin/python bench/metrics_cost.py --engine docker --seconds 30

Every container it started is removed at the end, also on Ctrl-C and SIGTERM.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import docker.errors
from docker.models.containers import Container

from hyperlane.engines.connect import connect
from hyperlane.engines.engine import Engine
from hyperlane.metrics.api import ApiStatsReader
from hyperlane.metrics.cgroup import CgroupReader, find_cgroup
from hyperlane.metrics.discovery import list_running_containers
from hyperlane.metrics.sample import Sample, SampleReader
from hyperlane.metrics.series import compute_rates

SOCKETS = {
    "docker": "unix:///var/run/docker.sock",
    "podman": "unix:///run/podman/podman.sock",
}
IMAGE_TAG = "localhost/hyperlane-bench-busybox:latest"
BUSYBOX_PATH = Path("/bin/busybox")
CONTAINERFILE = """\
FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
"""
BASELINE_MAX_SECONDS = 10.0
CLOCK_TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")
API_READ_THREADS = 16


@dataclass(frozen=True)
class PhaseResult:
    """CPU used by one way of sampling all containers once per round."""

    name: str
    rounds: int
    containers: int
    wall_seconds: float
    sampler_cpu_seconds: float
    """CPU of the process that samples: this script, or the docker client."""
    daemon_cpu_seconds: float
    """Engine daemon CPU over the phase, minus its idle rate from the baseline."""

    def per_sample_seconds(self, cpu_seconds: float) -> float:
        return cpu_seconds / (self.rounds * self.containers)

    def core_percent(self, cpu_seconds: float) -> float:
        return cpu_seconds / self.wall_seconds * 100


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def daemon_pid(engine_name: str) -> int:
    """Return the PID of dockerd, or of ``podman system service``, from /proc."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            arguments = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        program = Path(arguments[0].decode(errors="replace")).name
        if engine_name == "docker" and program == "dockerd":
            return int(entry.name)
        if engine_name == "podman" and program == "podman" and b"service" in arguments:
            return int(entry.name)
    raise SystemExit(f"no {engine_name} daemon process found in /proc; start it first")


def process_cpu_seconds(pid: int) -> float:
    """Return utime + stime (fields 14 and 15 of /proc/<pid>/stat) in seconds."""
    text = (Path("/proc") / str(pid) / "stat").read_text()
    # The command name in field 2 may contain spaces, so split after its ")".
    fields = text.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS_PER_SECOND


def ensure_image(engine: Engine) -> None:
    with contextlib.suppress(docker.errors.ImageNotFound):
        engine.client.images.get(IMAGE_TAG)
        return
    with tempfile.TemporaryDirectory() as directory:
        (Path(directory) / "Containerfile").write_text(CONTAINERFILE)
        engine.build(
            Path(directory), "Containerfile", IMAGE_TAG, {"busybox": BUSYBOX_PATH}
        )


@contextlib.contextmanager
def idle_containers(engine: Engine, count: int, label: str) -> Iterator[None]:
    """Start count idle containers with the label and remove them all on exit."""
    key, value = label.split("=", 1)
    started: list[Container] = []
    try:
        for index in range(count):
            started.append(
                engine.client.containers.run(
                    IMAGE_TAG,
                    ["sleep", "86400"],
                    detach=True,
                    name=f"hl-bench-idle-{value[-8:]}-{index:02d}",
                    labels={key: value},
                )
            )
        yield
    finally:
        log(f"removing {len(started)} containers")
        for container in started:
            with contextlib.suppress(docker.errors.NotFound):
                container.remove(force=True)


def run_rounds(
    rounds: int, interval: float, sample_round: Callable[[], None]
) -> tuple[float, float]:
    """Call sample_round once per interval and return (wall, process CPU) seconds."""
    cpu_seconds = 0.0
    start = time.monotonic()
    next_time = start
    for _ in range(rounds):
        cpu_before = time.process_time()
        sample_round()
        cpu_seconds += time.process_time() - cpu_before
        next_time += interval
        time.sleep(max(0.0, next_time - time.monotonic()))
    return time.monotonic() - start, cpu_seconds


def reader_phase(
    name: str,
    readers: list[SampleReader],
    rounds: int,
    interval: float,
    daemon: int,
    idle_rate: float,
    pool: ThreadPoolExecutor | None,
) -> PhaseResult:
    previous: list[Sample | None] = [None] * len(readers)

    def read(index: int) -> None:
        sample = readers[index].read()
        compute_rates(previous[index], sample)
        previous[index] = sample

    def sample_round() -> None:
        if pool is None:
            for index in range(len(readers)):
                read(index)
        else:
            list(pool.map(read, range(len(readers))))

    daemon_before = process_cpu_seconds(daemon)
    wall, cpu = run_rounds(rounds, interval, sample_round)
    daemon_cpu = process_cpu_seconds(daemon) - daemon_before - idle_rate * wall
    return PhaseResult(name, rounds, len(readers), wall, cpu, daemon_cpu)


def docker_stats_phase(
    docker_cli: str,
    socket: str,
    container_ids: list[str],
    rounds: int,
    interval: float,
    daemon: int,
    idle_rate: float,
) -> PhaseResult:
    client_cpu = 0.0
    command = [docker_cli, "-H", socket, "stats", "--no-stream", *container_ids]
    daemon_before = process_cpu_seconds(daemon)
    start = time.monotonic()
    next_time = start
    for _ in range(rounds):
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        if process.returncode != 0:
            raise SystemExit(f"{' '.join(command[:5])} failed: {process.returncode}")
        client_cpu += usage.ru_utime + usage.ru_stime
        next_time += interval
        time.sleep(max(0.0, next_time - time.monotonic()))
    wall = time.monotonic() - start
    daemon_cpu = process_cpu_seconds(daemon) - daemon_before - idle_rate * wall
    return PhaseResult(
        "docker-stats", rounds, len(container_ids), wall, client_cpu, daemon_cpu
    )


def machine_lines(engine: Engine, docker_cli: str) -> list[str]:
    model = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    cgroup = "v2" if Path("/sys/fs/cgroup/cgroup.controllers").exists() else "v1"
    client = subprocess.run(
        [docker_cli, "version", "--format", "{{.Client.Version}}"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return [
        f"CPU: {model}, {os.cpu_count()} cores",
        f"kernel: {platform.release()}, cgroup {cgroup}",
        f"Python: {platform.python_version()}",
        f"engine: {engine.info.name} {engine.info.version} (API "
        f"{engine.info.api_version}), docker CLI {client or 'unknown'}",
    ]


def print_table(results: list[PhaseResult], machine: list[str]) -> None:
    header = (
        f"{'method':<13} {'rounds':>6} {'ctrs':>4} "
        f"{'sampler CPU/sample':>19} {'sampler %core':>13} "
        f"{'daemon CPU/sample':>18} {'daemon %core':>12}"
    )
    print("\n".join(machine))
    print(header)
    for result in results:
        sampler = result.sampler_cpu_seconds
        daemon = result.daemon_cpu_seconds
        print(
            f"{result.name:<13} {result.rounds:>6} {result.containers:>4} "
            f"{result.per_sample_seconds(sampler) * 1e6:>16.0f} µs "
            f"{result.core_percent(sampler):>12.3f}% "
            f"{result.per_sample_seconds(daemon) * 1e6:>15.0f} µs "
            f"{result.core_percent(daemon):>11.3f}%"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--engine", choices=sorted(SOCKETS), default="docker")
    parser.add_argument("--containers", type=int, default=20)
    parser.add_argument(
        "--seconds", type=float, default=30.0, help="length of each phase"
    )
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--docker-cli", default="docker")
    arguments = parser.parse_args()
    if arguments.containers < 1 or arguments.seconds <= 0 or arguments.interval <= 0:
        parser.error("--containers, --seconds and --interval must be positive")

    signal.signal(signal.SIGTERM, raise_interrupt)
    rounds = max(1, round(arguments.seconds / arguments.interval))
    engine = connect(arguments.engine)
    daemon = daemon_pid(arguments.engine)
    label = f"io.hyperlane.bench=metrics-cost-{uuid.uuid4().hex[:10]}"
    try:
        ensure_image(engine)
        log(f"starting {arguments.containers} idle containers on {arguments.engine}")
        with idle_containers(engine, arguments.containers, label):
            infos = list_running_containers(engine, [label])
            if len(infos) != arguments.containers:
                raise SystemExit(
                    f"{len(infos)} of {arguments.containers} containers are running"
                )
            baseline_seconds = min(arguments.seconds, BASELINE_MAX_SECONDS)
            log(f"baseline: {baseline_seconds:g} s without sampling")
            before = process_cpu_seconds(daemon)
            time.sleep(baseline_seconds)
            idle_rate = (process_cpu_seconds(daemon) - before) / baseline_seconds

            cgroup_readers: list[SampleReader] = [
                CgroupReader(find_cgroup(info.pid), info.pid) for info in infos
            ]
            log(f"cgroup readers: {rounds} rounds")
            results = [
                reader_phase(
                    "cgroup",
                    cgroup_readers,
                    rounds,
                    arguments.interval,
                    daemon,
                    idle_rate,
                    None,
                )
            ]
            api_readers: list[SampleReader] = [
                ApiStatsReader(info.container) for info in infos
            ]
            log(f"API readers: {rounds} rounds")
            with ThreadPoolExecutor(max_workers=API_READ_THREADS) as pool:
                results.append(
                    reader_phase(
                        "api",
                        api_readers,
                        rounds,
                        arguments.interval,
                        daemon,
                        idle_rate,
                        pool,
                    )
                )
            log(f"docker stats --no-stream: {rounds} rounds")
            results.append(
                docker_stats_phase(
                    arguments.docker_cli,
                    SOCKETS[arguments.engine],
                    [info.container_id for info in infos],
                    rounds,
                    arguments.interval,
                    daemon,
                    idle_rate,
                )
            )
        print_table(results, machine_lines(engine, arguments.docker_cli))
        print(
            f"daemon idle CPU (baseline, subtracted above): {idle_rate * 100:.3f}% "
            f"of one core"
        )
    except KeyboardInterrupt:
        log("interrupted; the containers were removed")
        raise SystemExit(130) from None
    finally:
        engine.close()


if __name__ == "__main__":
    main()
