"""examples/acme_plugin: an org plugin as its own distribution, installed and enabled by config."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from tests.conftest import ROOT, running_server

EXAMPLE = ROOT / "examples" / "acme_plugin"


@pytest.fixture(scope="module")
def acme_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example distribution installed by pip into a folder of its own."""
    tmp = tmp_path_factory.mktemp("acme")
    shutil.copytree(EXAMPLE, tmp / "src")
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation",
                    "-q", "--target", str(tmp / "site"), str(tmp / "src")],
                   check=True, timeout=300)
    return tmp / "site"


def env_for(site: Path, **extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(site), **extra}


def cli(site: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "credenza", *args], capture_output=True,
                          text=True, env=env_for(site, **env), timeout=60)


def test_installed_plugin_is_discovered_with_its_distribution(acme_site: Path) -> None:
    result = cli(acme_site, "--config", str(EXAMPLE / "acme.toml"), "plugins", "--json",
                 ACME_BADGE_SECRET="s3cret")
    assert result.returncode == 0, result.stderr
    acme, = (p for p in json.loads(result.stdout) if p["name"] == "acme")
    assert acme == {"name": "acme", "target": "acme_credenza:AcmeBadges",
                    "distribution": "acme-credenza", "version": "1.0.0", "enabled": True,
                    "hooks": ["credenza_commands", "credenza_grants", "credenza_identify"],
                    "error": None, "settings": True}
    reference = cli(acme_site, "config", "reference", "acme")
    assert reference.returncode == 0, reference.stderr
    assert "| `badge_secret` | secret | required | The HMAC-SHA256 key badges are signed " \
           "with |" in reference.stdout


def test_a_request_is_answered_through_the_plugin(acme_site: Path, tmp_path: Path) -> None:
    config = str(EXAMPLE / "acme.toml")
    badge = cli(acme_site, "--config", config, "acme-badge", "alice", "platform",
                ACME_BADGE_SECRET="s3cret").stdout.strip()
    assert badge.startswith("alice:platform:")
    env = {"PYTHONPATH": str(acme_site), "ACME_BADGE_SECRET": "s3cret"}
    with running_server(tmp_path, ["--config", config], env) as server:
        me = requests.get(server.url + "/v1/whoami", headers={"X-Acme-Badge": badge}, timeout=5)
        assert me.status_code == 200
        body = me.json()
        assert (body["name"], body["source"], body["groups"]) == ("alice", "acme", ["platform"])
        assert [(g["target"], g["role"]) for g in body["grants"]] == [("prod", "admin"),
                                                                      ("dev", "admin")]
        forged = requests.get(server.url + "/v1/whoami", timeout=5,
                              headers={"X-Acme-Badge": badge.replace("platform", "data")})
        assert forged.status_code == 401
        assert forged.headers["WWW-Authenticate"] == 'AcmeBadge realm="acme"'
        assert forged.json()["detail"] == "invalid ACME badge"
        assert server.stop() == 0


def test_the_plugin_settings_are_checked_at_startup(acme_site: Path) -> None:
    result = cli(acme_site, "config", "check", str(EXAMPLE / "acme.toml"), ACME_BADGE_SECRET="")
    assert result.returncode == 1
    assert "[plugins.acme] badge_secret: environment variable ACME_BADGE_SECRET is not set" \
        in result.stderr
