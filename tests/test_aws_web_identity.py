"""AWS without broker-held keys: aws-sts in web-identity mode, end to end on moto.

The broker signs a short-lived JWT for each caller with the jwt plugin's keys and sends it, in an
unsigned AssumeRoleWithWebIdentity call, to moto's STS (which accepts any token). What STS is
sent is then checked independently of moto: the token verifies against the keys the broker
publishes, found the way IAM finds them (the issuer's discovery document, then its JWKS), and
carries the claims IAM requires.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import jwt as pyjwt
import pytest
import requests
from moto import mock_aws
from werkzeug.test import Client

from credenza.broker import Broker
from credenza.errors import BadRequest, ConfigError, Forbidden
from credenza.models import Principal, TokenSpec
from credenza.wsgi import make_app
from tests.aws_fixtures import FakeSignin, FaultProxy, write_aws_config
from tests.conftest import make_api_token, running_server
from tests.test_aws_clients import afp, boto3_default_chain, check_with_moto
from tests.test_client_aws import CLIENT, credenza
from tests.test_client_aws import JWT as JWT_WITHOUT_AWS  # the issuer and the CLI's provider

ISSUER = "https://credenza.test"
JWT = JWT_WITHOUT_AWS + """
[plugins.jwt.providers.aws]
internal = true
audiences = ["sts.amazonaws.com"]
default_lifetime_seconds = 300
max_lifetime_seconds = 300
"""
WEB_IDENTITY = """
mode = "web-identity"
source_identity = true
[plugins.aws-sts.session_tags]
Department = "department"
"""
DOCS = Path(__file__).resolve().parent.parent / "docs" / "aws.md"


def web_identity_config(directory: Path, sts: FaultProxy, signin: FakeSignin,
                        password_hash: str, container_key: tuple[str, str],
                        aws_sts: str = WEB_IDENTITY, jwt: str = JWT) -> Path:
    """The AWS test configuration without the broker's own AWS keys, in web-identity mode."""
    config = write_aws_config(directory, sts, signin, password_hash, container_key,
                              aws_sts=aws_sts, jwt=jwt)
    text = config.read_text()
    for line in ('access_key_id = "testing"\n',
                 'secret_access_key = "env:CREDENZA_TEST_AWS_SECRET"\n'):
        text = text.replace(line, "")
    config.write_text(text)
    return config


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, _sts_proxy: FaultProxy, _signin: FakeSignin,
           password_hash: str, container_key: tuple[str, str]) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("web-identity")
    config = web_identity_config(tmp, _sts_proxy, _signin, password_hash, container_key)
    with running_server(tmp, ["--config", str(config)]) as running:
        made = make_api_token(config, "alice", CLIENT, "cli", running.url)
        yield {"server": running, "blob": made.blob}
        assert running.stop() == 0


def sent_tokens(sts: FaultProxy) -> list[dict[str, str]]:
    calls = [call for call in sts.calls if call.get("Action", "").startswith("AssumeRole")]
    assert calls and all(call["Action"] == "AssumeRoleWithWebIdentity" for call in calls)
    return calls


def verify_as_iam(url: str, call: dict[str, str]) -> dict[str, Any]:
    """The claims of the token STS was sent, verified the way IAM does: discovery at the
    issuer, the JWKS it names, the key by ``kid``, ``aud`` sts.amazonaws.com."""
    token = call["WebIdentityToken"]
    issuer = pyjwt.decode(token, options={"verify_signature": False})["iss"]
    assert issuer == ISSUER
    # The issuer is this server (https://credenza.test stands for its public name).
    discovery = requests.get(url + "/.well-known/openid-configuration", timeout=5).json()
    assert discovery["issuer"] == issuer
    assert discovery["jwks_uri"].startswith(issuer + "/")
    jwks_path = discovery["jwks_uri"][len(issuer):]
    jwks = pyjwt.PyJWKSet.from_dict(requests.get(url + jwks_path, timeout=5).json())
    header = pyjwt.get_unverified_header(token)
    assert header["alg"] in ("RS256", "ES256") and header["kid"]
    key = next(key for key in jwks.keys if key.key_id == header["kid"])
    claims = pyjwt.decode(token, key.key, algorithms=[header["alg"]],
                          audience="sts.amazonaws.com", issuer=ISSUER,
                          options={"require": ["iss", "sub", "aud", "exp", "iat"]})
    assert claims["exp"] - claims["iat"] <= 300
    return claims


