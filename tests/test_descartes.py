"""The Descartes Labs client (descarteslabs<4, its own venv: it needs setuptools<81) getting
JWTs from the bundled server with a long-lived API token."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import venv
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import (
    ROOT,
    Server,
    make_api_token,
    running_server,
    write_token_server_config,
)

VENV = ROOT / ".tox" / "descarteslabs-venv"
CLIENT = "dl-cli"

RUN = """
import json, sys
from descarteslabs.auth import Auth
auth = Auth(domain=sys.argv[1], client_id=sys.argv[2], client_secret=sys.argv[3],
            token_info_path=None, retries=0)
try:
    print(json.dumps({"token": auth.token, "payload": auth.payload, "namespace": auth.namespace,
                      "subjects": auth.all_acl_subjects,
                      "owners": auth.all_owner_acl_subjects}))
except Exception as exc:
    print(json.dumps({"error": type(exc).__name__, "message": str(exc)}))
"""


@pytest.fixture(scope="session")
def descartes_python() -> Path:
    """A venv with the real client, built once (kept under .tox/ between local runs)."""
    python = VENV / "bin" / "python"
    ready = VENV / ".credenza-ready"
    if not ready.exists():
        venv.create(VENV, with_pip=True, clear=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "setuptools<81",
                        "descarteslabs<4"], check=True, timeout=900)
        ready.touch()
    return python


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("descartes")
    config = write_token_server_config(tmp, """
        users:
          alice:
            groups: ["acme:org-admin", engineering, "other:thing"]
            tokens: {dl: []}
            attributes: {name: Alice Example, email: Alice@Example.com, org: acme}
          bob: {}
        """, "[plugins.jwt.providers.dl]\ndefault_lifetime_seconds = 3600\n")
    with running_server(tmp, ["--config", str(config)]) as running:
        made = make_api_token(config, "alice", CLIENT, "dl", running.url)
        yield {"server": running, "secret": made.secret, "config": config, "cli": made.output}
        assert running.stop() == 0


def run(python: Path, server: Server, client_id: str, secret: str) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DESCARTESLABS_")}
    result = subprocess.run([str(python), "-c", RUN, server.url, client_id, secret],
                            capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_the_real_client_gets_a_token_with_its_api_token(descartes_python: Path,
                                                         server: dict[str, Any]) -> None:
    first = run(descartes_python, server["server"], CLIENT, server["secret"])
    assert "error" not in first, first
    payload = first["payload"]
    assert (payload["aud"], payload["sub"], payload["name"]) == (CLIENT, "alice", "Alice Example")
    namespace = hashlib.sha1(b"alice").hexdigest()  # noqa: S324 - the client's own scheme
    assert first["namespace"] == namespace
    assert set(first["subjects"]) >= {f"user:{namespace}", "email:alice@example.com",
                                      "org:acme", "group:engineering"}
    assert "org:acme" in first["owners"]
    assert payload["exp"] - payload["iat"] == 3600  # longer than the client's 500 s leeway
    # The same API token keeps working: no forced rotation for these clients.
    second = run(descartes_python, server["server"], CLIENT, server["secret"])
    assert second["payload"]["jti"] != payload["jti"]


def test_wrong_secret_or_client_is_refused(descartes_python: Path,
                                           server: dict[str, Any]) -> None:
    for client_id, secret in ((CLIENT, server["secret"][:-2] + "xx"),
                              ("another-client", server["secret"])):
        answer = run(descartes_python, server["server"], client_id, secret)
        assert answer["error"] == "UnauthorizedError", answer  # the client's own 401 error
        assert "invalid client_id or refresh token" in answer["message"], answer


def test_api_tokens_only_for_users_with_the_grant(server: dict[str, Any]) -> None:
    refused = subprocess.run([sys.executable, "-m", "credenza", "--config",
                              str(server["config"]), "api-token", "bob", "--client", CLIENT,
                              "--provider", "dl"], capture_output=True, text=True, timeout=60)
    assert refused.returncode == 1
    assert refused.stderr.strip() == "credenza: forbidden: bob has no grant for token dl"
    assert "login blob: " in server["cli"]
