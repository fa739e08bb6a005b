"""`credenza serve` on a real socket: answers, logs no secrets, speaks TLS, stops on SIGTERM, on
either engine (granian, the default, and gunicorn)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from cryptography.hazmat.primitives import serialization

from credenza.cli.cores import claim_slot
from credenza.cli.serve import reusable
from tests.conftest import Server, free_port, running_server
from tests.tls import make_ca_and_server_cert

GUNICORN = {"CREDENZA__SERVER__ENGINE": "gunicorn"}
#: what each engine's master says when it has stopped, and its access log's logger
ENGINES = {
    "granian": ({}, "Granian shutdown completed", "credenza.access"),
    "gunicorn": (GUNICORN, "Shutting down: Master", "gunicorn.access"),
}


@pytest.mark.parametrize("engine", ENGINES)
def test_embedded_default_serves_status_and_stops_cleanly_on_sigterm(tmp_path: Path,
                                                                     engine: str) -> None:
    engine_env, stopped, _ = ENGINES[engine]
    env = {"HOME": str(tmp_path), "XDG_DATA_HOME": str(tmp_path / "data"), **engine_env}
    env_without_config = {"CREDENZA_CONFIG": ""}
    with running_server(tmp_path, [], {**env, **env_without_config}) as server:
        response = requests.get(server.url + "/status", timeout=5)
        assert response.status_code == 200
        assert response.json()["plugins"] == ["environ", "jwt", "sql"]
        assert response.json()["checks"] == [{"component": "token store", "ok": True,
                                              "detail": "OK"}]
        keys = requests.get(server.url + "/.well-known/jwks.json", timeout=5).json()["keys"]
        assert [key["alg"] for key in keys] == ["ES256"]
        whoami = requests.get(server.url + "/v1/whoami", timeout=5)
        assert whoami.status_code == 401
        assert whoami.headers["Content-Type"] == "application/problem+json"
        assert server.stop() == 0
    data_dir = tmp_path / "data" / "credenza"
    assert data_dir.is_dir() and data_dir.stat().st_mode & 0o777 == 0o700
    log = server.log()
    assert "serving <embedded default configuration>" in log
    assert stopped in log


@pytest.mark.parametrize("engine", ENGINES)
def test_access_log_carries_no_secrets(tmp_path: Path, engine: str) -> None:
    with running_server(tmp_path, [], ENGINES[engine][0]) as server:
        answer = requests.get(server.url + "/v1/whoami?access_token=QUERYSECRET", timeout=5,
                              auth=("alice", "PASSWORDSECRET"),
                              headers={"X-API-Key": "KEYSECRET", "Cookie": "s=COOKIESECRET"})
        server.stop()
    log = server.log()
    assert '"GET /v1/whoami HTTP/1.1" 401' in log
    assert f"id={answer.headers['X-Request-Id']}" in log
    for secret in ("QUERYSECRET", "PASSWORDSECRET", "KEYSECRET", "COOKIESECRET",
                   "YWxpY2U6UEFTU1dPUkRTRUNSRVQ="):  # the Basic header's base64
        assert secret not in log


@pytest.mark.parametrize(("engine", "key_format"), [
    ("granian", serialization.PrivateFormat.PKCS8),
    # granian reads PKCS#8 only: serve converts any other key (to a private temporary file)
    ("granian", serialization.PrivateFormat.TraditionalOpenSSL),
    ("gunicorn", serialization.PrivateFormat.PKCS8)])
def test_tls_from_cert_and_key_files(tmp_path: Path, engine: str,
                                     key_format: serialization.PrivateFormat) -> None:
    ca, cert, key = make_ca_and_server_cert(tmp_path)
    loaded = serialization.load_pem_private_key(key.read_bytes(), password=None)
    key.write_bytes(loaded.private_bytes(serialization.Encoding.PEM, key_format,
                                         serialization.NoEncryption()))
    config = tmp_path / "tls.toml"
    config.write_text(f"[credenza]\nplugins = []\n[server]\ncertfile = '{cert}'\n"
                      f"keyfile = '{key}'\n")
    with running_server(tmp_path, ["--config", str(config)], ENGINES[engine][0],
                        scheme="https", verify=str(ca)) as server:
        response = requests.get(server.url + "/status", timeout=5, verify=str(ca))
        assert response.status_code == 200
        try:
            requests.get(server.url + "/status", timeout=5, verify=True)
        except requests.exceptions.SSLError:
            pass
        else:
            raise AssertionError("a certificate from an unknown CA was accepted")
        assert server.stop() == 0


def test_a_bad_configuration_stops_serve_before_it_listens(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("[credenza]\nplugins = ['environ']\n[plugins.environ]\nfield = 3\n")
    result = subprocess.run(
        [sys.executable, "-m", "credenza", "--config", str(config), "serve"],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"credenza: configuration error: {config}: [plugins.environ] field: expected a non-empty "
        "string, got an integer 3"
    )


def test_a_busy_port_is_named_at_once_and_nothing_claims_to_serve(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        refused = subprocess.run([sys.executable, "-m", "credenza", "serve", "--bind",
                                  f"127.0.0.1:{port}"], capture_output=True, text=True,
                                 timeout=60, cwd=tmp_path)
    assert refused.returncode == 1
    assert (f"cannot listen on 127.0.0.1:{port}: Address already in use (another server "
            "listens there?)") in refused.stderr
    assert "serving" not in refused.stderr
    assert "Can't connect" not in refused.stderr  # refused before gunicorn's retries


@pytest.mark.parametrize("engine", ENGINES)
def test_json_logs_carry_the_request_id_on_every_line(tmp_path: Path, engine: str) -> None:
    (tmp_path / "audit-dir").mkdir()  # an audit file that cannot be written: an error logged
    config = tmp_path / "json.toml"
    config.write_text('[credenza]\nplugins = ["environ", "audit"]\nlog_format = "json"\n'
                      '[plugins.audit]\npath = "audit-dir"\n')
    engine_env, _, access_logger = ENGINES[engine]
    with running_server(tmp_path, ["--config", str(config)], engine_env) as server:
        # Credentials nobody checks: refused, and the refusal cannot be audited.
        response = requests.get(server.url + "/v1/whoami", timeout=5, auth=("alice", "pw"))
        assert response.status_code == 503
        assert response.json()["detail"].startswith("the audit trail cannot be written")
        assert server.stop() == 0
    lines = [json.loads(line) for line in server.log().splitlines()]
    request_id = response.headers["X-Request-Id"]
    mine = [line for line in lines if line["request_id"] == request_id]
    assert [(line["logger"], line["level"]) for line in mine] == [
        ("credenza.plugins.audit", "ERROR"), ("credenza.wsgi.app", "WARNING"),
        (access_logger, "INFO")]
    assert '"GET /v1/whoami HTTP/1.1" 503' in mine[-1]["message"]
    assert {"time", "level", "logger", "process", "request_id", "message"} <= set(mine[0])
    assert any(line["message"].startswith(("Booting worker", "Spawning worker"))
               for line in lines)
    assert any(line["message"].startswith("credenza: serving") for line in lines)


def listeners(port: int) -> dict[int, set[int]]:
    """Which processes hold which listening TCP sockets (by inode) on ``port`` (from /proc)."""
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].rpartition(":")[2], 16) == port and fields[3] == "0A":  # LISTEN
            inodes.add(int(fields[9]))
    held: dict[int, set[int]] = {}
    for fd in Path("/proc").glob("[0-9]*/fd/*"):
        try:
            target = os.readlink(fd)
        except OSError:  # a process or descriptor that went away meanwhile
            continue
        if target.startswith("socket:[") and int(target[8:-1]) in inodes:
            held.setdefault(int(fd.parts[2]), set()).add(int(target[8:-1]))
    return held


def test_each_gunicorn_worker_listens_on_its_own_socket(tmp_path: Path) -> None:
    """The kernel spreads connections over the workers' sockets: with one shared socket, a
    gunicorn worker that happened to be awake took most connections and served them on one
    core."""
    with running_server(tmp_path, [], GUNICORN) as server:
        port = int(server.url.rpartition(":")[2])
        deadline = time.monotonic() + 30
        while len(held := listeners(port)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)  # a worker listens once it has loaded the app: the other may not yet
        assert server.process.pid not in held  # the master listens on nothing
        assert len(held) == 2 and all(len(sockets) == 1 for sockets in held.values())
        assert len(set().union(*held.values())) == 2
        assert requests.get(server.url + "/status", timeout=5).status_code == 200
    (tmp_path / "shared").mkdir()
    with running_server(tmp_path / "shared", [],
                        {**GUNICORN, "CREDENZA__SERVER__REUSE_PORT": "false"}) as server:
        port = int(server.url.rpartition(":")[2])
        while len(held := listeners(port)) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)  # the second worker may not be forked yet
        assert server.process.pid in held and len(held) == 3  # master and workers: one socket
        assert len(set().union(*held.values())) == 1


def test_a_socket_per_worker_only_where_each_can_bind_the_same_address() -> None:
    assert reusable("127.0.0.1:8080") and reusable("[::1]:8080")
    assert not reusable("unix:/run/credenza.sock")
    assert not reusable("fd://3")
    assert not reusable("127.0.0.1:0")


def test_sync_workers_are_sync(tmp_path: Path) -> None:
    """gunicorn turns "sync" with threads into gthread; credenza's sync means one request at a
    time per process, whatever [server] threads says."""
    with running_server(tmp_path, [], {**GUNICORN, "CREDENZA__SERVER__WORKER_CLASS": "sync"}) \
            as server:
        assert requests.get(server.url + "/status", timeout=5).status_code == 200
        server.stop()
    assert "Using worker: sync" in server.log()


def test_granian_keeps_the_process_environment_out_of_requests(tmp_path: Path) -> None:
    """granian starts each request's environ from ``os.environ``: a REMOTE_USER in the server's
    environment would name every caller to the embedded default's ``environ`` plugin."""
    with running_server(tmp_path, [], {"REMOTE_USER": "mallory"}) as server:
        assert requests.get(server.url + "/v1/whoami", timeout=5).status_code == 401
        server.stop()
    config = tmp_path / "header.toml"
    config.write_text('[credenza]\nplugins = ["environ"]\n[plugins.environ]\n'
                      'field = "HTTP_X_FORWARDED_USER"\nallow_header_field = true\n')
    with running_server(tmp_path, ["--config", str(config)],
                        {"HTTP_X_FORWARDED_USER": "mallory"}) as server:
        assert requests.get(server.url + "/v1/whoami", timeout=5).status_code == 401
        # the header a request does send arrives
        whoami = requests.get(server.url + "/v1/whoami", timeout=5,
                              headers={"X-Forwarded-User": "alice"})
        assert whoami.status_code == 200
        assert whoami.json()["name"] == "alice"
        server.stop()


