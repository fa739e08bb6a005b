"""ExpiringMap: the one bounded, expiring in-process map behind every short-lived cache.

Verified bearer tokens (:mod:`credenza.jwtcheck`), verified passwords and API keys
(:class:`credenza.secrets.VerifiedCache`), LDAP groups and SQLite records read since the last
change each keep values for a short while, per worker. They share how a full map makes room,
so that none grows without bound and none forgets what is still fresh first: expired entries
go, then the oldest half of what is left.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class ExpiringMap(Generic[K, V]):
    """Values by key, each until a moment given with it on ``clock``, at most ``size`` of them.

    Reads take no lock (a dict lookup is atomic, and making room swaps in a new dict); writes
    do. An expired entry reads as absent and stays until room is made.
    """

    def __init__(self, size: int, clock: Callable[[], float] = time.monotonic) -> None:
        if size < 2:
            raise ValueError("an ExpiringMap holds at least 2 entries")
        self.size = size
        self.clock = clock
        self._entries: dict[K, tuple[float, V]] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: K) -> V | None:
        """The value of ``key``, or None when there is none or it has expired."""
        found = self._entries.get(key)
        if found is None or found[0] <= self.clock():
            return None
        return found[1]

    def put(self, key: K, value: V, until: float) -> None:
        """Keep ``value`` for ``key`` until the moment ``until`` (on :attr:`clock`)."""
        with self._lock:
            if key not in self._entries and len(self._entries) >= self.size:
                self._make_room()
            self._entries[key] = (until, value)

    def pop(self, key: K) -> None:
        """Forget ``key``."""
        with self._lock:
            self._entries.pop(key, None)

    def _make_room(self) -> None:
        now = self.clock()
        fresh = [(key, entry) for key, entry in self._entries.items() if entry[0] > now]
        self._entries = dict(fresh[-(self.size // 2):])  # the newer half, at most
