"""Workload identity: CI jobs and pods sign in with their platform's OIDC token (plugin oidc).

The platforms are played by two more credenza instances served over HTTP on loopback: each
publishes its discovery document and JWKS as GitHub's and a cluster's issuers do, and its keys
sign tokens with the claim sets GitHub Actions and Kubernetes document. The broker under test
runs the guide's configuration (docs/guides/workload-identity/), pointed at them, at moto's STS
and at a fresh data directory.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jwt as pyjwt
import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from werkzeug.serving import make_server
from werkzeug.test import Client

from credenza.broker import Broker
from credenza.config import Config
from credenza.errors import ConfigError, Unavailable
from credenza.models import IdentityRequest
from credenza.plugins.oidc import ClaimPatterns, IssuerKeys
from credenza.secrets import new_api_key
from credenza.wsgi import make_app
from tests.aws_fixtures import FaultProxy
from tests.conftest import QuietHandler, free_port, running_server, serve_on_loopback
from tests.test_aws_clients import boto3_default_chain, check_with_moto

GUIDE = Path(__file__).resolve().parent.parent / "docs" / "guides" / "workload-identity"
AUDIENCE = "https://credenza.example.com"


class PlatformIssuer:
    """A credenza instance acting as a platform's OIDC issuer: discovery document and JWKS over
    HTTP, its signing keys minting the platform's tokens. It can rotate its key and go down."""

    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        directory.mkdir()
        config = directory / "credenza.toml"
        config.write_text(f"""
[credenza]
plugins = ["jwt", "sql"]
data_dir = "data"
[plugins.jwt]
issuer = "{self.url}"
[plugins.jwt.providers.platform]
algorithm = "RS256"
""")
        self.broker = Broker.from_config(config)
        self.app = make_app(self.broker)
        self.paths: list[str] = []
        self.server = self._serve()

    def _serve(self) -> Any:
        def counted(environ: dict[str, Any], start_response: Any) -> Any:
            self.paths.append(environ["PATH_INFO"])
            return self.app(environ, start_response)
        server = make_server("127.0.0.1", self.port, counted, threaded=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return server

    @property
    def jwks_fetches(self) -> int:
        return sum(path.endswith("jwks.json") for path in self.paths)

    @property
    def keyring(self) -> Any:
        return self.broker.plugin_manager.get_plugin("jwt").keyring

    def mint(self, claims: dict[str, Any], **header: Any) -> str:
        """A token with ``claims`` signed by the issuer's active RS256 key."""
        key = self.keyring.active("RS256")
        headers = {name: value for name, value in {"kid": key.kid, **header}.items()
                   if value is not None}
        return pyjwt.encode(claims, key.private, algorithm="RS256", headers=headers)

    def rotate(self) -> None:
        """A new key signs from now on; the old one stays published for its live tokens."""
        self.keyring.prepare("RS256")
        self.keyring.rotate("RS256", time.time() + 3600)

    @contextlib.contextmanager
    def down(self) -> Iterator[None]:
        self.server.shutdown()
        self.server.server_close()
        try:
            yield
        finally:
            self.server = self._serve()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.broker.close()


def github_claims(issuer: PlatformIssuer, **changes: Any) -> dict[str, Any]:
    """A GitHub Actions token's claims (docs.github.com, "About security hardening with OpenID
    Connect"): a push to main of acme/shop, in its prod environment."""
    now = int(time.time())
    workflow = "acme/shop/.github/workflows/deploy.yml@refs/heads/main"
    claims = {
        "jti": str(uuid.uuid4()), "sub": "repo:acme/shop:environment:prod", "aud": AUDIENCE,
        "ref": "refs/heads/main", "sha": "a" * 40, "repository": "acme/shop",
        "repository_owner": "acme", "repository_owner_id": "65", "run_id": "5421",
        "run_number": "7", "run_attempt": "1", "repository_visibility": "private",
        "repository_id": "42", "actor_id": "12", "actor": "octocat", "workflow": "deploy",
        "head_ref": "", "base_ref": "", "event_name": "push", "ref_type": "branch",
        "environment": "prod", "job_workflow_ref": workflow, "workflow_ref": workflow,
        "runner_environment": "github-hosted", "iss": issuer.url,
        "nbf": now - 5, "iat": now - 5, "exp": now + 300,
    }
    claims.update(changes)
    return {key: value for key, value in claims.items() if value is not None}


def kubernetes_claims(issuer: PlatformIssuer, namespace: str = "ci",
                      account: str = "builder") -> dict[str, Any]:
    """A projected service account token's claims (Kubernetes' TokenRequest API)."""
    now = int(time.time())
    return {
        "aud": [AUDIENCE], "exp": now + 3600, "iat": now, "nbf": now, "iss": issuer.url,
        "jti": str(uuid.uuid4()), "sub": f"system:serviceaccount:{namespace}:{account}",
        "kubernetes.io": {
            "namespace": namespace,
            "node": {"name": "node-1", "uid": str(uuid.uuid4())},
            "pod": {"name": "build", "uid": str(uuid.uuid4())},
            "serviceaccount": {"name": account, "uid": str(uuid.uuid4())},
        },
    }


@pytest.fixture(scope="module")
def github(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PlatformIssuer]:
    issuer = PlatformIssuer(tmp_path_factory.mktemp("github") / "issuer")
    yield issuer
    issuer.stop()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PlatformIssuer]:
    issuer = PlatformIssuer(tmp_path_factory.mktemp("cluster") / "issuer")
    yield issuer
    issuer.stop()


