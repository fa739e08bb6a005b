"""What an account name and an IAM role name may look like (checked before either goes into a
URL path or a request), with nothing but the standard library: the client's quick path
(:mod:`credenza.entry`) checks them too."""

from __future__ import annotations

import re

ACCOUNT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
ROLE_NAME = re.compile(r"^[A-Za-z0-9+=,.@_-]{1,64}$")


def valid_account_name(name: str) -> bool:
    """Whether ``name`` could name an account of the catalogue."""
    return bool(ACCOUNT_NAME.match(name))


def valid_role_name(name: str) -> bool:
    """Whether ``name`` is an IAM role name (without a path), and not a dot segment."""
    return bool(ROLE_NAME.match(name)) and bool(name.strip("."))
