"""Stops a managed server's process group when the migrate-eval process that started it dies.

``python -m migrate_eval.replay._reaper OWNER_PID PGID GRACE``: started beside every managed
server (:mod:`migrate_eval.replay.servers`), in a session of its own. A normal end, an error,
Ctrl-C or SIGTERM stop the server from migrate-eval itself; a SIGKILL (or a crash that skips
every cleanup) cannot, and this process is what then stops the server: once OWNER_PID is gone
(or a zombie), it sends SIGTERM to the group, waits GRACE seconds, then SIGKILL. It exits as
soon as the group is gone. Standard library only, so that it starts in a few milliseconds.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from pathlib import Path

POLL_S = 0.25


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, killed but not yet reaped, counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc here: the signal probe is all there is
    fields = stat.rsplit(")", 1)[-1].split()
    return not (fields and fields[0] in ("Z", "X"))


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def watch(owner: int, pgid: int, grace: float) -> None:
    while group_alive(pgid):
        if not alive(owner):
            signal_group(pgid, signal.SIGTERM)
            deadline = time.monotonic() + grace
            while group_alive(pgid) and time.monotonic() < deadline:
                time.sleep(POLL_S)
            signal_group(pgid, signal.SIGKILL)
            return
        time.sleep(POLL_S)


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C in the terminal is for migrate-eval
    owner, pgid, grace = int(argv[0]), int(argv[1]), float(argv[2])
    watch(owner, pgid, grace)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
