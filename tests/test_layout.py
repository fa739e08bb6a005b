"""The shape of the code: no module reaches into another's private names, and the broker stays
the pipeline."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SOURCES = sorted([*ROOT.glob("core/**/*.py"), *ROOT.glob("plugins/*.py"),
                  *ROOT.glob("examples/**/*.py"), *ROOT.glob("benchmarks/*.py"),
                  *ROOT.glob("tests/*.py")])


def private_uses(source: str) -> list[str]:
    """``from credenza.x import _y`` and ``x._y`` where ``x`` is an imported credenza module."""
    tree = ast.parse(source)
    found, modules = [], set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("credenza"):
            for alias in node.names:
                if alias.name.startswith("_") and not alias.name.startswith("__"):
                    found.append(f"line {node.lineno}: from {node.module} import {alias.name}")
                else:
                    modules.add(alias.asname or alias.name)
        elif isinstance(node, ast.Import):
            modules.update(alias.asname or alias.name for alias in node.names
                           if alias.name.startswith("credenza"))
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                and node.value.id in modules and node.attr.startswith("_")
                and not node.attr.startswith("__")):
            found.append(f"line {node.lineno}: {node.value.id}.{node.attr}")
    return found


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_module_uses_a_private_name_of_another(path: Path) -> None:
    assert private_uses(path.read_text()) == []


def test_the_check_finds_private_imports() -> None:
    assert private_uses("from credenza.broker import _x\n") == [
        "line 1: from credenza.broker import _x"]
    assert private_uses("from credenza import loader\nloader._load([], '')\n") == [
        "line 2: loader._load"]
    assert private_uses("from credenza.models import Grant\nGrant.__name__\n") == []


def test_the_broker_is_the_pipeline() -> None:
    """Its public methods are the steps from a request to a credential, and no more."""
    from credenza.broker import Broker

    public = {name for name in vars(Broker) if not name.startswith("_")}
    assert public == {
        "from_config", "identify", "enrich", "grants", "authorize", "accounts", "account",
        "aws_roles", "issue_aws", "console_url", "issue_token", "upstream_token",
        "managed_credential", "health", "plugin_names", "close",
        "notify_issued", "notify_revoked", "notify_denied", "notify_signed_in",
    }
