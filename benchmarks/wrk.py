"""HTTP load with wrk, and the bare-WSGI limit of this machine measured the same way.

``wrk -t2 -c16`` on the same two cores as the server is how the figures of the performance
issues were taken; each benchmark divides its req/s by :func:`bare_limit`, measured in the same
run with the same gunicorn layout, because absolute figures drift from run to run on shared
machines. Needs Debian's ``wrk`` (``tests/system-packages.sh`` installs it).
"""

from __future__ import annotations

import collections
import contextlib
import json
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import attrs

HERE = Path(__file__).resolve().parent
THREADS, CONNECTIONS = 2, 16


@attrs.frozen
class Load:
    """What one wrk run measured."""

    requests_per_second: float
    p50_ms: float
    p99_ms: float
    errors: int  # non-2xx answers and socket errors
    #: connections each server process held halfway through (most first): 16/0 is one worker
    #: serving everything on one core
    split: tuple[int, ...] = ()

    def line(self, label: str, limit: float) -> str:
        return (f"{label:<44} {self.requests_per_second:8.0f} req/s  "
                f"{self.requests_per_second / limit:5.2f}x the bare limit  "
                f"p50 {self.p50_ms:6.2f} ms  p99 {self.p99_ms:6.2f} ms  "
                f"conns {'/'.join(map(str, self.split)) or '?'}")


def _milliseconds(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()  # type: ignore[union-attr]
    return float(number) * {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}[unit]


def parse(output: str) -> Load:
    """Requests/s, p50, p99 and errors from ``wrk --latency``'s report."""
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    p50 = _milliseconds(re.search(r"\s50%\s+(\S+)", output).group(1))  # type: ignore[union-attr]
    p99 = _milliseconds(re.search(r"\s99%\s+(\S+)", output).group(1))  # type: ignore[union-attr]
    errors = sum(int(n) for n in re.findall(r"Non-2xx or 3xx responses: (\d+)", output))
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), "
                              r"timeout (\d+)", output)
    if socket_errors:
        errors += sum(int(n) for n in socket_errors.groups())
    return Load(rate, p50, p99, errors)


def _lua(method: str, headers: Mapping[str, str], bodies: Sequence[str]) -> str:
    """A wrk script sending ``bodies`` in turn (each connection keeps its own turn)."""
    lines = [f"wrk.method = {json.dumps(method)}"]
    lines += [f"wrk.headers[{json.dumps(k)}] = {json.dumps(v)}" for k, v in headers.items()]
    if len(bodies) == 1:
        lines.append(f"wrk.body = {json.dumps(bodies[0])}")
    elif bodies:
        lines.append("local bodies = {" + ", ".join(json.dumps(b) for b in bodies) + "}")
        lines.append("local turn = 0")
        lines.append("request = function()\n  turn = turn % #bodies + 1\n"
                     "  return wrk.format(nil, nil, nil, bodies[turn])\nend")
    return "\n".join(lines) + "\n"


def run(url: str, seconds: float = 10, method: str = "GET",
        headers: Mapping[str, str] | None = None, bodies: Sequence[str] = (),
        warmup: float = 2) -> Load:
    """Load ``url`` with wrk (after ``warmup`` seconds unmeasured); raises SystemExit if any
    request failed: a benchmark of failing requests measures nothing."""
    if shutil.which("wrk") is None:
        raise SystemExit("the benchmarks need wrk: apt-get install wrk")
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as script:
        script.write(_lua(method, headers or {}, bodies))
        script.flush()
        command = [f"-t{THREADS}", f"-c{CONNECTIONS}", "--latency", "-s", script.name, url]
        if warmup:
            subprocess.run(["wrk", f"-d{max(1, round(warmup))}s", *command],
                           capture_output=True, check=True)
        split: list[tuple[int, ...]] = []
        sampler = threading.Timer(seconds / 2, lambda: split.append(connection_split(url)))
        sampler.start()
        output = subprocess.run(["wrk", f"-d{max(1, round(seconds))}s", *command],
                                capture_output=True, text=True, check=True).stdout
        sampler.join()
    load = attrs.evolve(parse(output), split=split[0] if split else ())
    if load.errors:
        raise SystemExit(f"{load.errors} requests to {url} failed:\n{output}")
    return load


