"""Detection of a length-delimited response head, used when keep-alive is off."""

import pytest

from hyperlane.load.runner import _has_length_header


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", True),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", True),
        (b"HTTP/1.1 200 OK\r\ncontent-length:5\r\n\r\n", True),
        (b"HTTP/1.0 200 OK\r\nServer: x\r\n\r\nbody until close", False),
        (b"HTTP/1.1 200 OK\nConnection: close\n\n", False),
        (
            b"HTTP/1.1 100 Continue\r\nContent-Length: 1\r\n\r\n"
            b"HTTP/1.1 200 OK\r\nServer: x\r\n\r\n",
            False,
        ),
        (
            b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
            b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
            True,
        ),
        (b"HTTP/1.1 200 OK\r\nX-Content-Length-Note: 5\r\n\r\n", False),
        (b"HTTP/1.1 200 OK\r\nServer: x\r\n\r\nContent-Length: 5\r\n", False),
    ],
)
def test_length_header_detected(head: bytes, expected: bool) -> None:
    assert _has_length_header(head) is expected
