"""``credenza hash-password`` and ``credenza hash-api-key``: secrets for the static files."""

from __future__ import annotations

import sys

import click

from credenza.secrets import API_KEY_ID, hash_password, new_api_key


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


@click.command("hash-api-key")
@click.argument("key_id")
def hash_api_key_command(key_id: str) -> None:
    """Make a new API key KEY_ID.SECRET (shown once) and the line to put in a static file."""
    if not API_KEY_ID.match(key_id):
        raise click.BadParameter(f"must match {API_KEY_ID.pattern}", param_hint="KEY_ID")
    key, digest = new_api_key(key_id)
    click.echo(f"API key (shown once, give it to its owner): {key}", err=True)
    click.echo(f"api_keys:\n  {key_id}:\n    sha256: \"{digest}\"")
