"""Learning of a stop signal on a thread of its own while the main thread is busy.

Python runs a signal handler only between bytecodes of the main thread, so a process inside one
long native call (a backend compiling a step, a converter writing a model) would notice SIGTERM
only once the call returns. ``StopSignals`` has the C-level handler write each signal's number to
a socket (``signal.set_wakeup_fd``) that another thread waits on: that thread hears of the signal
the moment it arrives. Used by the training worker's stop watchdog (``fer.train``) and by the
export process (``fer.export``).
"""

from __future__ import annotations

import signal
import socket
import time

STOP_SIGNALS = frozenset({signal.SIGTERM, signal.SIGINT})


class StopSignals:
    """Call ``install()`` from the main thread (once its handlers are set: a signal without a
    Python handler never reaches the socket), then ``wait()`` from any thread."""

    def __init__(self) -> None:
        self._wake, self._signalled = socket.socketpair()
        self._signalled.setblocking(False)

    def install(self) -> None:
        signal.set_wakeup_fd(self._signalled.fileno(), warn_on_full_buffer=False)

    def wait(self, timeout: float | None = None) -> bool:
        """True once SIGTERM or SIGINT has arrived; False when ``timeout`` seconds pass first.
        Other signals written to the socket (any signal with a Python handler) are skipped."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return False
            self._wake.settimeout(remaining)
            try:
                received = self._wake.recv(64)
            except TimeoutError:
                return False
            if STOP_SIGNALS & set(received):
                return True
