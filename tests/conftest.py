"""Shared fixtures: real servers on loopback and throwaway plugin distributions."""

from __future__ import annotations

import contextlib
import http.server
import importlib
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

import pytest
import requests

ROOT = Path(__file__).resolve().parent.parent

pytest_plugins = ["tests.aws_fixtures", "tests.ldap_fixtures", "tests.pg_fixtures",
                  "tests.store_fixtures", "tests.hook_watch", "tests.audit_watch",
                  "tests.browser_fixtures"]

# boto3 in the tests and in the servers they start: no real AWS, no metadata probing, no profile.
os.environ.update({
    "CREDENZA_TEST_AWS_SECRET": "testing",
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
})
for _var in ("AWS_PROFILE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
             "CREDENZA_CONFIG", "CONFIG_PATH", "ACCOUNT_CONFIG_PATH"):
    os.environ.pop(_var, None)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """A ``credenza serve`` process on loopback."""

    def __init__(self, process: subprocess.Popen[str], url: str, log_path: Path) -> None:
        self.process = process
        self.url = url
        self.log_path = log_path

    def log(self) -> str:
        """Everything the server wrote so far (stdout and stderr)."""
        return self.log_path.read_text()

    def stop(self, timeout: float = 20) -> int:
        """SIGTERM, then wait for the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)


def issuing_config(work: Path, client: str, digest: str, provider: str, audience: str,
                   store_url: str | None = None) -> Path:
    """Write the configuration of a server that issues JWTs of ``provider`` (for ``audience``)
    to the OAuth client ``client`` (API key hash ``digest``, rotating refresh tokens): static,
    jwt and sql (SQLite in ``work/data`` unless ``store_url``), 2 workers x 8 threads, no
    access log. Returns its path."""
    (work / "static.yaml").write_text(
        f'oauth_clients:\n  {client}: {{sha256: "{digest}", tokens: {{{provider}: []}}, '
        "attributes: {refresh_tokens: rotate}}\n")
    path = work / "credenza.toml"
    path.write_text(f"""
[credenza]
plugins = ["static", "jwt", "sql"]
data_dir = "data"
[server]
workers = 2
threads = 8
access_log = false
[plugins.static]
files = ["static.yaml"]
[plugins.jwt]
issuer = "https://credenza.test"
[plugins.jwt.providers.{provider}]
audiences = ["{audience}"]
[plugins.sql]
{f'url = "{store_url}"' if store_url else ""}
""")
    return path


@contextlib.contextmanager
def running_server(
    tmp_path: Path, args: list[str], env: Mapping[str, str] | None = None,
    scheme: str = "http", verify: str | bool = True, serve_args: Sequence[str] = (),
) -> Iterator[Server]:
    """Start ``credenza [args] serve [serve_args] --bind 127.0.0.1:PORT`` and wait until
    /status answers."""
    port = free_port()
    log_path = tmp_path / f"server-{port}.log"
    # gunicorn 27's gthread worker now and then waits its whole graceful_timeout on SIGTERM for
    # a connection it still counts; 5 s keeps every stop inside the tests' wait.
    full_env = {**os.environ, "CREDENZA__SERVER__GRACEFUL_TIMEOUT": "5", **(env or {})}
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "credenza", *args, "serve", *serve_args,
             "--bind", f"127.0.0.1:{port}"],
            stdout=log, stderr=subprocess.STDOUT, env=full_env, text=True, cwd=tmp_path,
        )
    server = Server(process, f"{scheme}://127.0.0.1:{port}", log_path)
    try:
        _wait_until_up(server, verify)
        yield server
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def _wait_until_up(server: Server, verify: str | bool) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise AssertionError(f"server exited with {server.process.returncode}:\n{server.log()}")
        try:
            requests.get(server.url + "/status", timeout=1, verify=verify)
            return
        except requests.ConnectionError:
            time.sleep(0.05)
    raise AssertionError(f"server did not answer within 30 s:\n{server.log()}")


@pytest.fixture
def plugin_dist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Path]:
    """Install a throwaway distribution with entry points in ``credenza.plugins`` on sys.path.

    ``plugin_dist("name", {"entry": "module:attr"}, {"module.py": "source"})`` writes the module
    files and a ``.dist-info`` with the entry points, exactly as pip would, and returns the folder.
    """
    def install(dist: str, entry_points: Mapping[str, str], modules: Mapping[str, str]) -> Path:
        # one folder per distribution: importlib.metadata caches a folder's listing by mtime
        site = tmp_path / f"site-{dist}"
        site.mkdir()
        for filename, source in modules.items():
            (site / filename).write_text(textwrap.dedent(source))
            # a later test may reuse the module name with other source
            monkeypatch.delitem(sys.modules, filename.removesuffix(".py"), raising=False)
        info = site / f"{dist.replace('-', '_')}-1.0.dist-info"  # as pip names it
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
        lines = "\n".join(f"{name} = {target}" for name, target in entry_points.items())
        (info / "entry_points.txt").write_text(f"[credenza.plugins]\n{lines}\n")
        monkeypatch.syspath_prepend(str(site))
        importlib.invalidate_caches()
        return site

    return install


def write_token_server_config(directory: Path, static_yaml: str, providers: str) -> Path:
    """``credenza.toml`` for a token server: static users from ``static_yaml``, the jwt plugin
    with the given ``[plugins.jwt.providers.*]`` tables, and the SQLite store."""
    (directory / "static.yaml").write_text(textwrap.dedent(static_yaml))
    config = directory / "credenza.toml"
    config.write_text(textwrap.dedent("""
        [credenza]
        plugins = ["static", "jwt", "sql"]
        data_dir = "data"
        [plugins.static]
        files = ["static.yaml"]
        [plugins.jwt]
        issuer = "https://credenza.test"
        """) + textwrap.dedent(providers))
    return config


class ApiToken(NamedTuple):
    """What ``credenza api-token`` printed: the secret, the login blob, the whole output."""

    secret: str
    blob: str
    output: str


def make_api_token(config: Path, user: str, client: str, provider: str,
                   url: str | None = None) -> ApiToken:
    """A new API token of ``user`` for ``client``, made by the real command."""
    made = subprocess.run([sys.executable, "-m", "credenza", "--config", str(config),
                           "api-token", user, "--client", client, "--provider", provider,
                           *(["--url", url] if url else [])],
                          capture_output=True, text=True, check=True, timeout=60,
                          cwd=config.parent)
    return ApiToken(made.stdout.split("client_secret: ")[1].split()[0],
                    made.stdout.split("login blob: ")[1].split()[0], made.stdout)


class QuietHandler(http.server.BaseHTTPRequestHandler):
    """A handler for the tests' fakes: it logs nothing and answers in one way."""

    def reply(self, status: int, body: bytes = b"", content_type: str = "application/json",
              headers: Mapping[str, str] | None = None) -> None:
        """Send ``status`` with ``body`` (and its length) and any extra ``headers``."""
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def serve_on_loopback(handler: type[http.server.BaseHTTPRequestHandler]
                      ) -> tuple[http.server.ThreadingHTTPServer, str]:
    """Serve ``handler`` on a free loopback port in a daemon thread; (server, base URL).
    The caller shuts it down."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"
