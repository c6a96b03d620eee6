"""https runs against an ssl-wrapped test server with a self-signed certificate."""

from __future__ import annotations

import shutil
import ssl
import subprocess
from pathlib import Path

import pytest

from hyperlane.load import LoadSpec, run_load
from tests.unit.load import servers

pytestmark = pytest.mark.skipif(
    shutil.which("openssl") is None, reason="the openssl command is not installed"
)


@pytest.fixture(scope="module")
def server_context(tmp_path_factory: pytest.TempPathFactory) -> ssl.SSLContext:
    directory: Path = tmp_path_factory.mktemp("tls")
    key = directory / "key.pem"
    certificate = directory / "cert.pem"
    # An EC key is generated in milliseconds, where RSA takes up to a second.
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(certificate),
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certificate, key)
    return context


def test_tls_insecure_succeeds(server_context: ssl.SSLContext) -> None:
    with servers.serving(servers.keep_alive, tls=server_context) as server:
        result = run_load(
            LoadSpec(url=server.url, connections=2, requests=40, insecure=True)
        )
    assert server.url.startswith("https://")
    assert result.requests_total == 40
    assert server.requests_received == 40
    assert result.errors_total == 0
    assert result.connections_opened == 2


def test_tls_untrusted_rejected(server_context: ssl.SSLContext) -> None:
    with servers.serving(servers.keep_alive, tls=server_context) as server:
        result = run_load(
            LoadSpec(url=server.url, connections=1, requests=3, duration_seconds=2)
        )
    # The certificate is self-signed, so verification fails on every attempt.
    assert result.errors["tls"] == 3
    assert result.requests_total == 0
    assert server.requests_received == 0
