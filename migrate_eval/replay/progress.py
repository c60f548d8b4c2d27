"""The terminal progress board of a replay: per candidate done/total, cached, errors, live rate,
ETA, concurrency after 429s and time spent rate-limited. Redrawn in place on a terminal; one
line per candidate every 10 s otherwise.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from migrate_eval.replay.engine import ProgressEvent

#: Request fields that are tied to the logging OpenAI account or that the engine controls.


def _clock_text(seconds: float) -> str:
    if seconds != seconds or seconds == float("inf"):
        return "?"
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


@dataclass
class _Track:
    event: ProgressEvent
    first_live: float | None = None  # when the first answer was fetched (not cached)
    samples: list[tuple[float, int]] = field(default_factory=list)  # (time, fetched)


class ProgressBoard:
    """Per-candidate progress lines: done/total, cached, errors, live rate, ETA.

    The rate counts answers fetched (not cache hits) over the last ``window`` seconds, so a
    resumed run's ETA is not fooled by the instant cache hits. When the concurrency was
    lowered after 429s, or requests waited for rpm/tpm limits, the line says so. On a
    terminal (``redraw``) the lines are rewritten in place at most every ``interval``
    seconds; otherwise (CI logs) a line per candidate is printed every ``log_interval`` s.
    ``write`` receives the text to print; ``clock`` gives monotonic seconds.
    """

    def __init__(
        self,
        write: Callable[[str], None],
        *,
        redraw: bool = True,
        interval: float = 0.25,
        log_interval: float = 10.0,
        window: float = 10.0,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.write = write
        self.redraw = redraw
        self.interval = interval if redraw else log_interval
        self.window = window
        self.clock = clock or time.monotonic
        self.tracks: dict[str, _Track] = {}
        self.last_draw = float("-inf")
        self.lines_drawn = 0
        self.closed = False

    def __call__(self, event: ProgressEvent) -> None:
        now = self.clock()
        track = self.tracks.get(event.candidate)
        if track is None:
            track = self.tracks[event.candidate] = _Track(event)
        track.event = event
        fetched = event.done - event.cached
        if fetched > 0 and track.first_live is None:
            track.first_live = now
        track.samples.append((now, fetched))
        while len(track.samples) > 2 and track.samples[1][0] < now - self.window:
            track.samples.pop(0)
        finished = all(t.event.done >= t.event.total for t in self.tracks.values())
        if finished or now - self.last_draw >= self.interval:
            self.draw(now, final=finished)

    def rate(self, track: _Track, now: float) -> float:
        """Fetched answers per second over the window."""
        if len(track.samples) < 2:
            return 0.0
        t0, n0 = track.samples[0]
        t1, n1 = track.samples[-1]
        span = max(now - t0, t1 - t0, 1e-6)
        return max(n1 - n0, 0) / span

    def line(self, name: str, now: float) -> str:
        track = self.tracks[name]
        ev = track.event
        pct = 100.0 * ev.done / ev.total if ev.total else 100.0
        width = max(len(n) for n in self.tracks)
        parts = [f"{name:<{width}}  {ev.done:>{len(str(ev.total))}}/{ev.total} {pct:3.0f}%"]
        if ev.cached:
            parts.append(f"cached {ev.cached}")
        if ev.errors:
            parts.append(f"errors {ev.errors} ({100.0 * ev.errors / max(ev.done, 1):.1f}%)")
        if ev.done < ev.total:
            rate = self.rate(track, now)
            eta = (ev.total - ev.done) / rate if rate > 0 else float("inf")
            parts.append(f"{rate:.1f}/s" if rate < 10 else f"{rate:.0f}/s")
            parts.append(f"ETA {_clock_text(eta)}")
        else:
            parts.append("done")
        if ev.in_flight_limit is not None and ev.done < ev.total:
            parts.append(f"concurrency {ev.in_flight_limit}")
        if ev.throttled_s >= 1.0:
            parts.append(f"rate-limited {ev.throttled_s:.0f}s")
        return "  ".join(parts)

    def draw(self, now: float | None = None, *, final: bool = False) -> None:
        if self.closed:
            return
        now = self.clock() if now is None else now
        self.last_draw = now
        lines = [self.line(name, now) for name in self.tracks]
        if self.redraw:
            up = f"\x1b[{self.lines_drawn}F" if self.lines_drawn else ""
            self.write(up + "".join(f"\x1b[2K{line}\n" for line in lines))
            self.lines_drawn = len(lines)
        else:
            self.write("".join(f"{line}\n" for line in lines))
        if final:
            self.closed = True
