"""Real clients against the bundled server on loopback: boto3's metadata and container
providers, and afp-cli from PyPI, unmodified."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
import requests

from tests.aws_fixtures import FakeSignin, FaultProxy, write_aws_config
from tests.conftest import Server, running_server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, _sts_proxy: FaultProxy, _signin: FakeSignin,
           password_hash: str, container_key: tuple[str, str]) -> Iterator[Server]:
    """One server for the module: static + environ(REMOTE_ADDR) + aws-sts against moto."""
    tmp = tmp_path_factory.mktemp("clients")
    config = write_aws_config(tmp, _sts_proxy, _signin, password_hash, container_key,
                              environ_field="REMOTE_ADDR")
    with running_server(tmp, ["--config", str(config)]) as running:
        yield running
        assert running.stop() == 0


def check_with_moto(moto_sts: tuple[str, int], key: str, secret: str, token: str) -> str:
    """The identity moto sees for these credentials (proves they are real STS credentials)."""
    sts = boto3.client("sts", endpoint_url=f"http://{moto_sts[0]}:{moto_sts[1]}",
                       region_name="us-east-1", aws_access_key_id=key,
                       aws_secret_access_key=secret, aws_session_token=token)
    return sts.get_caller_identity()["Arn"]


RESOLVE = """
import json, boto3
session = boto3.Session(region_name="us-east-1")
credentials = session.get_credentials()
frozen = credentials.get_frozen_credentials()
print(json.dumps({"method": credentials.method, "key": frozen.access_key,
                  "secret": frozen.secret_key, "token": frozen.token}))
"""


def boto3_default_chain(env: dict[str, str]) -> dict[str, str]:
    """Credentials as a fresh boto3 process finds them through its default provider chain."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    result = subprocess.run([sys.executable, "-c", RESOLVE], capture_output=True, text=True,
                            timeout=60, env={**clean, "AWS_CONFIG_FILE": os.devnull,
                                             "AWS_SHARED_CREDENTIALS_FILE": os.devnull, **env})
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_boto3_instance_metadata_provider(server: Server, moto_sts: tuple[str, int]) -> None:
    found = boto3_default_chain({"AWS_EC2_METADATA_SERVICE_ENDPOINT": server.url + "/",
                                 "AWS_EC2_METADATA_V1_DISABLED": "true"})
    assert found["method"] == "iam-role"
    arn = check_with_moto(moto_sts, found["key"], found["secret"], found["token"])
    assert arn == "arn:aws:sts::111111111111:assumed-role/app/127.0.0.1"


def test_imds_refuses_gets_without_a_token_and_proxied_token_requests(server: Server) -> None:
    url = server.url + "/latest/meta-data/iam/security-credentials/"
    assert requests.get(url, timeout=5).status_code == 401
    assert requests.get(url, headers={"X-aws-ec2-metadata-token": "1.forged"},
                        timeout=5).status_code == 401
    token_url = server.url + "/latest/api/token"
    assert requests.put(token_url, timeout=5).status_code == 400
    proxied = requests.put(token_url, timeout=5, headers={
        "X-aws-ec2-metadata-token-ttl-seconds": "60", "X-Forwarded-For": "10.1.2.3"})
    assert proxied.status_code == 403
    token = requests.put(token_url, timeout=5,
                         headers={"X-aws-ec2-metadata-token-ttl-seconds": "60"}).text
    role = requests.get(url, headers={"X-aws-ec2-metadata-token": token}, timeout=5)
    assert (role.status_code, role.text) == (200, "app")


def test_boto3_container_provider(server: Server, container_key: tuple[str, str],
                                  moto_sts: tuple[str, int]) -> None:
    found = boto3_default_chain({
        "AWS_CONTAINER_CREDENTIALS_FULL_URI": server.url + "/v1/container-credentials/dev/reader",
        "AWS_CONTAINER_AUTHORIZATION_TOKEN": container_key[0],
        "AWS_EC2_METADATA_DISABLED": "true",
    })
    assert found["method"] == "container-role"
    arn = check_with_moto(moto_sts, found["key"], found["secret"], found["token"])
    assert arn == "arn:aws:sts::222222222222:assumed-role/reader/build-container"


def test_container_endpoint_refuses_a_wrong_key(server: Server) -> None:
    response = requests.get(server.url + "/v1/container-credentials/dev/reader", timeout=5,
                            headers={"Authorization": "container-app.wrong"})
    assert response.status_code == 401
    assert response.json()["detail"] == "invalid API key"


def afp(server: Server, home: Path, script: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run afp-cli's ``afpv2`` (its entry point) or ``afp`` (its older script)."""
    executable = shutil.which(script, path=os.path.dirname(sys.executable)) or shutil.which(script)
    assert executable, f"afp-cli's {script} is not installed"
    return subprocess.run(
        [executable, "--api-url", server.url, "--password-provider", "testing", *args],
        capture_output=True, text=True, timeout=60, env={**os.environ, "HOME": str(home)},
    )


def exported(output: str) -> dict[str, str]:
    return dict(re.findall(r"^(AWS_\w+)='(.*)'$", output, re.MULTILINE))


def test_afp_cli_gets_credentials_with_basic_auth(server: Server, tmp_path: Path,
                                                  moto_sts: tuple[str, int]) -> None:
    listed = afp(server, tmp_path, "afpv2", "--user", "alice", "list", "--output", "json")
    assert listed.returncode == 0, listed.stdout + listed.stderr
    assert json.loads(listed.stdout) == {"cn": ["admin"], "prod": ["admin", "viewer"]}
    # No role given: afp-cli picks sorted(roles)[0], "admin".
    shown = afp(server, tmp_path, "afpv2", "--user", "alice", "show", "prod")
    assert shown.returncode == 0, shown.stdout + shown.stderr
    values = exported(shown.stdout)
    assert values["AWS_ASSUMED_ROLE"] == "admin"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", values["AWS_EXPIRATION_DATE"])
    arn = check_with_moto(moto_sts, values["AWS_ACCESS_KEY_ID"], values["AWS_SECRET_ACCESS_KEY"],
                          values["AWS_SESSION_TOKEN"])
    assert arn == "arn:aws:sts::111111111111:assumed-role/admin/alice"


def test_afp_cli_older_script(server: Server, tmp_path: Path) -> None:
    shown = afp(server, tmp_path, "afp", "--user", "alice", "--show", "prod", "viewer")
    assert shown.returncode == 0, shown.stdout + shown.stderr
    assert exported(shown.stdout)["AWS_ACCESS_KEY_ID"].startswith("ASIA")


def test_afp_cli_prints_the_servers_message(server: Server, tmp_path: Path) -> None:
    refused = afp(server, tmp_path, "afpv2", "--user", "bob", "show", "prod", "admin")
    assert "bob has no grant for aws prod role admin" in refused.stdout + refused.stderr
    # Unknown to every plugin that checks passwords: refused, never served as the machine
    # address the request came from.
    wrong = afp(server, tmp_path, "afpv2", "--user", "mallory", "show", "prod", "admin")
    assert "failed: 401" in wrong.stdout + wrong.stderr


def test_server_log_holds_no_secret(server: Server, tmp_path: Path) -> None:
    shown = afp(server, tmp_path, "afpv2", "--user", "alice", "show", "prod", "viewer")
    values = exported(shown.stdout)
    log = server.log()
    assert "GET /account/prod/viewer HTTP/1.1\" 200" in log
    for secret in (values["AWS_SECRET_ACCESS_KEY"], values["AWS_SESSION_TOKEN"], "PASSWORD"):
        assert secret not in log