def connection_split(url: str) -> tuple[int, ...]:
    """How many established connections to ``url``'s port each process holds (``ss``, from
    iproute2; nothing without it)."""
    if shutil.which("ss") is None:
        return ()
    port = urllib.parse.urlsplit(url).port
    listing = subprocess.run(["ss", "-tnpH", "state", "established", f"( sport = :{port} )"],
                             capture_output=True, text=True).stdout
    held = collections.Counter(re.findall(r"pid=(\d+)", listing))
    return tuple(sorted(held.values(), reverse=True))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@attrs.frozen
class Layout:
    """How ``credenza serve`` serves: the ``[server]`` settings of credenza that the benchmarks
    vary (worker_class, worker_connections and reuse_port are gunicorn's only; the bare app's
    servers are never pinned)."""

    worker_class: str = "gthread"
    workers: int = 2
    threads: int = 8
    worker_connections: int = 1000
    keepalive_seconds: int = 2
    reuse_port: bool = True
    engine: str = "granian"
    pin_workers: str = "auto"

    def __str__(self) -> str:
        pinned = f"pin_workers {self.pin_workers}"
        if self.engine == "granian":
            return (f"granian, {self.workers} workers x {self.threads} threads, {pinned}, "
                    f"keep-alive {self.keepalive_seconds} s, one shared socket")
        return (f"gunicorn {self.worker_class}, {self.workers} workers x {self.threads} threads, "
                f"{pinned}, worker_connections {self.worker_connections}, "
                f"keep-alive {self.keepalive_seconds} s, "
                f"{'a socket per worker' if self.reuse_port else 'one shared socket'}")

    def toml(self) -> str:
        """The ``[server]`` lines of credenza's configuration."""
        lines = [f'engine = "{self.engine}"', f"workers = {self.workers}",
                 f"threads = {self.threads}", f'pin_workers = "{self.pin_workers}"',
                 f"keepalive_seconds = {self.keepalive_seconds}"]
        if self.engine == "gunicorn":
            lines += [f'worker_class = "{self.worker_class}"',
                      f"worker_connections = {self.worker_connections}",
                      f"reuse_port = {str(self.reuse_port).lower()}"]
        return "\n".join(lines)

    def command(self, port: int) -> list[str]:
        """The same layout serving the bare app on ``port``."""
        if self.engine == "granian":
            return ["-m", "granian", "--interface", "wsgi", "--workers", str(self.workers),
                    "--blocking-threads", str(self.threads), "--no-ws", "--host", "127.0.0.1",
                    "--port", str(port), "--no-access-log", "limit_app:application"]
        threads = 1 if self.worker_class == "sync" else self.threads  # else gunicorn's gthread
        return ["-m", "gunicorn", "-w", str(self.workers), "-k", self.worker_class,
                "--threads", str(threads), "--worker-connections", str(self.worker_connections),
                "--keep-alive", str(self.keepalive_seconds),
                *(["--reuse-port"] if self.reuse_port else []), "-b", f"127.0.0.1:{port}",
                "--access-logfile", "/dev/null", "limit_app:application"]


#: how ``../shared/bench/limit.sh`` (the machine's limit the performance issues quote) runs the
#: bare app: ``-w 2 -k sync --threads 8``, which gunicorn runs as gthread (sync with threads),
#: one shared socket
LIMIT_LAYOUT = Layout("gthread", 2, 8, 1000, 2, reuse_port=False, engine="gunicorn")
#: credenza's gunicorn layout before granian became the default engine (a socket per worker)
GUNICORN_LAYOUT = Layout(engine="gunicorn")


@contextlib.contextmanager
def bare_server(layout: Layout) -> Iterator[str]:
    """The bare WSGI app (:mod:`benchmarks.limit_app`) served in ``layout``; its URL."""
    port = free_port()
    process = subprocess.Popen([sys.executable, *layout.command(port)], cwd=HERE,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 20
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                break
            if time.monotonic() > deadline:
                raise SystemExit("the bare server did not start")
            time.sleep(0.05)
        yield url
    finally:
        process.terminate()
        process.wait(30)


def bare_limit(layout: Layout, seconds: float = 10) -> Load:
    """What the bare app serves in this layout under the benchmarks' load."""
    with bare_server(layout) as url:
        return run(url, seconds)
