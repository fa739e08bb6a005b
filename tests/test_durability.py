"""An acknowledged token is never lost: ``credenza serve`` is killed (SIGKILL, master and workers
at once) while sixteen clients issue tokens, and every token a client was answered is in the
store afterwards, on SQLite and on PostgreSQL."""

from __future__ import annotations

import json
import os
import signal
import threading
from pathlib import Path

import pytest
import requests

from credenza.secrets import new_api_key
from tests.conftest import issuing_config, running_server
from tests.store_fixtures import make_store

PROVIDER, AUDIENCE, INSTANCE = "bot", "https://api.example.com", "credenza"
CLIENTS, ACKNOWLEDGED_BEFORE_KILL = 16, 300


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(child) for child in (task / "children").read_text().split()]
    return found


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_kill_9_under_load_loses_no_acknowledged_token(backend: str, tmp_path: Path,
                                                       request: pytest.FixtureRequest) -> None:
    url = request.getfixturevalue("postgres").database() if backend == "postgresql" else None
    secret, digest = new_api_key("app")
    config = issuing_config(tmp_path, "app", digest, PROVIDER, AUDIENCE, url)
    acknowledged: list[str] = []
    enough, lock = threading.Event(), threading.Lock()
    body = json.dumps({"credentialProviderIdentifier": PROVIDER, "subject": "job",
                       "audiences": [AUDIENCE]})

    with running_server(tmp_path, ["--config", str(config)]) as server:
        access = requests.post(server.url + "/oauth2/token", auth=("app", secret), data={
            "grant_type": "client_credentials", "scope": "urn:cloud:idaas:pam|.all"},
            timeout=10).json()["access_token"]
        generate = f"{server.url}/v2/{INSTANCE}/authenticationTokens/_/actions/generateJwt"

        def client() -> None:
            session = requests.Session()
            while True:
                try:
                    answer = session.post(generate, data=body, timeout=10, headers={
                        "Authorization": f"Bearer {access}",
                        "Content-Type": "application/json"})
                except requests.RequestException:
                    return  # the server is gone
                if answer.status_code == 200:
                    with lock:
                        acknowledged.append(answer.json()["authenticationTokenId"])
                        if len(acknowledged) >= ACKNOWLEDGED_BEFORE_KILL:
                            enough.set()

        threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
        for thread in threads:
            thread.start()
        assert enough.wait(60), f"only {len(acknowledged)} tokens were issued in 60 s"
        for pid in [*_children(server.process.pid), server.process.pid]:
            os.kill(pid, signal.SIGKILL)  # requests are in flight
        for thread in threads:
            thread.join(20)
    store = make_store(url, tmp_path / "data")
    try:
        lost = [token_id for token_id in acknowledged if store.get(token_id) is None]
    finally:
        store.close()
    assert len(acknowledged) >= ACKNOWLEDGED_BEFORE_KILL
    assert lost == []
