"""Runs against a real nginx on 127.0.0.1, started by the test with its own config.

nginx runs in the foreground as one process, so that SIGSTOP pauses all of it.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hyperlane.load import LoadSpec, run_load
from tests.unit.load import servers

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"

pytestmark = pytest.mark.skipif(
    not os.access(NGINX, os.X_OK), reason="nginx is not installed (nginx-light)"
)

CONFIG = """
daemon off;
master_process off;
worker_processes 1;
pid {root}/nginx.pid;
error_log {root}/error.log warn;
events {{ worker_connections 256; }}
http {{
    log_format probe '$request_method $request_uri $request_length $status';
    access_log {root}/access.log probe;
    client_body_temp_path {root}/body;
    proxy_temp_path {root}/proxy;
    fastcgi_temp_path {root}/fastcgi;
    uwsgi_temp_path {root}/uwsgi;
    scgi_temp_path {root}/scgi;
    keepalive_requests 100000;
    server {{
        listen 127.0.0.1:{port};
        location / {{ return 200 "ok"; }}
        # Proxying makes nginx read the whole body, so $request_length counts it.
        location /orders {{ proxy_pass http://127.0.0.1:{upstream_port}/; }}
    }}
    server {{
        listen 127.0.0.1:{upstream_port};
        access_log off;
        location / {{ return 201 "created"; }}
    }}
}}
"""


def _wait_for_port(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"nginx exited with code {process.returncode}; see its error.log"
            )
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"nginx did not listen on 127.0.0.1:{port} within 5 s")


class Nginx:
    def __init__(self, root: Path, process: subprocess.Popen[bytes], port: int):
        self.root = root
        self.process = process
        self.url = f"http://127.0.0.1:{port}/"

    def access_lines(self, expected: int) -> list[str]:
        """Return the access log once it has ``expected`` lines, or after 2 s.

        nginx logs a request after its response is sent, so the last lines can
        appear after the client has its response.
        """
        path = self.root / "access.log"
        deadline = time.monotonic() + 2
        lines = path.read_text().splitlines()
        while len(lines) < expected and time.monotonic() < deadline:
            time.sleep(0.01)
            lines = path.read_text().splitlines()
        return lines


@pytest.fixture
def nginx(tmp_path: Path) -> Iterator[Nginx]:
    port = servers.unused_port()
    config = tmp_path / "nginx.conf"
    upstream_port = servers.unused_port()
    config.write_text(
        CONFIG.format(root=tmp_path, port=port, upstream_port=upstream_port)
    )
    process = subprocess.Popen(
        # -e keeps even the start-up errors out of /var/log/nginx.
        [
            NGINX,
            "-p",
            str(tmp_path),
            "-e",
            str(tmp_path / "error.log"),
            "-c",
            str(config),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for_port(port, process)
        yield Nginx(tmp_path, process, port)
    finally:
        process.send_signal(signal.SIGCONT)
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


def test_nginx_requests_exact(nginx: Nginx) -> None:
    result = run_load(
        LoadSpec(url=nginx.url, connections=4, requests=500, duration_seconds=10)
    )
    assert result.requests_total == 500
    assert result.status_classes["2xx"] == 500
    assert result.keep_alive is True
    assert len(nginx.access_lines(500)) == 500


def test_nginx_post_body_length(nginx: Nginx) -> None:
    body = b"x" * 3000
    result = run_load(
        LoadSpec(
            url=nginx.url + "orders",
            connections=2,
            requests=20,
            method="POST",
            body=body,
        )
    )
    assert result.requests_total == 20
    assert result.status_classes["2xx"] == 20
    lines = nginx.access_lines(20)
    assert len(lines) == 20
    methods = {line.split()[0] for line in lines}
    assert methods == {"POST"}
    statuses = {line.split()[3] for line in lines}
    assert statuses == {"201"}
    # $request_length counts the request line, headers and body.
    lengths = {int(line.split()[2]) for line in lines}
    assert len(lengths) == 1
    assert lengths.pop() > len(body)


def test_nginx_sigstop_pause_corrected(nginx: Nginx) -> None:
    rate = 200.0
    window: dict[str, float] = {}

    def pause() -> None:
        time.sleep(0.7)
        window["start"] = time.perf_counter()
        nginx.process.send_signal(signal.SIGSTOP)
        time.sleep(0.5)
        nginx.process.send_signal(signal.SIGCONT)
        window["end"] = time.perf_counter()

    pauser = threading.Thread(target=pause)
    pauser.start()
    try:
        result = run_load(
            LoadSpec(
                url=nginx.url,
                connections=4,
                duration_seconds=2.0,
                rate_per_second=rate,
            )
        )
    finally:
        pauser.join(timeout=5)
    pause_seconds = window["end"] - window["start"]
    count = result.latency.count
    stalled = rate * pause_seconds
    # The stalled sends' corrected latencies spread evenly from 0 to the pause,
    # and every other request took about a millisecond.
    for q, measured in (
        (90.0, result.latency.p90_seconds),
        (99.0, result.latency.p99_seconds),
    ):
        rank = -(-q * count // 100)
        expected = (rank - (count - stalled)) / stalled * pause_seconds
        assert measured is not None
        assert abs(measured - expected) <= 0.15 * expected, (q, measured, expected)
    assert result.errors_total == 0
