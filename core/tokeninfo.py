"""The client's token_info file and the JWT cached in it, readable with nothing but the standard
library: :mod:`credenza.client.auth` keeps the file, and :mod:`credenza.entry` answers a warm
``credential_process`` call from it without loading the client.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import time

DEFAULT_PATH = "~/.credenza/token_info.json"
#: a cached JWT is used until this many seconds before it expires
LEEWAY = 500


def configured_path() -> str:
    """``$CREDENZA_TOKEN_INFO_PATH``, else ``~/.credenza/token_info.json`` (a string: pathlib
    alone would double the quick path's imports)."""
    return os.path.expanduser(os.environ.get("CREDENZA_TOKEN_INFO_PATH") or DEFAULT_PATH)


def read(path: str | os.PathLike[str] | None) -> dict[str, object]:
    """The file's JSON object; empty when there is none (or it is not one)."""
    if path is None:
        return {}
    try:
        with open(path, encoding="utf-8") as file:
            data = json.load(file)
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def claims(token: str) -> dict[str, object] | None:
    """A JWT's payload, unverified (the client only reads what the broker wrote for others)."""
    try:
        segment = token.split(".")[1]
        payload = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    except (IndexError, ValueError, binascii.Error):
        return None
    return payload if isinstance(payload, dict) else None


def usable(token: str | None, client_id: str | None, margin: int) -> bool:
    """Whether ``token`` is a JWT for ``client_id`` (when given) valid ``margin`` more
    seconds."""
    payload = claims(token) if token else None
    if payload is None:
        return False
    if client_id and payload.get("aud") != client_id:
        return False
    try:
        return float(payload.get("exp", 0)) - margin > time.time()
    except (TypeError, ValueError):
        return False
