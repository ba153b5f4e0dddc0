"""The worker process's cyclic GC setting (seam "gen-0 GC threshold", ``workers.runner``)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from workers.runner import GC_GEN0_THRESHOLD, tune_gc


@pytest.fixture
def gc_thresholds() -> Iterator[tuple[int, int, int]]:
    """The thresholds before the test, put back after it."""
    before = gc.get_threshold()
    yield before
    gc.set_threshold(*before)


def test_young_collections_wait_for_more_objects_and_the_rest_stays(
    gc_thresholds: tuple[int, int, int],
) -> None:
    tune_gc()
    assert gc.get_threshold() == (GC_GEN0_THRESHOLD, *gc_thresholds[1:])
    assert gc.isenabled()  # cycles are still collected


def test_cyclic_garbage_is_still_collected(gc_thresholds: tuple[int, int, int]) -> None:
    tune_gc()

    class Node:
        other: object = None

    collected: list[int] = []
    gc.callbacks.append(cb := lambda phase, info: collected.append(info.get("collected", 0)))
    try:
        for _ in range(GC_GEN0_THRESHOLD):  # 2 x the threshold of objects in cycles
            a, b = Node(), Node()
            a.other, b.other = b, a  # reference counting alone cannot free these
    finally:
        gc.callbacks.remove(cb)
    assert sum(collected) > 0  # a young collection ran by itself and freed cycles
