"""Configuration: one TOML file, environment overrides, validation with clear messages.

Layout::

    [credenza]            # the core: enabled plugins in order, data directory, log level
    plugins = ["environ"]
    [server]              # the bundled server (credenza serve)
    bind = "127.0.0.1:8080"
    [api.FAMILY]          # settings of one API family (credenza.wsgi.<family>)
    [plugins.NAME]        # one section per plugin, handed to it as a Section

Any key can be overridden from the environment as ``CREDENZA__<TABLE>__<KEY>`` (double
underscores separate levels: ``CREDENZA__PLUGINS__LDAP__URL``). The value is read as a TOML value
when it parses as one (``8080``, ``true``, ``["a", "b"]``) and as a plain string otherwise.

Secrets are read with :meth:`Section.get_secret`, which resolves ``env:VAR`` and ``file:PATH``.
Every error names the file, the key and what was expected.
"""

from __future__ import annotations

import logging
import os
import tomllib
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import attrs

from credenza.errors import ConfigError

log = logging.getLogger(__name__)

CONFIG_ENV = "CREDENZA_CONFIG"
OVERRIDE_PREFIX = "CREDENZA__"
EMBEDDED_SOURCE = "<embedded default configuration>"
_TOP_LEVEL = frozenset({"credenza", "server", "api", "plugins"})
# Settings of one API family that used to sit in [server]: where they are now.
MOVED_SERVER_KEYS = {
    "imds_token_key": "[api.aws-sdk] imds_token_key",
    "imds_v1": "[api.aws-sdk] imds_v1",
    "idaas_instance_id": "[api.idaas-pam] instance_id",
    "ica_token_provider": "[api.ica] token_provider",
    "ica_audience": "[api.ica] audience",
}
_REQUIRED: Any = object()


