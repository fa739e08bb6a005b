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
from credenza.settings import Section, read, setting, type_name

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


@attrs.frozen
class CoreSettings:
    """``[credenza]``: the core."""

    plugins: tuple[str, ...] = setting("The enabled plugins, in the order they are asked", ())
    data_dir: Path | None = setting(
        "Where keys and the embedded token store live (made mode 0700)", None,
        default_text="$XDG_DATA_HOME/credenza, else ~/.local/share/credenza")
    log_level: str = setting("The least severity logged", "INFO",
                             choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    log_format: str = setting("text, or json: one object per line with the request id (the "
                              "server's own lines and the access log)", "text",
                              choices=("text", "json"))


@attrs.frozen
class ServerSettings:
    """``[server]``: how ``credenza serve`` runs."""

    bind: str = setting("The address and port to listen on", "127.0.0.1:8080")
    engine: str = setting("The HTTP server: granian (HTTP in Rust; the faster) or gunicorn "
                          "(pure Python; its worker_class, worker_connections and reuse_port)",
                          "granian", choices=("granian", "gunicorn"))
    workers: int = setting("Worker processes", 2, min=1, max=64)
    threads: int = setting("Threads per worker process that run requests (gunicorn's sync "
                           "worker has one)", 8, min=1, max=256)
    pin_workers: str = setting(
        "Each worker process on a core of its own: auto (when the workers are at least as many "
        "as the cores the server may use: it has the machine to itself), always, or never. A "
        "worker's threads pass Python's GIL among themselves; across cores each pass costs a "
        "wake-up on the other core and cold caches (docs/operations.md)", "auto",
        choices=("auto", "always", "never"))
    worker_class: str = setting("gunicorn only: gthread (threads; keep-alive) or sync (one "
                                "request at a time per process)", "gthread",
                                choices=("gthread", "sync"))
    worker_connections: int = setting(
        "gunicorn only: connections one gthread worker holds at most before it leaves new ones "
        "to the others", 1000, min=1, max=100000)
    keepalive_seconds: int = setting("How long an idle keep-alive connection stays open (0: "
                                     "close after each answer)", 2, min=0, max=300)
    reuse_port: bool = setting(
        "gunicorn only: each worker listens on its own socket (SO_REUSEPORT) and the kernel "
        "spreads new connections evenly over them; off: one shared socket, where a busy moment "
        "can leave most connections with one worker (TCP binds with a fixed port only)", True)
    certfile: Path | None = setting("The TLS certificate (PEM); with keyfile: HTTPS", None)
    keyfile: Path | None = setting("The TLS private key (PEM)", None)
    max_body_bytes: int = setting("The largest request body accepted (413 above it)",
                                  1024 * 1024, min=1024, max=64 * 1024 * 1024)
    access_log: bool = setting("Log each request: method, path without query string, status, "
                               "size, time, request id", True)
    graceful_timeout: int = setting("Seconds SIGTERM waits for requests in flight", 30, min=1,
                                    max=3600)
    realm: str = setting("The realm of WWW-Authenticate challenges", "credenza")

    @classmethod
    def from_section(cls, section: Section) -> ServerSettings:
        """Read and check the ``[server]`` table."""
        for key, moved in MOVED_SERVER_KEYS.items():
            if key in section.values:
                raise section.error(key, f"this setting moved to {moved}")
        settings = read(cls, section)
        if (settings.certfile is None) != (settings.keyfile is None):
            raise section.error("certfile", "TLS needs both certfile and keyfile")
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
    log_format: str = "text"

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
        core = read(CoreSettings, Section("credenza", _table(table, "credenza", source), source,
                                          base_dir, base_dir))
        data_dir = core.data_dir or default_data_dir()
        plugins, log_level = core.plugins, core.log_level
        duplicates = sorted({name for name in plugins if plugins.count(name) > 1})
        if duplicates:
            raise ConfigError(f"{source}: [credenza] plugins: names {duplicates[0]!r} more "
                              "than once")
        server = ServerSettings.from_section(
            Section("server", _table(table, "server", source), source, base_dir, data_dir)
        )
        api_tables = _table(table, "api", source)
        for name, value in api_tables.items():
            if not isinstance(value, dict):
                raise ConfigError(f"{source}: [api] {name}: expected a table [api.{name}], got "
                                  f"{type_name(value)}")
        plugin_tables = _table(table, "plugins", source)
        for name, value in plugin_tables.items():
            if not isinstance(value, dict):
                raise ConfigError(f"{source}: [plugins] {name}: expected a table "
                                  f"[plugins.{name}], got {type_name(value)}")
            if name not in plugins:
                enabled = ", ".join(plugins) or "none"
                raise ConfigError(f"{source}: [plugins.{name}]: no enabled plugin is called "
                                  f"{name!r} (enabled: {enabled}); enable it in [credenza] "
                                  "plugins, or remove the table")
        return cls(source, base_dir, data_dir, plugins, log_level, server, plugin_tables,
                   api_tables, core.log_format)

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
        raise ConfigError(f"{source}: {key}: expected a table [{key}], got {type_name(value)}")
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
        if len(path) > 2 and path[0] in ("plugins", "api"):
            path[1] = _hyphenated(path[1], merged, path[0])
        node = merged
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"environment variable {var}: {part} is not a table")
        node[path[-1]] = _parse_override(raw)
    return merged


def _hyphenated(name: str, table: Mapping[str, Any], group: str) -> str:
    """A shell cannot export ``CREDENZA__PLUGINS__AWS-STS__...``: in an override, ``_`` in a
    plugin or API family name stands for ``-``, unless a table or an enabled plugin is spelled
    with ``_``."""
    enabled = table.get("credenza", {}).get("plugins", ()) if group == "plugins" else ()
    if name in table.get(group, {}) or name in enabled:
        return name
    return name.replace("_", "-")


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
