"""Signing keys rotate themselves on schedule ([plugins.jwt.key_rotation.ALG]) across replicas
sharing the key directory: one rotates, the others follow, and no live token stops verifying."""

from __future__ import annotations

import json
import tomllib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import jwt as pyjwt
import pytest
from werkzeug.test import Client

from credenza.broker import Broker
from credenza.errors import ConfigError
from credenza.keyring import JWKS_MAX_AGE
from credenza.models import TokenSpec
from credenza.wsgi import make_app
from tests.test_jwt import AUDIENCE, CI, ISSUER, Grants

PERIOD = 3600
LIFETIME = 600


class Clock:
    """The keyrings' time, moved by the test (tokens keep real iat/exp: they stay live)."""

    def __init__(self) -> None:
        self.now = 2_000_000_000.0

    def __call__(self) -> float:
        return self.now


def replica(tmp_path: Path, clock: Clock, **rotation: Any) -> Broker:
    """A broker on the shared data directory (store and keys), its keyring on ``clock``."""
    broker = Broker.from_config({
        "credenza": {"plugins": ["jwt", "sql"], "data_dir": str(tmp_path / "data")},
        "plugins": {"jwt": {
            "issuer": ISSUER,
            "providers": {"build-bot": {"audiences": [AUDIENCE],
                                        "max_lifetime_seconds": LIFETIME}},
            "key_rotation": {"ES256": {"rotation_period_seconds": PERIOD, **rotation}}},
            "sql": {}},
    }, plugins=[Grants()])
    broker.plugin_manager.get_plugin("jwt").keyring.clock = clock
    return broker


def issue(broker: Broker) -> str:
    return broker.issue_token(CI, TokenSpec("build-bot", "job", [AUDIENCE])).value


def kid(token: str) -> str:
    return pyjwt.get_unverified_header(token)["kid"]


def states(tmp_path: Path) -> list[str]:
    index = json.loads((tmp_path / "data" / "jwt-keys" / "keys.json").read_text())
    return sorted(entry["state"] for entry in index.values())


def test_keys_rotate_on_schedule_across_two_replicas(tmp_path: Path) -> None:
    clock = Clock()
    one, two = replica(tmp_path, clock), replica(tmp_path, clock)
    tokens = [issue(one), issue(two)]
    first = kid(tokens[0])
    assert kid(tokens[1]) == first and states(tmp_path) == ["active"]

    # JWKS_MAX_AGE before the period ends, the next key is published (by whichever replica
    # looks first), and still does not sign.
    clock.now += PERIOD - JWKS_MAX_AGE
    jwks = Client(make_app(two)).get("/.well-known/jwks.json").get_json()["keys"]
    assert states(tmp_path) == ["active", "next"] and len(jwks) == 2
    tokens += [issue(one), issue(two)]
    assert {kid(token) for token in tokens} == {first}

    # When it ends, both replicas sign with the next key, made active by exactly one of them
    # although sixteen signatures race for it.
    clock.now += JWKS_MAX_AGE
    with ThreadPoolExecutor(16) as pool:
        raced = list(pool.map(lambda i: issue((one, two)[i % 2]), range(16)))
    assert states(tmp_path) == ["active", "retiring"]
    second = {kid(token) for token in raced}
    assert len(second) == 1 and second != {first}
    assert {key["kid"] for key in jwks} == {first} | second  # clients knew it in time
    tokens += raced

    # Every token, of either key, verifies on either replica and with the JWKS alone.
    for broker in (one, two):
        assert all(broker.tokens.validate(token) for token in tokens)
        keys = pyjwt.PyJWKSet.from_dict(
            Client(make_app(broker)).get("/.well-known/jwks.json").get_json())
        for token in tokens:
            key = next(k for k in keys.keys if k.key_id == kid(token))
            assert pyjwt.decode(token, key.key, algorithms=["ES256"], audience=AUDIENCE)

    # The replaced key leaves the JWKS once no token it signed can be live: not before.
    clock.now += LIFETIME
    assert one.tokens.validate(tokens[0])
    clock.now += two.plugin_manager.get_plugin("jwt").verification_seconds() - LIFETIME
    assert not one.tokens.validate(tokens[0]) and not two.tokens.validate(tokens[0])
    assert all(one.tokens.validate(token) for token in raced)

    # The next period rotates again, and forgets the first key's file.
    clock.now += PERIOD
    third = kid(issue(two))
    assert third not in second | {first}
    assert states(tmp_path) == ["active", "retiring"]
    assert not (tmp_path / "data" / "jwt-keys" / f"{first}.pem").exists()
    one.close()
    two.close()


def test_a_verification_ttl_shorter_than_a_token_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"verification_ttl_seconds: 60 s would drop keys "
                                          r"while tokens they signed live: at least 3630"):
        replica(tmp_path, Clock(), verification_ttl_seconds=60)
    with pytest.raises(ConfigError, match=r"key_rotation\] HS256: unknown algorithm"):
        Broker.from_config({"credenza": {"plugins": ["jwt"], "data_dir": str(tmp_path)},
                            "plugins": {"jwt": {"key_rotation": {"HS256": {}}}}})


def test_without_a_schedule_nothing_rotates(tmp_path: Path) -> None:
    clock = Clock()
    broker = replica(tmp_path, clock, rotation_period_seconds=0)
    token = issue(broker)
    clock.now += 100 * PERIOD
    assert kid(issue(broker)) == kid(token) and states(tmp_path) == ["active"]
    broker.close()


def test_the_operations_page_schedule_loads(tmp_path: Path) -> None:
    page = (Path(__file__).resolve().parent.parent / "docs" / "operations.md").read_text()
    block, = [b for b in page.split("```toml\n")[1:] if "key_rotation" in b]
    table = tomllib.loads(block.split("```")[0])["plugins"]["jwt"]
    broker = Broker.from_config({"credenza": {"plugins": ["jwt"], "data_dir": str(tmp_path)},
                                 "plugins": {"jwt": table}})
    period, verification = broker.plugin_manager.get_plugin("jwt").rotation["ES256"]
    assert period == 30 * 86400 and verification >= 3600
