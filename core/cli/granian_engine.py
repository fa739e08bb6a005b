"""The granian engine of ``credenza serve`` (``[server] engine = "granian"``, the default).

granian parses HTTP and writes answers in Rust, off the GIL; only the WSGI call runs Python. On
two cores that took the bare app from ~7k req/s on gunicorn to ~55k, and credenza's reading paths
to about twice their gunicorn figures (docs/operations.md, "Sizing the server"). The master binds
one socket that every worker accepts from; each worker builds its own Broker (:func:`worker_app`).
"""

from __future__ import annotations

import atexit
import ctypes
import ctypes.util
import logging
import multiprocessing.util
import os
import signal
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import click
from granian import Granian
from granian.constants import Interfaces
from granian.http import HTTP1Settings

from credenza import jsonlog
from credenza.cli.cores import pin_worker
from credenza.cli.serve import host_and_port, leave_metrics, load_app, say_serving
from credenza.config import Config
from credenza.wsgi.app import StartResponse

access_log = logging.getLogger("credenza.access")

MASTER_PID = "CREDENZA_SERVER_PID"
PR_SET_PDEATHSIG = 1  # prctl(2): the signal a process gets when its parent dies
#: what the access log leaves unquoted in a path
PATH_SAFE = "/:@!$&'()*+,;=-._~"


def serve(config: Config) -> None:
    """Serve ``config`` until SIGTERM."""
    server = config.server
    host, port, uds = _address(server.bind)
    tls: dict[str, Any] = {}
    if server.certfile is not None and server.keyfile is not None:
        tls = {"ssl_cert": server.certfile, "ssl_key": pkcs8_key(server.keyfile),
               "ssl_protocol_min": "tls1.2"}
    os.environ[MASTER_PID] = str(os.getpid())  # for _stop_with_master
    granian = Granian(
        "credenza.cli.granian_engine:worker_app", factory=True, interface=Interfaces.WSGI,
        address=host, port=port, uds=uds, workers=server.workers,
        blocking_threads=server.threads, backlog=1024, websockets=False,
        http1_settings=HTTP1Settings(keep_alive=server.keepalive_seconds > 0,
                                     header_read_timeout=(server.keepalive_seconds or 30) * 1000),
        workers_kill_timeout=server.graceful_timeout, respawn_failed_workers=True,
        log_level=config.log_level.lower(), log_dictconfig=logconfig(config),
        log_access=False,  # ServedApp writes it: granian's cannot carry the request id
        process_name="credenza", **tls)
    granian.on_startup(lambda: say_serving(config))
    granian.serve()


def worker_app() -> ServedApp:
    """The app of one worker process (granian calls it in the worker, once)."""
    _stop_with_master()
    config = Config.load()  # as the master did: same file, same environment
    pin_worker(config.server.pin_workers, config.server.workers)
    app = load_app(config)
    multiprocessing.util.Finalize(None, leave_metrics, args=(os.getpid(),), exitpriority=0)
    return ServedApp(app, config.server.access_log)


def _stop_with_master() -> None:
    """Have Linux send this worker SIGTERM (a graceful stop) when the master dies.

    gunicorn's workers notice that their master is gone; granian's go on serving the shared
    socket, so a master killed with SIGKILL (or by the OOM killer) left orphans that kept the
    port, and a restarted server could not listen. Elsewhere than Linux: nothing.

    Until granian sets the worker's own handlers (once the app is loaded) the worker has the
    master's, which ignore SIGTERM in a worker: a stop while it loads would be lost. Until then
    SIGTERM ends it as it would any process (it serves nothing yet).
    """
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    master = os.environ.get(MASTER_PID)  # unset when granian's own command line runs this
    if master and str(os.getppid()) != master:  # it died before that took effect
        os.kill(os.getpid(), signal.SIGTERM)


class ServedApp:
    """The app as granian serves it: with an access log line per request, and without the
    process environment in the request's environ.

    granian starts every request's environ from a copy of ``os.environ``: a variable such as
    ``REMOTE_USER`` in the server's environment would reach the app as if the request carried
    it (and the ``environ`` identity plugin trusts such keys). Each key that holds what the
    process environment holds under its name is removed: the request's own value is removed
    too in the rare case that it equals the environment's (nothing tells them apart), which
    refuses such a request rather than trusting the environment.
    """

    def __init__(self, app: Any, log_requests: bool) -> None:
        self.app = app
        self.log_requests = log_requests
        self.process_environment = tuple(os.environ.items())

    def __call__(self, environ: dict[str, Any],
                 start_response: StartResponse) -> Iterable[bytes]:
        for key, value in self.process_environment:
            if environ.get(key) == value:
                del environ[key]
        if not self.log_requests:
            return self.app(environ, start_response)
        started = time.perf_counter()
        answered: list[Any] = []

        def noting(status: str, headers: list[tuple[str, str]], *rest: Any) -> Any:
            answered[:] = [status, headers]
            return start_response(status, headers, *rest)

        body = self.app(environ, noting)
        status, headers = answered or ("-", [])
        length = request_id = "-"
        for name, value in headers:
            lowered = name.lower()
            if lowered == "content-length":
                length = value
            elif lowered == "x-request-id":
                request_id = value
        # The path without its query string and re-quoted: nothing a caller sends as a secret,
        # and no control character that could forge a line, reaches the log.
        access_log.info('%s "%s %s %s" %s %s %dms id=%s', environ.get("REMOTE_ADDR", "-"),
                        environ.get("REQUEST_METHOD"),
                        urllib.parse.quote(environ.get("PATH_INFO", ""), safe=PATH_SAFE),
                        environ.get("SERVER_PROTOCOL"), status.split(" ", 1)[0], length,
                        (time.perf_counter() - started) * 1000,
                        request_id, extra={"request_id": request_id})
        return body


def _address(bind: str) -> tuple[str, int, Path | None]:
    """granian's address, port and Unix socket for ``[server] bind``."""
    if bind.startswith("unix:"):
        return "127.0.0.1", 0, Path(bind[5:])
    if bind.startswith("fd://"):
        raise click.ClickException(f"cannot listen on {bind}: an inherited descriptor needs "
                                   '[server] engine = "gunicorn"')
    host, port = host_and_port(bind)
    return host, int(port), None


def pkcs8_key(keyfile: Path) -> Path:
    """``keyfile`` itself when it is PKCS#8 PEM (all granian reads), else the same key written
    as PKCS#8 to a private temporary file (0600, removed when the server exits)."""
    from cryptography.hazmat.primitives import serialization

    pem = keyfile.read_bytes()
    if b"-----BEGIN PRIVATE KEY-----" in pem:
        return keyfile
    key = serialization.load_pem_private_key(pem, password=None)
    directory = Path(tempfile.mkdtemp(prefix="credenza-tls-"))
    converted = directory / "key.pem"
    converted.touch(0o600)
    converted.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                            serialization.PrivateFormat.PKCS8,
                                            serialization.NoEncryption()))
    master = os.getpid()

    def remove() -> None:
        if os.getpid() == master:
            converted.unlink(missing_ok=True)
            directory.rmdir()

    atexit.register(remove)
    return converted


def logconfig(config: Config) -> dict[str, Any]:
    """granian's logging in credenza's format: its own lines and the app's on standard error,
    the access log on standard output (as gunicorn has them)."""
    return jsonlog.server_logconfig(config.log_level, config.log_format,
                                    error_loggers=("_granian",),
                                    access_loggers=("credenza.access", "granian.access"))
