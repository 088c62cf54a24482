"""The audit log: one JSON line per association, refusal and delivery, fsync'ed.

It answers an information-governance question ("who sent us what, and where did the results go?")
without PHI: peers by AE title and address, studies by Study Instance UID only (no names, IDs or dates).
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path


class AuditLog:
    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def write(self, event: str, **details: object) -> None:
        line = json.dumps({"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "event": event, **details})
        with self._lock, open(self.path, "a") as handle:
            handle.write(line + "\n")
            handle.flush()
            os.fsync(handle.fileno())

    def events(self) -> list[dict]:
        if not self.path.is_file():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]
