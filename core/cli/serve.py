"""``credenza serve``: the bundled production server (worker processes, threads, TLS).

The master process loads the configuration and the plugins once to fail fast with a clear message,
then releases them; each worker builds its own Broker, so no connection or lock is shared between
processes. SIGTERM stops gracefully: workers finish the requests they have. Two engines run it
(``[server] engine``): granian (:mod:`credenza.cli.granian_engine`, the default) and gunicorn
(:mod:`credenza.cli.gunicorn_engine`).
"""

from __future__ import annotations

import atexit
import errno
import gc
import importlib
import logging
import os
import shutil
import socket
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import attrs
import click

from credenza import jsonlog
from credenza.config import CONFIG_ENV

if TYPE_CHECKING:
    from credenza.cli import CliState
    from credenza.config import Config
    from credenza.wsgi.app import CredenzaApp

log = logging.getLogger(__name__)

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
    for key, value in overrides.items():  # a worker that loads the configuration afresh
        if value is not None:             # (granian's) must see what the master serves
            os.environ[f"CREDENZA__SERVER__{key.upper()}"] = str(
                value.resolve() if isinstance(value, Path) else value)
    jsonlog.configure(config.log_level, config.log_format)
    config.ensure_data_dir()
    prepare_metrics_dir()
    # Imported only now: the metrics module must see PROMETHEUS_MULTIPROC_DIR when it loads.
    from credenza.broker import Broker
    from credenza.wsgi import make_app

    make_app(Broker.from_config(config)).broker.close()  # fail fast, in the master
    check_bind(server.bind)
    if state.config_path:  # what a worker that starts afresh (not forked) loads
        os.environ[CONFIG_ENV] = state.config_path
    # each engine (the choices of [server] engine) is the module NAME_engine, imported when chosen
    importlib.import_module(f"credenza.cli.{server.engine}_engine").serve(config)


def say_serving(config: Config) -> None:
    """Say where it serves, once the socket listens (not before: the bind may fail)."""
    scheme = "https" if config.server.tls else "http"
    log.info("credenza: serving %s on %s://%s", config.source, scheme, config.server.bind)


def load_app(config: Config) -> CredenzaApp:
    """The app of one worker process, built in the worker.

    What the worker holds from then on (boto3's models, the routes, the plugins) lives as long
    as it does: left in the collected generations, every full collection walked it again, and
    those pauses made the slow tail of every path (AFP p99 ~200 ms -> ~40). So it is frozen
    out of the collector's reach.
    """
    from credenza.broker import Broker
    from credenza.wsgi import make_app

    app = make_app(Broker.from_config(config))
    gc.freeze()
    return app


def leave_metrics(pid: int) -> None:
    """Worker ``pid`` has exited: its live gauges leave the sums with it (prometheus_client's
    bookkeeping)."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid)


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
    host, port = host_and_port(bind)
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


def host_and_port(bind: str) -> tuple[str, str]:
    """The host and the port of a TCP ``bind``, as gunicorn reads it (``:PORT``: every
    address)."""
    host, _, port = bind.rpartition(":")
    return host.strip("[]") or "0.0.0.0", port  # noqa: S104 - what gunicorn makes of ":PORT"
