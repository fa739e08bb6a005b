"""`credenza aws credentials`: the broker in-process on the command line, against moto."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.aws_fixtures import FakeSignin, FaultProxy, write_aws_config


@pytest.fixture
def config(tmp_path: Path, sts: FaultProxy, signin: FakeSignin, password_hash: str,
           container_key: tuple[str, str]) -> Path:
    return write_aws_config(tmp_path, sts, signin, password_hash, container_key)


def credenza(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "credenza", "--config", str(config), "aws",
                           "credentials", *args], capture_output=True, text=True, timeout=60)


def test_env_format_is_shell_quoted_and_evaluates(config: Path, sts: FaultProxy) -> None:
    result = credenza(config, "prod", "admin", "--user", "alice", "--format", "env")
    assert result.returncode == 0, result.stderr
    shell = subprocess.run(["bash", "-c", result.stdout + "\nenv"], capture_output=True,
                           text=True, check=True, env={"PATH": os.environ["PATH"]})
    env = dict(line.split("=", 1) for line in shell.stdout.splitlines() if "=" in line)
    assert env["AWS_ACCESS_KEY_ID"].startswith("ASIA")
    assert len(env["AWS_SECRET_ACCESS_KEY"]) == 40 and env["AWS_SESSION_TOKEN"]
    assert env["AWS_CREDENTIAL_EXPIRATION"].endswith("Z")
    assert sts.assume_role_calls()[0]["RoleSessionName"] == "alice"


def test_process_and_json_formats(config: Path) -> None:
    process = json.loads(credenza(config, "prod", "admin", "--user", "alice", "--format",
                                  "process").stdout)
    assert process["Version"] == 1
    assert set(process) == {"Version", "AccessKeyId", "SecretAccessKey", "SessionToken",
                            "Expiration", "AccountId"}
    assert process["AccountId"] == "111111111111"
    as_json = json.loads(credenza(config, "dev", "reader", "--user", "bob", "--duration",
                                  "900").stdout)
    assert "Version" not in as_json and as_json["AccountId"] == "222222222222"


def test_the_users_grants_decide(config: Path, sts: FaultProxy) -> None:
    refused = credenza(config, "prod", "admin", "--user", "bob")
    assert refused.returncode == 1
    assert refused.stderr.strip() == "credenza: forbidden: bob has no grant for aws prod role admin"
    unknown = credenza(config, "nowhere", "admin", "--user", "alice")
    assert unknown.stderr.strip() == "credenza: not found: unknown account 'nowhere'"
    assert sts.assume_role_calls() == []
