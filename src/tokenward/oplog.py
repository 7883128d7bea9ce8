"""The gateway's own operational log (not the decision log): text or JSON lines.

``tokenward serve --log-format json`` prints one JSON object per line, for log shippers:
``{"ts", "level", "logger", "message"}`` plus ``exception`` when there is one and the
fields of the server's access log (``--access-log``). A dozen lines of our own rather than
a dependency: the formatter is all that is needed and orjson is already here.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import orjson

__all__ = ["JsonFormatter", "logging_config"]

_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
        }
        if isinstance(record.args, dict) and record.name == "granian.access":
            out["message"] = "request"
            out.update(record.args)  # the access log's fields (addr, method, path, status, dt_ms...)
        else:
            out["message"] = record.getMessage()
        for key, value in record.__dict__.items():  # logging's ``extra=``
            if key not in _STANDARD and key not in out:
                out[key] = value
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(out, default=str).decode()


def logging_config(fmt: str, level: str) -> dict[str, Any]:
    """A ``logging.config.dictConfig`` for the server's processes: its own loggers and
    tokenward's, both in ``fmt`` (``text`` or ``json``), on stderr."""
    if fmt not in ("text", "json"):
        raise ValueError("log format must be text or json")
    formatter: dict[str, Any] = (
        {"()": "tokenward.oplog.JsonFormatter"}
        if fmt == "json"
        else {"()": "logging.Formatter", "fmt": "%(asctime)s [%(levelname)s] %(name)s: %(message)s"}
    )
    handler = {"formatter": "main", "class": "logging.StreamHandler", "stream": "ext://sys.stderr"}
    level = level.upper()
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"main": formatter, "generic": formatter, "access": formatter},
        "handlers": {"console": handler, "access": handler},
        "loggers": {
            "_granian": {"handlers": ["console"], "level": level, "propagate": False},
            "granian.access": {"handlers": ["access"], "level": "INFO", "propagate": False},
            "tokenward": {"handlers": ["console"], "level": level, "propagate": False},
            "uvicorn": {"handlers": ["console"], "level": level, "propagate": False},
            "uvicorn.access": {"handlers": ["access"], "level": "INFO", "propagate": False},
        },
    }
