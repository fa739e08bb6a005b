"""``credenza aws ...``: AWS credentials on the command line.

From the broker you are logged in to (``credenza login``), over HTTP: ``creds``, ``console``,
``exec`` and ``profile`` (an AWS config profile whose ``credential_process`` is ``creds``).

From this machine's configuration, for local admin use: ``credentials`` runs the broker in-process
as the user it is told (``--user``, default the login name), whose grants decide exactly as over
HTTP.
"""

from __future__ import annotations

import getpass
import os
import sys
import webbrowser
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import click

from credenza.client import aws as client
from credenza.models import AwsOptions, Principal

if TYPE_CHECKING:
    from credenza.cli import CliState


class CheckedName(click.ParamType):
    """An account or role name, checked before it goes into a URL path."""

    def __init__(self, name: str, check: Callable[[str], str]) -> None:
        self.name, self.check = name, check

    def convert(self, value: str, param: click.Parameter | None,
                ctx: click.Context | None) -> str:
        try:
            return self.check(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


ACCOUNT = click.argument("account", type=CheckedName("account", client.check_account))
ROLE = click.argument("role", type=CheckedName("role", client.check_role))


@click.group()
def aws() -> None:
    """AWS credentials: from a broker you are logged in to, or from this machine's
    configuration (credentials)."""


@aws.command("creds")
@ACCOUNT
@ROLE
@click.option("--format", "output", type=click.Choice(client.FORMATS), default="json",
              show_default=True, help="env: shell exports; process: for credential_process.")
def creds(account: str, role: str, output: str) -> None:
    """Credentials for ROLE in ACCOUNT, from the broker you are logged in to."""
    click.echo(client.format_credentials(client.aws_credentials(account, role), output))


@aws.command("console")
@ACCOUNT
@ROLE
@click.option("--open", "open_browser", is_flag=True, help="Open it in a browser instead.")
def console(account: str, role: str, open_browser: bool) -> None:
    """A console sign-in URL for ROLE in ACCOUNT (valid 15 minutes; a secret)."""
    url = client.console_url(account, role)
    if not open_browser:
        click.echo(url)
    elif webbrowser.open(url):
        click.echo(f"Opened the AWS console for {role} in {account}.", err=True)
    else:
        raise click.ClickException("no browser could be started; leave out --open to get the "
                                   "URL")


@aws.command("exec", context_settings={"ignore_unknown_options": True})
@ACCOUNT
@ROLE
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def exec_command(account: str, role: str, command: tuple[str, ...]) -> None:
    """Run COMMAND with credentials for ROLE in ACCOUNT in its environment:
    credenza aws exec ACCOUNT ROLE -- aws s3 ls"""
    credentials = client.aws_credentials(account, role)
    env = {key: value for key, value in os.environ.items()
           if key not in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE")}  # a profile would win over them
    env.update(client.environment(credentials))
    try:
        os.execvpe(command[0], list(command), env)  # noqa: S606 - the user's own command
    except OSError as exc:
        click.echo(f"credenza: cannot run {command[0]!r}: {exc.strerror}", err=True)
        sys.exit(127)


@aws.command("profile")
@ACCOUNT
@ROLE
@click.option("--name", help="The profile name (default: ACCOUNT-ROLE).")
@click.option("--region", help="The profile's default region.")
@click.option("--config-file", type=click.Path(dir_okay=False, path_type=Path),
              default=lambda: os.environ.get("AWS_CONFIG_FILE", "~/.aws/config"),
              show_default="$AWS_CONFIG_FILE or ~/.aws/config")
def profile(account: str, role: str, name: str | None, region: str | None,
            config_file: Path) -> None:
    """Write an AWS config profile that gets credentials for ROLE in ACCOUNT from the broker
    (credential_process), for every AWS SDK and the aws CLI: aws --profile NAME ..."""
    name = name or f"{account}-{role}"
    command = [sys.executable, "-m", "credenza", "aws", "creds", account, role,
               "--format", "process"]
    try:
        client.write_profile(config_file.expanduser(), name, command, region)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    click.echo(f"Profile {name} written to {config_file}: aws --profile {name} ...")


@aws.command("credentials")
@ACCOUNT
@ROLE
@click.option("--format", "output", type=click.Choice(client.FORMATS), default="json",
              show_default=True)
@click.option("--user", default=getpass.getuser, show_default="the login name",
              help="Whose grants to use.")
@click.option("--duration", type=click.IntRange(900, 43200), help="Session duration in seconds.")
@click.pass_obj
def credentials(state: CliState, account: str, role: str, output: str, user: str,
                duration: int | None) -> None:
    """Credentials for ROLE in ACCOUNT from this machine's configuration, if USER is granted
    them."""
    from credenza.broker import Broker  # only this command runs the broker

    with Broker.from_config(state.config()) as broker:
        principal = broker.enrich(Principal(user, source="cli"))
        _account, creds = broker.issue_aws(principal, account, role, AwsOptions(duration=duration))
    click.echo(client.format_credentials(creds, output))
