"""ExpiringMap: what every short-lived in-process cache keeps, and how a full one makes room."""

from __future__ import annotations

import pytest

from credenza.expiring import ExpiringMap


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_value_lives_until_its_moment_and_no_longer() -> None:
    clock = Clock()
    entries: ExpiringMap[str, int] = ExpiringMap(10, clock)
    entries.put("a", 1, until=1010.0)
    assert entries.get("a") == 1
    clock.now = 1009.9
    assert entries.get("a") == 1
    clock.now = 1010.0
    assert entries.get("a") is None
    assert entries.get("never put") is None
    entries.put("a", 2, until=1020.0)  # put again: the new value and moment
    assert entries.get("a") == 2
    entries.pop("a")
    assert entries.get("a") is None


def test_a_full_map_drops_the_expired_first_then_the_older_half() -> None:
    clock = Clock()
    entries: ExpiringMap[int, int] = ExpiringMap(6, clock)
    for key in range(6):  # 0 and 1 expire soon, the others later
        entries.put(key, key, until=1001.0 if key < 2 else 2000.0)
    clock.now = 1500.0
    entries.put(6, 6, until=2000.0)
    # room made: 0 and 1 expired; of the fresh 2..5 the newer 3 (size // 2) stay, then 6
    assert [key for key in range(7) if entries.get(key) is not None] == [3, 4, 5, 6]
    assert len(entries) == 4
    entries.put(6, 60, until=2000.0)  # a key already held takes no room
    assert len(entries) == 4 and entries.get(6) == 60


def test_a_full_map_of_fresh_entries_keeps_the_newer_half() -> None:
    clock = Clock()
    entries: ExpiringMap[int, int] = ExpiringMap(4, clock)
    for key in range(10):
        entries.put(key, key, until=5000.0)
        assert len(entries) <= 4
    assert entries.get(9) == 9 and entries.get(0) is None


def test_a_map_holds_at_least_two() -> None:
    with pytest.raises(ValueError, match="at least 2"):
        ExpiringMap(1)
