"""Logging: JSON lines in production, readable lines in the embedded default.

Every record may carry ``msg_id`` (pass ``extra={"msg_id": ...}``) so that one
message can be followed from the socket through the bus to its delivery.
"""

from __future__ import annotations

import json
import logging
import sys
import time

from imchat.config import Settings

TRACE_FIELDS = ("msg_id", "conversation_id", "user_id", "gateway_id", "task")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in TRACE_FIELDS:
            if hasattr(record, name):
                line[name] = getattr(record, name)
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        trace = " ".join(f"{n}={getattr(record, n)}" for n in TRACE_FIELDS if hasattr(record, n))
        return f"{text} [{trace}]" if trace else text


def configure(settings: Settings) -> None:
    root = logging.getLogger("imchat")
    if getattr(root, "_imchat_configured", None) == settings.effective_log_format:
        return
    handler = logging.StreamHandler(sys.stderr)
    json_logs = settings.effective_log_format == "json"
    handler.setFormatter(JsonFormatter() if json_logs else TextFormatter())
    root.handlers = [handler]
    root.setLevel(settings.log_level.upper())
    root.propagate = False
    root._imchat_configured = settings.effective_log_format  # type: ignore[attr-defined]
