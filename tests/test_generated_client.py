"""A client generated from ``/openapi.json`` (openapi-python-client) calls the API: the
document is complete enough for a code generator, not only for people."""

from __future__ import annotations

import base64
import importlib
import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from werkzeug.test import Client

from credenza.broker import Broker
from credenza.secrets import new_api_key
from credenza.wsgi import make_app


@pytest.fixture
def generated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    key, digest = new_api_key("app")
    (tmp_path / "static.yaml").write_text(
        f'oauth_clients:\n  app: {{sha256: "{digest}", tokens: {{bot: []}}}}\n')
    app = make_app(Broker.from_config({
        "credenza": {"plugins": ["static", "jwt", "sql"], "data_dir": str(tmp_path / "data")},
        "plugins": {"static": {"files": [str(tmp_path / "static.yaml")]},
                    "jwt": {"providers": {"bot": {}}}},
    }))
    document = Client(app).get("/openapi.json").get_json()
    (tmp_path / "openapi.json").write_text(json.dumps(document))
    (tmp_path / "generator.yaml").write_text("post_hooks: []\n")
    made = subprocess.run(
        [sys.executable, "-m", "openapi_python_client", "generate", "--path", "openapi.json",
         "--meta", "none", "--config", "generator.yaml", "--output-path", "credenza_api",
         "--fail-on-warning"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert made.returncode == 0, made.stdout + made.stderr
    monkeypatch.syspath_prepend(str(tmp_path))
    return app, key


def test_a_generated_client_generates_a_jwt_and_lists_tokens(generated) -> None:
    app, key = generated
    api = importlib.import_module("credenza_api")
    transport = httpx.WSGITransport(app=app)
    anonymous = api.Client(base_url="http://credenza.test", httpx_args={"transport": transport})
    token_module = importlib.import_module("credenza_api.api.oauth.post_oauth2_token")
    token_models = importlib.import_module("credenza_api.models.token_request")
    basic = "Basic " + base64.b64encode(f"app:{key}".encode()).decode()
    answer = token_module.sync(client=anonymous.with_headers({"Authorization": basic}),
        body=token_models.TokenRequest(grant_type="client_credentials",
                                       scope="urn:cloud:idaas:pam|.all"))
    assert answer.token_type == "Bearer", answer

    client = api.AuthenticatedClient(base_url="http://credenza.test", token=answer.access_token,
                                     httpx_args={"transport": transport})
    generate = importlib.import_module(
        "credenza_api.api.idaas_pam.post_v_2_instance_id_authentication_tokens_actions_generate_jwt")
    listing = importlib.import_module(
        "credenza_api.api.idaas_pam.get_v_2_instance_id_authentication_tokens")
    models = importlib.import_module("credenza_api.models")
    made = generate.sync("credenza", client=client, body=models.GenerateJwt(
        credential_provider_identifier="bot", subject="job", audiences=["https://api.test"],
        include_derived_short_token=True))
    assert isinstance(made, models.JwtAnswer), made
    assert made.jwt_content.jwt_value.count(".") == 2 and made.consumer_id == "app"
    page = listing.sync("credenza", client=client, consumer_id="app",
                        credential_provider_identifier="bot", max_results=10)
    assert isinstance(page, models.TokenPage), page
    assert [entity.authentication_token_id for entity in page.entities] == [
        made.authentication_token_id]
    refused = generate.sync("credenza", client=client, body=models.GenerateJwt(
        credential_provider_identifier="nobody", subject="job", audiences=["https://api.test"]))
    assert isinstance(refused, models.PamError) and refused.code == "403"
