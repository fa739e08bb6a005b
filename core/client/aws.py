"""AWS credentials from a broker, for people (``credenza aws ...``) and programs (boto3).

Everything goes through :meth:`credenza.client.Auth.request` with the caller's JWT:

* ``GET /account?withid``: the accounts and roles the caller may use;
* ``GET /v1/container-credentials/ACCOUNT/ROLE``: credentials valid for at least 30 more
  minutes, so botocore does not refresh them again at once (it does 15 minutes ahead);
* ``GET /account/ACCOUNT/ROLE/consoleurl``: a console sign-in URL.

Account and role names are checked before they go into a URL path, so no name can become
another path.
"""

from __future__ import annotations

import json
import re
import shlex
import urllib.parse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from credenza.client.auth import Auth, get_default_auth
from credenza.client.errors import BrokerError
from credenza.models import (
    AwsCredentials,
    aws_timestamp,
    parse_aws_timestamp,
)
from credenza.names import ACCOUNT_NAME, ROLE_NAME, valid_account_name, valid_role_name
from credenza.secrets import write_private_file

if TYPE_CHECKING:
    import boto3
    import requests

FORMATS = ("json", "env", "process")
PROFILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,127}$")


def check_account(name: str) -> str:
    """``name``, if it could name an account. :raises ValueError: otherwise."""
    if not valid_account_name(name):
        raise ValueError(f"{name!r} is not a valid account name ({ACCOUNT_NAME.pattern})")
    return name


def check_role(name: str) -> str:
    """``name``, if it could name an IAM role. :raises ValueError: otherwise."""
    if not valid_role_name(name):
        raise ValueError(f"{name!r} is not a valid IAM role name ({ROLE_NAME.pattern})")
    return name


def _path(account: str, role: str, template: str) -> str:
    check_account(account)
    check_role(role)
    quote = urllib.parse.quote
    return template.format(account=quote(account, safe=""), role=quote(role, safe=""))


def list_accounts(auth: Auth | None = None) -> dict[str, dict[str, Any]]:
    """Account name -> ``{"id": ..., "roles": [...]}``: what the caller may use."""
    return _json_object((auth or get_default_auth()).request("GET", "/account?withid"),
                        "the account list")


def aws_credentials(account: str, role: str, auth: Auth | None = None) -> AwsCredentials:
    """Temporary credentials for ``role`` in ``account``.

    :raises ValueError: bad names. :raises BrokerError: refused (403, 404) or unavailable (503).
    """
    path = _path(account, role, "/v1/container-credentials/{account}/{role}")
    body = _json_object((auth or get_default_auth()).request("GET", path), "credentials")
    try:
        return AwsCredentials(access_key_id=body["AccessKeyId"],
                              secret_access_key=body["SecretAccessKey"],
                              session_token=body["Token"],
                              expiration=parse_aws_timestamp(body["Expiration"]),
                              account_id=body.get("AccountId"))
    except (KeyError, TypeError, ValueError):
        raise BrokerError(502, "the broker answered credentials without their fields") from None


def _json_object(response: requests.Response, what: str) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise BrokerError(502, f"the broker answered {what} with something that is not a JSON "
                               "object")
    return body


def console_url(account: str, role: str, auth: Auth | None = None) -> str:
    """A console sign-in URL for ``role`` in ``account`` (a secret: whoever has it is signed
    in). :raises BrokerError: refused, unavailable, or not a web URL."""
    path = _path(account, role, "/account/{account}/{role}/consoleurl")
    url = (auth or get_default_auth()).request("GET", path).text.strip()
    if urllib.parse.urlsplit(url).scheme not in ("https", "http"):
        raise BrokerError(502, "the broker answered a console URL that is not a web address")
    return url


def format_credentials(credentials: AwsCredentials, output: str) -> str:
    """``json``, ``env`` (shell-quoted exports) or ``process`` (AWS credential_process)."""
    if output == "env":
        return "\n".join(f"export {name}={shlex.quote(value)}"
                         for name, value in environment(credentials).items())
    body: dict[str, object] = {
        "AccessKeyId": credentials.access_key_id,
        "SecretAccessKey": credentials.secret_access_key,
        "SessionToken": credentials.session_token,
        "Expiration": aws_timestamp(credentials.expiration),
    }
    if credentials.account_id:
        body["AccountId"] = credentials.account_id
    if output == "process":
        body = {"Version": 1, **body}
    return json.dumps(body, indent=None if output == "process" else 2)


def environment(credentials: AwsCredentials) -> dict[str, str]:
    """The environment variables every AWS SDK reads credentials from."""
    return {
        "AWS_ACCESS_KEY_ID": credentials.access_key_id,
        "AWS_SECRET_ACCESS_KEY": credentials.secret_access_key,
        "AWS_SESSION_TOKEN": credentials.session_token,
        "AWS_CREDENTIAL_EXPIRATION": aws_timestamp(credentials.expiration),
    }


def aws_session(account: str, role: str, auth: Auth | None = None,
                region_name: str | None = None) -> boto3.Session:
    """A boto3 Session whose credentials come from the broker and refresh themselves
    (botocore asks again 15 minutes before they expire).

    :raises ValueError: bad names. :raises BrokerError: the first credentials were refused.
    """
    import boto3  # the aws extra: only this function needs it
    import botocore.credentials
    import botocore.session

    check_account(account)
    check_role(role)
    auth = auth or get_default_auth()

    def fetch() -> dict[str, str]:
        credentials = aws_credentials(account, role, auth)
        return {"access_key": credentials.access_key_id,
                "secret_key": credentials.secret_access_key,
                "token": credentials.session_token,
                "expiry_time": aws_timestamp(credentials.expiration)}

    class BrokerProvider(botocore.credentials.CredentialProvider):
        METHOD = "credenza"
        CANONICAL_NAME = "credenza"

        def load(self) -> botocore.credentials.RefreshableCredentials:
            return botocore.credentials.RefreshableCredentials.create_from_metadata(
                metadata=fetch(), refresh_using=fetch, method=self.METHOD)

    session = botocore.session.get_session()
    # First in the chain: the environment or a profile must not win over what was asked for.
    session.get_component("credential_provider").insert_before("env", BrokerProvider())
    return boto3.Session(botocore_session=session, region_name=region_name)


def write_profile(config_file: Path, profile: str, command: list[str],
                  region: str | None = None) -> None:
    """Add or replace ``[profile PROFILE]`` in an AWS config file, with ``credential_process``
    running ``command``; the other sections and comments stay as they were.

    :raises ValueError: a profile name that could break the file.
    """
    if not PROFILE_NAME.match(profile):
        raise ValueError(f"{profile!r} is not a valid profile name ({PROFILE_NAME.pattern})")
    header = "[default]" if profile == "default" else f"[profile {profile}]"
    section = [header, f"credential_process = {shlex.join(command)}"]
    if region:
        if not re.fullmatch(r"[a-z0-9-]{1,32}", region):
            raise ValueError(f"{region!r} is not an AWS region name")
        section.append(f"region = {region}")
    try:
        lines = config_file.read_text().splitlines()
    except FileNotFoundError:
        lines = []
    kept: list[str] = []
    inside = False
    for line in lines:
        stripped = line.strip()
        if stripped.startswith("["):
            inside = " ".join(stripped.split()) == header
        if not inside:
            kept.append(line)
    while kept and not kept[-1].strip():
        kept.pop()
    text = "\n".join([*kept, *([""] if kept else []), *section]) + "\n"
    write_private_file(config_file, text)
