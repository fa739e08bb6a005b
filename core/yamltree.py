"""YAML configuration trees as afp-core read them: a file, or a directory of ``*.yaml`` files
merged in lexical order (tables merge recursively, lists extend, other values are replaced)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from credenza.errors import ConfigError


def load_tree(path: Path) -> dict[str, Any]:
    """Read ``path`` (a file or a directory of ``*.yaml``) into one mapping."""
    if path.is_dir():
        files = sorted(path.glob("*.yaml"))
        if not files:
            raise ConfigError(f"{path}: no *.yaml files in this directory")
    elif path.is_file():
        files = [path]
    else:
        raise ConfigError(f"{path}: no such file or directory")
    merged: dict[str, Any] = {}
    for file in files:
        try:
            data = yaml.safe_load(file.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{file}: cannot read: {exc}") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"{file}: not valid YAML: {exc}") from None
        if data is None:
            continue
        if not isinstance(data, dict):
            raise ConfigError(f"{file}: expected a mapping at the top, got {type(data).__name__}")
        merge(merged, data)
    return merged


def merge(into: dict[str, Any], other: dict[str, Any]) -> dict[str, Any]:
    """Merge ``other`` into ``into`` the way afp-core's yamlreader did; returns ``into``."""
    for key, value in other.items():
        current = into.get(key)
        if isinstance(current, dict) and isinstance(value, dict):
            merge(current, value)
        elif isinstance(current, list) and isinstance(value, list):
            current.extend(value)
        else:
            into[key] = value
    return into
