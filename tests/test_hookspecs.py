"""Every hook is documented where it is declared and in the plugin author's guide."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from credenza import hookspecs
from credenza.loader import PluginManager

PLUGIN_GUIDE = (Path(__file__).resolve().parent.parent / "docs" / "plugins.md").read_text()

HOOKS = sorted(name for name in dir(hookspecs) if name.startswith("credenza_"))
CONVENTIONS = ("Stops at the first non-None result", "Merged", "Observer",
               "Every implementation is called")


def signature(name: str) -> str:
    params = inspect.signature(getattr(hookspecs, name)).parameters
    return f"{name}({', '.join(params)})"


def test_every_declared_hook_is_registered_as_a_spec() -> None:
    pm = PluginManager()
    assert sorted(h for h in vars(pm.hook) if h.startswith("credenza_")) == HOOKS


@pytest.mark.parametrize("name", HOOKS)
def test_hook_docstring_states_purpose_convention_and_params(name: str) -> None:
    function = getattr(hookspecs, name)
    doc = inspect.getdoc(function) or ""
    summary = doc.splitlines()[0] if doc else ""
    assert summary.endswith("."), f"{name}: no summary line"
    stated = [convention for convention in CONVENTIONS if convention in doc]
    assert len(stated) == 1, f"{name}: states {stated}, expected exactly one calling convention"
    firstresult = PluginManager().hook.__dict__[name].spec.opts["firstresult"]
    assert firstresult == (stated[0] == "Stops at the first non-None result"), name
    for param in inspect.signature(function).parameters:
        assert f":param {param}:" in doc, f"{name}: argument {param} is undocumented"


@pytest.mark.parametrize("name", HOOKS)
def test_plugin_guide_lists_every_hook_with_its_signature(name: str) -> None:
    assert f"`{signature(name)}`" in PLUGIN_GUIDE, f"docs/plugins.md lacks {signature(name)}"
