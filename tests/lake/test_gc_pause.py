"""The drain's pause of the cyclic garbage collector: counted, restored, exception-safe."""

from __future__ import annotations

import gc
import threading

import pytest

from shoppulse.gc_pause import paused_cyclic_gc


@pytest.fixture(autouse=True)
def _restore_gc():
    was = gc.isenabled()
    yield
    (gc.enable if was else gc.disable)()


def test_the_collector_is_off_inside_and_back_on_after() -> None:
    gc.enable()
    with paused_cyclic_gc():
        assert not gc.isenabled()
    assert gc.isenabled()


def test_nested_pauses_re_enable_only_when_the_outermost_ends() -> None:
    gc.enable()
    with paused_cyclic_gc():
        with paused_cyclic_gc():
            pass
        assert not gc.isenabled()
    assert gc.isenabled()


def test_a_collector_disabled_before_stays_disabled() -> None:
    gc.disable()
    with paused_cyclic_gc():
        pass
    assert not gc.isenabled()


def test_an_exception_inside_still_re_enables() -> None:
    gc.enable()
    with pytest.raises(RuntimeError), paused_cyclic_gc():
        raise RuntimeError("boom")
    assert gc.isenabled()


def test_overlapping_pauses_from_threads_end_with_the_collector_on() -> None:
    gc.enable()
    inside = threading.Barrier(4)
    seen_enabled: list[bool] = []

    def pause() -> None:
        with paused_cyclic_gc():
            inside.wait(timeout=10)  # all four inside at once
            seen_enabled.append(gc.isenabled())
            inside.wait(timeout=10)  # none leaves before all have looked

    threads = [threading.Thread(target=pause) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert seen_enabled == [False] * 4
    assert gc.isenabled()
