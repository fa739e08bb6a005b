"""Settings declared once: name, type, default, allowed values, secret or not, one line of meaning.

A table of the configuration (``[server]``, ``[api.ica]``, ``[plugins.ldap]``, a provider of the
jwt plugin ...) is an attrs class whose fields are made by :func:`setting`. Its type annotation
says what the key holds; :func:`read` checks the table against it through
:class:`~credenza.config.Section`'s typed getters (so every error names the file, the table, the
key and what was expected) and refuses keys it does not declare. ``credenza config reference``
and the JSON Schema of the whole file are generated from the same declarations::

    @attrs.frozen
    class AcmeSettings:
        badge_secret: str = setting("The HMAC key of badges", secret=True)
        max_age_seconds: int = setting("How long a badge is good for", 3600, min=60)

    class AcmeBadges:
        settings = AcmeSettings            # what `credenza config reference acme` shows

        def __init__(self, section):
            self.config = read(AcmeSettings, section)
"""

from __future__ import annotations

import os
import types
import typing
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import attrs

from credenza.errors import ConfigError

_KEY = "credenza.setting"
#: the default of a key that must be given
REQUIRED: Any = object()


def type_name(value: object) -> str:
    """How an error message names a TOML value's type."""
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
            list: "an array", dict: "a table"}.get(type(value), type(value).__name__)


@attrs.define
class Section:
    """One table of the configuration, read key by key with typed getters.

    Keys that were never read are reported by :meth:`check_unknown`, so a misspelled key is an
    error instead of a silently ignored setting.
    """

    name: str
    values: Mapping[str, Any]
    source: str
    base_dir: Path
    data_dir: Path
    _read: set[str] = attrs.field(factory=set, init=False)

    def error(self, key: str, message: str) -> ConfigError:
        """A ConfigError that names the file, this section and ``key``."""
        return ConfigError(f"{self.source}: [{self.name}] {key}: {message}")

    def _get(self, key: str, default: Any, expected: str, *types: type) -> Any:
        self._read.add(key)
        if key not in self.values:
            if default is REQUIRED:
                raise self.error(key, f"is required ({expected})")
            return default
        value = self.values[key]
        # bool is an int subclass in Python; TOML keeps them apart and so do we.
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            raise self.error(key, f"expected {expected}, got {type_name(value)} {value!r}")
        return value

    def get_str(self, key: str, default: Any = REQUIRED, *,
                choices: frozenset[str] | None = None) -> Any:
        """A non-empty string (one of ``choices`` when given)."""
        expected = "one of " + ", ".join(sorted(choices)) if choices else "a non-empty string"
        value = self._get(key, default, expected, str)
        if value is default:
            return value
        if not value or (choices and value not in choices):
            raise self.error(key, f"expected {expected}, got {value!r}")
        return value

    def get_int(self, key: str, default: Any = REQUIRED, *,
                min: int | None = None, max: int | None = None) -> Any:
        """An integer within ``min``..``max``."""
        bounds = f" from {min}" if min is not None else ""
        bounds += f" to {max}" if max is not None else ""
        value = self._get(key, default, f"an integer{bounds}", int)
        if value is not default and (
            (min is not None and value < min) or (max is not None and value > max)
        ):
            raise self.error(key, f"expected an integer{bounds}, got {value}")
        return value

    def get_bool(self, key: str, default: Any = REQUIRED) -> Any:
        """``true`` or ``false``."""
        return self._get(key, default, "true or false", bool)

    def get_list(self, key: str, default: Any = REQUIRED) -> Any:
        """An array of non-empty strings, returned as a tuple."""
        value = self._get(key, default, "an array of strings", list)
        if value is default:
            return value
        if not all(isinstance(item, str) and item for item in value):
            raise self.error(key, f"expected an array of non-empty strings, got {value!r}")
        return tuple(value)

    def get_table(self, key: str) -> Section:
        """A nested table as a Section of its own (empty when absent)."""
        value = self._get(key, {}, "a table", dict)
        return Section(f"{self.name}.{key}", value, self.source, self.base_dir, self.data_dir)

    def get_path(self, key: str, default: Any = REQUIRED) -> Any:
        """A file system path; relative paths are relative to the configuration file."""
        value = self.get_str(key, default)
        if value is default:
            return value
        return (self.base_dir / Path(value).expanduser()).resolve()

    def get_secret(self, key: str, default: Any = REQUIRED) -> Any:
        """A secret: ``env:VAR`` (an environment variable), ``file:PATH`` or the value itself."""
        value = self.get_str(key, default)
        if value is default:
            return value
        if value.startswith("env:"):
            var = value[4:]
            if not os.environ.get(var):
                raise self.error(key, f"environment variable {var} is not set or empty")
            return os.environ[var]
        if value.startswith("file:"):
            path = self.base_dir / Path(value[5:]).expanduser()
            try:
                secret = path.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise self.error(key, f"cannot read secret file {path}: {exc.strerror}") from None
            if not secret:
                raise self.error(key, f"secret file {path} is empty")
            return secret
        return value

    def check_unknown(self) -> None:
        """Raise for the first key no getter asked for: a typo, or a setting that is not one."""
        unknown = sorted(set(self.values) - self._read)
        if unknown:
            known = ", ".join(sorted(self._read)) or "none"
            raise self.error(unknown[0], f"unknown key (known keys: {known})")