def _type_name(value: object) -> str:
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
            if default is _REQUIRED:
                raise self.error(key, f"is required ({expected})")
            return default
        value = self.values[key]
        # bool is an int subclass in Python; TOML keeps them apart and so do we.
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            raise self.error(key, f"expected {expected}, got {_type_name(value)} {value!r}")
        return value

    def get_str(self, key: str, default: Any = _REQUIRED, *,
                choices: frozenset[str] | None = None) -> Any:
        """A non-empty string (one of ``choices`` when given)."""
        expected = "one of " + ", ".join(sorted(choices)) if choices else "a non-empty string"
        value = self._get(key, default, expected, str)
        if value is default:
            return value
        if not value or (choices and value not in choices):
            raise self.error(key, f"expected {expected}, got {value!r}")
        return value

    def get_int(self, key: str, default: Any = _REQUIRED, *,
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

    def get_bool(self, key: str, default: Any = _REQUIRED) -> Any:
        """``true`` or ``false``."""
        return self._get(key, default, "true or false", bool)

    def get_list(self, key: str, default: Any = _REQUIRED) -> Any:
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

    def get_path(self, key: str, default: Any = _REQUIRED) -> Any:
        """A file system path; relative paths are relative to the configuration file."""
        value = self.get_str(key, default)
        if value is default:
            return value
        return (self.base_dir / Path(value).expanduser()).resolve()

    def get_secret(self, key: str, default: Any = _REQUIRED) -> Any:
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
class ServerSettings:
    """How ``credenza serve`` runs."""

    bind: str = "127.0.0.1:8080"
    workers: int = 2
    threads: int = 8
    certfile: Path | None = None
    keyfile: Path | None = None
    max_body_bytes: int = 1024 * 1024
    access_log: bool = True
    graceful_timeout: int = 30
    realm: str = "credenza"

    @classmethod
    def from_section(cls, section: Section) -> ServerSettings:
        """Read and check the ``[server]`` table."""
        for key, moved in MOVED_SERVER_KEYS.items():
            if key in section.values:
                raise section.error(key, f"this setting moved to {moved}")
        defaults = cls()
        settings = cls(
            bind=section.get_str("bind", defaults.bind),
            workers=section.get_int("workers", defaults.workers, min=1, max=64),
            threads=section.get_int("threads", defaults.threads, min=1, max=256),
            certfile=section.get_path("certfile", None),
            keyfile=section.get_path("keyfile", None),
            max_body_bytes=section.get_int(
                "max_body_bytes", defaults.max_body_bytes, min=1024, max=64 * 1024 * 1024
            ),
            access_log=section.get_bool("access_log", defaults.access_log),
            graceful_timeout=section.get_int(
                "graceful_timeout", defaults.graceful_timeout, min=1, max=3600
            ),
            realm=section.get_str("realm", defaults.realm),
        )
        if (settings.certfile is None) != (settings.keyfile is None):
            raise section.error("certfile", "TLS needs both certfile and keyfile")
        section.check_unknown()
        return settings

    @property
    def tls(self) -> bool:
        """Whether the server speaks HTTPS."""
        return self.certfile is not None


def default_data_dir() -> Path:
    """``$XDG_DATA_HOME/credenza``, else ``~/.local/share/credenza``."""
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "credenza"


@attrs.frozen
class Config:
    """A loaded and checked configuration."""

    source: str
    base_dir: Path
    data_dir: Path
    plugins: tuple[str, ...]
    log_level: str
    server: ServerSettings
    plugin_tables: Mapping[str, Mapping[str, Any]] = attrs.field(repr=False)
    #: ``[api.FAMILY]`` tables, read by the API family of that name (see credenza.wsgi)
    api_tables: Mapping[str, Mapping[str, Any]] = attrs.field(factory=dict, repr=False)

    @classmethod
    def load(cls, path: str | os.PathLike[str] | None = None,
             environ: Mapping[str, str] | None = None) -> Config:
        """From ``path``, else ``$CREDENZA_CONFIG``, else afp-core's ``$CONFIG_PATH`` and
        ``$ACCOUNT_CONFIG_PATH`` (see :mod:`credenza.legacy`), else the embedded default."""
        environ = os.environ if environ is None else environ
        path = path or environ.get(CONFIG_ENV)
        if path:
            return cls.from_file(path, environ)
        if environ.get("CONFIG_PATH"):  # afp-core's configuration
            from credenza.legacy import afp_config  # legacy imports this module

            return afp_config(environ)
        text = resources.files("credenza").joinpath("default.toml").read_text(encoding="utf-8")
        return cls.from_mapping(tomllib.loads(text), EMBEDDED_SOURCE, Path.cwd(), environ)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str],
                  environ: Mapping[str, str] | None = None) -> Config:
        """Read a TOML file; relative paths in it are relative to its directory."""
        path = Path(path).expanduser().resolve()
        try:
            with path.open("rb") as fh:
                table = tomllib.load(fh)
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read the configuration: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from None
        return cls.from_mapping(table, str(path), path.parent, environ)

    @classmethod
    def from_mapping(cls, table: Mapping[str, Any], source: str = "<mapping>",
                     base_dir: Path | None = None,
                     environ: Mapping[str, str] | None = None) -> Config:
        """Check an already parsed configuration (what embedding apps and tests pass)."""
        base_dir = base_dir or Path.cwd()
        table = _with_overrides(table, os.environ if environ is None else environ)
        for key in table:
            if key not in _TOP_LEVEL:
                raise ConfigError(f"{source}: [{key}]: unknown table (known: credenza, server, "
                                  "api, plugins)")
        # The core section's own data_dir is irrelevant: it is the key being read.
        core = Section("credenza", _table(table, "credenza", source), source, base_dir, base_dir)
        data_dir = core.get_path("data_dir", None) or default_data_dir()
        plugins = core.get_list("plugins", ())
        duplicates = sorted({name for name in plugins if plugins.count(name) > 1})
        if duplicates:
            raise core.error("plugins", f"names {duplicates[0]!r} more than once")
        log_level = core.get_str(
            "log_level", "INFO", choices=frozenset({"DEBUG", "INFO", "WARNING", "ERROR"})
        )
        core.check_unknown()
        server = ServerSettings.from_section(
            Section("server", _table(table, "server", source), source, base_dir, data_dir)
        )
        api_tables = _table(table, "api", source)
        for name, value in api_tables.items():
            if not isinstance(value, dict):
                raise ConfigError(f"{source}: [api] {name}: expected a table [api.{name}], got "
                                  f"{_type_name(value)}")
        plugin_tables = _table(table, "plugins", source)
        for name, value in plugin_tables.items():
            if not isinstance(value, dict):
                raise ConfigError(f"{source}: [plugins] {name}: expected a table "
                                  f"[plugins.{name}], got {_type_name(value)}")
            if name not in plugins:
                log.warning("%s: [plugins.%s] is configured but %r is not in [credenza] plugins",
                            source, name, name)
        return cls(source, base_dir, data_dir, plugins, log_level, server, plugin_tables,
                   api_tables)

    def section(self, plugin: str) -> Section:
        """The ``[plugins.NAME]`` table of one plugin (empty when absent)."""
        return Section(f"plugins.{plugin}", self.plugin_tables.get(plugin, {}), self.source,
                       self.base_dir, self.data_dir)

    def api_section(self, family: str) -> Section:
        """The ``[api.FAMILY]`` table of one API family (empty when absent)."""
        return Section(f"api.{family}", self.api_tables.get(family, {}), self.source,
                       self.base_dir, self.data_dir)

    def ensure_data_dir(self) -> Path:
        """Create the data directory (mode 0700) if needed and return it."""
        from credenza.secrets import private_directory  # secrets stays free of config

        return private_directory(self.data_dir)


def _table(table: Mapping[str, Any], key: str, source: str) -> dict[str, Any]:
    value = table.get(key, {})
    if not isinstance(value, dict):
        raise ConfigError(f"{source}: {key}: expected a table [{key}], got {_type_name(value)}")
    return value


def _with_overrides(table: Mapping[str, Any], environ: Mapping[str, str]) -> dict[str, Any]:
    """Apply ``CREDENZA__A__B=value`` overrides onto a deep copy of ``table``."""
    merged = _deep_copy(table)
    for var, raw in sorted(environ.items()):
        if not var.startswith(OVERRIDE_PREFIX):
            continue
        path = [part.lower() for part in var[len(OVERRIDE_PREFIX):].split("__")]
        if len(path) < 2 or not all(path):
            raise ConfigError(f"environment variable {var}: expected CREDENZA__<TABLE>__<KEY>")
        node = merged
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"environment variable {var}: {part} is not a table")
        node[path[-1]] = _parse_override(raw)
    return merged


def _parse_override(raw: str) -> Any:
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def _deep_copy(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {key: _deep_copy(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_deep_copy(item) for item in value]
    return value
