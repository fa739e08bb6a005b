"""Secrets at rest and in comparison: password hashes, API keys, constant-time checks.

Passwords are stored as scrypt hashes (``$scrypt$ln=15,r=8,p=1$SALT$HASH``, base64 without
padding); high-entropy secrets (API keys, tokens) as SHA-256. Every comparison of secret material
is constant-time.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import os
import re
import secrets
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from credenza.expiring import ExpiringMap

if TYPE_CHECKING:
    from credenza.settings import Section

SCRYPT_LN, SCRYPT_R, SCRYPT_P = 15, 8, 1
_SCRYPT = re.compile(r"^\$scrypt\$ln=(\d+),r=(\d+),p=(\d+)\$([A-Za-z0-9+/]+)\$([A-Za-z0-9+/]+)$")
API_KEY_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4))


def _scrypt(password: str, salt: bytes, ln: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(password.encode(), salt=salt, n=2**ln, r=r, p=p,
                          maxmem=2 * 128 * r * (2**ln) + 1024 * 1024, dklen=32)


def hash_password(password: str) -> str:
    """A salted scrypt hash of ``password`` to put in a configuration file."""
    salt = secrets.token_bytes(16)
    digest = _scrypt(password, salt, SCRYPT_LN, SCRYPT_R, SCRYPT_P)
    return f"$scrypt$ln={SCRYPT_LN},r={SCRYPT_R},p={SCRYPT_P}${_b64(salt)}${_b64(digest)}"


def is_password_hash(text: str) -> bool:
    """Whether ``text`` is a hash :func:`verify_password` understands (not a plain password)."""
    match = _SCRYPT.match(text)
    return bool(match) and 10 <= int(match.group(1)) <= 20


def verify_password(password: str, stored: str) -> bool:
    """Whether ``password`` matches the scrypt hash ``stored`` (constant-time comparison)."""
    match = _SCRYPT.match(stored)
    if not match:
        return False
    ln, r, p = (int(group) for group in match.groups()[:3])
    digest = _scrypt(password, _unb64(match.group(4)), ln, r, p)
    return hmac.compare_digest(digest, _unb64(match.group(5)))


def secret_hash(secret: str) -> bytes:
    """The SHA-256 of a high-entropy secret: the only form in which one is stored (a token
    store's index of opaque secrets, a static file's API keys and client secrets)."""
    return hashlib.sha256(secret.encode()).digest()


def sha256_hex(secret: str) -> str:
    """:func:`secret_hash` as hex, the form configuration files hold."""
    return secret_hash(secret).hex()


def same_secret(presented: str, stored_sha256_hex: str) -> bool:
    """Whether ``presented`` hashes to ``stored_sha256_hex``, compared in constant time."""
    return hmac.compare_digest(sha256_hex(presented), stored_sha256_hex.lower())


def new_api_key(key_id: str) -> tuple[str, str]:
    """A new API key ``ID.SECRET`` and the SHA-256 of its secret part, to store."""
    if not API_KEY_ID.match(key_id):
        raise ValueError(f"an API key id must match {API_KEY_ID.pattern}, got {key_id!r}")
    secret = secrets.token_urlsafe(32)
    return f"{key_id}.{secret}", sha256_hex(secret)


def split_api_key(key: str) -> tuple[str, str] | None:
    """``(id, secret)`` of a presented API key, or None when it has no such shape."""
    key_id, sep, secret = key.partition(".")
    if not sep or not secret or not API_KEY_ID.match(key_id):
        return None
    return key_id, secret


class VerifiedCache:
    """Remembers successful secret checks briefly (scrypt and LDAP binds are slow on purpose).

    Entries are keyed by an HMAC, under a per-process random key, of the identifying parts and
    the presented secret: the secret itself is never kept. A wrong secret never matches an entry.
    """

    def __init__(self, ttl_seconds: float, max_entries: int = 10_000) -> None:
        self.ttl = ttl_seconds
        self._key = secrets.token_bytes(32)
        self._entries: ExpiringMap[bytes, object] = ExpiringMap(max_entries)
        self._checking: dict[bytes, _Check] = {}  # checks under way, by key
        self._lock = threading.Lock()

    def obtain(self, check: Callable[[], object | None], *parts: str) -> object | None:
        """What was remembered for exactly these parts, else what ``check()`` answers,
        remembered unless it is None (it raises for a wrong secret).

        Callers presenting the same parts while a check of them is under way wait for its
        answer, or its error, rather than check again: a burst of one user's requests on a
        fresh worker ran scrypt (or an LDAP bind) once per thread, seconds of CPU at once.
        """
        if self.ttl <= 0:
            return check()
        mac = self._mac(*parts)
        with self._lock:
            found = self._entries.get(mac)
            if found is not None:
                return found
            under_way = self._checking.get(mac)
            if under_way is None:
                mine = self._checking[mac] = _Check()
        if under_way is not None:
            under_way.done.wait()
            if under_way.error is not None:
                raise under_way.error
            return under_way.value
        try:
            mine.value = check()
            if mine.value is not None:
                self._entries.put(mac, mine.value, time.monotonic() + self.ttl)
        except BaseException as exc:
            mine.error = exc
            raise
        finally:
            with self._lock:
                del self._checking[mac]
            mine.done.set()
        return mine.value

    def _mac(self, *parts: str) -> bytes:
        return hmac.new(self._key, "\0".join(parts).encode(), hashlib.sha256).digest()


class _Check:
    """A check of a secret under way (see :meth:`VerifiedCache.obtain`), and its outcome."""

    __slots__ = ("done", "error", "value")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.value: object | None = None
        self.error: BaseException | None = None


def new_token_id(prefix: str = "at") -> str:
    """A token id that sorts by creation time (milliseconds, then 80 random bits)."""
    return f"{prefix}_{int(time.time() * 1000):012x}{id_bytes(10).hex()}"


class _IdRandomness(threading.local):
    """One thread's store of random bytes for identifiers, and the process it was drawn in."""

    generation = -1
    buffer = b""
    offset = 0


