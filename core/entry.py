"""The ``credenza`` command's entry point (and ``python -m credenza``'s).

An AWS SDK runs ``credenza aws creds ACCOUNT ROLE --format process`` each time it needs
credentials, so that call's start-up is paid again and again. When the client's JWT in the
token_info file is still good and nothing in the environment changes the client's behaviour,
this module answers it with the standard library alone: one GET of
``/v1/container-credentials/ACCOUNT/ROLE``, printed as credential_process JSON. Everything else,
including any answer but a complete 200, goes to the full command line (:mod:`credenza.cli`),
which retries, refreshes the JWT and explains refusals.
"""

from __future__ import annotations

import json
import os
import sys
import urllib.parse
from collections.abc import Sequence

from credenza import tokeninfo
from credenza.names import valid_account_name, valid_role_name

#: variables that make the full client behave differently (credentials, proxies, retries)
_DEFER_TO_CLIENT = ("CREDENZA_TOKEN", "CREDENZA_CLIENT_ID", "CREDENZA_CLIENT_SECRET",
                    "CREDENZA_REFRESH_TOKEN", "CREDENZA_CONFIG")
_PROXIES = ("http_proxy", "https_proxy", "all_proxy")
_FIELDS = ("AccessKeyId", "SecretAccessKey", "Token", "Expiration")


def main() -> None:
    """Answer a warm credential_process call at once, or run the full command line."""
    if not quick_credential_process(sys.argv[1:]):
        from credenza.cli import main as full

        full()


def quick_credential_process(args: Sequence[str]) -> bool:
    """Print credential_process JSON for ``aws creds ACCOUNT ROLE --format process`` and
    return True, when that can be done without the client; otherwise False (nothing printed)."""
    if len(args) != 6 or list(args[:2]) != ["aws", "creds"] or list(args[4:]) != [
            "--format", "process"]:
        return False
    account, role = args[2], args[3]
    if not (valid_account_name(account) and valid_role_name(role)) or any(
            os.environ.get(name) for name in _DEFER_TO_CLIENT) or any(
            os.environ.get(name) or os.environ.get(name.upper()) for name in _PROXIES):
        return False
    info = tokeninfo.read(tokeninfo.configured_path())
    token, client_id, url = info.get("jwt_token"), info.get("client_id"), info.get("url")
    if not isinstance(token, str) or not tokeninfo.usable(
            token, client_id if isinstance(client_id, str) else None, tokeninfo.LEEWAY):
        return False
    url = urllib.parse.urlsplit(os.environ.get("CREDENZA_URL") or str(url or "")
                                or "http://127.0.0.1:8080")
    quote = urllib.parse.quote
    body = _get(url, f"/v1/container-credentials/{quote(account, safe='')}/"
                     f"{quote(role, safe='')}", token)
    if body is None:
        return False
    answer = {"Version": 1, "AccessKeyId": body["AccessKeyId"],
              "SecretAccessKey": body["SecretAccessKey"], "SessionToken": body["Token"],
              "Expiration": body["Expiration"],
              **({"AccountId": body["AccountId"]} if body.get("AccountId") else {})}
    sys.stdout.write(json.dumps(answer) + "\n")
    return True


def _get(url: urllib.parse.SplitResult, path: str, token: str) -> dict[str, str] | None:
    """The JSON object of a 200 answer with every credential field, else None."""
    import http.client

    if url.scheme == "https":
        import ssl

        # the trust of the full client (requests): its CA bundle variables, else certifi's
        cafile = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
        if not cafile:
            import certifi

            cafile = certifi.where()
        connection: http.client.HTTPConnection = http.client.HTTPSConnection(
            url.hostname or "", url.port, timeout=30,
            context=ssl.create_default_context(cafile=cafile))
    elif url.scheme == "http":
        connection = http.client.HTTPConnection(url.hostname or "", url.port, timeout=30)
    else:
        return None
    try:
        connection.request("GET", url.path.rstrip("/") + path, headers={
            "Authorization": f"Bearer {token}", "Accept": "application/json"})
        response = connection.getresponse()
        if response.status != 200:
            return None
        body = json.loads(response.read())
    except (OSError, ValueError, http.client.HTTPException):
        return None
    finally:
        connection.close()
    if not isinstance(body, dict) or not all(isinstance(body.get(f), str) for f in _FIELDS):
        return None
    return body
