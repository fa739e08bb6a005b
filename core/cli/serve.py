"""``credenza serve``: the bundled production server (gunicorn: worker processes, threads, TLS).

The master process loads the configuration and the plugins once to fail fast with a clear message,
then releases them; each worker builds its own Broker after the fork, so no connection or lock is
shared between processes. SIGTERM stops gracefully: workers finish the requests they have.
"""

from __future__ import annotations

import atexit
import errno
import gc
import logging
import os
import shutil
import socket
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import click
from gunicorn import sock as gunicorn_sockets
from gunicorn.app.base import BaseApplication

from credenza import jsonlog
from credenza.config import Config

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from credenza.cli import CliState

# Path without the query string, no headers: nothing a caller sends as a secret reaches the log.
ACCESS_LOG_FORMAT = '%(h)s "%(m)s %(U)s %(H)s" %(s)s %(B)s %(M)sms id=%({x-request-id}o)s'


class CredenzaServer(BaseApplication):
    """gunicorn, configured from ``[server]`` instead of its own command line."""

    def __init__(self, config: Config) -> None:
        self.config = config
        super().__init__()

    def when_ready(self, _arbiter: Any) -> None:
        """Say where it serves once the socket listens (not before: the bind may fail)."""
        scheme = "https" if self.config.server.tls else "http"
        log.info("credenza: serving %s on %s://%s", self.config.source, scheme,
                 self.config.server.bind)

    def load_config(self) -> None:
        server = self.config.server
        settings: dict[str, Any] = {
            "bind": [server.bind],
            "workers": server.workers,
            "worker_class": server.worker_class,
            # gunicorn runs "sync" with threads as gthread: sync means one request at a time
            "threads": 1 if server.worker_class == "sync" else server.threads,
            "worker_connections": server.worker_connections,
            "keepalive": server.keepalive_seconds,
            "reuse_port": server.reuse_port and reusable(server.bind),
            "graceful_timeout": server.graceful_timeout,
            "proc_name": "credenza",
            "errorlog": "-",
            "loglevel": self.config.log_level.lower(),
            "accesslog": "-" if server.access_log else None,
            "access_log_format": ACCESS_LOG_FORMAT,
            "limit_request_line": 8190,
            "when_ready": self.when_ready,
            "child_exit": self.child_exit,
            "post_fork": self.post_fork,
            "post_worker_init": self.post_worker_init,
        }
        if self.config.log_format == "json":
            settings["logconfig_dict"] = jsonlog.gunicorn_logconfig(self.config.log_level)
        if server.tls:
            settings.update(certfile=str(server.certfile), keyfile=str(server.keyfile))
        # gunicorn >= 24 opens a control socket at one fixed path per user; several servers on one
        # host would fight over it, and credenza needs none of what it offers.
        if "control_socket_disable" in self.cfg.settings:
            settings["control_socket_disable"] = True
        for key, value in settings.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        from credenza.broker import Broker
        from credenza.wsgi import make_app

        app = make_app(Broker.from_config(self.config))
        # What the worker holds from here on (boto3's models, the routes, the plugins) lives as
        # long as it does: left in the collected generations, every full collection walked it
        # again, and those pauses made the slow tail of every path (AFP p99 ~200 ms -> ~40).
        gc.freeze()
        return app

    # With a socket per worker, gunicorn has each worker listen as soon as it is forked, before
    # it has loaded the app: the kernel hashed connections to it that then waited seconds for
    # the load (and timed out at start), while a loaded worker was idle. A worker listens
    # once it can answer; until one can, connections are refused and clients retry.

    @staticmethod
    def post_fork(_arbiter: Any, worker: Any) -> None:
        """A worker with its own sockets closes them until it has loaded the app."""
        if worker.cfg.reuse_port:
            for listener in worker.sockets:
                listener.close()
            worker.sockets = []

    @staticmethod
    def post_worker_init(worker: Any) -> None:
        """A worker with its own sockets listens now that it has loaded the app."""
        if worker.cfg.reuse_port:
            worker.sockets = gunicorn_sockets.create_sockets(worker.cfg, worker.log)
            for listener in worker.sockets:
                listener.set_inheritable(False)
            worker.wait_fds = [*worker.sockets, worker.PIPE[0]]  # what a sync worker selects on

    @staticmethod
    def child_exit(_arbiter: Any, worker: Any) -> None:
        """A worker's live gauges leave the sums with it (prometheus_client's bookkeeping)."""
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)


