"""The worker's count of its waits for a CPU core: a counter that never goes back nor raises."""

from __future__ import annotations

from relay.cpuwait import CoreWait


def test_the_count_of_waits_for_a_core_never_goes_back() -> None:
    wait = CoreWait()
    counts = []
    for _ in range(50):
        sum(range(20_000))  # some work between reads, past the reuse window at times
        counts.append(wait.waited())
    assert all(c >= 0.0 for c in counts)
    assert counts == sorted(counts)
