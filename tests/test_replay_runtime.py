"""The interpreter's settings while a replay has requests in flight (replay/_runtime.py): the
garbage collector does not walk what the run held before the replay, collects the young
generation seldom, and a computing thread hands the GIL back to the event loop quickly. All
restored when the replay ends, however it ends."""

from __future__ import annotations

import gc
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from migrate_eval.core.errors import ConfigError
from migrate_eval.core.records import Exchange, Source
from migrate_eval.core.suite import CandidateSpec
from migrate_eval.replay import _runtime
from migrate_eval.replay.cache import ResponseCache
from migrate_eval.replay.engine import HedgePolicy, replay_async
from migrate_eval.replay.providers.base import ProviderResponse
from tests.virtual_time import FakeVendor, run_virtual, use_fake_vendor


class _Held:
    """An object the run holds from before the replay (like its exchanges)."""


class WatchingVendor(FakeVendor):
    """Answers as :class:`FakeVendor`, noting the interpreter's settings on each request."""

    def __init__(self, held: _Held, fail_with: BaseException | None = None) -> None:
        super().__init__()
        self.held = held
        self.fail_with = fail_with
        self.seen: list[tuple[tuple[int, int, int], float, int, bool]] = []

    async def complete(self, request: dict[str, Any]) -> ProviderResponse:
        walked = any(o is self.held for o in gc.get_objects())
        self.seen.append(
            (gc.get_threshold(), sys.getswitchinterval(), gc.get_freeze_count(), walked)
        )
        if self.fail_with is not None:
            raise self.fail_with
        return await super().complete(request)


def exchanges(n: int) -> list[Exchange]:
    return [
        Exchange(
            id=f"ex{i}",
            source=Source(file="log.jsonl", line=i + 1, format="test"),
            request={"model": "gpt-4o", "messages": [{"role": "user", "content": f"q{i}"}]},
        )
        for i in range(n)
    ]


@pytest.fixture
def cache(tmp_path: Path) -> Iterator[ResponseCache]:
    with ResponseCache(tmp_path / "cache.db") as c:
        yield c


@pytest.fixture(autouse=True)
def _defaults() -> Iterator[None]:
    """Python's defaults around each test (a test that fails leaves none of its own)."""
    threshold, interval = gc.get_threshold(), sys.getswitchinterval()
    gc.set_threshold(700, 10, 10)
    sys.setswitchinterval(0.005)
    yield
    gc.set_threshold(*threshold)
    sys.setswitchinterval(interval)


def replay_through(
    vendor: FakeVendor, cache: ResponseCache, monkeypatch: pytest.MonkeyPatch, n: int = 5
) -> None:
    use_fake_vendor(monkeypatch, vendor)
    spec = CandidateSpec(name="c", provider="openai-compatible", model="m")
    run_virtual(
        replay_async(
            exchanges(n),
            [spec],
            cache=cache,
            interruptible=False,
            hedge=HedgePolicy(enabled=False),
            leases=False,
        )
    )


def test_in_flight_requests_see_a_quiet_collector_and_a_short_switch_interval(
    cache: ResponseCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    held = _Held()
    vendor = WatchingVendor(held)
    assert any(o is held for o in gc.get_objects())  # walked by collections before
    replay_through(vendor, cache, monkeypatch)
    assert len(vendor.seen) == 5
    for threshold, interval, frozen, walked in vendor.seen:
        assert threshold == (_runtime.YOUNG_THRESHOLD, 10, 10)
        assert interval == pytest.approx(_runtime.SWITCH_INTERVAL, abs=2e-6)
        assert frozen > 0
        assert not walked  # what the run held before is not walked by a collection
    # and after the replay: as before, every object collectable again
    assert gc.get_threshold() == (700, 10, 10)
    assert sys.getswitchinterval() == 0.005
    assert gc.get_freeze_count() == 0
    assert any(o is held for o in gc.get_objects())


def test_settings_are_restored_when_the_replay_fails(
    cache: ResponseCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    vendor = WatchingVendor(_Held(), fail_with=ConfigError("OPENAI_API_KEY is not set"))
    with pytest.raises(ConfigError, match="OPENAI_API_KEY"):
        replay_through(vendor, cache, monkeypatch, n=1)
    assert vendor.seen and vendor.seen[0][0][0] == _runtime.YOUNG_THRESHOLD
    assert gc.get_threshold() == (700, 10, 10)
    assert sys.getswitchinterval() == 0.005
    assert gc.get_freeze_count() == 0


def test_overlapping_replays_restore_once_the_last_ends() -> None:
    with _runtime.replay_runtime():
        with _runtime.replay_runtime():
            assert gc.get_threshold()[0] == _runtime.YOUNG_THRESHOLD
        # the inner one ended: the outer replay still runs with the settings
        assert gc.get_threshold()[0] == _runtime.YOUNG_THRESHOLD
        assert sys.getswitchinterval() == pytest.approx(_runtime.SWITCH_INTERVAL, abs=2e-6)
        assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == (700, 10, 10)
    assert sys.getswitchinterval() == 0.005
    assert gc.get_freeze_count() == 0


def test_a_process_s_own_choices_are_kept() -> None:
    """Collection switched off (threshold 0) stays off; a shorter interval or a larger
    threshold the process chose is not made longer or smaller."""
    gc.set_threshold(0, 10, 10)
    sys.setswitchinterval(0.0001)
    with _runtime.replay_runtime():
        assert gc.get_threshold() == (0, 10, 10)
        assert sys.getswitchinterval() == pytest.approx(0.0001, abs=2e-6)
    gc.set_threshold(50_000, 10, 10)
    with _runtime.replay_runtime():
        assert gc.get_threshold() == (50_000, 10, 10)
    assert gc.get_threshold() == (50_000, 10, 10)
