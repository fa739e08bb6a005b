"""The ``credenza`` command line: a thin front end over the Broker and the client.

Core commands live in the modules of this package and are imported when used: a client command
such as ``credenza aws creds`` (an AWS SDK's credential_process) starts without the server's
code. Enabled plugins add their commands through the ``credenza_commands`` hook, for the
configuration in effect (``--config`` or ``$CREDENZA_CONFIG``); plugins are loaded only when the
command is not a core one (or for the command list).
"""

from __future__ import annotations

import importlib
import json
import sys
from collections.abc import Sequence

import attrs
import click

from credenza.cli.reference import reference_command, schema_command
from credenza.client.errors import AuthError, BrokerError
from credenza.config import CONFIG_ENV, Config
from credenza.errors import ConfigError, CredenzaError
from credenza.loader import PluginInfo, installed_plugins, load_plugins

# name -> "module:attribute", imported when the command runs (or help lists it)
LAZY_COMMANDS = {
    "serve": "credenza.cli.serve:serve",
    "aws": "credenza.cli.aws:aws",
    "hash-password": "credenza.cli.keys:hash_password_command",
    "hash-api-key": "credenza.cli.keys:hash_api_key_command",
    "api-token": "credenza.cli.keys:api_token_command",
    "api-keys": "credenza.cli.keys:api_keys_group",
    "login": "credenza.cli.client:login",
    "logout": "credenza.cli.client:logout",
    "token": "credenza.cli.client:token",
    "accounts": "credenza.cli.client:accounts",
}


@attrs.frozen
class CliState:
    """What every command may need: the configuration path given on the command line."""

    config_path: str | None

    def config(self) -> Config:
        """The configuration in effect (the embedded default when none is given)."""
        return Config.load(self.config_path)


class CredenzaGroup(click.Group):
    """A group that imports core commands when they are used, and explains a missing command
    when plugin commands could not be loaded."""

    plugin_error: str | None = None

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *LAZY_COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in LAZY_COMMANDS and cmd_name not in self.commands:
            module, attribute = LAZY_COMMANDS[cmd_name].split(":")
            self.add_command(getattr(importlib.import_module(module), attribute), cmd_name)
        return super().get_command(ctx, cmd_name)

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        if args and self.plugin_error and args[0] not in CORE_COMMANDS | set(self.commands):
            raise click.UsageError(f"no such command {args[0]!r}; plugin commands are not "
                                   f"available: {self.plugin_error}", ctx)
        return super().resolve_command(ctx, args)


@click.group(cls=CredenzaGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "config_path", envvar=CONFIG_ENV, metavar="FILE",
              type=click.Path(dir_okay=False),
              help=f"Configuration file (default: ${CONFIG_ENV}, else the embedded default).")
@click.version_option(package_name="credenza")
@click.pass_context
def cli(ctx: click.Context, config_path: str | None) -> None:
    """credenza: a pluggable credential broker."""
    ctx.obj = CliState(config_path)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.pass_obj
def plugins(state: CliState, as_json: bool) -> None:
    """List installed plugins: enabled or not, distribution, version and hooks."""
    try:
        enabled = state.config().plugins
    except ConfigError as exc:
        click.echo(f"warning: {exc}; showing no plugin as enabled", err=True)
        enabled = ()
    infos = installed_plugins(enabled)
    if as_json:
        click.echo(json.dumps([{**attrs.asdict(info, filter=lambda field, _: field.name
                                               != "settings"),
                                "settings": info.settings is not None} for info in infos],
                              indent=2))
        return
    for info in infos:
        click.echo(_plugin_line(info))


def _plugin_line(info: PluginInfo) -> str:
    mark = "enabled " if info.enabled else "disabled"
    dist = f"{info.distribution} {info.version}" if info.distribution else "?"
    hooks = ", ".join(info.hooks) if not info.error else f"FAILS TO LOAD: {info.error}"
    return f"{info.name:<16} {mark}  {dist:<24} {info.target}\n{'':<18}hooks: {hooks}"


@cli.group()
def config() -> None:
    """Check configuration files."""


@config.command("check")
@click.argument("file", type=click.Path(dir_okay=False))
def config_check(file: str) -> None:
    """Load FILE and its plugins as the server would; exit 1 with the first error."""
    from credenza.wsgi.app import all_routes, family_settings  # the server's, when checked

    loaded = Config.from_file(file)
    routes = all_routes(load_plugins(loaded))
    family_settings(loaded, (route.family for route in routes))
    names = ", ".join(loaded.plugins) or "none"
    click.echo(f"{loaded.source}: OK (plugins: {names}; data directory: {loaded.data_dir})")


config.add_command(reference_command)
config.add_command(schema_command)
CORE_COMMANDS = frozenset(cli.commands) | LAZY_COMMANDS.keys()


def _add_plugin_commands(group: CredenzaGroup, argv: Sequence[str]) -> None:
    # Start from the core commands: main() may run more than once in a process (tests, embedding).
    for name in set(group.commands) - CORE_COMMANDS:
        del group.commands[name]
    group.plugin_error = None
    path, command = _read_ahead(argv)
    if command in CORE_COMMANDS:
        return
    try:
        pm = load_plugins(Config.load(path))
    except ConfigError as exc:
        group.plugin_error = str(exc)
        return
    pm.hook.credenza_commands(cli=group)


def _read_ahead(argv: Sequence[str]) -> tuple[str | None, str | None]:
    """``--config`` and the command name as click will see them, read ahead so plugin commands
    can be added first (and only when they may be wanted)."""
    path = None
    args = iter(argv)
    for arg in args:
        if arg == "--config":
            path = next(args, None)
        elif arg.startswith("--config="):
            path = arg.split("=", 1)[1]
        elif arg == "--" or not arg.startswith("-"):
            return path, next(args, None) if arg == "--" else arg
    return path, None


def main(argv: Sequence[str] | None = None) -> None:
    """The ``credenza`` console script."""
    args = list(sys.argv[1:] if argv is None else argv)
    _add_plugin_commands(cli, args)
    try:
        cli.main(args=args, prog_name="credenza", standalone_mode=True)
    except ConfigError as exc:
        click.echo(f"credenza: configuration error: {exc}", err=True)
        sys.exit(1)
    except CredenzaError as exc:
        click.echo(f"credenza: {exc.title.lower()}: {exc.detail}", err=True)
        sys.exit(1)
    except (AuthError, BrokerError) as exc:
        click.echo(f"credenza: {exc}", err=True)
        sys.exit(1)
