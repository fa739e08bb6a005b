"""``credenza hash-password``, ``hash-api-key`` and ``api-token``: secrets for people and
programs."""

from __future__ import annotations

import base64
import json
import sys
from typing import TYPE_CHECKING

import click

from credenza.broker import Broker
from credenza.models import Principal
from credenza.secrets import API_KEY_ID, hash_password, new_api_key

if TYPE_CHECKING:
    from credenza.cli import CliState


@click.command("hash-password")
def hash_password_command() -> None:
    """Hash a password (prompted, or read from standard input) for a static user."""
    if sys.stdin.isatty():
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    else:
        password = sys.stdin.readline().rstrip("\n")
    if not password:
        raise click.UsageError("the password is empty")
    click.echo(hash_password(password))


@click.command("api-token")
@click.argument("user")
@click.option("--client", "client_id", required=True, help="The public client it is for.")
@click.option("--provider", required=True, help="The credential provider of its JWTs.")
@click.option("--url", default="http://127.0.0.1:8080", show_default=True,
              help="Where clients reach this broker (goes into the login blob).")
@click.pass_obj
def api_token_command(state: CliState, user: str, client_id: str, provider: str,
                      url: str) -> None:
    """Create a long-lived API token for USER and a public client (shown once), and the blob
    `credenza login` (and Descartes Labs' `auth login`) accept."""
    with Broker.from_config(state.config()) as broker:
        principal = broker.enrich(Principal(user, source="cli"))
        record, value = broker.create_api_token(principal, client_id, provider)
    blob = {"id": record.token_id, "client_id": client_id, "name": user,
            "revoke_url": f"{url.rstrip('/')}/v2/credenza/authenticationTokens/_/actions/revoke",
            "client_secret": value}
    click.echo(f"client_id: {client_id}")
    click.echo(f"client_secret: {value}")
    click.echo("login blob: " + base64.urlsafe_b64encode(json.dumps(blob).encode()).decode())


@click.command("hash-api-key")
@click.argument("key_id")
def hash_api_key_command(key_id: str) -> None:
    """Make a new API key KEY_ID.SECRET (shown once) and the line to put in a static file."""
    if not API_KEY_ID.match(key_id):
        raise click.BadParameter(f"must match {API_KEY_ID.pattern}", param_hint="KEY_ID")
    key, digest = new_api_key(key_id)
    click.echo(f"API key (shown once, give it to its owner): {key}", err=True)
    click.echo(f"api_keys:\n  {key_id}:\n    sha256: \"{digest}\"")
