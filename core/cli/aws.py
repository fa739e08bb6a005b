"""``credenza aws credentials``: AWS credentials on the command line, for local admin use.

The command runs the broker in-process, as the user it is told (``--user``, default the login
name): that user's grants decide, exactly as over HTTP.
"""

from __future__ import annotations

import getpass
import json
import shlex
from typing import TYPE_CHECKING

import click

from credenza.broker import Broker
from credenza.models import AwsCredentials, AwsOptions, Principal
from credenza.wsgi.imds import aws_timestamp

if TYPE_CHECKING:
    from credenza.cli import CliState

FORMATS = ("json", "env", "process")


def format_credentials(credentials: AwsCredentials, output: str) -> str:
    """``json``, ``env`` (shell-quoted exports) or ``process`` (AWS credential_process)."""
    expiration = aws_timestamp(credentials.expiration)
    if output == "env":
        exports = {
            "AWS_ACCESS_KEY_ID": credentials.access_key_id,
            "AWS_SECRET_ACCESS_KEY": credentials.secret_access_key,
            "AWS_SESSION_TOKEN": credentials.session_token,
            "AWS_CREDENTIAL_EXPIRATION": expiration,
        }
        return "\n".join(f"export {name}={shlex.quote(value)}" for name, value in exports.items())
    body: dict[str, object] = {
        "AccessKeyId": credentials.access_key_id,
        "SecretAccessKey": credentials.secret_access_key,
        "SessionToken": credentials.session_token,
        "Expiration": expiration,
    }
    if credentials.account_id:
        body["AccountId"] = credentials.account_id
    if output == "process":
        body = {"Version": 1, **body}
    return json.dumps(body, indent=None if output == "process" else 2)


@click.group()
def aws() -> None:
    """AWS credentials from this broker's configuration."""


@aws.command("credentials")
@click.argument("account")
@click.argument("role")
@click.option("--format", "output", type=click.Choice(FORMATS), default="json", show_default=True)
@click.option("--user", default=getpass.getuser, show_default="the login name",
              help="Whose grants to use.")
@click.option("--duration", type=click.IntRange(900, 43200), help="Session duration in seconds.")
@click.pass_obj
def credentials(state: CliState, account: str, role: str, output: str, user: str,
                duration: int | None) -> None:
    """Credentials for ROLE in ACCOUNT, if USER is granted them."""
    with Broker.from_config(state.config()) as broker:
        principal = broker.enrich(Principal(user, source="cli"))
        _account, creds = broker.issue_aws(principal, account, role, AwsOptions(duration=duration))
    click.echo(format_credentials(creds, output))
