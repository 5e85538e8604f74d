"""Downloads must fail fast on an offline machine instead of hanging on every mirror."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager

DOWNLOAD_TIMEOUT_S = 10.0


@contextmanager
def socket_timeout(seconds: float = DOWNLOAD_TIMEOUT_S) -> Iterator[None]:
    """Every socket opened inside (urllib, torchvision's downloader) gives up after ``seconds``."""
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)
