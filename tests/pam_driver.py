"""Runs the real cloud-idaas-pam-client in its own process, one call per stdin line.

The client's credential factory is process-global, so each identity (an application, an admin)
gets a process of its own. Input: ``{"method": ..., "kwargs": {...}}`` per line; output: one JSON
line per call, ``{"result": ...}`` or ``{"error": class name, "message": ...}``.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from cloud_idaas.core import IDaaSCredentialProviderFactory
from cloud_idaas.pam_client import IDaaSPamClient


def plain(value: Any) -> Any:
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, (list, tuple)):
        return [plain(item) for item in value]
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    return {key.lstrip("_"): plain(item) for key, item in vars(value).items()}


def main() -> None:
    # As the client's own documentation starts it: everything from the config file.
    IDaaSCredentialProviderFactory.init()
    client = IDaaSPamClient()
    for line in sys.stdin:
        call = json.loads(line)
        try:
            if call["method"] == "token_exchange":  # the client's own RFC 8693 provider
                factory = IDaaSCredentialProviderFactory
                target: Any = factory.get_idaas_token_exchange_credential_provider().get_credential
            else:
                target = getattr(client, call["method"])
            result = {"result": plain(target(**call["kwargs"]))}
        except Exception as exc:  # reported to the test, which decides
            result = {"error": type(exc).__name__, "message": str(exc)}
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
