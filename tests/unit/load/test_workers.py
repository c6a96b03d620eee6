"""Load runs split across worker processes against servers on 127.0.0.1."""

from __future__ import annotations

import itertools
import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from hyperlane.errors import UsageError
from hyperlane.load import LoadProgress, LoadResult, LoadSpec, run_load
from hyperlane.load.workers import (
    LoadWorkerFailed,
    aggregate_progress,
    run_load_workers,
    split_spec,
)
from tests.unit.load import servers
from tests.unit.load.servers import TestServer

REPOSITORY = Path(__file__).resolve().parents[3]


# Worker functions, importable by name in a spawned interpreter.


def _raising_run(spec: LoadSpec, **options: Any) -> LoadResult:
    if spec.share_index == 1:
        raise RuntimeError("boom in the worker")
    return run_load(spec, **options)


def _usage_error_run(spec: LoadSpec, **options: Any) -> LoadResult:
    raise UsageError("Invalid body file 'missing.json': not found")


def _exiting_run(spec: LoadSpec, **options: Any) -> LoadResult:
    if spec.share_index == 1:
        os._exit(3)
    return run_load(spec, **options)


def _pid_run(spec: LoadSpec, **options: Any) -> LoadResult:
    raise RuntimeError(f"pid {os.getpid()}")


def _timestamping(arrivals: list[float]) -> servers.Handler:
    def handler(sock: socket.socket, server: TestServer, index: int) -> bool:
        arrivals.append(time.monotonic())
        sock.sendall(servers.OK_RESPONSE)
        return True

    return handler


def test_split_connections() -> None:
    shares = split_spec(LoadSpec(url="http://127.0.0.1:1/", connections=7), 3)
    assert [share.connections for share in shares] == [3, 2, 2]
    assert [share.share_index for share in shares] == [0, 1, 2]
    assert {share.share_count for share in shares} == {3}


def test_split_small_budget() -> None:
    spec = LoadSpec(url="http://127.0.0.1:1/", connections=8, requests=2)
    shares = split_spec(spec, 4)
    assert [share.connections for share in shares] == [4, 4]
    assert {share.share_count for share in shares} == {2}


def test_more_workers_than_connections() -> None:
    spec = LoadSpec(url="http://127.0.0.1:1/", connections=2)
    with pytest.raises(UsageError, match=r"workers 3.*the 2 connections"):
        run_load_workers(spec, 3)


def test_invalid_worker_count() -> None:
    spec = LoadSpec(url="http://127.0.0.1:1/", connections=2)
    with pytest.raises(UsageError, match="Invalid workers 0"):
        run_load_workers(spec, 0)


def test_one_worker_in_process() -> None:
    spec = LoadSpec(url="http://127.0.0.1:1/", connections=1, requests=1)
    with pytest.raises(RuntimeError, match=f"pid {os.getpid()}$"):
        run_load_workers(spec, 1, run=_pid_run)


def test_aggregate_progress() -> None:
    snapshots = [
        LoadProgress(1.0, 10, 1, 10.0, 0.002),
        LoadProgress(1.1, 20, 0, 19.0, 0.005),
        LoadProgress(0.9, 0, 0, 0.0, None),
    ]
    combined = aggregate_progress(snapshots)
    assert combined.elapsed_seconds == 1.1
    assert combined.requests_total == 30
    assert combined.errors_total == 1
    assert combined.rate_per_second == 29.0
    assert combined.p99_seconds == 0.005


def test_workers_exact_requests() -> None:
    snapshots: list[LoadProgress] = []
    with servers.serving(servers.keep_alive) as server:
        result = run_load_workers(
            LoadSpec(url=server.url, connections=3, requests=301, duration_seconds=5),
            3,
            progress=snapshots.append,
            progress_interval_seconds=0.05,
        )
    assert result.requests_total == 301
    assert result.requests_sent == 301
    assert server.requests_received == 301
    assert result.connections == 3
    assert result.latency.count == 301
    assert multiprocessing.active_children() == []


