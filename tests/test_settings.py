"""Settings are declared once (credenza.settings): the code reads every key through its
declaration, the reference and the JSON Schema are generated from the same declarations."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import tomllib
from pathlib import Path

import jsonschema
import pytest

from credenza.cli.reference import declared_tables, schema
from credenza.settings import describe

ROOT = Path(__file__).resolve().parent.parent
GETTERS = {"get_str", "get_int", "get_bool", "get_list", "get_path", "get_secret"}


def direct_reads(path: Path) -> list[str]:
    """Calls of Section's typed getters, which only credenza.settings may make."""
    tree = ast.parse(path.read_text())
    return [f"{path.relative_to(ROOT)}:{node.lineno} {node.func.attr}"
            for node in ast.walk(tree)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            and node.func.attr in GETTERS]


def test_every_setting_is_read_through_its_declaration() -> None:
    sources = [*ROOT.glob("core/**/*.py"), *ROOT.glob("plugins/*.py"),
               *ROOT.glob("examples/**/*.py")]
    found = [read for path in sources if path != ROOT / "core" / "settings.py"
             for read in direct_reads(path)]
    assert found == []


def test_the_reference_covers_the_core_the_families_and_every_builtin_plugin() -> None:
    tables = {name: cls for name, cls, _ in declared_tables(builtin_only=True)}
    builtin = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["entry-points"][
        "credenza.plugins"]
    assert set(tables) == {"credenza", "server", "api.aws-sdk", "api.idaas-pam", "api.ica",
                           "api.metrics", "api.console",
                           *(f"plugins.{name}" for name in builtin)}
    assert all(cls is not None for cls in tables.values())
    rows = {row["key"]: row for row in describe(tables["plugins.jwt"])}
    assert rows["providers.NAME.algorithm"]["choices"] == ["ES256", "EdDSA", "RS256"]
    assert rows["short_token_key"]["secret"] is True
    assert rows["clock_skew_seconds"] == {
        "key": "clock_skew_seconds", "type": "integer", "default": 30, "secret": False,
        "meaning": "Leeway when checking exp and nbf", "min": 0, "max": 300}


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "credenza", *args], capture_output=True,
                          text=True, timeout=60)


def test_config_reference_command() -> None:
    markdown = run("config", "reference", "ldap")
    assert markdown.returncode == 0, markdown.stderr
    assert markdown.stdout.startswith("## `[plugins.ldap]`")
    assert "| `pool_size` | integer 1..64 | `4` | Pooled service connections |" in \
        markdown.stdout
    listed = json.loads(run("config", "reference", "server", "--format", "json").stdout)
    assert [table["table"] for table in listed] == ["server"]
    assert {row["key"] for row in listed[0]["settings"]} >= {"bind", "workers", "realm"}
    unknown = run("config", "reference", "ldpa")
    assert unknown.returncode == 2 and "no table 'ldpa'" in unknown.stderr


def test_the_published_schema_is_current() -> None:
    published = json.loads((ROOT / "docs" / "credenza.schema.json").read_text())
    assert published == schema(declared_tables(builtin_only=True)), (
        "regenerate it: credenza config schema --builtin-only > docs/credenza.schema.json")


@pytest.mark.parametrize("path", ["core/default.toml", "examples/aws.toml"])
def test_the_schema_accepts_the_shipped_configurations(path: str) -> None:
    document = tomllib.loads((ROOT / path).read_text())
    jsonschema.validate(document, schema(declared_tables(builtin_only=True)))


@pytest.mark.parametrize(("text", "where"), [
    ("[server]\nworkers = 0\n", "workers"),
    ("[servr]\n", "servr"),
    ("[plugins.ldap]\npool_sise = 4\n", "pool_sise"),
    ("[plugins.jwt.providers.bot]\nalgorithm = 'HS256'\n", "HS256"),
])
def test_the_schema_refuses_what_the_loader_refuses(text: str, where: str) -> None:
    with pytest.raises(jsonschema.ValidationError, match=where):
        jsonschema.validate(tomllib.loads(text), schema(declared_tables(builtin_only=True)))
