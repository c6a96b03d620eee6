"""A Debian Python image whose HTTP server burns a fixed CPU time per request.

The root file system is debootstrap minbase with python3, cached per machine by
tests/integration/rootfs.py. The server responds to every GET after spinning for
BURN_SECONDS of its own thread's CPU time, so its CPU need at a request rate is
known: 100 requests/s need about 0.2 cores, plus what parsing and answering cost.
"""

from __future__ import annotations

import hashlib
import io
import tarfile

import docker

from tests.integration.rootfs import (
    RootFileSystem,
    base_image,
    build_labelled_image,
    cache_lock,
    debootstrap_rootfs,
    remove_other_tags,
)

PYTHON_DEBOOTSTRAP_ARGUMENTS = ("--variant=minbase", "--include=python3")
BURN_SECONDS = 0.002
SERVER_PORT = 8080

# One thread per connection, HTTP/1.1 keep-alive, no parsing beyond the end of the
# request head, so that nearly all of a request's CPU is the burn.
SERVER_SOURCE = """\
import socket
import sys
import threading
import time

BURN_SECONDS = float(sys.argv[1])
BODY = b"burned\\n"
RESPONSE = (
    b"HTTP/1.1 200 OK\\r\\nContent-Type: text/plain\\r\\nContent-Length: "
    + str(len(BODY)).encode()
    + b"\\r\\n\\r\\n"
    + BODY
)


def burn():
    end = time.thread_time() + BURN_SECONDS
    while time.thread_time() < end:
        pass


def serve(connection):
    buffered = b""
    with connection:
        while True:
            while b"\\r\\n\\r\\n" not in buffered:
                chunk = connection.recv(65536)
                if not chunk:
                    return
                buffered += chunk
            _, buffered = buffered.split(b"\\r\\n\\r\\n", 1)
            burn()
            connection.sendall(RESPONSE)


listener = socket.create_server(("0.0.0.0", int(sys.argv[2])), backlog=128)
while True:
    connection, _ = listener.accept()
    connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    threading.Thread(target=serve, args=(connection,), daemon=True).start()
"""

CONTAINERFILE = f"""\
FROM {{base}}
COPY burner.py /srv/burner.py
EXPOSE {SERVER_PORT}/tcp
CMD ["python3", "-u", "/srv/burner.py", "{BURN_SECONDS}", "{SERVER_PORT}"]
"""


def python_rootfs() -> RootFileSystem:
    """The debootstrap tarball with python3, built on the first use of a machine."""
    return debootstrap_rootfs("python3", PYTHON_DEBOOTSTRAP_ARGUMENTS)


def _context(base: str) -> tuple[bytes, str]:
    text = CONTAINERFILE.format(base=base)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name, content in (
            ("burner.py", SERVER_SOURCE.encode()),
            ("Containerfile", text.encode()),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(content)
            archive.addfile(info, io.BytesIO(content))
    return buffer.getvalue(), text


def burner_image(client: docker.DockerClient, rootfs: RootFileSystem) -> str:
    """Return the tag of the CPU-burning server image, building it when missing."""
    with cache_lock():
        base = base_image(client, rootfs, "localhost/hyperlane-test-debian-python")
        context, text = _context(base)
        recipe = hashlib.sha256(
            f"{rootfs.sha256}\n{text}\n{SERVER_SOURCE}".encode()
        ).hexdigest()
        tag = build_labelled_image(
            client, context, "localhost/hyperlane-test-burner", recipe
        )
        remove_other_tags(client, base)
    return tag
