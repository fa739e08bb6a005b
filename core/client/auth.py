"""``credenza.client.Auth``: short-lived JWTs from a client id and a long-lived refresh token.

The semantics of the Descartes Labs client (docs/protocols/descartes-auth.md), against credenza's
``POST /token``:

* credentials come from the arguments, then ``CREDENZA_TOKEN``, ``CREDENZA_CLIENT_ID``,
  ``CREDENZA_CLIENT_SECRET`` (``CREDENZA_REFRESH_TOKEN`` is the same thing),
  ``CREDENZA_TOKEN_INFO_PATH``, then the token_info file (``~/.credenza/token_info.json``;
  ``token_info_path=None`` disables it); ``CREDENZA_URL`` names the broker, ``CREDENZA_RETRIES``
  how often a failed request is retried (5);
* a cached JWT is used until ``leeway`` seconds before it expires, and only for the same client
  id; a refresh retries 429 and 5xx answers with randomized exponential backoff, honouring
  ``Retry-After``; if every try fails while the cached JWT is still valid, that one is returned;
* the token_info file is written atomically (a temporary file renamed), mode 0600 in a 0700
  directory, under a lock: two processes refreshing at once cause one request.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import requests

from credenza import tokeninfo
from credenza.client.errors import AuthError, BrokerError, OAuthError
from credenza.client.transport import RETRY_STATUSES, reason, send
from credenza.secrets import private_directory, write_private_file

_UNSET: Any = object()


class Auth:
    """A client id and refresh token, turned into short-lived JWTs on demand."""

    def __init__(self, url: str | None = None, client_id: str | None = None,
                 client_secret: str | None = None, refresh_token: str | None = None,
                 jwt_token: str | None = None, token_info_path: Any = _UNSET,
                 leeway: int = tokeninfo.LEEWAY, retries: int | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        env = os.environ
        if refresh_token and client_secret and refresh_token != client_secret:
            warnings.warn("refresh_token and client_secret differ: using refresh_token",
                          stacklevel=2)
        secret = (refresh_token or client_secret or env.get("CREDENZA_REFRESH_TOKEN")
                  or env.get("CREDENZA_CLIENT_SECRET"))
        self.client_id = client_id or env.get("CREDENZA_CLIENT_ID")
        self.refresh_token = secret
        self._token = jwt_token or env.get("CREDENZA_TOKEN")
        if token_info_path is _UNSET:
            token_info_path = tokeninfo.configured_path()
        self.token_info_path = Path(token_info_path).expanduser() if token_info_path else None
        self.url = (url or env.get("CREDENZA_URL") or self._read_info().get("url")
                    or "http://127.0.0.1:8080").rstrip("/")
        self.leeway, self.sleep = leeway, sleep
        self.retries = retries if retries is not None else _int_env("CREDENZA_RETRIES", 5)
        self.session = requests.Session()
        self._merge_token_info()

    # -- the token_info file --------------------------------------------------------------------

    def _read_info(self) -> dict[str, Any]:
        return tokeninfo.read(self.token_info_path)

    def _merge_token_info(self) -> None:
        info = self._read_info()
        if not info:
            return
        given = self.client_id is not None or self.refresh_token is not None
        same = (info.get("client_id") == self.client_id
                and info.get("refresh_token", info.get("client_secret")) == self.refresh_token)
        if not given:
            self.client_id = info.get("client_id")
            self.refresh_token = info.get("refresh_token") or info.get("client_secret")
        if (not given or same) and self._token is None:
            self._token = info.get("jwt_token")

    def _write_info(self) -> None:
        if self.token_info_path is None:
            return
        info = {"client_id": self.client_id, "client_secret": self.refresh_token,
                "refresh_token": self.refresh_token, "jwt_token": self._token, "url": self.url}
        write_private_file(self.token_info_path, json.dumps(info))

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Serialize refreshes of one token_info file across processes."""
        if self.token_info_path is None:
            yield
            return
        private_directory(self.token_info_path.parent)
        lock_path = self.token_info_path.with_name(self.token_info_path.name + ".lock")
        with open(lock_path, "a") as lock:
            os.chmod(lock_path, 0o600)
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    # -- tokens ---------------------------------------------------------------------------------

    def _usable(self, token: str | None, margin: int) -> bool:
        return tokeninfo.usable(token, self.client_id, margin)

    def logout(self) -> bool:
        """Forget the stored credentials (the token_info file); True if there was one."""
        if self.token_info_path is None or not self.token_info_path.exists():
            return False
        self.token_info_path.unlink()
        return True

    @property
    def token(self) -> str:
        """A JWT valid for at least ``leeway`` more seconds (fetched when needed)."""
        if self._usable(self._token, self.leeway):
            return str(self._token)
        return self._refresh(force=False)

    def refresh(self) -> str:
        """A new JWT now, in place of the current one (which the broker may have refused)."""
        return self._refresh(force=True)

    def _refresh(self, force: bool) -> str:
        stale = self._token
        if not self.client_id or not self.refresh_token:
            if not force and self._usable(stale, 0):
                return str(stale)
            raise AuthError("no valid token and no client id and refresh token to get one "
                            "(credenza login, or CREDENZA_CLIENT_ID and CREDENZA_CLIENT_SECRET)")
        with self._locked():
            # another process may have refreshed the file while this one waited
            info = self._read_info()
            cached = info.get("jwt_token")
            if (info.get("client_id") == self.client_id and cached != stale
                    and self._usable(cached, self.leeway)):
                self._token = cached
                return str(cached)
            try:
                self._token = self._fetch()
            except OAuthError:
                raise
            except AuthError:
                if not force and self._usable(stale, 0):  # transient failure: still valid
                    return str(stale)
                raise
            self._write_info()
        return str(self._token)

    def _fetch(self) -> str:
        body = {"client_id": self.client_id, "grant_type": "refresh_token",
                "refresh_token": self.refresh_token}
        try:
            response = send(self.session, "POST", f"{self.url}/token", json=body,
                            retries=self.retries, sleep=self.sleep)
        except requests.RequestException as exc:
            raise AuthError(f"could not get a token after {self.retries + 1} attempts: "
                            f"{type(exc).__name__}") from None
        if response.status_code in RETRY_STATUSES:
            raise AuthError(f"could not get a token after {self.retries + 1} attempts: "
                            f"{response.status_code} {reason(response)}")
        if response.status_code != 200:
            raise OAuthError(f"could not get a token: {response.status_code} {reason(response)}")
        try:
            token = response.json().get("access_token")
        except (ValueError, AttributeError):
            token = None
        if not isinstance(token, str) or not token:
            raise OAuthError("the token endpoint answered without an access_token")
        return str(token)

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """``method path`` at the broker with this token (retried like a refresh). A refused
        token is replaced once, in case it was revoked or signed with a key since retired.

        :raises BrokerError: for any answer that is not a success or a redirect.
        :raises AuthError: when no token can be had.
        """
        response = self._send(method, path, self.token, **kwargs)
        if response.status_code == 401 and self.client_id and self.refresh_token:
            response = self._send(method, path, self.refresh(), **kwargs)
        if response.status_code >= 400:
            raise BrokerError(response.status_code, reason(response))
        return response

    def _send(self, method: str, path: str, token: str, **kwargs: Any) -> requests.Response:
        headers = {**kwargs.pop("headers", {}), "Authorization": f"Bearer {token}"}
        try:
            return send(self.session, method, f"{self.url}{path}", headers=headers,
                        retries=self.retries, sleep=self.sleep, allow_redirects=False, **kwargs)
        except requests.RequestException as exc:
            raise BrokerError(503, f"cannot reach the broker at {self.url}: "
                                   f"{type(exc).__name__}") from None

    # -- what the token says --------------------------------------------------------------------

    @property
    def payload(self) -> dict[str, Any]:
        """The claims of the current token (not verified: the broker signed it for others)."""
        payload = tokeninfo.claims(self.token)
        if payload is None:
            raise AuthError("the token is not a JWT")
        return payload

    @property
    def namespace(self) -> str:
        """The caller's namespace: the SHA-1 of its subject, as the Descartes client has it."""
        return hashlib.sha1(str(self.payload["sub"]).encode()).hexdigest()  # noqa: S324

    @property
    def all_acl_subjects(self) -> list[str]:
        """ACL subjects: user, email, org and the groups without another org's prefix."""
        payload = self.payload
        subjects = [f"user:{self.namespace}"]
        if payload.get("email"):
            subjects.append(f"email:{str(payload['email']).lower()}")
        org = payload.get("org")
        if org:
            subjects.append(f"org:{org}")
        for group in payload.get("groups") or []:
            if ":" not in group or (org and group.startswith(f"{org}:")):
                subjects.append(f"group:{group}")
        return subjects

    @property
    def all_owner_acl_subjects(self) -> list[str]:
        """Owner subjects: the user, orgs it administers, resources it administers."""
        owners = [f"user:{self.namespace}"]
        for group in self.payload.get("groups") or []:
            if group.endswith(":org-admin"):
                owners.append(f"org:{group.rsplit(':', 1)[0]}")
            elif group.endswith(":resource-admin"):
                owners.append(f"access-id:{group.rsplit(':', 1)[0]}")
        return owners


def _int_env(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None:
        return default
    if not raw.isdigit():
        raise AuthError(f"{name} must be a whole number, got {raw!r}")
    return int(raw)




_default: Auth | None = None


def get_default_auth() -> Auth:
    """The process-wide Auth (made from the environment and token_info file when first asked)."""
    global _default
    if _default is None:
        _default = Auth()
    return _default


def set_default_auth(auth: Auth | None) -> None:
    """Replace the process-wide Auth (None: make a new one next time)."""
    global _default
    _default = auth
