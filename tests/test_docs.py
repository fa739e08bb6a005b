"""The documentation site: generated reference pages cover the code, and the commands the
getting-started page shows run as written (against a server on a fresh data directory)."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from credenza import hookspecs
from credenza.cli.reference import declared_tables
from credenza.settings import describe
from tests.conftest import running_server

ROOT = Path(__file__).resolve().parent.parent


def generator():
    spec = importlib.util.spec_from_file_location("docs_generate", ROOT / "docs" / "generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_reference_pages_cover_every_hook_setting_command_and_endpoint() -> None:
    pages = generator()
    hooks = pages.hooks_page()
    for name in (n for n in dir(hookspecs) if n.startswith("credenza_")):
        assert f"## `{name}(" in hooks, name
    settings = pages.settings_page()
    for table, cls, _ in declared_tables(builtin_only=True):
        assert f"## `[{table}]`" in settings
        for row in describe(cls):
            assert f"| `{row['key']}` |" in settings, (table, row["key"])
    cli = pages.cli_page()
    for command in ("serve", "login", "aws creds", "config reference", "config schema",
                    "api-keys create", "hash-password"):
        assert f"## `credenza {command}`" in cli, command
    http = pages.http_page()
    for endpoint in ("GET /account/{account}/{role}", "POST /oauth2/token",
                     "POST /v2/{instance_id}/authenticationTokens/_/actions/generateJwt",
                     "PUT /latest/api/token", "POST /ica/rest/api/tokens"):
        assert f"`{endpoint}`" in http, endpoint


def shell_commands(page: Path) -> list[str]:
    blocks = re.findall(r"```sh\n(.*?)```", page.read_text(), re.DOTALL)
    return [line.split("  #")[0].strip() for block in blocks for line in block.splitlines()
            if line.strip()]


def test_the_getting_started_commands_run_as_written(tmp_path: Path) -> None:
    commands = shell_commands(ROOT / "docs" / "index.md")
    assert commands[:2] == ["pip install .", "credenza serve"]  # what this test does itself
    environ = {**os.environ, "XDG_DATA_HOME": str(tmp_path / "data"),
               "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    with running_server(tmp_path, [], env=environ) as server:
        for command in commands[2:]:
            ran = subprocess.run(["bash", "-c", command.replace("http://127.0.0.1:8080",
                                                                server.url)],
                                 capture_output=True, text=True, timeout=60, env=environ,
                                 cwd=tmp_path)
            assert ran.returncode == 0, (command, ran.stderr)
            assert ran.stdout, command
            if "/v1/whoami" in command:
                assert ran.stdout.startswith("HTTP/1.1 401")
            if "/status" in command:
                assert '"status":"200"' in ran.stdout
    assert (tmp_path / "data" / "credenza").is_dir()  # the fresh data directory was used


@pytest.mark.parametrize("page", ["index.md", "operations.md",
                                  *(f"guides/{p.name}" for p in (ROOT / "docs" / "guides")
                                    .glob("*.md"))])
def test_the_pages_name_only_real_settings(page: str) -> None:
    """Every `[table] key` a page names is a declared setting."""
    declared = {table: {row["key"].split(".")[0] for row in describe(cls)}
                for table, cls, _ in declared_tables(builtin_only=True)}
    text = (ROOT / "docs" / page).read_text()
    for table, key in re.findall(r"`\[([a-z.-]+)\] ([a-z_]+)`", text):
        assert key in declared[table], f"{page}: [{table}] {key}"
