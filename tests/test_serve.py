"""`credenza serve` on a real socket: answers, logs no secrets, speaks TLS, stops on SIGTERM."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

from credenza.cli.serve import reusable
from tests.conftest import running_server
from tests.tls import make_ca_and_server_cert


def test_embedded_default_serves_status_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    env = {"HOME": str(tmp_path), "XDG_DATA_HOME": str(tmp_path / "data")}
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
    assert "Shutting down: Master" in log


def test_access_log_carries_no_secrets(tmp_path: Path) -> None:
    with running_server(tmp_path, []) as server:
        requests.get(server.url + "/v1/whoami?access_token=QUERYSECRET", timeout=5,
                     auth=("alice", "PASSWORDSECRET"),
                     headers={"X-API-Key": "KEYSECRET", "Cookie": "s=COOKIESECRET"})
        server.stop()
    log = server.log()
    assert '"GET /v1/whoami HTTP/1.1" 401' in log
    for secret in ("QUERYSECRET", "PASSWORDSECRET", "KEYSECRET", "COOKIESECRET",
                   "YWxpY2U6UEFTU1dPUkRTRUNSRVQ="):  # the Basic header's base64
        assert secret not in log


def test_tls_from_cert_and_key_files(tmp_path: Path) -> None:
    ca, cert, key = make_ca_and_server_cert(tmp_path)
    config = tmp_path / "tls.toml"
    config.write_text(f"[credenza]\nplugins = []\n[server]\ncertfile = '{cert}'\n"
                      f"keyfile = '{key}'\n")
    with running_server(tmp_path, ["--config", str(config)], scheme="https",
                        verify=str(ca)) as server:
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


def test_json_logs_carry_the_request_id_on_every_line(tmp_path: Path) -> None:
    (tmp_path / "audit-dir").mkdir()  # an audit file that cannot be written: an error logged
    config = tmp_path / "json.toml"
    config.write_text('[credenza]\nplugins = ["environ", "audit"]\nlog_format = "json"\n'
                      '[plugins.audit]\npath = "audit-dir"\n')
    with running_server(tmp_path, ["--config", str(config)]) as server:
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
        ("gunicorn.access", "INFO")]
    assert '"GET /v1/whoami HTTP/1.1" 503' in mine[-1]["message"]
    assert {"time", "level", "logger", "process", "request_id", "message"} <= set(mine[0])
    assert any("Booting worker" in line["message"] for line in lines)
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


def test_each_worker_listens_on_its_own_socket(tmp_path: Path) -> None:
    """The kernel spreads connections over the workers' sockets: with one shared socket, a
    worker that happened to be awake took most connections and served them on one core."""
    with running_server(tmp_path, []) as server:
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
                        {"CREDENZA__SERVER__REUSE_PORT": "false"}) as server:
        held = listeners(int(server.url.rpartition(":")[2]))
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
    with running_server(tmp_path, [], {"CREDENZA__SERVER__WORKER_CLASS": "sync"}) as server:
        assert requests.get(server.url + "/status", timeout=5).status_code == 200
        server.stop()
    assert "Using worker: sync" in server.log()