def test_afp_cli_gets_credentials_without_broker_keys(server: dict[str, Any], tmp_path: Path,
                                                      sts: FaultProxy,
                                                      moto_sts: tuple[str, int]) -> None:
    shown = afp(server["server"], tmp_path, "afpv2", "--user", "alice", "show", "prod", "admin")
    assert shown.returncode == 0, shown.stderr
    exported = dict(re.findall(r"(AWS_[A-Z_]+)='?([^'\n]+)'?", shown.stdout))
    arn = check_with_moto(moto_sts, exported["AWS_ACCESS_KEY_ID"],
                          exported["AWS_SECRET_ACCESS_KEY"], exported["AWS_SESSION_TOKEN"])
    assert arn.endswith(":assumed-role/admin/alice")
    call, = sent_tokens(sts)
    assert call["RoleArn"] == "arn:aws:iam::111111111111:role/admin"
    assert call["RoleSessionName"] == "alice"
    assert "SourceIdentity" not in call and "Tags.member.1.Key" not in call  # in the token
    claims = verify_as_iam(server["server"].url, call)
    assert claims["sub"] == "alice"
    assert claims["aud"] == "sts.amazonaws.com"
    assert claims["https://aws.amazon.com/tags"] == {
        "principal_tags": {"Department": ["platform"]}, "transitive_tag_keys": []}
    assert claims["https://aws.amazon.com/source_identity"] == "alice"
    assert sts.signed == [False]  # no AWS signature: the broker holds no AWS keys


def test_boto3_container_provider(server: dict[str, Any], container_key: tuple[str, str],
                                  sts: FaultProxy, moto_sts: tuple[str, int]) -> None:
    found = boto3_default_chain({
        "AWS_CONTAINER_CREDENTIALS_FULL_URI":
            server["server"].url + "/v1/container-credentials/prod/app",
        "AWS_CONTAINER_AUTHORIZATION_TOKEN": container_key[0],
    })
    assert found["method"] == "container-role"
    arn = check_with_moto(moto_sts, found["key"], found["secret"], found["token"])
    assert arn.endswith(":assumed-role/app/build-container")
    call, = sent_tokens(sts)
    claims = verify_as_iam(server["server"].url, call)
    assert claims["sub"] == "build-container"
    assert "https://aws.amazon.com/tags" not in claims  # it has no department


def test_credenza_aws_creds(server: dict[str, Any], tmp_path: Path, sts: FaultProxy,
                            moto_sts: tuple[str, int]) -> None:
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("CREDENZA_", "AWS_"))}
    env.update(HOME=str(tmp_path), AWS_EC2_METADATA_DISABLED="true",
               CREDENZA_TOKEN_INFO_PATH=str(tmp_path / "token_info.json"))
    logged_in = credenza(env, "login", stdin=server["blob"] + "\n")
    assert logged_in.returncode == 0, logged_in.stderr
    got = credenza(env, "aws", "creds", "prod", "viewer", "--format", "process")
    assert got.returncode == 0, got.stderr
    process = json.loads(got.stdout)
    arn = check_with_moto(moto_sts, process["AccessKeyId"], process["SecretAccessKey"],
                          process["SessionToken"])
    assert arn.endswith(":assumed-role/viewer/alice")
    assert verify_as_iam(server["server"].url, sent_tokens(sts)[0])["sub"] == "alice"


@pytest.mark.parametrize(("aws_sts", "jwt", "error"), [
    ('mode = "web-identity"\naccess_key_id = "x"\nsecret_access_key = "y"', JWT,
     "access_key_id: not used in web-identity mode"),
    ('mode = "web-identity"', JWT_WITHOUT_AWS,
     r"web_identity_provider: the jwt plugin has no provider 'aws'.*internal = true"),
    ('mode = "web-identity"\nweb_identity_provider = "cli"', JWT,
     r"web_identity_provider: provider 'cli' cannot sign .*not internal = true"),
    ('mode = "web-identity"', JWT.replace("internal = true\n", ""),
     r"web_identity_provider: provider 'aws' cannot sign .*not internal = true"),
    ('mode = "web-identity"\nweb_identity_audience = "sts.amazonaws.com.cn"', JWT,
     r"audience 'sts.amazonaws.com.cn' is not allowed for provider 'aws'"),
    ('mode = "web-identity"', JWT.replace(ISSUER, "http://credenza.test"),
     "web_identity_provider: IAM fetches the discovery document .* over https"),
])
def test_web_identity_settings_that_cannot_work_stop_startup(
        tmp_path: Path, sts: FaultProxy, signin: FakeSignin, password_hash: str,
        container_key: tuple[str, str], aws_sts: str, jwt: str, error: str) -> None:
    config = web_identity_config(tmp_path, sts, signin, password_hash, container_key,
                                 aws_sts=aws_sts, jwt=jwt)
    with pytest.raises(ConfigError, match=error):
        Broker.from_config(config)


