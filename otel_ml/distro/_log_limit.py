"""One warning rather than a flood when the collector is down.

The SDK's OTLP exporters log one line per failed export attempt: a collector
outage of an hour at a 10 s export interval would be hundreds of lines in the
training log. This filter lets the first record of each kind through, then
suppresses repeats for ``interval`` seconds and reports how many it dropped
with the next one it lets through.
"""

from __future__ import annotations

import logging
import threading
import time

from otel_ml.distro import _redact
from otel_ml.distro._sdk_internals import EXPORT_LOGGERS


class RepeatFilter(logging.Filter):
    """Passes the first record per (logger, level, message template) every ``interval`` seconds."""

    def __init__(self, interval: float = 300.0) -> None:
        super().__init__("otel_ml.repeat")
        self.interval = interval
        self._last: dict[tuple[str, int, str], tuple[float, int]] = {}
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, record.levelno, str(getattr(record, "otel_ml_template", record.msg)))
        now = time.monotonic()
        with self._lock:
            last, dropped = self._last.get(key, (-self.interval - 1.0, 0))
            if now - last < self.interval:
                self._last[key] = (last, dropped + 1)
                return False
            self._last[key] = (now, 0)
        if dropped:
            record.msg = f"{record.msg} ({dropped} similar messages suppressed in the last {self.interval:.0f} s)"
        return True


_installed = False
_lock = threading.Lock()


def limit_export_logs(interval: float = 300.0) -> None:
    """Install one :class:`RepeatFilter` on the export loggers, and credential redaction (idempotent)."""
    global _installed
    _redact.install()
    with _lock:
        if _installed:
            return
        _installed = True
    repeat = RepeatFilter(interval)
    for name in EXPORT_LOGGERS:
        logging.getLogger(name).addFilter(repeat)
