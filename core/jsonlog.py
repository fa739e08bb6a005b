"""The server's logs: text, or (``[credenza] log_format = "json"``) one
JSON object per line carrying the id of the request it belongs to (the ``X-Request-Id`` answered),
the access log included.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from typing import Any

from credenza import requestctx

TEXT_FORMAT = "%(asctime)s [%(process)d] [%(levelname)s] %(name)s: %(message)s"
# gunicorn passes the access log's atoms as the record's arguments, the response's
# X-Request-Id among them: the request has ended by then, so it is read from there.
_ACCESS_REQUEST_ID = "{x-request-id}o"


class JsonFormatter(logging.Formatter):
    """``{"time", "level", "logger", "process", "request_id", "message"[, "exception"]}``."""

    def format(self, record: logging.LogRecord) -> str:
        origin = requestctx.current()
        request_id = origin.request_id if origin else getattr(record, "request_id", None)
        if request_id is None and isinstance(record.args, dict):
            request_id = record.args.get(_ACCESS_REQUEST_ID) or None
        entry: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(
                timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname, "logger": record.name, "process": record.process,
            "request_id": request_id if request_id != "-" else None,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, separators=(",", ":"))


def configure(level: str, log_format: str) -> None:
    """Set up the root logger of this process (standard error) in ``log_format``."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if log_format == "json"
                         else logging.Formatter(TEXT_FORMAT))
    logging.basicConfig(level=level, handlers=[handler], force=True)


def server_logconfig(level: str, log_format: str, error_loggers: tuple[str, ...],
                     access_loggers: tuple[str, ...]) -> dict[str, Any]:
    """A server's ``logging.config`` dictionary in ``log_format``: its own lines
    (``error_loggers``) and the app's on standard error, the access log (``access_loggers``, at
    INFO whatever ``level`` says) on standard output, each line once."""
    formatter = ({"()": f"{__name__}.JsonFormatter"} if log_format == "json"
                 else {"format": TEXT_FORMAT})
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"credenza": formatter},
        "handlers": {
            "stderr": {"class": "logging.StreamHandler", "formatter": "credenza",
                       "stream": "ext://sys.stderr"},
            "stdout": {"class": "logging.StreamHandler", "formatter": "credenza",
                       "stream": "ext://sys.stdout"},
        },
        "root": {"level": level, "handlers": ["stderr"]},
        "loggers": {
            **{name: {"level": level, "handlers": ["stderr"], "propagate": False}
               for name in error_loggers},
            **{name: {"level": "INFO", "handlers": ["stdout"], "propagate": False}
               for name in access_loggers},
        },
    }
