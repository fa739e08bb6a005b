"""The audit trail of the whole suite: every event a broker made in this process observes goes
to the ``audit`` plugin too (one session file), every request to an app made in this process
has the secrets it carries and receives recorded, and test_audit_scan.py checks at the end of the
run that the trail holds none of them.

Servers the tests start as processes (``credenza serve``) are not watched: their brokers are
made in another process.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import pytest

from credenza.broker import Broker
from credenza.models import IdentityRequest
from credenza.plugins.audit import AuditLog
from credenza.settings import Section
from credenza.wsgi.app import CredenzaApp

#: the secrets requests carried or responses held, in this process
SECRETS: set[str] = set()
#: the session's audit file, once the watch runs
TRAIL: list[Path] = []

# Response fields that hold secrets (their names, as every family spells them); ids excluded.
_SECRET_FIELD = re.compile(r"(?i)token|secret|key|jwt|password|credential|session|url")
_ID_FIELD = re.compile(r"(?i)(_id|id|_ids|ids|type|_at|expires.*|endpoint|uri|hint|supported)$")
_FORM_SECRETS = ("client_secret", "refresh_token", "token", "subject_token", "password",
                 "actor_token", "assertion")


def _random_looking(value: str) -> bool:
    """Long, without spaces, with a digit: what generated secrets look like, and what the
    words in messages and names (which the trail rightly holds) do not."""
    return len(value) >= 16 and not any(c.isspace() for c in value) \
        and any(c.isdigit() for c in value)


def _collect(value: Any, found: set[str], key: str = "") -> None:
    if isinstance(value, dict):
        for name, item in value.items():
            _collect(item, found, str(name))
    elif isinstance(value, list):
        for item in value:
            _collect(item, found, key)
    elif isinstance(value, str) and _random_looking(value) and _SECRET_FIELD.search(key) \
            and not _ID_FIELD.search(key) \
            and (not value.startswith("http") or "SigninToken" in value):
        found.add(value)


def _request_secrets(environ: dict[str, Any]) -> set[str]:
    presented = IdentityRequest.from_environ(environ)
    found = {value for value in (presented.api_key, presented.bearer,
                                 presented.basic.password if presented.basic else None)
             if value and _random_looking(value)}
    length = int(environ.get("CONTENT_LENGTH") or 0)
    if not length:
        return found
    body = environ["wsgi.input"].read(length)
    environ["wsgi.input"] = io.BytesIO(body)
    if "form" in environ.get("CONTENT_TYPE", ""):
        for name, value in parse_qsl(body.decode(errors="replace")):
            if name in _FORM_SECRETS and _random_looking(value):
                found.add(value)
    else:
        _collect_json(body, found)
    return found


def _collect_json(body: bytes, found: set[str]) -> None:
    with contextlib.suppress(ValueError):
        _collect(json.loads(body), found)


@pytest.fixture(scope="session", autouse=True)
def audit_the_suite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Every broker made during the run writes to one audit file; every app records secrets."""
    directory = tmp_path_factory.mktemp("suite-audit")
    TRAIL.append(directory / "audit.log")
    audit = AuditLog(Section("plugins.audit", {"path": str(TRAIL[0]), "fail_closed": False},
                             "the suite's audit watch", directory, directory))
    observers = {"notify_issued": audit.credenza_issued,
                 "notify_revoked": audit.credenza_revoked,
                 "notify_denied": audit.credenza_denied,
                 "notify_signed_in": audit.credenza_signed_in}
    original_call = CredenzaApp.__call__

    def watched(notify: Any, observer: Any) -> Any:
        def notify_and_audit(self: Broker, event: Any) -> None:
            notify(self, event)
            if self.plugin_manager.get_plugin("audit") is None:
                observer(event)
        return notify_and_audit

    def watched_call(self: CredenzaApp, environ: dict[str, Any], start_response: Any) -> Any:
        # What a request carried counts when it was accepted: the fuzz tests' random strings
        # are refused, and are no secrets (a refused real secret is checked by test_audit.py).
        carried, status = _request_secrets(environ), []

        def noting_start_response(code: str, *args: Any) -> Any:
            status.append(int(code.split()[0]))
            return start_response(code, *args)

        body = b"".join(original_call(self, environ, noting_start_response))
        if status and status[0] < 400:
            SECRETS.update(carried)
        _collect_json(body, SECRETS)
        return [body]

    with pytest.MonkeyPatch.context() as patch:
        for name, observer in observers.items():
            patch.setattr(Broker, name, watched(getattr(Broker, name), observer))
        patch.setattr(CredenzaApp, "__call__", watched_call)
        yield
