"""Credentials out of every line otel_ml logs: user info in URLs and the values of OTLP headers.

``OTEL_EXPORTER_OTLP_ENDPOINT=http://alice:s3cr3t@collector:4318`` and
``OTEL_EXPORTER_OTLP_HEADERS=Authorization=Bearer ...`` carry secrets, and a
training log is read by many (and kept for ever). :func:`redact` is the one
place that takes them out; :func:`install` applies it to every record of
otel_ml's loggers and of the exporters' loggers (the gRPC exporter names its
endpoint with the user info in it), message and traceback alike.

What is taken out: the user info of any URL (``scheme://user:pass@`` and a
bare ``user:pass@host``), every value (and password) found in the
``OTEL_EXPORTER_OTLP_*HEADERS`` and ``*ENDPOINT`` variables wherever it
appears, and the value after ``Authorization``, ``api-key``, ``token``,
``password`` or ``secret``.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import traceback
from collections.abc import Iterable
from typing import Any, Final
from urllib.parse import unquote, urlsplit

MASK: Final = "***"
_SIGNALS: Final = ("", "TRACES_", "METRICS_", "LOGS_")
_HEADERS: Final = tuple(f"OTEL_EXPORTER_OTLP_{signal}HEADERS" for signal in _SIGNALS)
_ENDPOINTS: Final = tuple(f"OTEL_EXPORTER_OTLP_{signal}ENDPOINT" for signal in _SIGNALS)
_URL_USERINFO: Final = re.compile(r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.\-]*://)[^/?#@\s'\"<>]+@")
_BARE_USERINFO: Final = re.compile(r"(?<![\w.\-/:@])[^\s/?#@'\"<>:,=()\[\]]+:[^\s/?#@'\"<>]+@(?=[\w\[])")
_NAMED: Final = re.compile(
    r"(?P<name>authorization|proxy-authorization|x-api-key|api[-_]?key|token|password|passwd|secret)"
    r"(?P<sep>['\"]?\s*[=:]\s*['\"]?)(?P<value>(?:(?:bearer|basic|token)\s+)?[^\s,;'\"&)]+)",
    re.IGNORECASE,
)
_MIN_SECRET: Final = 4  # shorter values would mask ordinary words


def secrets(environ: dict[str, str] | os._Environ[str] | None = None) -> list[str]:
    """The secret strings the OTLP variables hold: header values, URL passwords and user names."""
    env = os.environ if environ is None else environ
    found: set[str] = set()
    for name in _HEADERS:
        for pair in env.get(name, "").split(","):
            _key, sep, value = pair.partition("=")
            if sep and value.strip():
                found.update((value.strip(), unquote(value.strip())))
    for name in _ENDPOINTS:
        try:
            parts = urlsplit(env.get(name, "").strip())
        except ValueError:
            continue
        for part in (parts.password, parts.username):
            if part:
                found.update((part, unquote(part)))
    return sorted((s for s in found if len(s) >= _MIN_SECRET), key=len, reverse=True)


def redact(text: str, known: Iterable[str] | None = None) -> str:
    """``text`` without credentials (see the module's docstring).

    Example:
        >>> redact("is the collector at http://alice:s3cr3t@10.0.0.1:4318 down?", known=[])
        'is the collector at http://***@10.0.0.1:4318 down?'
        >>> redact("Authorization=Bearer abc.def, next", known=[])
        'Authorization=***, next'
    """
    for secret in secrets() if known is None else known:
        text = text.replace(secret, MASK)
    text = _URL_USERINFO.sub(lambda m: f"{m['scheme']}{MASK}@", text)
    text = _BARE_USERINFO.sub(f"{MASK}@", text)
    return _NAMED.sub(lambda m: f"{m['name']}{m['sep']}{MASK}", text)


def _redact_record(record: logging.LogRecord) -> None:
    known = secrets()
    try:
        message = record.getMessage()
    except Exception:  # noqa: BLE001 - a bad format is the handler's to report, as without us
        return
    clean = redact(message, known)
    if clean != message:
        record.otel_ml_template = str(record.msg)  # what the repeat filter keys on (the args change per line)
        record.msg, record.args = clean, ()
    if record.exc_info and record.exc_info[0] is not None and not record.exc_text:
        text = "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
        clean = redact(text, known)
        if clean != text:
            record.exc_text = clean  # what Formatter prints instead of formatting the traceback itself


_PREFIXES: Final = ("otel_ml", "opentelemetry.exporter.", "opentelemetry.sdk.")
_installed = False
_lock = threading.Lock()


def install() -> None:
    """Redact every record of otel_ml's and the SDK's exporting loggers (idempotent).

    A log-record factory, chained to whatever factory is there: a filter on
    ``otel_ml`` would not see its child loggers' records.
    """
    global _installed
    with _lock:
        if _installed:
            return
        _installed = True
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        if record.name.startswith(_PREFIXES):
            _redact_record(record)
        return record

    logging.setLogRecordFactory(factory)
