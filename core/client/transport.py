"""Requests to a broker: retries with randomized exponential backoff, and readable refusals.

429 and 5xx answers and connection failures are retried; ``Retry-After`` (seconds) is honoured,
up to a minute. Everything else is the broker's answer and is returned at once.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import requests

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
MAX_RETRY_AFTER = 60.0


def send(session: requests.Session, method: str, url: str, *, retries: int,
         sleep: Callable[[float], None], **kwargs: Any) -> requests.Response:
    """The first answer that is not worth retrying, or the last one.

    :raises requests.RequestException: when the last attempt got no answer at all.
    """
    attempt = 0
    while True:
        try:
            response = session.request(method, url, timeout=30, **kwargs)
        except requests.RequestException:
            if attempt >= retries:
                raise
            delay = _backoff(attempt)
        else:
            if attempt >= retries or response.status_code not in RETRY_STATUSES:
                return response
            retry_after = response.headers.get("Retry-After", "")
            delay = (min(float(retry_after), MAX_RETRY_AFTER) if retry_after.isdigit()
                     else _backoff(attempt))
        sleep(delay)
        attempt += 1


def _backoff(attempt: int) -> float:
    return min(10.0, 0.5 * 2 ** attempt) * (0.5 + random.random() / 2)  # noqa: S311


def reason(response: requests.Response) -> str:
    """What the broker said was wrong: a problem's ``detail``, an OAuth error's description."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    if not isinstance(body, dict):
        return str(body)[:200]
    return str(body.get("error_description") or body.get("detail") or body)[:200]
