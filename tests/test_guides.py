"""Each guide's configuration (docs/guides/NAME/, included verbatim in its page) loads as the
server would, and answers as the guide says."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from werkzeug.test import Client

from credenza.broker import Broker
from credenza.config import Config
from credenza.models import IdentityRequest, Principal
from credenza.wsgi import make_app

GUIDES = Path(__file__).resolve().parent.parent / "docs" / "guides"
# What the guides leave to the environment (secrets), and a throwaway data directory.
SECRETS = {"AFP_AWS_ACCESS_KEY_ID": "AKIAEXAMPLE", "AFP_AWS_SECRET_ACCESS_KEY": "secret",
           "CREDENZA_IMDS_TOKEN_KEY": "imds-key", "CREDENZA_LDAP_PASSWORD": "service-pw",
           "CREDENZA_AUDIT_HMAC_KEY": "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
           "CREDENZA_METRICS_TOKEN": "metrics-token",
           "CREDENZA_CONSOLE_KEY": "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="}


@pytest.fixture
def guide(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator:
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    brokers: list[Broker] = []

    def load(name: str) -> Broker:
        environ = {**SECRETS, "CREDENZA__CREDENZA__DATA_DIR": str(tmp_path / name)}
        broker = Broker.from_config(Config.load(GUIDES / name / "credenza.toml", environ))
        make_app(broker)  # the families' settings too
        brokers.append(broker)
        return broker

    yield load
    for broker in brokers:
        broker.close()


def test_every_guide_has_a_page_and_a_configuration() -> None:
    names = {path.name for path in GUIDES.iterdir() if path.is_dir()}
    assert names == {path.stem for path in GUIDES.glob("*.md")}
    for name in names:
        page = (GUIDES / f"{name}.md").read_text()
        assert f'--8<-- "guides/{name}/credenza.toml"' in page, name


@pytest.mark.parametrize("name", sorted(p.name for p in GUIDES.iterdir() if p.is_dir()))
def test_the_guide_configuration_loads(guide, name: str) -> None:
    assert guide(name).plugin_names()


def test_afp_people_see_their_accounts(guide) -> None:
    client = Client(make_app(guide("afp")))
    answer = client.get("/account", environ_base={"REMOTE_USER": "alice"})
    assert answer.status_code == 200 and answer.headers["X-Username"] == "alice"
    assert answer.get_json() == {"dev": ["developer"], "prod": ["admin"]}


def test_a_fleet_machine_is_its_address(guide) -> None:
    broker = guide("aws-sdks")
    machine = broker.identify(IdentityRequest(environ={"REMOTE_ADDR": "10.0.12.7"},
                                               remote_addr="10.0.12.7"))
    assert (machine.name, machine.kind) == ("10.0.12.7", "machine")
    assert broker.aws_roles(machine) == {"prod": ["app"]}


def test_cli_tokens_are_made_for_the_identity_provider(guide) -> None:
    broker = guide("cli-tokens")
    alice = broker.enrich(Principal("alice", source="cli"))
    _record, secret = broker.oauth.api_tokens.create(alice, "credenza-cli", "cli")
    jwt = broker.oauth.api_tokens.exchange("credenza-cli", secret)
    assert jwt.record.claims["aud"] == "credenza-cli"
    assert broker.identify(IdentityRequest(bearer=jwt.value)).name == "alice"
