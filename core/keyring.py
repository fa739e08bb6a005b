"""Signing keys in a directory: one PEM file per key (mode 0600) and ``keys.json`` with their
states, shared by every process and replica that signs this broker's tokens.

A key is ``next`` (published in the JWKS, not signing yet), ``active`` (signing) or ``retiring``
(published until the last token it signed has expired, then forgotten). A key's id is its RFC 7638
thumbprint. Changes are made under a file lock; readers notice another process's change within
:attr:`Keyring.RELOAD_CHECK_SECONDS`.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import json
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import attrs
import jwt
import msgspec
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from credenza.errors import ConfigError
from credenza.secrets import private_directory, write_private_file

#: the signature algorithms keys are made for (the algorithm is the key's, never the token's)
ALGORITHMS = ("ES256", "RS256", "EdDSA")
#: how long clients may cache the JWKS (its Cache-Control max-age): a key is published this
#: long before it signs, so that nobody meets its kid before they can know it
JWKS_MAX_AGE = 300


def b64url(raw: bytes) -> str:
    """base64url without padding (JOSE's encoding)."""
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _generate(alg: str) -> Any:
    if alg == "ES256":
        return ec.generate_private_key(ec.SECP256R1())
    if alg == "RS256":
        return rsa.generate_private_key(public_exponent=65537, key_size=3072)
    return ed25519.Ed25519PrivateKey.generate()


def _algorithm_of(key: Any) -> str:
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp256r1":
        return "ES256"
    if isinstance(key, rsa.RSAPrivateKey) and key.key_size >= 2048:
        return "RS256"
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return "EdDSA"
    raise ConfigError(f"unsupported signing key type {type(key).__name__} (use P-256, RSA >= "
                      "2048 or Ed25519)")


def public_jwk(key: Any, alg: str) -> dict[str, Any]:
    """The public JWK of a private key (without kid)."""
    algorithm = jwt.algorithms.get_default_algorithms()[alg]
    return json.loads(algorithm.to_jwk(key.public_key()))


def thumbprint(jwk: Mapping[str, Any]) -> str:
    """RFC 7638 JWK thumbprint: the kid of a key."""
    members = {"EC": ("crv", "kty", "x", "y"), "RSA": ("e", "kty", "n"),
               "OKP": ("crv", "kty", "x")}[jwk["kty"]]
    canonical = json.dumps({m: jwk[m] for m in members}, separators=(",", ":"), sort_keys=True)
    return b64url(hashlib.sha256(canonical.encode()).digest())


@attrs.frozen
class SigningKey:
    """One key of the keyring."""

    kid: str
    alg: str
    state: str  # next | active | retiring
    created_at: float
    retire_after: float | None
    private: Any = attrs.field(repr=False, eq=False)
    #: when it began to sign (None for keys made before this was recorded: their creation)
    activated_at: float | None = None

    @property
    def signing_since(self) -> float:
        return self.activated_at if self.activated_at is not None else self.created_at

    def published(self, now: float) -> bool:
        """Whether the JWKS shows it (and tokens signed with it verify)."""
        return self.state != "retiring" or (self.retire_after or 0) > now

    def jwk(self) -> dict[str, Any]:
        return {**public_jwk(self.private, self.alg), "kid": self.kid, "alg": self.alg,
                "use": "sig"}

    def sign(self, claims: Mapping[str, Any]) -> str:
        """``claims`` as a compact JWS (RFC 7515) signed by this key, its header naming the
        key's ``alg`` and ``kid`` and ``typ`` JWT. (PyJWT's encode, which made the same
        token, cost as much again as the signature: it checked and re-encoded each part.) JSON
        by msgspec: the json module built an encoder for each call, ten times the cost."""
        header = msgspec.json.encode({"alg": self.alg, "kid": self.kid, "typ": "JWT"})
        payload = msgspec.json.encode(dict(claims))
        signing_input = f"{b64url(header)}.{b64url(payload)}"
        return f"{signing_input}.{b64url(_signature(self.private, signing_input.encode()))}"


_ECDSA_SHA256 = ec.ECDSA(hashes.SHA256())


def _signature(key: Any, data: bytes) -> bytes:
    """The JWS signature of ``data`` by ``key`` (RFC 7518 3.3, 3.4; RFC 8037 3.1)."""
    if isinstance(key, ec.EllipticCurvePrivateKey):  # ES256: r || s, 32 bytes each
        r, s = decode_dss_signature(key.sign(data, _ECDSA_SHA256))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")
    if isinstance(key, rsa.RSAPrivateKey):  # RS256
        return key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    return key.sign(data)  # EdDSA (Ed25519)


class Keyring:
    """Signing keys in a directory: ``keys.json`` (states) and one PEM per key (0600).

    Loaded once; reloaded when another process (a rotation, a replica) changed ``keys.json``,
    checked at most every few seconds.
    """

    RELOAD_CHECK_SECONDS = 5.0

    def __init__(self, directory: Path, algorithms: Iterable[str] = ("ES256",),
                 clock: Callable[[], float] = time.time) -> None:
        self.directory = directory
        self.clock = clock
        self.algorithms = frozenset(algorithms)
        self.index = directory / "keys.json"
        self._ensured = False
        self._keys: dict[str, SigningKey] = {}
        self._loaded_mtime = -1.0
        self._checked = 0.0
        self._lock = threading.Lock()

    def _locked(self) -> Any:
        private_directory(self.directory)
        handle = open(self.directory / ".lock", "a")  # noqa: SIM115 - closed by the caller
        fcntl.flock(handle, fcntl.LOCK_EX)
        return handle

    def ensure(self, algorithms: Iterable[str]) -> None:
        """Make sure every algorithm in use has an active key (creating them once)."""
        handle = self._locked()
        try:
            self._read()
            self._adopt_loose_pems()
            for alg in sorted(set(algorithms)):
                if not any(k.alg == alg and k.state == "active" for k in self._keys.values()):
                    self._add(_generate(alg), alg, "active")
            self._write()
        finally:
            handle.close()

    def _adopt_loose_pems(self) -> None:
        known = {f"{kid}.pem" for kid in self._keys}
        for pem in sorted(self.directory.glob("*.pem")):
            if pem.name in known:
                continue
            key = serialization.load_pem_private_key(pem.read_bytes(), password=None)
            alg = _algorithm_of(key)
            kid = thumbprint(public_jwk(key, alg))
            if kid not in self._keys:
                self._add(key, alg, "active" if not any(
                    k.alg == alg and k.state == "active" for k in self._keys.values())
                    else "next")
            if pem.name != f"{kid}.pem":
                pem.unlink()

    def _add(self, key: Any, alg: str, state: str) -> SigningKey:
        kid = thumbprint(public_jwk(key, alg))
        path = self.directory / f"{kid}.pem"
        data = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption())
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        now = self.clock()
        signing = SigningKey(kid, alg, state, now, None, key,
                             activated_at=now if state == "active" else None)
        self._keys[kid] = signing
        return signing

    def _read(self) -> None:
        if not self.index.exists():
            self._keys = {}
            self._loaded_mtime = -1.0
            return
        mtime = self.index.stat().st_mtime
        entries = json.loads(self.index.read_text())
        keys = {}
        for kid, meta in entries.items():
            private = serialization.load_pem_private_key(
                (self.directory / f"{kid}.pem").read_bytes(), password=None)
            keys[kid] = SigningKey(kid, meta["alg"], meta["state"], meta["created_at"],
                                   meta.get("retire_after"), private,
                                   activated_at=meta.get("activated_at"))
        self._keys, self._loaded_mtime = keys, mtime

    def _write(self) -> None:
        entries = {k.kid: {"alg": k.alg, "state": k.state, "created_at": k.created_at,
                           "activated_at": k.activated_at, "retire_after": k.retire_after}
                   for k in self._keys.values()}
        write_private_file(self.index, json.dumps(entries, indent=2, sort_keys=True))
        self._loaded_mtime = self.index.stat().st_mtime

    def _fresh(self, now: bool = False) -> dict[str, SigningKey]:
        """The keys, re-read when another process changed them (looked at every few seconds,
        or ``now``)."""
        if not self._ensured:  # keys are made on first use, not when the plugin is loaded
            with self._lock:
                if not self._ensured:
                    self.ensure(self.algorithms)
                    self._ensured = True
        moment = time.monotonic()
        if now or moment - self._checked > self.RELOAD_CHECK_SECONDS:
            with self._lock:
                self._checked = moment
                if self.index.exists() and self.index.stat().st_mtime != self._loaded_mtime:
                    self._read()
        return self._keys

    def active(self, alg: str) -> SigningKey:
        """The key that signs with ``alg`` now."""
        for key in self._fresh().values():
            if key.alg == alg and key.state == "active":
                return key
        raise ConfigError(f"no active {alg} signing key in {self.directory}")

    def published(self) -> list[SigningKey]:
        """Keys the JWKS shows: next, active, and retiring ones still covering live tokens."""
        now = self.clock()
        return sorted((k for k in self._fresh().values() if k.published(now)),
                      key=lambda k: (k.state != "active", k.created_at))

    def by_kid(self, kid: str) -> SigningKey | None:
        """A published key by id (a retired one no longer verifies anything). An unknown id
        makes the keyring look for another process's change at once: a replica may have
        rotated a moment ago."""
        key = self._fresh().get(kid) or self._fresh(now=True).get(kid)
        return key if key is not None and key.published(self.clock()) else None

    def prepare(self, alg: str) -> SigningKey:
        """Add a ``next`` key: published now, signing after :meth:`rotate`."""
        handle = self._locked()
        try:
            self._read()
            key = self._prepare(alg)
            self._write()
            return key
        finally:
            handle.close()

    def rotate(self, alg: str, retire_after: float) -> SigningKey:
        """The ``next`` key (or a new one) becomes active; the active one retires at
        ``retire_after`` (when the last token it signed has expired)."""
        handle = self._locked()
        try:
            self._read()
            key = self._rotate(alg, retire_after)
            self._write()
            self._checked = 0.0
            return key
        finally:
            handle.close()

    def follow_schedule(self, alg: str, period: float, verification: float) -> None:
        """Rotate ``alg``'s key every ``period`` seconds: prepare the next key
        :data:`JWKS_MAX_AGE` (at most half a period) before, then activate it; the key it
        replaces stays published ``verification`` seconds more.

        Cheap when nothing is due (it runs before every signature). When something is, it is
        decided again under the directory's lock on what the file says, so that among the
        workers and replicas sharing it exactly one acts and the others follow.
        """
        if not self._due(self._fresh(), alg, period, self.clock()):
            return
        handle = self._locked()
        try:
            self._read()
            now = self.clock()
            due = self._due(self._keys, alg, period, now)
            if due == "rotate":
                self._rotate(alg, now + verification)
            elif due == "prepare":
                self._prepare(alg)
            else:
                return
            self._write()
            self._checked = 0.0
        finally:
            handle.close()

    @staticmethod
    def _due(keys: Mapping[str, SigningKey], alg: str, period: float, now: float) -> str | None:
        active = [k for k in keys.values() if k.alg == alg and k.state == "active"]
        if not active:
            return None
        age = now - active[0].signing_since
        if age >= period:
            return "rotate"
        has_next = any(k.alg == alg and k.state == "next" for k in keys.values())
        return "prepare" if age >= period - min(JWKS_MAX_AGE, period / 2) and not has_next \
            else None

    def _prepare(self, alg: str) -> SigningKey:
        existing = [k for k in self._keys.values() if k.alg == alg and k.state == "next"]
        return existing[0] if existing else self._add(_generate(alg), alg, "next")

    def _rotate(self, alg: str, retire_after: float) -> SigningKey:
        now = self.clock()
        for key in list(self._keys.values()):
            if key.alg == alg and key.state == "active":
                self._keys[key.kid] = attrs.evolve(key, state="retiring",
                                                   retire_after=retire_after)
        new = self._prepare(alg)
        self._keys[new.kid] = attrs.evolve(new, state="active", activated_at=now)
        for key in list(self._keys.values()):  # forget keys no token can need any more
            if not key.published(now):
                del self._keys[key.kid]
                (self.directory / f"{key.kid}.pem").unlink(missing_ok=True)
        return self._keys[new.kid]
