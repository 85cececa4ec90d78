"""An overall deadline for one delivery attempt.

Socket timeouts bound each read, not the attempt: a receiver that sends one byte every few
seconds resets them forever. `Deadline` shuts the attempt's current socket down when its
time is up, which ends whatever read or write is blocked on it; the caller then reports
`expired` instead of the error the shutdown caused.
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Callable


class DeadlineExceeded(TimeoutError):
    """The attempt as a whole ran out of time (a TimeoutError, so it is retried)."""


class Deadline:
    def __init__(self, seconds: float, current: Callable[[], socket.socket | None]) -> None:
        self.seconds = seconds
        self.current = current  # the socket in use now (TLS may replace it mid-attempt)
        self.expired = False
        self._end = time.monotonic() + seconds
        self._timer = threading.Timer(seconds, self._fire)
        self._timer.daemon = True

    def remaining(self) -> float:
        return max(self._end - time.monotonic(), 0.0)

    def error(self) -> DeadlineExceeded:
        return DeadlineExceeded(f"no complete answer within the {self.seconds:g}s deadline")

    def _fire(self) -> None:
        self.expired = True
        sock = self.current()
        if sock is not None:
            try:  # the plain socket's shutdown, also under TLS: the fd itself, not the TLS state
                socket.socket.shutdown(sock, socket.SHUT_RDWR)
            except OSError:
                pass  # already closed

    def __enter__(self) -> "Deadline":
        self._timer.start()
        return self

    def __exit__(self, *exc) -> None:
        self._timer.cancel()
