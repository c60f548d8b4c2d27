"""SIGTERM (a CI job cancelled, a pod stopped) taken as Ctrl-C: the command or the Ray driver
unwinds as on KeyboardInterrupt (work folders removed, the answers received kept)."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator


def interrupt(signum: int, frame: object) -> None:
    """A signal handler: raise :class:`KeyboardInterrupt` in the main thread."""
    raise KeyboardInterrupt


@contextlib.contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """Within it, SIGTERM raises :class:`KeyboardInterrupt` (in the main thread; elsewhere,
    or without SIGTERM, nothing changes); the handler from before is put back after."""
    if not hasattr(signal, "SIGTERM") or threading.current_thread() is not threading.main_thread():
        yield
        return
    before = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, before)
