"""A cache of issued credentials that every process sharing a token store shares.

Two tiers. In front, each process keeps the values it used last in memory (bounded, least
recently used goes first). Behind it, a store that implements
:class:`~credenza.models.SharedCache` (the ``sql`` plugin's: SQLite for the workers of one host,
PostgreSQL for replicas) keeps every value sealed with AES-256-GCM under a key from the
configuration, bound to its cache key: the store never holds a secret in plaintext, and a row
copied under another key does not open.

One fetch per key at a time, across every process: within a process, concurrent callers of one
key wait on the same lock; across processes, the one that takes the key's lease in the store
fetches, and the others read what it stores (polling with backoff). A lease expires on its own,
so a process that dies while fetching holds the others up for at most ``lease`` seconds.

When the store cannot be reached the cache carries on per process: the credentials served are
still complete and valid, only the "one fetch" holds per process until the store is back.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import os
import secrets
import socket
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

import attrs
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from credenza import metrics
from credenza.errors import Unavailable
from credenza.models import SharedCache, utcnow

log = logging.getLogger(__name__)

T = TypeVar("T")

_NONCE_BYTES = 12


@attrs.frozen
class Sealer:
    """AES-256-GCM with a random nonce per value; the cache key is the associated data."""

    key: bytes = attrs.field(repr=False, validator=lambda _i, _a, key: _check_key(key))

    def seal(self, plaintext: bytes, context: bytes) -> bytes:
        """``nonce || ciphertext`` of ``plaintext``, opened only with the same ``context``."""
        nonce = secrets.token_bytes(_NONCE_BYTES)
        return nonce + AESGCM(self.key).encrypt(nonce, plaintext, context)

    def open(self, sealed: bytes, context: bytes) -> bytes | None:
        """The plaintext, or None when ``sealed`` was made under another key or context."""
        try:
            return AESGCM(self.key).decrypt(sealed[:_NONCE_BYTES], sealed[_NONCE_BYTES:], context)
        except (InvalidTag, ValueError):
            return None


def _check_key(key: bytes) -> None:
    if len(key) != 32:
        raise ValueError(f"a cache key is 32 bytes (AES-256), not {len(key)}")


@attrs.frozen
class Codec(Generic[T]):
    """How values of one type become bytes and back, and when each stops being valid."""

    dumps: Callable[[T], bytes]
    loads: Callable[[bytes], T]
    expiration: Callable[[T], dt.datetime]


class TieredCache(Generic[T]):
    """Values by key: memory first, then the shared store, then one fetch for everybody.

    :param size: values kept in memory (0 turns caching off entirely).
    :param codec: how values are stored in the shared tier.
    :param lease: seconds a fetching process holds a key's lease (longer than a fetch can take).
    """

    def __init__(self, size: int, codec: Codec[T], lease: float, stripes: int = 64) -> None:
        self.size = size
        self.codec = codec
        self.lease = dt.timedelta(seconds=lease)
        self.shared: SharedCache | None = None
        self._sealer: Sealer | None = None
        self._holder = f"{socket.gethostname()[:64]}:{os.getpid()}:{secrets.token_hex(4)}"
        self._entries: OrderedDict[bytes, T] = OrderedDict()
        self._lock = threading.Lock()
        self._stripes = [threading.Lock() for _ in range(stripes)]

    def share(self, store: SharedCache, key: bytes) -> None:
        """Share values through ``store``, sealed with ``key`` (32 bytes)."""
        self._sealer = Sealer(key)
        self.shared = store

    def obtain(self, key: tuple[str, ...], need: dt.timedelta, margin: dt.timedelta,
               fetch: Callable[[], T], renew: bool = False) -> T:
        """A value valid for ``need`` + ``margin``, cached or else fresh from ``fetch``.

        When fetching fails with :class:`Unavailable` but a cached value still covers ``need``,
        that is served: it is complete and valid, and its issuer being down should not take it
        away. Otherwise the failure is raised: a value too short for the caller is never served.

        ``renew`` fetches anew whatever is cached (a caller found the cached value refused) and
        puts the new value in both tiers; a failure is raised then, never the old value served.
        """
        if self.size == 0:
            return fetch()
        digest = hashlib.sha256("\0".join(key).encode()).digest()
        stripe = self._stripes[int.from_bytes(digest[:4], "big") % len(self._stripes)]
        if renew:
            with stripe:
                fresh = self._fetch(fetch, None, need)
                self._remember(digest, fresh)
                if self.shared is not None:
                    self._store(digest, fresh)
                return fresh
        cached = self._peek(digest)
        if self._covers(cached, need + margin):
            metrics.series(metrics.CACHE, "memory").inc()
            return cached  # type: ignore[return-value]  # _covers checked it is not None
        with stripe:
            cached = self._peek(digest)  # another thread may have refreshed it meanwhile
            if self._covers(cached, need + margin):
                metrics.series(metrics.CACHE, "memory").inc()
                return cached  # type: ignore[return-value]
            if self.shared is None:
                fresh = self._fetch(fetch, cached, need)
            else:
                fresh = self._obtain_shared(digest, need, margin, fetch, cached)
            self._remember(digest, fresh)
            return fresh

    def _obtain_shared(self, digest: bytes, need: dt.timedelta, margin: dt.timedelta,
                       fetch: Callable[[], T], cached: T | None) -> T:
        try:
            found, leased = self._value_or_lease(digest, need + margin)
        except Unavailable as exc:
            log.warning("the shared credential cache is unavailable; fetching without it: %s",
                        exc.detail)
            return self._fetch(fetch, cached, need)
        if not leased:
            if found is None:
                raise Unavailable("another broker process is fetching these credentials and "
                                  "has not finished", retry_after=5)
            metrics.series(metrics.CACHE, "shared").inc()
            return found
        try:
            if self._covers(found, need + margin):
                fresh = found
            else:
                fresh = self._fetch(fetch, self._longest(cached, found), need)
        except BaseException:
            self._release(digest)
            raise
        if fresh is found:
            self._release(digest)
        else:
            self._store(digest, fresh)
        return fresh

    def _value_or_lease(self, digest: bytes, need: dt.timedelta) -> tuple[T | None, bool]:
        """(a stored value covering ``need``, False), or (what is stored, True) once this
        process holds the key's lease, or (None, False) when waiting took too long.

        :raises Unavailable: when the store cannot be reached.
        """
        assert self.shared is not None
        deadline = time.monotonic() + 2 * self.lease.total_seconds()
        delay = 0.01
        while time.monotonic() < deadline:
            found = self._shared_get(digest)
            if self._covers(found, need):
                return found, False
            now = utcnow()
            if self.shared.cache_lease(digest, self._holder, now + self.lease, now):
                # The holder before may have stored and let go since the read above.
                return self._shared_get(digest), True
            time.sleep(delay)  # another process is fetching: wait for what it stores
            delay = min(delay * 2, 0.2)
        return None, False

    def _fetch(self, fetch: Callable[[], T], fallback: T | None, need: dt.timedelta) -> T:
        metrics.series(metrics.CACHE, "miss").inc()
        try:
            return fetch()
        except Unavailable:
            if self._covers(fallback, need):
                return fallback  # type: ignore[return-value]
            raise

    # -- the shared tier ------------------------------------------------------------------------

    def _shared_get(self, digest: bytes) -> T | None:
        assert self.shared is not None and self._sealer is not None
        sealed = self.shared.cache_get(digest)
        if sealed is None:
            return None
        plaintext = self._sealer.open(sealed, digest)
        if plaintext is None:
            log.warning("a shared credential cache entry does not open with this process's "
                        "cache key: give every worker and replica the same key")
            return None
        return self.codec.loads(plaintext)

    def _store(self, digest: bytes, value: T) -> None:
        assert self.shared is not None and self._sealer is not None
        sealed = self._sealer.seal(self.codec.dumps(value), digest)
        try:
            self.shared.cache_put(digest, sealed, self.codec.expiration(value), self._holder)
        except Unavailable as exc:  # the value is good; the next caller fetches again
            log.warning("could not share credentials in the cache: %s", exc.detail)

    def _release(self, digest: bytes) -> None:
        assert self.shared is not None
        try:
            self.shared.cache_release(digest, self._holder)
        except Unavailable as exc:  # the lease expires on its own
            log.warning("could not release a credential cache lease: %s", exc.detail)

    # -- the memory tier ------------------------------------------------------------------------

    def _covers(self, value: T | None, need: dt.timedelta) -> bool:
        return value is not None and self.codec.expiration(value) - utcnow() > need

    def _longest(self, one: T | None, other: T | None) -> T | None:
        values = [value for value in (one, other) if value is not None]
        return max(values, key=self.codec.expiration, default=None)

    def _peek(self, digest: bytes) -> T | None:
        with self._lock:
            found = self._entries.get(digest)
            if found is not None:
                self._entries.move_to_end(digest)
            return found

    def _remember(self, digest: bytes, value: T) -> None:
        with self._lock:
            self._entries[digest] = value
            self._entries.move_to_end(digest)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)