def guide_environ(data_dir: Path, github: PlatformIssuer, cluster: PlatformIssuer,
                  sts: FaultProxy, **extra: str) -> dict[str, str]:
    """The overrides that point the guide's configuration at the test's platforms and STS."""
    return {
        "CREDENZA__CREDENZA__DATA_DIR": str(data_dir),
        "CREDENZA__PLUGINS__OIDC__ISSUERS__GITHUB__ISSUER": json.dumps(github.url),
        "CREDENZA__PLUGINS__OIDC__ISSUERS__CLUSTER__ISSUER": json.dumps(cluster.url),
        "CREDENZA__PLUGINS__AWS_STS__ENDPOINT_URL": json.dumps(sts.url),
        "CREDENZA__PLUGINS__AWS_STS__ACCESS_KEY_ID": '"testing"',
        "CREDENZA__PLUGINS__AWS_STS__SECRET_ACCESS_KEY": '"testing"',
        **extra,
    }


@pytest.fixture
def broker(tmp_path: Path, github: PlatformIssuer, cluster: PlatformIssuer,
           sts: FaultProxy) -> Iterator[Broker]:
    loaded = Broker.from_config(Config.load(GUIDE / "credenza.toml",
                                            guide_environ(tmp_path, github, cluster, sts)))
    yield loaded
    loaded.close()


@pytest.fixture
def client(broker: Broker) -> Client:
    return Client(make_app(broker))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, github: PlatformIssuer,
           cluster: PlatformIssuer, _sts_proxy: FaultProxy) -> Iterator[Any]:
    tmp = tmp_path_factory.mktemp("workload-server")
    env = guide_environ(tmp / "data", github, cluster, _sts_proxy)
    with running_server(tmp, ["--config", str(GUIDE / "credenza.toml")], env=env) as running:
        yield running
        assert running.stop() == 0


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# -- the recipes of the guide, end to end ---------------------------------------------------------


def github_token_service(issuer: PlatformIssuer, request_token: str) -> Any:
    """GitHub's ACTIONS_ID_TOKEN_REQUEST_URL: the job's request token in, its OIDC token (for
    the audience it asks) out."""
    class TokenService(QuietHandler):
        def do_GET(self) -> None:
            if self.headers.get("Authorization") != f"bearer {request_token}":
                self.reply(401)
                return
            audience = parse_qs(urlsplit(self.path).query)["audience"][0]
            token = issuer.mint(github_claims(issuer, aud=audience))
            self.reply(200, json.dumps({"value": token}).encode())
    return serve_on_loopback(TokenService)