def test_workers_progress_aggregated() -> None:
    snapshots: list[LoadProgress] = []
    with servers.serving(servers.keep_alive) as server:
        result = run_load_workers(
            LoadSpec(url=server.url, connections=2, duration_seconds=0.6),
            2,
            progress=snapshots.append,
            progress_interval_seconds=0.1,
        )
    assert len(snapshots) >= 3
    totals = [snapshot.requests_total for snapshot in snapshots]
    assert totals == sorted(totals)
    assert totals[-1] <= result.requests_total
    assert snapshots[-1].elapsed_seconds <= result.duration_seconds


def test_workers_low_rate_interleave() -> None:
    arrivals: list[float] = []
    with servers.serving(_timestamping(arrivals)) as server:
        result = run_load_workers(
            LoadSpec(
                url=server.url,
                connections=2,
                rate_per_second=1.0,
                duration_seconds=2.5,
            ),
            2,
        )
    # Sends are due at 0, 1 and 2 s, alternating between the two workers.
    assert result.requests_sent == 3
    assert server.requests_received == 3
    assert result.target_rate_per_second == 1.0
    gaps = [later - earlier for earlier, later in itertools.pairwise(arrivals)]
    for gap in gaps:
        assert gap == pytest.approx(1.0, abs=0.15)


def test_worker_exception_named() -> None:
    with servers.serving(servers.keep_alive) as server:
        spec = LoadSpec(url=server.url, connections=2, duration_seconds=0.3)
        with pytest.raises(
            LoadWorkerFailed, match=r"Load worker 1 of 2 .*RuntimeError: boom"
        ):
            run_load_workers(spec, 2, run=_raising_run)
    assert multiprocessing.active_children() == []


def test_worker_usage_error_kept() -> None:
    spec = LoadSpec(url="http://127.0.0.1:1/", connections=2, duration_seconds=0.3)
    with pytest.raises(UsageError, match=r"Load worker \d of 2 failed: Invalid body"):
        run_load_workers(spec, 2, run=_usage_error_run)


def test_worker_exit_named() -> None:
    with servers.serving(servers.keep_alive) as server:
        spec = LoadSpec(url=server.url, connections=2, duration_seconds=0.3)
        with pytest.raises(LoadWorkerFailed, match=r"worker 1 of 2 .*code 3"):
            run_load_workers(spec, 2, run=_exiting_run)
    assert multiprocessing.active_children() == []


def test_interrupt_stops_workers() -> None:
    def interrupt(snapshot: LoadProgress) -> None:
        raise KeyboardInterrupt

    with servers.serving(servers.keep_alive) as server:
        started = time.monotonic()
        with pytest.raises(KeyboardInterrupt):
            run_load_workers(
                LoadSpec(url=server.url, connections=2, duration_seconds=20),
                2,
                progress=interrupt,
                progress_interval_seconds=0.1,
            )
        elapsed = time.monotonic() - started
    assert elapsed < 10
    assert multiprocessing.active_children() == []


def _start_script(script: Path, url: str) -> subprocess.Popen[str]:
    """Start SCRIPT with this checkout's source on its path and URL as argument."""
    environment = {**os.environ, "PYTHONPATH": str(REPOSITORY / "src")}
    return subprocess.Popen(
        [sys.executable, str(script), url],
        stdout=subprocess.PIPE,
        text=True,
        env=environment,
    )


def test_sigint_leaves_no_process(tmp_path: Path) -> None:
    script = tmp_path / "run.py"
    script.write_text(
        textwrap.dedent(
            """
            import multiprocessing
            import sys

            from hyperlane.load import LoadSpec
            from hyperlane.load.workers import run_load_workers


            def report(snapshot):
                pids = [child.pid for child in multiprocessing.active_children()]
                print(" ".join(map(str, pids)), flush=True)


            if __name__ == "__main__":
                spec = LoadSpec(url=sys.argv[1], connections=2, duration_seconds=20)
                try:
                    run_load_workers(spec, 2, progress=report)
                except KeyboardInterrupt:
                    print("interrupted", flush=True)
            """
        ),
        encoding="utf-8",
    )
    with servers.serving(servers.keep_alive) as server:
        child = _start_script(script, server.url)
        try:
            assert child.stdout is not None
            worker_pids = [int(pid) for pid in child.stdout.readline().split()]
            child.send_signal(signal.SIGINT)
            output, _ = child.communicate(timeout=15)
        finally:
            if child.poll() is None:
                child.kill()
                child.wait(timeout=5)
    assert len(worker_pids) == 2
    assert "interrupted" in output
    for pid in worker_pids:
        assert not Path(f"/proc/{pid}").exists(), pid


