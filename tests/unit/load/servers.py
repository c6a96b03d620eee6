"""Small threaded HTTP servers on 127.0.0.1 with scripted misbehaviour."""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress

# A handler gets the connection socket, the server and the 0-based index of the
# request on this connection. It returns False to stop serving the connection.
Handler = Callable[[socket.socket, "TestServer", int], bool]

OK_RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
_MAX_REQUEST_BYTES = 65_536


class TestServer:
    """Listening socket with one thread per connection, counting requests."""

    __test__ = False

    def __init__(
        self,
        handler: Handler,
        *,
        read_requests: bool = True,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.handler = handler
        self.read_requests = read_requests
        self.tls = tls
        self.listener = socket.create_server(("127.0.0.1", 0))
        # Closing a socket does not wake a thread blocked in accept(), so the
        # accept loop polls for the stop event.
        self.listener.settimeout(0.05)
        self.port: int = self.listener.getsockname()[1]
        scheme = "http" if tls is None else "https"
        self.url = f"{scheme}://127.0.0.1:{self.port}/"
        self.lock = threading.Lock()
        self.requests_received = 0
        self.connections_accepted = 0
        self.request_heads: list[bytes] = []
        self.request_bodies: list[bytes] = []
        # time.perf_counter() when each request had been read.
        self.request_times: list[float] = []
        self.stopping = threading.Event()
        self.sockets: list[socket.socket] = []
        self.threads: list[threading.Thread] = []
        self.accept_thread = threading.Thread(target=self._accept, daemon=True)

    def start(self) -> None:
        self.accept_thread.start()

    def stop(self) -> None:
        self.stopping.set()
        self.listener.close()
        with self.lock:
            sockets = list(self.sockets)
        for sock in sockets:
            with suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        self.accept_thread.join(timeout=2)
        for thread in list(self.threads):
            thread.join(timeout=2)

    def _accept(self) -> None:
        while not self.stopping.is_set():
            try:
                sock, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self.lock:
                self.connections_accepted += 1
                self.sockets.append(sock)
            thread = threading.Thread(target=self._serve, args=(sock,), daemon=True)
            self.threads.append(thread)
            thread.start()

    def _read_request(self, sock: socket.socket, buffer: bytearray) -> bool:
        while b"\r\n\r\n" not in buffer:
            try:
                chunk = sock.recv(4096)
            except OSError:
                return False
            if not chunk or len(buffer) > _MAX_REQUEST_BYTES:
                return False
            buffer.extend(chunk)
        end = buffer.index(b"\r\n\r\n") + 4
        head = bytes(buffer[:end])
        del buffer[:end]
        length = _content_length(head)
        while len(buffer) < length:
            try:
                chunk = sock.recv(4096)
            except OSError:
                return False
            if not chunk:
                return False
            buffer.extend(chunk)
        body = bytes(buffer[:length])
        del buffer[:length]
        with self.lock:
            self.requests_received += 1
            self.request_heads.append(head)
            self.request_bodies.append(body)
            self.request_times.append(time.perf_counter())
        return True

    def _serve(self, sock: socket.socket) -> None:
        buffer = bytearray()
        index = 0
        try:
            if self.tls is not None:
                sock.settimeout(2.0)
                sock = self.tls.wrap_socket(sock, server_side=True)
                sock.settimeout(None)
            while not self.stopping.is_set():
                if self.read_requests and not self._read_request(sock, buffer):
                    return
                if not self.handler(sock, self, index):
                    return
                index += 1
        except OSError:
            return
        finally:
            sock.close()


def _content_length(head: bytes) -> int:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value.strip())
    return 0


@contextmanager
def serving(
    handler: Handler,
    *,
    read_requests: bool = True,
    tls: ssl.SSLContext | None = None,
) -> Iterator[TestServer]:
    server = TestServer(handler, read_requests=read_requests, tls=tls)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def keep_alive(sock: socket.socket, server: TestServer, index: int) -> bool:
    sock.sendall(OK_RESPONSE)
    return True


def close_each(sock: socket.socket, server: TestServer, index: int) -> bool:
    # Same framing as busybox httpd: a length, Connection: close, then the close.
    sock.sendall(
        b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 5\r\n\r\nhello"
    )
    return False


def close_delimited(sock: socket.socket, server: TestServer, index: int) -> bool:
    sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n" + b"x" * 3000)
    sock.shutdown(socket.SHUT_WR)
    return False


def close_after(requests_per_connection: int) -> Handler:
    def handler(sock: socket.socket, server: TestServer, index: int) -> bool:
        sock.sendall(OK_RESPONSE)
        return index + 1 < requests_per_connection

    return handler


def close_mid_response(sock: socket.socket, server: TestServer, index: int) -> bool:
    sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten b")
    sock.shutdown(socket.SHUT_WR)
    return False


def chunked(sock: socket.socket, server: TestServer, index: int) -> bool:
    sock.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
    for _ in range(20):
        sock.sendall(b"1\r\nx\r\n")
    sock.sendall(b"0\r\n\r\n")
    return True


def delayed(delay_seconds: float) -> Handler:
    def handler(sock: socket.socket, server: TestServer, index: int) -> bool:
        time.sleep(delay_seconds)
        sock.sendall(OK_RESPONSE)
        return True

    return handler


def silent(sock: socket.socket, server: TestServer, index: int) -> bool:
    # Accept and read, never respond, until the client or the test closes.
    while not server.stopping.is_set():
        try:
            if not sock.recv(4096):
                return False
        except OSError:
            return False
    return False


def garbage(sock: socket.socket, server: TestServer, index: int) -> bool:
    sock.sendall(b"NOT HTTP AT ALL\r\n\r\n")
    return True


def unused_port() -> int:
    """Return a port on 127.0.0.1 that was just free and has no listener."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port