def job_environment() -> dict[str, str]:
    """What a process of a job or pod sees: this interpreter first on PATH (the one with
    boto3), no AWS settings of the machine."""
    clean = {key: value for key, value in os.environ.items() if not key.startswith("AWS_")}
    return {**clean, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
            "AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull}


def test_the_github_workflow_of_the_guide_gets_aws_credentials(
        server: Any, github: PlatformIssuer, tmp_path: Path, sts: FaultProxy,
        moto_sts: tuple[str, int]) -> None:
    token_service, token_url = github_token_service(github, "request-secret")
    github_env = tmp_path / "github_env"
    github_env.touch()
    job = yaml.safe_load((GUIDE / "github-workflow.yml").read_text())["jobs"]["deploy"]
    runner = {**job_environment(), **job["env"],
              "ACTIONS_ID_TOKEN_REQUEST_URL": token_url + "/token?api-version=2.0",
              "ACTIONS_ID_TOKEN_REQUEST_TOKEN": "request-secret", "GITHUB_ENV": str(github_env)}
    try:
        fetch, install, deploy = (step["run"] for step in job["steps"])
        # The URL of the broker is this test's server (credenza.example.com stands for it).
        fetch = fetch.replace(AUDIENCE + "/v1/", server.url + "/v1/")
        ran = subprocess.run(["bash", "-eo", "pipefail", "-c", fetch], env=runner,
                             capture_output=True, text=True, timeout=60)
        assert ran.returncode == 0, ran.stderr
    finally:
        token_service.shutdown()
    assert install.startswith("pip install boto3")  # the test environment has it
    exported = dict(line.split("=", 1) for line in github_env.read_text().splitlines())
    token = exported["AWS_CONTAINER_AUTHORIZATION_TOKEN"]
    assert ran.stdout == f"::add-mask::{token}\n"  # GitHub masks it in the job's log
    moto = f"http://{moto_sts[0]}:{moto_sts[1]}"
    deployed = subprocess.run(
        ["bash", "-c", deploy], capture_output=True, text=True, timeout=60,
        env={**runner, **exported, "AWS_ENDPOINT_URL_STS": moto})
    assert deployed.returncode == 0, deployed.stderr
    assert deployed.stdout.startswith("arn:aws:sts::111111111111:assumed-role/deployer/")
    call, = [c for c in sts.calls if c.get("Action") == "AssumeRole"]
    assert call["RoleArn"] == "arn:aws:iam::111111111111:role/deployer"
    assert token not in server.log()


def test_the_pod_of_the_guide_gets_aws_credentials(server: Any, cluster: PlatformIssuer,
                                                   tmp_path: Path,
                                                   moto_sts: tuple[str, int]) -> None:
    pod = yaml.safe_load((GUIDE / "pod.yaml").read_text())
    container, = pod["spec"]["containers"]
    env = {item["name"]: item["value"] for item in container["env"]}
    source, = pod["spec"]["volumes"][0]["projected"]["sources"]
    projected = source["serviceAccountToken"]
    # The kubelet writes the service account's token for the audience the pod asks for.
    claims = kubernetes_claims(cluster, pod["metadata"]["namespace"],
                               pod["spec"]["serviceAccountName"])
    claims["aud"] = [projected["audience"]]
    token_file = tmp_path / projected["path"]
    token_file.write_text(cluster.mint(claims))
    assert env["AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"] == \
        container["volumeMounts"][0]["mountPath"] + "/" + projected["path"]
    env["AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"] = str(token_file)
    env["AWS_CONTAINER_CREDENTIALS_FULL_URI"] = env["AWS_CONTAINER_CREDENTIALS_FULL_URI"].replace(
        AUDIENCE, server.url)
    moto = f"http://{moto_sts[0]}:{moto_sts[1]}"
    ran = subprocess.run(
        container["command"], capture_output=True, text=True, timeout=60,
        env={**job_environment(), **env, "AWS_ENDPOINT_URL_STS": moto})
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.startswith("arn:aws:sts::222222222222:assumed-role/builder/")


def test_boto3_container_provider_with_a_github_token(server: Any, github: PlatformIssuer,
                                                      moto_sts: tuple[str, int]) -> None:
    found = boto3_default_chain({
        "AWS_CONTAINER_CREDENTIALS_FULL_URI": server.url + "/v1/container-credentials/dev/reader",
        "AWS_CONTAINER_AUTHORIZATION_TOKEN": github.mint(github_claims(
            github, repository="acme/docs", environment=None, sub="repo:acme/docs:ref:x")),
    })
    assert found["method"] == "container-role"
    arn = check_with_moto(moto_sts, found["key"], found["secret"], found["token"])
    assert ":assumed-role/reader/" in arn


def test_afp_endpoints_and_a_provider_jwt_for_a_job(client: Client,
                                                    github: PlatformIssuer) -> None:
    token = github.mint(github_claims(github))
    listed = client.get("/account", headers=bearer(token))
    assert listed.status_code == 200, listed.get_json()
    assert listed.get_json() == {"dev": ["reader"], "prod": ["deployer"]}
    assert listed.headers["X-Username"] == "github:acme/shop@refs/heads/main"
    got = client.get("/account/prod/deployer/credentials", headers=bearer(token))
    assert got.status_code == 200 and got.get_json()["AccessKeyId"]
    issued = client.post("/v2/credenza/authenticationTokens/_/actions/generateJwt",
                         headers=bearer(token), json={
                             "credentialProviderIdentifier": "deploy-api",
                             "subject": "acme/shop", "audiences": ["https://deploy.example.com"]})
    assert issued.status_code == 200, issued.get_json()
    whoami = client.get("/v1/whoami", headers=bearer(token)).get_json()
    assert whoami["source"] == "oidc" and whoami["kind"] == "machine"
    assert {(g["target"], g["role"], g["via"]) for g in whoami["grants"]} == {
        ("prod", "deployer", "oidc github grant deploy-prod"),
        ("deploy-api", None, "oidc github grant deploy-prod"),
        ("dev", "reader", "oidc github grant ci-read")}


def test_attributes_come_from_claims(broker: Broker, github: PlatformIssuer) -> None:
    principal = broker.identify(IdentityRequest(bearer=github.mint(github_claims(github))))
    assert principal.attributes["workflow"] == github_claims(github)["job_workflow_ref"]
    assert principal.attributes["actor"] == "octocat"
    assert principal.groups == frozenset()  # no groups_claim


def test_groups_come_from_a_claim(tmp_path: Path, github: PlatformIssuer,
                                  cluster: PlatformIssuer, sts: FaultProxy) -> None:
    environ = guide_environ(tmp_path, github, cluster, sts,
                            CREDENZA__PLUGINS__OIDC__ISSUERS__GITHUB__GROUPS_CLAIM='"teams"')
    with Broker.from_config(Config.load(GUIDE / "credenza.toml", environ)) as broker:
        for teams, groups in ((["deploy", "ops"], {"deploy", "ops"}), ("ops", {"ops"})):
            token = github.mint(github_claims(github, teams=teams))
            assert broker.identify(IdentityRequest(bearer=token)).groups == groups


@pytest.mark.parametrize(("patterns", "claims", "mismatch"), [
    ({"ref_protected": ("true",)}, {"ref_protected": "true"}, None),  # GitLab: a string
    ({"ref_protected": ("true",)}, {"ref_protected": True}, None),  # a JSON boolean
    ({"ref_protected": ("true",)}, {"ref_protected": False}, "claim ref_protected ('false')"),
    ({"groups": ("ops",)}, {"groups": ["dev", "ops"]}, None),  # one item of an array
    ({"groups": ("ops",)}, {"groups": ["dev"]}, "claim groups ('dev') is not one of ops"),
    ({"/kubernetes.io/serviceaccount/name": ("build*",)},
     {"kubernetes.io": {"serviceaccount": {"name": "builder"}}}, None),
    ({"/kubernetes.io/namespace": ("ci",)}, {"kubernetes.io": "ci"},
     "claim /kubernetes.io/namespace is missing"),
    ({"/a~1b": ("x",)}, {"a/b": "x"}, None),  # RFC 6901 escaping
    ({"project_path": ("acme/*",)}, {"project_path": {"nested": "acme/x"}},
     "claim project_path ('') is not one of acme/*"),  # an object matches nothing
    ({"repository": ("acme/shop",), "ref": ("refs/heads/main",)},
     {"repository": "acme/shop", "ref": "refs/heads/dev"}, "claim ref ('refs/heads/dev')"),
])
def test_claim_patterns(patterns: dict[str, tuple[str, ...]], claims: dict[str, Any],
                        mismatch: str | None) -> None:
    found = ClaimPatterns(patterns).mismatch(claims)
    assert found == mismatch if mismatch is None else found.startswith(mismatch)


def test_token_exchange_of_a_job_token(tmp_path: Path, github: PlatformIssuer,
                                       cluster: PlatformIssuer, sts: FaultProxy) -> None:
    key, key_hash = new_api_key("release-tool")
    clients = tmp_path / "clients.yaml"
    clients.write_text(f'oauth_clients:\n  release-tool:\n    sha256: "{key_hash}"\n'
                       f'    exchange: ["{github.url}"]\n')
    environ = guide_environ(tmp_path / "data", github, cluster, sts,
                            CREDENZA__PLUGINS__STATIC__FILES=json.dumps(
                                ["accounts.yaml", str(clients)]),
                            CREDENZA__PLUGINS__JWT__API_AUDIENCES='["https://api.acme"]')
    broker = Broker.from_config(Config.load(GUIDE / "credenza.toml", environ))
    try:
        client = Client(make_app(broker))
        form = {"grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
                "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
                "scope": "https://api.acme"}
        exchanged = client.post("/oauth2/token", auth=("release-tool", key), data={
            **form, "subject_token": github.mint(github_claims(github))})
        assert exchanged.status_code == 200, exchanged.get_json()
        claims = pyjwt.decode(exchanged.get_json()["access_token"],
                              options={"verify_signature": False})
        assert claims["sub"] == "repo:acme/shop:environment:prod"
        assert claims["act"] == {"sub": "release-tool"}
        # bound claims hold for exchanged tokens too
        refused = client.post("/oauth2/token", auth=("release-tool", key), data={
            **form, "subject_token": github.mint(github_claims(github,
                                                               repository_owner="evil"))})
        assert refused.status_code == 400
        assert "repository_owner" in refused.get_json()["error_description"]
    finally:
        broker.close()


# -- what is refused, and why --------------------------------------------------------------------


def forged_hs256(issuer: PlatformIssuer) -> str:
    """HS256 with the issuer's public key as the secret: the classic algorithm confusion."""
    public = issuer.keyring.active("RS256").private.public_key()
    pem = public.public_bytes(serialization.Encoding.PEM,
                              serialization.PublicFormat.SubjectPublicKeyInfo)

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()
    header = b64(json.dumps({"alg": "HS256", "kid": issuer.keyring.active("RS256").kid}).encode())
    payload = b64(json.dumps(github_claims(issuer)).encode())
    signature = hmac.new(pem, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{b64(signature)}"


REFUSALS = {
    "expired": (lambda g, c: g.mint(github_claims(g, iat=int(time.time()) - 900,
                                                  nbf=int(time.time()) - 900,
                                                  exp=int(time.time()) - 300)),
                401, "token has expired"),
    "too old": (lambda g, c: g.mint(github_claims(g, iat=int(time.time()) - 7200)),
                401, "accepts tokens up to 900 s old"),
    "issued in the future": (lambda g, c: g.mint(github_claims(g, iat=int(time.time()) + 600)),
                             401, "not valid yet"),
    "wrong audience": (lambda g, c: g.mint(github_claims(g, aud="https://github.com/acme")),
                       401, "not meant for this audience"),
    "no audience": (lambda g, c: g.mint(github_claims(g, aud=None)), 401, "no 'aud' claim"),
    "another issuer's key": (lambda g, c: c.mint(github_claims(g)), 401,
                             "which issuer github does not publish"),
    "unknown issuer": (lambda g, c: g.mint(github_claims(g, iss="https://gitlab.example.com")),
                       401, "unknown key"),
    "bound claim": (lambda g, c: g.mint(github_claims(g, repository_owner="evil")), 401,
                    "claim repository_owner ('evil') is not one of acme"),
    "missing bound claim": (lambda g, c: g.mint(github_claims(g, repository_owner=None)), 401,
                            "claim repository_owner is missing"),
    "no kid": (lambda g, c: g.mint(github_claims(g), kid=None), 401, "no kid header"),
    "HS256 with the public key": (lambda g, c: forged_hs256(g), 401, "invalid token"),
    "cluster: other namespace": (lambda g, c: c.mint(kubernetes_claims(c, namespace="prod")),
                                 401, "claim /kubernetes.io/namespace ('prod')"),
    "valid, no grant": (lambda g, c: g.mint(github_claims(g, ref="refs/heads/feature")), 403,
                        "github:acme/shop@refs/heads/feature has no grant for aws prod role "
                        "deployer"),
    "cluster: valid, no grant": (lambda g, c: c.mint(kubernetes_claims(c, account="web")), 403,
                                 "k8s:ci/web has no grant"),
}


@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_refusals_say_why_and_never_echo_the_token(client: Client, github: PlatformIssuer,
                                                   cluster: PlatformIssuer, case: str) -> None:
    make, status, reason = REFUSALS[case]
    token = make(github, cluster)
    answer = client.get("/account/prod/deployer/credentials", headers=bearer(token))
    assert answer.status_code == status, answer.get_data(as_text=True)
    body = answer.get_data(as_text=True)
    assert reason in answer.get_json()["message"]
    assert token not in body and token.split(".")[2] not in body


def test_container_endpoint_takes_a_bare_token_as_aws_sdks_send_it(
        client: Client, cluster: PlatformIssuer) -> None:
    token = cluster.mint(kubernetes_claims(cluster))
    got = client.get("/v1/container-credentials/dev/builder", headers={"Authorization": token})
    assert got.status_code == 200, got.get_json()


# -- keys: rotation at the issuer, bounded refetching, the issuer down -------------------------


def test_rotation_at_the_issuer_and_bounded_refetching(client: Client,
                                                       github: PlatformIssuer) -> None:
    before = github.mint(github_claims(github))
    assert client.get("/account", headers=bearer(before)).status_code == 200
    fetches = github.jwks_fetches
    github.rotate()
    after = github.mint(github_claims(github))
    assert pyjwt.get_unverified_header(after)["kid"] != pyjwt.get_unverified_header(before)["kid"]
    assert client.get("/account", headers=bearer(after)).status_code == 200
    assert github.jwks_fetches == fetches + 1  # the unknown kid made it fetch the keys again
    assert client.get("/account", headers=bearer(before)).status_code == 200  # still published
    for attempt in range(5):  # made-up key ids do not make it fetch again and again
        forged = github.mint(github_claims(github), kid=f"made-up-{attempt}")
        refused = client.get("/account", headers=bearer(forged))
        assert refused.status_code == 401
    assert github.jwks_fetches == fetches + 1


def test_an_unreachable_issuer_is_503_never_an_acceptance(client: Client,
                                                          github: PlatformIssuer) -> None:
    token = github.mint(github_claims(github))
    with github.down():
        refused = client.get("/account", headers=bearer(token))
    assert refused.status_code == 503
    assert "the keys of OIDC issuer github cannot be fetched" in refused.get_json()["message"]
    assert refused.headers["Retry-After"]
    status = client.get("/status")  # what the request ran into shows at once
    assert status.status_code == 503
    assert "oidc github: the keys of OIDC issuer github cannot be fetched" in \
        status.get_json()["message"]
    assert client.get("/account", headers=bearer(token)).status_code == 200  # back up
    github.rotate()
    with github.down():  # keys cached, but this token needs a fresh one
        assert client.get("/account", headers=bearer(
            github.mint(github_claims(github)))).status_code == 503
        assert client.get("/account", headers=bearer(token)).status_code == 200


def test_cached_keys_are_trusted_for_a_while_then_fetched_again(github: PlatformIssuer) -> None:
    now = [1000.0]
    keys = IssuerKeys("github", github.url, None, timeout=5, cache_seconds=600,
                      min_refresh_seconds=30, clock=lambda: now[0])
    kid = github.keyring.active("RS256").kid
    assert keys.key(kid).key_id == kid and keys.fetches == 1
    now[0] += 599
    keys.key(kid)
    assert keys.fetches == 1
    now[0] += 1
    keys.key(kid)
    assert keys.fetches == 2
    now[0] += 600
    with github.down(), pytest.raises(Unavailable, match="cannot reach"):
        keys.key(kid)  # expired keys are not trusted when the issuer cannot confirm them


# -- settings --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("override", "error"), [
    ({"CREDENZA__PLUGINS__OIDC__ISSUERS__GITHUB__ISSUER": '"http://github.example.com"'},
     r"\[plugins.oidc.issuers.github\] issuer: issuer must be an https URL"),
    ({"CREDENZA__PLUGINS__OIDC__ISSUERS__GITHUB__AUDIENCES": "[]"},
     r"audiences: at least one audience is required"),
    ({"CREDENZA__PLUGINS__OIDC__ISSUERS__GITHUB__NAME": '"github:{repository"'},
     r"name: unbalanced braces"),
    ({"CREDENZA__PLUGINS__OIDC__ISSUERS__GITHUB__GRANTS__CI-READ__AWS": '["dev"]'},
     r"\[plugins.oidc.issuers.github.grants.ci-read\] aws: expected ACCOUNT/ROLE"),
    ({"CREDENZA__PLUGINS__OIDC__ISSUERS__GITHUB__MAX_AGE": "60"},
     r"max_age: unknown key"),
])
def test_settings_that_cannot_work_stop_startup(tmp_path: Path, github: PlatformIssuer,
                                                cluster: PlatformIssuer, sts: FaultProxy,
                                                override: dict[str, str], error: str) -> None:
    environ = guide_environ(tmp_path, github, cluster, sts, **override)
    with pytest.raises(ConfigError, match=error):
        Broker.from_config(Config.load(GUIDE / "credenza.toml", environ))


def test_two_issuer_tables_with_one_url_stop_startup(tmp_path: Path, github: PlatformIssuer,
                                                     cluster: PlatformIssuer,
                                                     sts: FaultProxy) -> None:
    environ = guide_environ(tmp_path, github, github, sts)
    with pytest.raises(ConfigError, match="is also github"):
        Broker.from_config(Config.load(GUIDE / "credenza.toml", environ))