@attrs.frozen
class Declaration:
    """What a field of a settings class says of its key, beyond its type and default."""

    meaning: str
    choices: frozenset[str] | None = None
    min: int | None = None
    max: int | None = None
    secret: bool = False
    #: the default in words, where it is computed (from the data directory, another key)
    default_text: str | None = None


def setting(meaning: str, default: Any = REQUIRED, *, choices: Any = None,
            min: int | None = None, max: int | None = None, secret: bool = False,
            default_text: str | None = None) -> Any:
    """A declared setting: an attrs field whose key :func:`read` reads and checks.

    :param meaning: one line for the reference.
    :param default: the value when the key is absent (:data:`~credenza.config.REQUIRED`:
        the key must be given).
    :param choices: the allowed values of a string.
    :param min: the least value of an integer. :param max: the greatest.
    :param secret: read as a secret (``env:VAR``, ``file:PATH`` or the value), never shown.
    :param default_text: the default in words, when the code computes it.
    """
    declaration = Declaration(meaning, frozenset(choices) if choices else None, min, max,
                              secret, default_text)
    if isinstance(default, list):
        default = tuple(default)
    if isinstance(default, dict):  # a table: each instance gets its own
        default = attrs.Factory(dict)
    if default is REQUIRED:
        return attrs.field(metadata={_KEY: declaration})
    return attrs.field(default=default, metadata={_KEY: declaration},
                       repr=not secret)


def declared(cls: type) -> Iterator[tuple[attrs.Attribute, Declaration, Any]]:
    """(field, declaration, the key's type with ``| None`` removed) of each declared setting."""
    hints = typing.get_type_hints(cls)
    for field in attrs.fields(cls):
        declaration = field.metadata.get(_KEY)
        if declaration is not None:
            yield field, declaration, _without_none(hints[field.name])


def _without_none(kind: Any) -> Any:
    if isinstance(kind, types.UnionType) or typing.get_origin(kind) is typing.Union:
        rest = [arg for arg in typing.get_args(kind) if arg is not type(None)]
        return rest[0] if len(rest) == 1 else kind
    return kind


def _table_of(kind: Any) -> Any:
    """The type of the entries of a ``Mapping[str, T]`` setting (a table whose keys the user
    names): a declared class, ``str`` or ``tuple[str, ...]``; else None."""
    if typing.get_origin(kind) in (Mapping, dict):
        return typing.get_args(kind)[1]
    return None


def _read_entry(entry: Any, table: Section, name: str) -> Any:
    if attrs.has(entry):
        return read(entry, table.get_table(name))
    if entry is str:
        return table.get_str(name)
    return table.get_list(name)