def test_granian_access_log_quotes_what_could_forge_a_line(tmp_path: Path) -> None:
    with running_server(tmp_path, []) as server:
        requests.get(server.url + "/v1/whoami%0A127.0.0.1%20%22GET%20/forged", timeout=5)
        server.stop()
    lines = [line for line in server.log().splitlines() if "credenza.access" in line]
    assert any('"GET /v1/whoami%0A127.0.0.1%20%22GET%20/forged HTTP/1.1" 404' in line
               for line in lines)
    assert not any(line.startswith(("127.0.0.1", '127.0.0.1 "GET /forged')) for line in lines)


def test_granian_refuses_an_inherited_descriptor_clearly(tmp_path: Path) -> None:
    refused = subprocess.run([sys.executable, "-m", "credenza", "serve", "--bind", "fd://3"],
                             capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert refused.returncode == 1
    assert ('cannot listen on fd://3: an inherited descriptor needs [server] engine = '
            '"gunicorn"') in refused.stderr


def test_granian_workers_stop_when_their_master_is_killed(tmp_path: Path) -> None:
    """Orphaned workers would go on serving the port, and a restart could not listen there."""
    with running_server(tmp_path, []) as server:
        port = int(server.url.rpartition(":")[2])
        deadline = time.monotonic() + 30
        while server.log().count("Started worker") < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        workers = set(listeners(port)) - {server.process.pid}
        assert len(workers) == 2
        server.process.kill()
        server.process.wait()
        while any(map(alive, workers)) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(map(alive, workers))
    with socket.socket() as again:
        again.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        again.bind(("127.0.0.1", port))  # free for a restarted server


def alive(pid: int) -> bool:
    """Whether any thread of process ``pid`` runs (a zombie waiting to be reaped does not; a
    main thread that has ended shows as one while the others go on)."""
    states = []
    for task in Path(f"/proc/{pid}/task").glob("*/stat"):
        try:
            states.append(task.read_text().rpartition(")")[2].split()[0])
        except OSError:  # that thread ended meanwhile
            continue
    return any(state != "Z" for state in states)


def test_granian_serves_a_unix_socket(tmp_path: Path) -> None:
    path = tmp_path / "credenza.sock"
    env = {**os.environ, "HOME": str(tmp_path), "XDG_DATA_HOME": str(tmp_path / "data"),
           "CREDENZA_CONFIG": "", "CREDENZA__SERVER__GRACEFUL_TIMEOUT": "5"}
    process = subprocess.Popen([sys.executable, "-m", "credenza", "serve", "--bind",
                                f"unix:{path}"], env=env, cwd=tmp_path,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        answer = b""
        while not answer.startswith(b"HTTP/1.1 200") and time.monotonic() < deadline:
            try:
                with socket.socket(socket.AF_UNIX) as client:
                    client.connect(str(path))
                    client.sendall(b"GET /status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    answer = b"".join(iter(lambda: client.recv(4096), b""))
            except OSError:
                time.sleep(0.05)  # not listening yet
        assert answer.startswith(b"HTTP/1.1 200") and b'"token store"' in answer
        process.terminate()
        assert process.wait(30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_granian_command_line_serves_worker_app_as_configuration_md_shows(
        tmp_path: Path) -> None:
    """docs/configuration.md: granian's own command line on ``worker_app`` (no ``credenza
    serve`` master: the worker must not take granian's master for a dead one)."""
    shown = "granian --interface wsgi --factory credenza.cli.granian_engine:worker_app"
    assert shown in (Path(__file__).parent.parent / "docs" / "configuration.md").read_text() \
        .replace("\n  ", " ")
    port = free_port()
    env = {**os.environ, "HOME": str(tmp_path), "XDG_DATA_HOME": str(tmp_path / "data"),
           "CREDENZA_CONFIG": "", "REMOTE_USER": "mallory"}
    process = subprocess.Popen([sys.executable, "-m", *shown.split(), "--workers", "1",
                                "--port", str(port)], env=env, cwd=tmp_path,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                status = requests.get(f"http://127.0.0.1:{port}/status", timeout=1)
                break
            except requests.ConnectionError:
                assert time.monotonic() < deadline and process.poll() is None
                time.sleep(0.05)
        assert status.status_code == 200
        # the embedded default's environ plugin does not see the service's REMOTE_USER
        assert requests.get(f"http://127.0.0.1:{port}/v1/whoami", timeout=5).status_code == 401
    finally:
        process.terminate()
        process.wait(30)


@pytest.mark.parametrize("engine", ENGINES)
def test_a_stopped_worker_leaves_the_live_gauges(tmp_path: Path, engine: str) -> None:
    """prometheus_client sums live gauges over the files of live processes: each engine drops
    a worker's files when it exits."""
    metrics_dir = tmp_path / "metrics"
    env = {**ENGINES[engine][0], "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}
    with running_server(tmp_path, [], env) as server:
        port = int(server.url.rpartition(":")[2])
        deadline = time.monotonic() + 30
        while len(workers := set(listeners(port)) - {server.process.pid}) < 2 \
                and time.monotonic() < deadline:
            time.sleep(0.05)  # gunicorn's workers listen once loaded, granian's once forked
        assert len(workers) == 2
        live = [metrics_dir / f"gauge_livesum_{pid}.db" for pid in workers]
        for path in live:
            path.write_bytes(b"")  # as a worker's live gauge would leave it
        assert server.stop() == 0
    assert not any(path.exists() for path in live)


def workers_of(master: int) -> set[int]:
    """The worker processes of the server ``master``: its children whose title says so."""
    children: set[int] = set()
    for task in Path(f"/proc/{master}/task").glob("*/children"):
        children.update(int(pid) for pid in task.read_text().split())
    workers = set()
    for pid in children:
        try:
            if b"worker" in Path(f"/proc/{pid}/cmdline").read_bytes():
                workers.add(pid)
        except OSError:  # it ended meanwhile
            continue
    return workers


def cores_of(pid: int) -> set[frozenset[int]]:
    """The CPU affinity of each thread of process ``pid``."""
    cores = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            cores.add(frozenset(os.sched_getaffinity(int(task.name))))
        except OSError:  # that thread ended meanwhile
            continue
    return cores


def settled_workers(server: Server, count: int, leaving: int = 0) -> dict[int, frozenset[int]]:
    """The server's ``count`` workers (without ``leaving``) once each has loaded the app, and
    the one CPU affinity all threads of each share (every thread, those started before the
    worker took its core too)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        workers = workers_of(server.process.pid) - {leaving}
        affinities = {pid: cores_of(pid) for pid in workers}
        if len(workers) == count and all(len(found) == 1 for found in affinities.values()):
            try:  # loaded: its threads are all started
                requests.get(server.url + "/status", timeout=5)
            except requests.ConnectionError:
                pass
            else:
                return {pid: next(iter(found)) for pid, found in affinities.items()}
        time.sleep(0.05)
    raise AssertionError(f"no {count} settled workers:\n{server.log()}")


@pytest.mark.skipif(not 2 <= len(os.sched_getaffinity(0)) <= 8,
                    reason="a worker per core needs 2 to 8 usable cores here")
@pytest.mark.parametrize("engine", ENGINES)
def test_each_worker_runs_on_a_core_of_its_own(tmp_path: Path, engine: str) -> None:
    """A worker's threads pass the GIL among themselves, and cost about twice the CPU when the
    kernel spreads them over cores; a replacement worker takes the core of the one it
    replaces."""
    usable = frozenset(os.sched_getaffinity(0))
    env = {**ENGINES[engine][0], "CREDENZA__SERVER__WORKERS": "1"}
    # as many workers as cores: auto pins (the workers count the command line's, not the
    # configuration's, even where they load it afresh)
    with running_server(tmp_path, [], env, serve_args=["--workers", str(len(usable))]) as server:
        workers = settled_workers(server, len(usable))
        assert set(workers.values()) == {frozenset({core}) for core in usable}
        gone = next(iter(workers))
        os.kill(gone, signal.SIGKILL)
        replaced = settled_workers(server, len(usable), leaving=gone)
        assert gone not in replaced
        assert set(replaced.values()) == set(workers.values())  # the freed core again
        assert server.stop() == 0
    for name, workers_setting, pin_workers in [("never", len(usable), "never"),
                                               ("fewer", len(usable) - 1, "auto")]:
        (tmp_path / name).mkdir()
        with running_server(tmp_path / name, [], {
                **ENGINES[engine][0], "CREDENZA__SERVER__WORKERS": str(workers_setting),
                "CREDENZA__SERVER__PIN_WORKERS": pin_workers}) as server:
            assert set(settled_workers(server, workers_setting).values()) == {usable}
            assert server.stop() == 0
    (tmp_path / "always").mkdir()
    with running_server(tmp_path / "always", [], {
            **env, "CREDENZA__SERVER__PIN_WORKERS": "always"}) \
            as server:
        assert set(settled_workers(server, 1).values()) == {frozenset({min(usable)})}
        assert server.stop() == 0


def test_workers_claim_the_lowest_free_slot() -> None:
    first, second = claim_slot(os.getpid()), claim_slot(os.getpid())
    assert (first.number, second.number) == (0, 1)
    other_server = claim_slot(os.getpid() + 1)  # each server counts its own
    assert other_server.number == 0
    first.close()
    again = claim_slot(os.getpid())
    assert again.number == 0
    for slot in (second, other_server, again):
        slot.close()
