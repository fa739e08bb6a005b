"""Keep third-party debug logging from writing credentials.

At DEBUG, botocore logs STS response bodies (secret keys, session tokens) and what it signs, and
urllib3 logs request URLs (the sign-in token request carries credentials in its query). A broker
cannot let any log level do that: credenza drops the DEBUG records of exactly these loggers,
whatever level the application sets. Their INFO and WARNING records still pass.
"""

from __future__ import annotations

import logging

LEAKY_LOGGERS = (
    "botocore.parsers",
    "botocore.endpoint",
    "botocore.auth",
    "botocore.awsrequest",
    "urllib3.connectionpool",
)


class DropDebug(logging.Filter):
    """Passes records above DEBUG only."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno > logging.DEBUG


def drop_credential_debug_logs() -> None:
    """Install :class:`DropDebug` on every leaky logger (once; calling again changes nothing)."""
    for name in LEAKY_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(existing, DropDebug) for existing in logger.filters):
            logger.addFilter(DropDebug())
