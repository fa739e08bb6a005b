"""Client commands: ``credenza login``, ``logout``, ``token`` and ``accounts``
(credenza.client).

The AWS ones are ``credenza aws ...`` (credenza.cli.aws)."""

from __future__ import annotations

import base64
import binascii
import json
import sys

import click

from credenza.client import Auth, AuthError, list_accounts


def _read_blob(blob: str) -> dict[str, str]:
    try:
        data = json.loads(base64.urlsafe_b64decode(blob.strip() + "=" * (-len(blob.strip()) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise click.UsageError("that is not an API token blob (credenza api-token prints one)") \
            from None
    if not isinstance(data, dict) or not data.get("client_id") or not data.get("client_secret"):
        raise click.UsageError("the blob has no client_id and client_secret")
    return data


@click.command()
@click.option("--url", envvar="CREDENZA_URL", help="The broker (default: from the blob).")
@click.option("--client-id", help="Log in with a client id and secret instead of a blob.")
def login(url: str | None, client_id: str | None) -> None:
    """Store credentials in ~/.credenza/token_info.json and fetch a first token."""
    interactive = sys.stdin.isatty()
    if client_id:
        secret = (click.prompt("Client secret", hide_input=True) if interactive
                  else sys.stdin.readline().strip())
        name = client_id
    else:
        if interactive:
            click.echo("Create an API token at your broker (credenza api-token ...) and paste "
                       "the login blob here.")
        data = _read_blob(click.prompt("Blob", hide_input=True) if interactive
                          else sys.stdin.readline())
        client_id, secret, name = data["client_id"], data["client_secret"], data.get("name", "")
        revoke_url = str(data.get("revoke_url", ""))
        url = url or (revoke_url.split("/v2/", 1)[0] if "/v2/" in revoke_url else None)
    auth = Auth(url=url, client_id=client_id, client_secret=secret)
    try:
        payload = auth.payload  # fetches, checks and stores the first token
    except AuthError as exc:
        raise click.ClickException(f"login failed: {exc}") from None
    click.echo(f"Welcome, {payload.get('name') or name or payload.get('sub')}!")


@click.command()
def logout() -> None:
    """Forget the stored credentials."""
    click.echo("Logged out." if Auth().logout() else "Not logged in.")


@click.command()
def token() -> None:
    """Print a valid token (refreshed when needed)."""
    click.echo(Auth().token)


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def accounts(as_json: bool) -> None:
    """The AWS accounts and roles you may use."""
    found = list_accounts()
    if as_json:
        click.echo(json.dumps(found, indent=2))
        return
    if not found:
        click.echo("No accounts.", err=True)
    for name, account in found.items():
        click.echo(f"{name:<24} {account.get('id') or '-':<12}  {', '.join(account['roles'])}")
