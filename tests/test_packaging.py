"""The distribution: an editable install and a built wheel both work from outside the repo."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from tests.conftest import ROOT

PROBE = """
import importlib.metadata, json, credenza, credenza.plugins.environ, credenza.wsgi
from credenza.config import Config
print(json.dumps({
    "credenza": credenza.__file__,
    "environ": credenza.plugins.environ.__file__,
    "version": credenza.__version__,
    "entry_points": sorted(ep.value for ep in importlib.metadata.entry_points(
        group="credenza.plugins") if ep.name == "environ"),
    "default_plugins": list(Config.load(None, {}).plugins),
}))
"""


def probe(cwd: Path, env: dict[str, str] | None = None) -> dict:
    result = subprocess.run([sys.executable, "-c", PROBE], cwd=cwd, capture_output=True,
                            text=True, env=env, timeout=60, check=True)
    return json.loads(result.stdout)


def test_editable_install_imports_from_outside_the_repo(tmp_path: Path) -> None:
    # The test environment holds an editable install (tox: package = editable; or pip -e .):
    # imports from elsewhere resolve into the source tree.
    found = probe(tmp_path)
    assert found["credenza"] == str(ROOT / "core" / "__init__.py")
    assert found["environ"] == str(ROOT / "plugins" / "environ.py")
    assert found["entry_points"] == ["credenza.plugins.environ:EnvironIdentity"]
    assert found["default_plugins"] == ["environ", "jwt", "sql"]


def test_built_wheel_installs_and_imports_from_outside_the_repo(tmp_path: Path) -> None:
    source = tmp_path / "src"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".git", ".tox", "build", "dist", "*.egg-info", "__pycache__", ".*_cache"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(tmp_path / "dist"), str(source)], check=True, timeout=300)
    wheel, = (tmp_path / "dist").glob("credenza-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"credenza/__init__.py", "credenza/hookspecs.py", "credenza/default.toml",
            "credenza/wsgi/app.py", "credenza/cli/serve.py",
            "credenza/plugins/environ.py"} <= names
    assert not any(name.startswith(("core/", "plugins/", "tests/")) for name in names)

    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target",
                    str(target), str(wheel)], check=True, timeout=300)
    found = probe(tmp_path, {"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"})
    assert found["credenza"] == str(target / "credenza" / "__init__.py")
    assert found["environ"] == str(target / "credenza" / "plugins" / "environ.py")
    assert found["entry_points"] == ["credenza.plugins.environ:EnvironIdentity"]
    assert found["default_plugins"] == ["environ", "jwt", "sql"]