_id_randomness = _IdRandomness()
_forks = 0  # advanced in every forked child: a buffer drawn before the fork is not used again
ID_RANDOMNESS_CHUNK = 4096


def _forked() -> None:
    global _forks
    _forks += 1


os.register_at_fork(after_in_child=_forked)


def id_bytes(count: int) -> bytes:
    """``count`` random bytes for an identifier (a request or token id), not for a secret.

    From the operating system's CSPRNG like :func:`os.urandom`, but drawn 4 KiB at a time per
    thread: ``os.urandom`` lets go of the interpreter lock for each call, and under load every
    such release handed the interpreter to another thread (a context switch per id, costly
    on small machines). A forked child draws afresh, so parent and child never share bytes.
    Secrets (API keys, opaque tokens, salts) keep calling :mod:`secrets` each time.
    """
    state = _id_randomness
    if state.generation != _forks or state.offset + count > len(state.buffer):
        state.buffer = os.urandom(max(ID_RANDOMNESS_CHUNK, count))
        state.offset, state.generation = 0, _forks
    start = state.offset
    state.offset = start + count
    return state.buffer[start:start + count]


def key_file(path: Path, nbytes: int = 32) -> bytes:
    """A random key kept in ``path`` (mode 0600), made by whichever process gets there first."""
    private_directory(path.parent)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        for _ in range(50):  # the maker may still be writing it
            data = path.read_bytes()
            if data:
                return base64.b64decode(data)
            time.sleep(0.01)
        raise
    with os.fdopen(fd, "wb") as fh:
        fh.write(base64.b64encode(secrets.token_bytes(nbytes)))
    return base64.b64decode(path.read_bytes())


def configured_key(section: Section, key: str, configured: str | None,
                   filename: str) -> Callable[[], bytes]:
    """What reads a 32-byte key setting: ``configured`` (base64, checked now), else a key
    generated into ``DATA_DIR/filename`` by the first process that needs it."""
    if configured is None:
        return lambda: key_file(section.data_dir / filename)
    try:
        value = base64.b64decode(configured, validate=True)
    except ValueError:
        value = b""
    if len(value) != 32:
        raise section.error(key, "expected the base64 of 32 random bytes (make one with "
                            "`openssl rand -base64 32`)")
    return lambda: value


def private_directory(path: Path) -> Path:
    """``path`` as a directory, every level this creates being mode 0700 (``mkdir(parents=True)``
    would give the parents the default mode)."""
    missing = []
    cursor = path
    while not cursor.exists():
        missing.append(cursor)
        cursor = cursor.parent
    for directory in reversed(missing):
        directory.mkdir(mode=0o700, exist_ok=True)
    return path


def write_private_file(path: Path, text: str) -> None:
    """Replace ``path`` atomically with ``text``, mode 0600 (its directory made 0700 if missing):
    readers see the old content or the new, never a torn or world-readable file."""
    private_directory(path.parent)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:  # mkstemp makes it 0600
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