def read(cls: type, section: Section) -> Any:
    """An instance of ``cls`` from ``section``, each key read and checked as declared.

    :raises credenza.errors.ConfigError: naming the file, table and key, for a value of the
        wrong type or out of bounds, a missing required key, or an undeclared key.
    """
    values: dict[str, Any] = {}
    for field, declaration, kind in declared(cls):
        key = field.name
        default = REQUIRED if field.default is attrs.NOTHING else field.default
        if declaration.secret:
            value = section.get_secret(key, default)
        elif kind is bool:
            value = section.get_bool(key, default)
        elif kind is int:
            value = section.get_int(key, default, min=declaration.min, max=declaration.max)
        elif kind is str:
            value = section.get_str(key, default, choices=declaration.choices)
        elif kind is Path:
            value = section.get_path(key, default)
        elif typing.get_origin(kind) is tuple:
            value = section.get_list(key, default)
        elif kind is Section:
            value = section.get_table(key)
        elif (entry := _table_of(kind)) is not None:
            table = section.get_table(key)
            value = {name: _read_entry(entry, table, name) for name in table.values}
        else:  # pragma: no cover - a declaration mistake, found by the reference test
            raise TypeError(f"{cls.__name__}.{key}: no reader for {kind!r}")
        values[key] = value
    section.check_unknown()
    return cls(**values)


# -- the reference --------------------------------------------------------------------------------

_TYPE_WORDS = {bool: "boolean", int: "integer", str: "string", Path: "path"}


def describe(cls: type, prefix: str = "") -> list[dict[str, Any]]:
    """Every key ``cls`` declares (nested tables flattened as ``table.NAME.key``), as plain
    data: key, type, default, choices, bounds, secret, meaning."""
    rows: list[dict[str, Any]] = []
    for field, declaration, kind in declared(cls):
        key = f"{prefix}{field.name}"
        entry = _table_of(kind)
        if entry is not None:
            nested = attrs.has(entry)
            rows.append({"key": key, "default": None, "secret": False,
                         "type": "table of tables" if nested else
                         f"table of {'strings' if entry is str else 'string arrays'}",
                         "meaning": declaration.meaning})
            if nested:
                rows.extend(describe(entry, f"{key}.NAME."))
            continue
        if declaration.secret:
            type_words = "secret"
        elif typing.get_origin(kind) is tuple:
            type_words = "array of strings"
        elif kind is Section:
            type_words = "table"
        else:
            type_words = _TYPE_WORDS.get(kind, getattr(kind, "__name__", str(kind)))
        if declaration.default_text is not None:
            default: Any = declaration.default_text
        elif field.default is attrs.NOTHING:
            default = "required"
        else:
            default = list(field.default) if isinstance(field.default, tuple) else field.default
        row = {"key": key, "type": type_words, "default": default,
               "secret": declaration.secret, "meaning": declaration.meaning}
        if declaration.choices:
            row["choices"] = sorted(declaration.choices)
        if declaration.min is not None:
            row["min"] = declaration.min
        if declaration.max is not None:
            row["max"] = declaration.max
        rows.append(row)
    return rows


def json_schema(cls: type) -> dict[str, Any]:
    """A JSON Schema (2020-12) of a table declared by ``cls``."""
    properties: dict[str, Any] = {}
    required = []
    for field, declaration, kind in declared(cls):
        entry = _table_of(kind)
        if entry is not None:
            values = (json_schema(entry) if attrs.has(entry) else {"type": "string"}
                      if entry is str else {"type": "array", "items": {"type": "string"}})
            schema: dict[str, Any] = {"type": "object", "additionalProperties": values}
        elif declaration.secret or kind in (str, Path):
            schema = {"type": "string", "minLength": 1}
            if declaration.choices:
                schema["enum"] = sorted(declaration.choices)
        elif kind is bool:
            schema = {"type": "boolean"}
        elif kind is int:
            schema = {"type": "integer"}
            if declaration.min is not None:
                schema["minimum"] = declaration.min
            if declaration.max is not None:
                schema["maximum"] = declaration.max
        elif typing.get_origin(kind) is tuple:
            schema = {"type": "array", "items": {"type": "string", "minLength": 1}}
        else:
            schema = {"type": "object"}
        schema["description"] = declaration.meaning
        properties[field.name] = schema
        if field.default is attrs.NOTHING:
            required.append(field.name)
    return {"type": "object", "properties": properties, "additionalProperties": False,
            **({"required": required} if required else {})}
