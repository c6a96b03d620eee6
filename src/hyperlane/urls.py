"""URLs as messages and logs show them: without the user name and password."""

from __future__ import annotations

import urllib.parse


def display_url(url: str) -> str:
    """Return url without its user name and password, for messages and logs.

    The rest of the URL is kept as written, an invalid port included, so that an
    error about it still shows the value.
    """
    parts = urllib.parse.urlsplit(url)
    if "@" not in parts.netloc:
        return url
    host_and_port = parts.netloc.rpartition("@")[2]
    return urllib.parse.urlunsplit(
        (parts.scheme, host_and_port, parts.path, parts.query, parts.fragment)
    )
