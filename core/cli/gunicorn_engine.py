"""The gunicorn engine of ``credenza serve`` (``[server] engine = "gunicorn"``): pure-Python HTTP,
sync or gthread workers, a socket per worker.
"""

from __future__ import annotations

from typing import Any

from gunicorn import sock as gunicorn_sockets
from gunicorn.app.base import BaseApplication

from credenza import jsonlog
from credenza.cli.cores import pin_worker
from credenza.cli.serve import leave_metrics, load_app, reusable, say_serving
from credenza.config import Config

# Path without the query string, no headers: nothing a caller sends as a secret reaches the log.
ACCESS_LOG_FORMAT = '%(h)s "%(m)s %(U)s %(H)s" %(s)s %(B)s %(M)sms id=%({x-request-id}o)s'


class CredenzaServer(BaseApplication):
    """gunicorn, configured from ``[server]`` instead of its own command line."""

    def __init__(self, config: Config) -> None:
        self.config = config
        super().__init__()

    def when_ready(self, _arbiter: Any) -> None:
        say_serving(self.config)

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
            settings["logconfig_dict"] = jsonlog.server_logconfig(
                self.config.log_level, "json", error_loggers=("gunicorn.error",),
                access_loggers=("gunicorn.access",))
        if server.tls:
            settings.update(certfile=str(server.certfile), keyfile=str(server.keyfile))
        # gunicorn >= 24 opens a control socket at one fixed path per user; several servers on one
        # host would fight over it, and credenza needs none of what it offers.
        if "control_socket_disable" in self.cfg.settings:
            settings["control_socket_disable"] = True
        for key, value in settings.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        return load_app(self.config)

    # With a socket per worker, gunicorn has each worker listen as soon as it is forked, before
    # it has loaded the app: the kernel hashed connections to it that then waited seconds for
    # the load (and timed out at start), while a loaded worker was idle. A worker listens
    # once it can answer; until one can, connections are refused and clients retry.

    def post_fork(self, _arbiter: Any, worker: Any) -> None:
        """A worker takes its core, and one with its own sockets closes them until it has
        loaded the app."""
        pin_worker(self.config.server.pin_workers, self.config.server.workers)
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
        leave_metrics(worker.pid)


def serve(config: Config) -> None:
    """Serve ``config`` until SIGTERM."""
    CredenzaServer(config).run()