@click.command()
@click.option("--bind", metavar="HOST:PORT", help="Address to listen on ([server] bind).")
@click.option("--workers", type=click.IntRange(1, 64), help="Worker processes ([server] workers).")
@click.option("--certfile", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="TLS certificate chain (PEM); with --keyfile the server speaks HTTPS.")
@click.option("--keyfile", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="TLS private key (PEM).")
@click.pass_obj
def serve(state: CliState, bind: str | None, workers: int | None, certfile: Path | None,
          keyfile: Path | None) -> None:
    """Run the bundled server (the embedded default configuration without --config)."""
    config = state.config()
    overrides = {"bind": bind, "workers": workers, "certfile": certfile, "keyfile": keyfile}
    server = attrs.evolve(config.server, **{k: v for k, v in overrides.items() if v is not None})
    if (server.certfile is None) != (server.keyfile is None):
        raise click.UsageError("TLS needs both --certfile and --keyfile")
    config = attrs.evolve(config, server=server)
    jsonlog.configure(config.log_level, config.log_format)
    config.ensure_data_dir()
    prepare_metrics_dir()
    # Imported only now: the metrics module must see PROMETHEUS_MULTIPROC_DIR when it loads.
    from credenza.broker import Broker
    from credenza.wsgi import make_app

    make_app(Broker.from_config(config)).broker.close()  # fail fast, in the master
    check_bind(server.bind)
    CredenzaServer(config).run()


def prepare_metrics_dir() -> Path:
    """The directory where every worker writes its metrics, for a scrape to sum them: the one
    ``PROMETHEUS_MULTIPROC_DIR`` names, emptied of an earlier run's figures, else a new
    temporary one, removed when the server exits. Set before any worker (or the metrics
    module) starts, so that all of them count in it."""
    configured = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if configured:
        directory = Path(configured)
        directory.mkdir(parents=True, exist_ok=True)
        for stale in directory.glob("*.db"):
            stale.unlink()
        return directory
    directory = Path(tempfile.mkdtemp(prefix="credenza-metrics-"))
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(directory)
    master = os.getpid()
    atexit.register(lambda: os.getpid() == master and shutil.rmtree(directory, True))
    return directory


def reusable(bind: str) -> bool:
    """Whether every worker can listen on ``bind`` itself: a TCP address with a fixed port (a
    Unix socket has one path, an inherited descriptor is one socket, and port 0 would give each
    worker a port of its own)."""
    return not bind.startswith(("unix:", "fd://")) and not bind.endswith(":0")


def check_bind(bind: str) -> None:
    """Refuse at once, and say why, when ``bind`` cannot be listened on (gunicorn would retry
    for seconds and then say only "Can't connect")."""
    if bind.startswith(("unix:", "fd://")):
        return
    host, _, port = bind.rpartition(":")
    host = host.strip("[]") or "0.0.0.0"  # noqa: S104 - what gunicorn makes of ":PORT"
    try:
        infos = socket.getaddrinfo(host, int(port), type=socket.SOCK_STREAM)
        family, kind, proto, _, address = infos[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gunicorn does
            probe.bind(address)
    except (OSError, ValueError, IndexError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        hint = " (another server listens there?)" if getattr(exc, "errno", None) == \
            errno.EADDRINUSE else ""
        raise click.ClickException(f"cannot listen on {bind}: {reason}{hint}") from None
