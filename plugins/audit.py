"""Plugin ``audit``: the audit trail, one JSON object per line for every event the broker
observes (issued, revoked, reinstated, denied, sign-in), to a file, stdout or syslog.

A line says when, which request (its id, the client's address, method and path), who (name,
kind, identity source), by what credential, what was asked, the outcome and the reason. It never
holds a secret: the credential a caller presented (an API key, a bearer token) and the user name
of a password sign-in appear as HMAC-SHA256 with ``hmac_key``, as Vault's audit devices do, so
an auditor can match a value (``credenza audit hash VALUE``) without the log holding it. Token
ids are identifiers and appear as they are.

With ``fail_closed`` (the default, as in Vault), a line that cannot be written fails the request
with 503: no credential is handed out, no caller signed in, without its line.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import logging
import os
import socket
import sys
import threading
from collections.abc import Callable, Iterable
from logging.handlers import SysLogHandler
from pathlib import Path
from typing import Any, Protocol

import attrs
import click

from credenza.config import Section
from credenza.errors import Unavailable
from credenza.health import HealthProbe
from credenza.markers import hookimpl
from credenza.models import (
    DeniedEvent,
    Health,
    IdentityRequest,
    IssuedEvent,
    Principal,
    RevokedEvent,
    SignedInEvent,
)
from credenza.requestctx import RequestOrigin
from credenza.secrets import configured_key
from credenza.settings import read, setting

log = logging.getLogger(__name__)

NAME = "audit"
#: the events the trail can record (``type`` of a line)
EVENTS = ("issued", "revoked", "reinstated", "denied", "sign-in")
HMAC_PREFIX = "hmac-sha256:"


@attrs.frozen
class AuditSettings:
    """``[plugins.audit]``."""

    sink: str = setting("Where lines go", "file", choices=("file", "stdout", "syslog"))
    path: Path | None = setting(
        "sink = file: the file appended to (mode 0600; opened for each line, so logrotate "
        "needs no signal)", None, default_text="DATA_DIR/audit.log")
    syslog_address: str = setting("sink = syslog: a Unix socket path, or HOST:PORT (UDP)",
                                  "/dev/log")
    syslog_facility: str = setting("sink = syslog: the facility", "authpriv",
                                   choices=tuple(SysLogHandler.facility_names))
    hmac_key: str | None = setting(
        "base64 of 32 random bytes keying the HMAC of the credentials in the lines; replicas "
        "need the same for their lines to match", None, secret=True,
        default_text="a key generated into DATA_DIR/audit-hmac.key")
    fail_closed: bool = setting("Refuse with 503 what cannot be recorded (a sink that cannot "
                                "write): no credential without its line", True)
    events: tuple[str, ...] = setting(f"The events recorded, of {', '.join(EVENTS)}", EVENTS)


class Sink(Protocol):
    """Where the lines go: ``write`` raises OSError when the line is not recorded."""

    def write(self, line: str) -> None: ...

    def check(self) -> None: ...


@attrs.frozen
class FileSink:
    """Appends to a file, opened for each line: O_APPEND keeps the lines of several workers
    whole, and a file that logrotate moved away is made anew."""

    path: Path

    def write(self, line: str) -> None:
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)

    def check(self) -> None:
        os.close(os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC,
                         0o600))


@attrs.define
class StdoutSink:
    """Standard output (under ``credenza serve``, the server's log stream)."""

    _lock: threading.Lock = attrs.field(factory=threading.Lock)

    def write(self, line: str) -> None:
        with self._lock:
            sys.stdout.write(line)
            sys.stdout.flush()

    def check(self) -> None:
        sys.stdout.flush()


@attrs.define
class SyslogSink:
    """RFC 3164 datagrams to a local socket (whose absence is an error) or to HOST:PORT over UDP
    (fire and forget: a lost datagram goes unnoticed)."""

    address: str
    facility: int

    def _send(self, payload: bytes) -> None:
        host, _, port = self.address.rpartition(":")
        if self.address.startswith("/") or not port.isdigit():
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.sendto(payload, self.address)
        else:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                sock.sendto(payload, (host, int(port)))

    def write(self, line: str) -> None:
        priority = self.facility * 8 + SysLogHandler.LOG_INFO
        self._send(f"<{priority}>credenza-audit: {line.rstrip()}".encode())

    def check(self) -> None:
        if self.address.startswith("/") and not Path(self.address).exists():
            raise FileNotFoundError(f"no syslog socket at {self.address}")


def _principal(principal: Principal | None) -> dict[str, Any] | None:
    if principal is None:
        return None
    return {"name": principal.name, "kind": principal.kind, "source": principal.source,
            "token_id": principal.token_id}


def _time(moment: dt.datetime | None) -> str | None:
    return None if moment is None else moment.isoformat().replace("+00:00", "Z")


class AuditLog:
    """Writes a line for every observed event the settings ask for."""

    settings = AuditSettings

    def __init__(self, section: Section) -> None:
        settings = read(AuditSettings, section)
        unknown = sorted(set(settings.events) - set(EVENTS))
        if unknown:
            raise section.error("events", f"unknown event {unknown[0]!r} (known: "
                                f"{', '.join(EVENTS)})")
        self.events = frozenset(settings.events)
        self.fail_closed = settings.fail_closed
        self._hmac_key = configured_key(section, "hmac_key", settings.hmac_key,
                                        "audit-hmac.key")
        self._key: bytes | None = None
        self.sink: Sink
        if settings.sink == "file":
            self.sink = FileSink(settings.path or section.data_dir / "audit.log")
        elif settings.sink == "stdout":
            self.sink = StdoutSink()
        else:
            self.sink = SyslogSink(settings.syslog_address,
                                   SysLogHandler.facility_names[settings.syslog_facility])
        self.probe = HealthProbe("audit", self._check)

    # -- what a line holds ---------------------------------------------------------------------

    def hash(self, value: str) -> str:
        """``hmac-sha256:HEX`` of ``value``: how the trail names a secret it must not hold."""
        if self._key is None:
            self._key = self._hmac_key()
        return HMAC_PREFIX + hmac.new(self._key, value.encode(), hashlib.sha256).hexdigest()

    def _credential(self, origin: RequestOrigin | None) -> dict[str, Any] | None:
        """What the request presented, hashed: the API key or bearer token, or the user name
        of HTTP Basic (which may be a password typed in the wrong field); never a password."""
        if origin is None:
            return None
        request = IdentityRequest.from_environ(origin.environ)
        value = request.api_key or request.bearer or (request.basic and request.basic.username)
        return {"type": request.credential, "hmac": self.hash(value) if value else None}

    def _write(self, kind: str, at: dt.datetime, origin: RequestOrigin | None,
               **fields: Any) -> None:
        if kind not in self.events:
            return
        record = {"time": _time(at), "type": kind,
                  "request_id": origin.request_id if origin else None,
                  "client": origin.client if origin else None,
                  "request": {"method": origin.method, "path": origin.path} if origin else None,
                  **fields, "credential": self._credential(origin)}
        line = json.dumps(record, separators=(",", ":"), default=str) + "\n"
        try:
            self.sink.write(line)
        except OSError as exc:
            detail = f"the audit trail cannot be written ({exc.strerror or exc})"
            self.probe.failed(detail)
            log.error("%s; %s", detail, "request refused" if self.fail_closed
                      else "the event goes unrecorded (fail_closed = false)")
            if self.fail_closed:
                raise Unavailable(detail) from None

    def _check(self) -> None:
        try:
            self.sink.check()
        except OSError as exc:
            raise Unavailable(f"the audit trail cannot be written ({exc.strerror or exc})") \
                from None

    # -- observers -----------------------------------------------------------------------------

    @hookimpl
    def credenza_issued(self, event: IssuedEvent) -> None:
        self._write("issued", event.at, event.origin, outcome="issued",
                    caller=_principal(event.principal),
                    asked={"kind": event.kind, "target": event.target, "role": event.role},
                    token_id=event.token_id, expires_at=_time(event.expires_at))

    @hookimpl
    def credenza_revoked(self, event: RevokedEvent) -> None:
        kind = "reinstated" if event.reinstated else "revoked"
        self._write(kind, event.at, event.origin, outcome=kind, caller=_principal(event.actor),
                    token_ids=list(event.token_ids))

    @hookimpl
    def credenza_denied(self, event: DeniedEvent) -> None:
        self._write("denied", event.at, event.origin, outcome="refused",
                    caller=_principal(event.principal),
                    asked={"kind": event.kind, "target": event.target, "role": event.role},
                    reason=event.reason)

    @hookimpl
    def credenza_signed_in(self, event: SignedInEvent) -> None:
        self._write("sign-in", event.at, event.origin, outcome="signed-in",
                    caller=_principal(event.principal))

    # -- operations ----------------------------------------------------------------------------

    @hookimpl
    def credenza_health(self) -> Iterable[Health]:
        return [self.probe()]

    @hookimpl
    def credenza_commands(self, cli: click.Group) -> None:
        hash_value: Callable[[str], str] = self.hash

        @cli.group(name="audit")
        def audit_group() -> None:
            """The audit trail."""

        @audit_group.command(name="hash")
        @click.argument("value")
        def hash_command(value: str) -> None:
            """Print the HMAC the audit trail shows for VALUE (an API key, a token, a user
            name), to find its lines. VALUE "-" reads it from standard input, out of the
            shell's history and the process list."""
            if value == "-":
                value = sys.stdin.readline().rstrip("\n")
            if not value:
                raise click.UsageError("nothing to hash")
            click.echo(hash_value(value))
