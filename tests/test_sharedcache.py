"""The credential cache: memory in front of a store shared by processes, one fetch per key.

Two TieredCache objects stand for two processes (each has its own lease holder and memory); the
store is the sql plugin's, on SQLite and on a real PostgreSQL. Whole servers with several
workers and replicas are in test_aws_federation.py and benchmarks/aws_credentials.py.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest
import sqlalchemy as sa

from credenza.errors import Unavailable
from credenza.models import AwsCredentials, utcnow
from credenza.plugins.aws_sts import CREDENTIALS
from credenza.plugins.sql import SqlTokenStore, cache
from credenza.sharedcache import Sealer, TieredCache

NEED, MARGIN = dt.timedelta(minutes=30), dt.timedelta(minutes=15)
KEY = b"k" * 32


def _credentials(minutes: int, key_id: str = "ASIAX") -> AwsCredentials:
    return AwsCredentials(key_id, "SECRET-" + key_id, "TOKEN-" + key_id,
                          utcnow() + dt.timedelta(minutes=minutes), account_id="111111111111")


def _process(store: SqlTokenStore | None = None, key: bytes = KEY,
             size: int = 100) -> TieredCache[AwsCredentials]:
    made = TieredCache(size, CREDENTIALS, lease=30)
    if store is not None:
        made.share(store, key)
    return made


class Counting:
    """A fetch that counts its calls and answers fresh credentials."""

    def __init__(self, gate: threading.Event | None = None) -> None:
        self.calls = 0
        self.gate = gate
        self._lock = threading.Lock()

    def __call__(self) -> AwsCredentials:
        with self._lock:
            self.calls += 1
            number = self.calls
        if self.gate is not None:
            assert self.gate.wait(10), "nobody else came for the lease"
        return _credentials(60, f"ASIA{number}")


def test_memory_tier_is_bounded_least_recently_used_first() -> None:
    cache_ = _process(size=2)
    fetched: list[str] = []

    def fetch(key: str) -> Callable[[], AwsCredentials]:
        return lambda: fetched.append(key) or _credentials(60)

    for key in ("a", "b", "a", "c", "a", "b"):
        cache_.obtain((key,), NEED, MARGIN, fetch(key))
    # a, b fetched; a hit; c evicts b (least recently used); a hit; b fetched again
    assert fetched == ["a", "b", "c", "b"]


def test_refreshes_ahead_and_falls_back_only_while_still_valid(store: SqlTokenStore) -> None:
    for cache_ in (_process(), _process(store)):
        cache_.obtain(("k",), NEED, MARGIN, lambda: _credentials(40))  # under need + margin
        fresh = cache_.obtain(("k",), NEED, MARGIN, lambda: _credentials(60))
        assert fresh.remaining() > dt.timedelta(minutes=59)  # refreshed ahead of time

        def down() -> AwsCredentials:
            raise Unavailable("STS is down")

        cache_.obtain(("short",), NEED, MARGIN, lambda: _credentials(40))
        assert cache_.obtain(("short",), NEED, MARGIN, down).remaining() > NEED  # still good
        cache_.obtain(("expiring",), NEED, MARGIN, lambda: _credentials(20))
        with pytest.raises(Unavailable):
            cache_.obtain(("expiring",), NEED, MARGIN, down)  # too short for the caller


def test_size_zero_always_fetches(store: SqlTokenStore) -> None:
    fetch = Counting()
    off = _process(store, size=0)
    for _ in range(3):
        off.obtain(("k",), NEED, MARGIN, fetch)
    assert fetch.calls == 3


def test_two_processes_twenty_callers_one_fetch(store: SqlTokenStore) -> None:
    """The first caller to take the lease fetches; it does not finish before the other process
    has found the lease taken, so everybody else really waits for what it stores."""
    contended = threading.Event()

    class Watched:
        """The store, telling the test when a lease was refused."""

        def __getattr__(self, name: str) -> object:
            return getattr(store, name)

        def cache_lease(self, *args: object) -> bool:
            taken = store.cache_lease(*args)
            if not taken:
                contended.set()
            return taken

    processes = [_process(Watched()), _process(Watched())]  # type: ignore[arg-type]
    fetch = Counting(gate=contended)
    with ThreadPoolExecutor(20) as pool:
        served = list(pool.map(lambda i: processes[i % 2].obtain(("alice", "prod", "admin"),
                                                                 NEED, MARGIN, fetch), range(20)))
    assert fetch.calls == 1
    assert len({creds.access_key_id for creds in served}) == 1  # one key pair for everybody


def test_shared_values_are_sealed_at_rest_and_bound_to_their_key(
        store: SqlTokenStore, caplog: pytest.LogCaptureFixture) -> None:
    first = _process(store)
    issued = first.obtain(("alice", "prod", "admin"), NEED, MARGIN, lambda: _credentials(60))
    with store.engine.begin() as conn:
        rows = conn.execute(cache.select()).all()
    assert len(rows) == 1
    stored = bytes(rows[0].value)
    for secret in (issued.secret_access_key, issued.session_token, issued.access_key_id):
        assert secret.encode() not in stored
    # Another key opens nothing: that process fetches for itself and says why.
    stranger = _process(store, key=b"x" * 32)
    with caplog.at_level(logging.WARNING, logger="credenza.sharedcache"):
        own = stranger.obtain(("alice", "prod", "admin"), NEED, MARGIN,
                              lambda: _credentials(60, "ASIAOWN"))
    assert own.access_key_id == "ASIAOWN"
    assert "same key" in caplog.text
    # A sealed value moved to another cache key does not open there either.
    digest = hashlib.sha256(b"bob\0prod\0admin").digest()
    assert Sealer(KEY).open(stored, digest) is None
    assert Sealer(KEY).open(stored, rows[0].key) is not None


def test_a_failed_fetch_lets_go_of_the_lease(store: SqlTokenStore) -> None:
    def down() -> AwsCredentials:
        raise Unavailable("STS is down")

    with pytest.raises(Unavailable):
        _process(store).obtain(("k",), NEED, MARGIN, down)
    other = Counting()
    _process(store).obtain(("k",), NEED, MARGIN, other)  # no waiting for a dead lease
    assert other.calls == 1


def test_leases_exclude_each_other_until_they_run_out(store: SqlTokenStore) -> None:
    key, now = hashlib.sha256(b"lease").digest(), utcnow()
    soon = now + dt.timedelta(seconds=30)
    assert store.cache_lease(key, "a", soon, now)
    assert not store.cache_lease(key, "b", soon, now)
    assert store.cache_lease(key, "a", soon, now)  # a holder may renew its own
    later = soon + dt.timedelta(seconds=1)  # a's process died: its lease runs out
    assert store.cache_lease(key, "b", later + dt.timedelta(seconds=30), later)
    store.cache_release(key, "a")  # not a's to release any more
    assert not store.cache_lease(key, "a", later + dt.timedelta(seconds=30), later)
    store.cache_put(key, b"v", later + dt.timedelta(hours=1), "b")  # storing ends b's lease
    assert store.cache_lease(key, "a", later + dt.timedelta(seconds=30), later)


def test_purge_drops_expired_values(store: SqlTokenStore) -> None:
    old, fresh = hashlib.sha256(b"old").digest(), hashlib.sha256(b"fresh").digest()
    store.cache_put(old, b"v", utcnow() - dt.timedelta(days=1), "a")
    store.cache_put(fresh, b"v", utcnow() + dt.timedelta(hours=1), "a")
    store.purge(utcnow())
    assert store.cache_get(old) is None
    assert store.cache_get(fresh) == b"v"


def test_store_down_means_each_process_fetches_for_itself(
        store: SqlTokenStore, caplog: pytest.LogCaptureFixture) -> None:
    cache_ = _process(store)
    store.engine.dispose()
    store.engine = sa.create_engine("sqlite:////nonexistent/credenza/tokens.sqlite3")
    fetch = Counting()
    with caplog.at_level(logging.WARNING, logger="credenza.sharedcache"):
        served = cache_.obtain(("k",), NEED, MARGIN, fetch)
        again = cache_.obtain(("k",), NEED, MARGIN, fetch)
    assert fetch.calls == 1 and served == again  # the memory tier still holds
    assert "unavailable; fetching without it" in caplog.text
    assert not store.health().ok  # and /status says what the request ran into
