"""API keys in the token store: created once, listed without secrets, revoked, and usable as
X-API-Key identities."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from werkzeug.test import Client

from credenza.broker import Broker
from credenza.wsgi import make_app


@pytest.fixture
def setup(tmp_path: Path, password_hash: str) -> dict[str, Any]:
    (tmp_path / "static.yaml").write_text(f"""
users:
  alice: {{password: "{password_hash}", grants: ["prod/admin"]}}
  bob: {{password: "{password_hash}"}}
accounts:
  prod: {{id: "111111111111"}}
""")
    config = tmp_path / "credenza.toml"
    config.write_text(f"""
[credenza]
plugins = ["static", "jwt", "sql"]
data_dir = "{tmp_path / 'data'}"
[plugins.static]
files = ["{tmp_path / 'static.yaml'}"]
""")
    return {"client": Client(make_app(Broker.from_config(config))), "config": config,
            "data": tmp_path / "data"}


ALICE, BOB = ("alice", "PASSWORD"), ("bob", "PASSWORD")


def test_create_use_list_and_revoke(setup: dict[str, Any]) -> None:
    client = setup["client"]
    made = client.post("/v1/api-keys", json={"name": "laptop", "expires_in_days": 30},
                       auth=ALICE)
    assert made.status_code == 200
    key = made.get_json()["key"]
    assert key.startswith("ck_") and made.get_json()["owner"] == "alice"
    me = client.get("/v1/whoami", headers={"X-API-Key": key}).get_json()
    assert (me["name"], me["source"]) == ("alice", "api-key")
    assert me["grants"][0]["target"] == "prod"  # the owner's grants
    listed = client.get("/v1/api-keys", auth=ALICE).get_json()["keys"]
    assert [(k["name"], k["revoked"]) for k in listed] == [("laptop", False)]
    assert "key" not in listed[0]
    assert key.encode() not in b"".join(p.read_bytes() for p in setup["data"].glob("tokens*"))
    assert client.delete(f"/v1/api-keys/{listed[0]['id']}", auth=BOB).status_code == 403
    assert client.get("/v1/api-keys?owner=alice", auth=BOB).status_code == 403
    assert client.delete(f"/v1/api-keys/{listed[0]['id']}", auth=ALICE).status_code == 200
    refused = client.get("/v1/whoami", headers={"X-API-Key": key})
    assert refused.status_code == 401 and refused.get_json()["detail"] == "invalid API key"


@pytest.mark.parametrize(("body", "detail"), [
    ({}, "invalid request body: Object missing required field `name`"),
    ({"name": "x", "expires_in_days": 0},
     "invalid request body: Expected `int` >= 1 - at field `expires_in_days`"),
    ({"name": "x", "expires_in_days": True},
     "invalid request body: Expected `int`, got `bool` - at field `expires_in_days`"),
    ({"name": "x\n"}, "an API key needs a printable name"),
])
def test_bad_requests(setup: dict[str, Any], body: dict[str, Any], detail: str) -> None:
    response = setup["client"].post("/v1/api-keys", json=body, auth=ALICE)
    assert response.status_code == 400 and response.get_json()["detail"].startswith(detail)


def test_unknown_keys(setup: dict[str, Any]) -> None:
    client = setup["client"]
    assert client.get("/v1/whoami", headers={"X-API-Key": "ck_nope.nope"}).status_code == 401
    assert client.delete("/v1/api-keys/ck_nope", auth=ALICE).status_code == 404


def test_the_cli(setup: dict[str, Any]) -> None:
    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "credenza", "--config",
                               str(setup["config"]), "api-keys", *args], capture_output=True,
                              text=True, timeout=60, check=True)

    key = cli("create", "alice", "--name", "ci").stdout.strip()
    assert setup["client"].get("/v1/whoami", headers={"X-API-Key": key}).status_code == 200
    key_id = key.split(".")[0]
    assert f"{key_id}  ci  active" in cli("list", "alice").stdout
    cli("revoke", key_id)
    assert f"{key_id}  ci  revoked" in cli("list", "alice").stdout
    assert setup["client"].get("/v1/whoami", headers={"X-API-Key": key}).status_code == 401