def _running(pid: int) -> bool:
    """Return whether PID exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii")
    except FileNotFoundError:
        return False
    # The state follows the command name, which is in parentheses.
    return stat.rpartition(")")[2].split()[0] not in {"Z", "X"}


def test_parent_sigkill_stops_workers(tmp_path: Path) -> None:
    script = tmp_path / "run.py"
    script.write_text(
        textwrap.dedent(
            """
            import multiprocessing
            import sys
            import threading
            import time

            from hyperlane.load import LoadSpec
            from hyperlane.load.workers import run_load_workers


            def print_workers():
                # Without progress reports, no write to a broken pipe stops the
                # workers when this process dies.
                for _ in range(200):
                    children = multiprocessing.active_children()
                    if len(children) == 2:
                        time.sleep(0.5)
                        print(" ".join(str(child.pid) for child in children))
                        sys.stdout.flush()
                        return
                    time.sleep(0.05)


            if __name__ == "__main__":
                threading.Thread(target=print_workers, daemon=True).start()
                spec = LoadSpec(url=sys.argv[1], connections=2, duration_seconds=20)
                run_load_workers(spec, 2)
            """
        ),
        encoding="utf-8",
    )
    with servers.serving(servers.keep_alive) as server:
        child = _start_script(script, server.url)
        worker_pids: list[int] = []
        try:
            assert child.stdout is not None
            worker_pids = [int(pid) for pid in child.stdout.readline().split()]
            child.kill()
            child.wait(timeout=5)
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and any(map(_running, worker_pids)):
                time.sleep(0.05)
            survivors = [pid for pid in worker_pids if _running(pid)]
        finally:
            if child.poll() is None:
                child.kill()
                child.wait(timeout=5)
            if child.stdout is not None:
                child.stdout.close()
            for pid in worker_pids:
                if _running(pid):
                    os.kill(pid, signal.SIGKILL)
    assert len(worker_pids) == 2
    assert survivors == []


def test_worker_startup_overlap() -> None:
    # Two workers of a closed run start together: their first requests reach the
    # server within a fraction of the run.
    arrivals: list[float] = []
    lock = threading.Lock()

    def handler(sock: socket.socket, server: TestServer, index: int) -> bool:
        if index == 0:
            with lock:
                arrivals.append(time.monotonic())
        sock.sendall(servers.OK_RESPONSE)
        return True

    with servers.serving(handler) as server:
        run_load_workers(
            LoadSpec(url=server.url, connections=2, duration_seconds=0.3), 2
        )
    assert len(arrivals) == 2
    assert abs(arrivals[1] - arrivals[0]) < 0.1


def _server_error(sock: socket.socket, server: TestServer, index: int) -> bool:
    sock.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n")
    return True


@pytest.mark.parametrize("workers", [1, 2])
def test_failed_requests_above_one_percent_warn(workers: int) -> None:
    with servers.serving(_server_error) as server:
        spec = LoadSpec(url=server.url, connections=2, requests=200)
        result = run_load_workers(spec, workers)
    warnings = [text for text in result.warnings if "requests failed" in text]
    assert len(warnings) == 1
    assert warnings[0].startswith("200 of 200 requests failed (100.0 %)")


def test_clean_run_no_failure_warning() -> None:
    with servers.serving(servers.keep_alive) as server:
        spec = LoadSpec(url=server.url, connections=2, requests=200)
        result = run_load_workers(spec, 1)
    assert not [text for text in result.warnings if "requests failed" in text]
