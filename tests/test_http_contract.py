"""The HTTP contract: what every route accepts and answers, whatever the plugin order."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from werkzeug.test import Client

from credenza.broker import Broker
from credenza.models import Principal
from credenza.secrets import new_api_key
from credenza.wsgi import make_app


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.fixture(params=[["static", "jwt", "sql"], ["jwt", "sql", "static"]],
                ids=["static-first", "static-last"])
def several(request: pytest.FixtureRequest, tmp_path: Path, password_hash: str):
    alice_key, alice_digest = new_api_key("alice-key")
    bob_key, bob_digest = new_api_key("bob-key")
    (tmp_path / "static.yaml").write_text(f"""
users:
  alice: {{password: "{password_hash}"}}
  bob: {{password: "{password_hash}"}}
api_keys:
  alice-key: {{sha256: "{alice_digest}", principal: alice, kind: user}}
  bob-key: {{sha256: "{bob_digest}", principal: bob, kind: user}}
""")
    broker = Broker.from_config({
        "credenza": {"plugins": request.param, "data_dir": str(tmp_path / "data")},
        "plugins": {"static": {"files": [str(tmp_path / "static.yaml")]}},
    })
    _record, store_key = broker.api_keys.create(Principal("alice", source="test"), "laptop")
    return Client(make_app(broker)), {"alice": alice_key, "bob": bob_key, "store": store_key}


@pytest.mark.parametrize(("headers", "status"), [
    ({"X-API-Key": "{alice}"}, 200),
    ({"X-API-Key": "{alice}", "Authorization": basic("alice", "PASSWORD")}, 200),
    ({"X-API-Key": "{store}", "Authorization": basic("alice", "PASSWORD")}, 200),
    ({"X-API-Key": "{alice}", "Authorization": basic("alice", "wrong")}, 401),
    ({"X-API-Key": "{store}", "Authorization": basic("alice", "wrong")}, 401),
    ({"X-API-Key": "{alice}", "Authorization": "Bearer not.a.token"}, 401),
    ({"X-API-Key": "{alice}", "Authorization": "Bearer garbage"}, 401),
    ({"X-API-Key": "{store}", "Authorization": "Bearer garbage"}, 401),
    ({"X-API-Key": "{alice}", "Authorization": basic("bob", "PASSWORD")}, 401),
    ({"X-API-Key": "{bob}", "Authorization": basic("alice", "PASSWORD")}, 401),
    ({"X-API-Key": "nobody.knows", "Authorization": basic("alice", "PASSWORD")}, 401),
    ({"X-API-Key": "{alice}x"}, 401),
])
def test_every_credential_presented_is_checked(several, headers: dict[str, str],
                                               status: int) -> None:
    client, keys = several
    sent = {name: value.format(**keys) for name, value in headers.items()}
    answer = client.get("/v1/whoami", headers=sent)
    assert answer.status_code == status, answer.get_json()
    if status == 200:
        assert answer.get_json()["name"] == "alice"
    else:
        assert answer.headers["WWW-Authenticate"].startswith("Basic realm=")
