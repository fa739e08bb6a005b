"""``credenza hash-password``, ``hash-api-key`` and ``api-token``: secrets for people and
programs."""

from __future__ import annotations

import base64
import datetime as dt
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
        record, value = broker.oauth.api_tokens.create(principal, client_id, provider)
    blob = {"id": record.token_id, "client_id": client_id, "name": user,
            "revoke_url": f"{url.rstrip('/')}/v2/credenza/authenticationTokens/_/actions/revoke",
            "client_secret": value}
    click.echo(f"client_id: {client_id}")
    click.echo(f"client_secret: {value}")
    click.echo("login blob: " + base64.urlsafe_b64encode(json.dumps(blob).encode()).decode())


@click.group("api-keys")
def api_keys_group() -> None:
    """API keys kept in the token store (X-API-Key identities)."""


@api_keys_group.command("create")
@click.argument("owner")
@click.option("--name", required=True, help="What the key is for.")
@click.option("--days", type=click.IntRange(1, 3650), default=365, show_default=True)
@click.pass_obj
def api_keys_create(state: CliState, owner: str, name: str, days: int) -> None:
    """Create an API key acting as OWNER; the key is printed once."""
    with Broker.from_config(state.config()) as broker:
        record, value = broker.api_keys.create(broker.enrich(Principal(owner, source="cli")),
                                               name, dt.timedelta(days=days))
    click.echo(f"{record.token_id}  {name}  expires {record.expires_at:%Y-%m-%d}", err=True)
    click.echo(value)


@api_keys_group.command("list")
@click.argument("owner")
@click.pass_obj
def api_keys_list(state: CliState, owner: str) -> None:
    """OWNER's API keys (never the keys themselves)."""
    with Broker.from_config(state.config()) as broker:
        records = broker.api_keys.list(Principal(owner, source="cli"), owner)
    for record in records:
        status = "revoked" if record.revoked else ("expired" if record.expired() else "active")
        click.echo(f"{record.token_id}  {record.claims.get('name')}  {status}  "
                   f"expires {record.expires_at:%Y-%m-%d}")


@api_keys_group.command("revoke")
@click.argument("key_id")
@click.pass_obj
def api_keys_revoke(state: CliState, key_id: str) -> None:
    """Revoke the API key KEY_ID (as its owner: this command is local administration)."""
    with Broker.from_config(state.config()) as broker:
        record = broker.tokens.store.get(key_id)
        owner = record.consumer_id if record else "-"
        broker.api_keys.revoke(Principal(owner, source="cli"), key_id)
    click.echo(f"revoked {key_id}")


@click.command("hash-api-key")
@click.argument("key_id")
@click.option("--client", "for_client", is_flag=True,
              help="KEY_ID is an OAuth client: print an oauth_clients: entry (its secret).")
def hash_api_key_command(key_id: str, for_client: bool) -> None:
    """Make a new API key KEY_ID.SECRET (shown once) and the entry to put in a static file:
    under api_keys:, or with --client under oauth_clients: (the key is the client secret)."""
    if not API_KEY_ID.match(key_id):
        raise click.BadParameter(f"must match {API_KEY_ID.pattern}", param_hint="KEY_ID")
    key, digest = new_api_key(key_id)
    what = "client secret" if for_client else "API key"
    click.echo(f"{what} (shown once, give it to its owner): {key}", err=True)
    table = "oauth_clients" if for_client else "api_keys"
    click.echo(f"{table}:\n  {key_id}:\n    sha256: \"{digest}\"")
