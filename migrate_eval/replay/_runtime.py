"""The interpreter's settings while a replay waits on the vendors.

A replay's event loop thread does a little work for each of hundreds of answers a second; a
request waits for it whenever it is stalled. Two stalls of the interpreter's own, measured in
a 10,000-request run at 100 ms (``benchmarks/trace_replay.py``), are kept down while requests
are in flight:

* **the cyclic garbage collector**: a full collection walks every object the process holds
  (a run's exchanges, its plan, its answers): 2-3 of them during such a replay took 0.1-0.3 s
  each, every request in flight waiting meanwhile, and the young collections (one every 700
  allocations: ~270) added ~0.25 s of the loop thread's CPU. During a replay the objects that
  existed before it are frozen (:func:`gc.freeze`: never walked by a collection; they were
  alive before and are alive after) and the young generation is collected every
  :data:`YOUNG_THRESHOLD` allocations: ~0.1 s in all, the longest pause 0.03-0.06 s (on a
  loaded machine);
* **the GIL's switch interval**: a thread that computes (the cache writer binding its rows,
  the chance levels, the chrF workers' bookkeeping) keeps the GIL up to 5 ms (Python's
  default) after the loop thread asks for it back, and the loop thread asks after every
  socket call. During a replay it is at most :data:`SWITCH_INTERVAL`.

Both are process-wide: set when the first replay of the process starts, restored when the
last one ends (replays may overlap, in threads).
"""

from __future__ import annotations

import contextlib
import gc
import sys
import threading
from collections.abc import Iterator

#: Allocations (net, of objects the collector tracks) between two young collections during a
#: replay (Python's default: 700).
YOUNG_THRESHOLD = 10_000
#: Seconds a thread may keep the GIL when another asks for it, during a replay (default 0.005).
SWITCH_INTERVAL = 0.0005

_lock = threading.Lock()
_depth = 0
_saved: tuple[tuple[int, int, int], float] | None = None


@contextlib.contextmanager
def replay_runtime() -> Iterator[None]:
    """Within: the settings of the module docstring (the objects alive on entry frozen);
    on leaving the last one, the settings as they were and every object collectable again."""
    global _depth, _saved
    with _lock:
        if _depth == 0:
            threshold = gc.get_threshold()
            _saved = (threshold, sys.getswitchinterval())
            young, middle, old = threshold
            if young:  # 0: automatic collection is off; left so
                gc.set_threshold(max(young, YOUNG_THRESHOLD), middle, old)
            sys.setswitchinterval(min(_saved[1], SWITCH_INTERVAL))
        _depth += 1
    gc.freeze()
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _saved is not None:
                gc.unfreeze()
                threshold, interval = _saved
                gc.set_threshold(*threshold)
                sys.setswitchinterval(interval)
                _saved = None


def settle() -> None:
    """Freeze what was made since the replay began (its plan, held to its end), inside
    :func:`replay_runtime`."""
    if _depth:
        gc.freeze()