def test_an_account_with_an_external_id_cannot_be_reached_by_web_identity(
        tmp_path: Path, sts: FaultProxy, signin: FakeSignin, password_hash: str,
        container_key: tuple[str, str]) -> None:
    config = web_identity_config(tmp_path, sts, signin, password_hash, container_key)
    client = Client(make_app(Broker.from_config(config)))
    refused = client.get("/account/dev/reader/credentials", auth=("alice", "PASSWORD"))
    assert refused.status_code == 501
    assert "external_id" in refused.get_json()["message"]
    assert sts.calls == []


def docs_section() -> str:
    return DOCS.read_text().split("## Without AWS keys: web identity")[1].split("\n## ")[0]


def test_the_configuration_in_the_docs_is_the_one_tested(tmp_path: Path, sts: FaultProxy,
                                                         signin: FakeSignin, password_hash: str,
                                                         container_key: tuple[str, str]) -> None:
    shown = tomllib.loads(docs_section().split("```toml\n")[1].split("```")[0])
    tested = tomllib.loads(web_identity_config(tmp_path, sts, signin, password_hash,
                                               container_key).read_text())
    assert shown["credenza"]["plugins"] == ["static", "jwt", "sql", "aws-sts"]
    assert set(tested["credenza"]["plugins"]) == set(shown["credenza"]["plugins"])
    assert shown["plugins"]["jwt"]["providers"]["aws"] == \
        tested["plugins"]["jwt"]["providers"]["aws"]
    aws_sts = tested["plugins"]["aws-sts"]
    assert shown["plugins"]["aws-sts"].items() <= aws_sts.items()
    assert "access_key_id" not in aws_sts and "secret_access_key" not in aws_sts


def test_the_iam_recipe_in_the_docs_is_accepted_by_iam() -> None:
    """The OIDC provider and trust policy docs/aws.md shows, created in moto's IAM."""
    policy = json.loads(docs_section().split("```json\n")[1].split("```")[0])
    with mock_aws():
        iam = boto3.client("iam", region_name="us-east-1")
        provider = iam.create_open_id_connect_provider(
            Url="https://credenza.example.com", ClientIDList=["sts.amazonaws.com"])
        arn = provider["OpenIDConnectProviderArn"]
        assert arn == "arn:aws:iam::123456789012:oidc-provider/credenza.example.com"
        statement, = policy["Statement"]
        assert statement["Principal"]["Federated"].endswith(":oidc-provider/credenza.example.com")
        assert set(statement["Action"]) == {"sts:AssumeRoleWithWebIdentity", "sts:TagSession",
                                            "sts:SetSourceIdentity"}
        assert statement["Condition"]["StringEquals"] == {
            "credenza.example.com:aud": "sts.amazonaws.com",
            "credenza.example.com:sub": ["alice", "build-container"]}
        iam.create_role(RoleName="admin", AssumeRolePolicyDocument=json.dumps(policy))



def test_token_apis_never_issue_the_internal_providers_tokens(
        tmp_path: Path, sts: FaultProxy, signin: FakeSignin, password_hash: str,
        container_key: tuple[str, str]) -> None:
    """A token STS accepts is as good as the AWS credentials it buys: nobody may mint one,
    not even with a grant for every provider, nor through another provider's audiences."""
    jwt = JWT + """
[plugins.jwt.providers.open]
"""
    config = web_identity_config(tmp_path, sts, signin, password_hash, container_key, jwt=jwt)
    broker = Broker.from_config(config)
    alice = Principal("alice", source="static")  # tokens.issue leaves authorization to callers
    with pytest.raises(Forbidden, match="signs tokens only for the broker itself"):
        broker.tokens.issue(alice, TokenSpec("aws", "bob", {"sts.amazonaws.com"}))
    with pytest.raises(BadRequest, match="belongs to internal provider 'aws'"):
        broker.tokens.issue(alice, TokenSpec("open", "bob", {"sts.amazonaws.com"}))
