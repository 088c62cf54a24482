"""Structured logs: one JSON object per line on stderr. At the default level (INFO) the node logs
UIDs, AE titles and states, never patient names, IDs or dates."""

from __future__ import annotations

import json
import logging
import sys
import time


class JSONFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + "Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def configure_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JSONFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("pynetdicom").setLevel(logging.WARNING)  # pynetdicom's INFO logs every C-STORE
    # every module copied, every tile encoded, every migration plugin set up when the index opens
    for noisy in ("highdicom", "openjpeg", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
