"""Input checks of the example service: every bad request gets a 4xx naming what was wrong.

Kept apart from the service itself so that each reads on one screen; see
``paddle_service.py`` for the endpoints. The body is read here rather than by
Flask: a chunked body has no length to check up front, and must get 413 past
the limit, not a truncated read.
"""

from __future__ import annotations

import json
from typing import Any

from flask import request

FEATURES = 4
CLASSES = 3
MAX_ROWS = 64
MAX_BODY = 64 * 1024
FLOAT32_MAX = 3.4028234663852886e38
USAGE = f'send {{"instances": [[{FEATURES} numbers], ...]}} with 1 to {MAX_ROWS} rows'


class BadRequest(ValueError):
    """A request the service refuses; its message (and status) go back to the client."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def read_json(usage: str) -> Any:
    """The request's JSON body, at most ``MAX_BODY`` bytes; raise :class:`BadRequest` naming what is wrong.

    The body is read here rather than by Flask: a chunked body has no length
    to check up front, and must get 413 past the limit, not a truncated read.
    """
    if request.mimetype != "application/json":
        raise BadRequest(f"Content-Type is {request.mimetype or 'missing'!r}; expected application/json", 415)
    too_large = BadRequest(f"body over {MAX_BODY} bytes: {usage}", 413)
    if (request.content_length or 0) > MAX_BODY:
        raise too_large
    body = request.stream.read(MAX_BODY + 1)
    if len(body) > MAX_BODY:
        raise too_large
    if not body.strip():
        raise BadRequest(f"empty body: {usage}")
    try:
        return json.loads(body)
    except RecursionError:
        raise BadRequest(f"body nests too deeply: {usage}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadRequest(f"body is not valid JSON ({exc}): {usage}") from None
    except ValueError as exc:  # an integer of more than 4300 digits; the rest of the message is server advice
        raise BadRequest(f"body has a number that cannot be read ({str(exc).split(':')[0]}): {usage}") from None


def _is_float32(value: Any) -> bool:
    """A JSON number float32 can hold (ints compare exactly with floats: no overflow on huge ones)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return -FLOAT32_MAX <= value <= FLOAT32_MAX


def parse_instances(payload: Any) -> list[list[float]]:
    """Validate a ``/predict`` payload; raise :class:`BadRequest` naming what is wrong."""
    if not isinstance(payload, dict) or "instances" not in payload:
        raise BadRequest(f'expected a JSON object with an "instances" key: {USAGE}')
    rows = payload["instances"]
    if not isinstance(rows, list) or not 1 <= len(rows) <= MAX_ROWS:
        raise BadRequest(f'"instances" must be a list of 1 to {MAX_ROWS} rows: {USAGE}')
    for i, row in enumerate(rows):
        if not isinstance(row, list) or len(row) != FEATURES:
            got = f"{len(row)} values" if isinstance(row, list) else type(row).__name__
            raise BadRequest(f"instances[{i}] has {got}; expected a list of {FEATURES} numbers")
        for j, value in enumerate(row):
            if not _is_float32(value):  # NaN fails both comparisons; bool is an int, but no feature
                # str() of a huge int, not json.dumps: that has a 4300-digit limit of its own.
                shown = str(value) if type(value) is int else json.dumps(value)
                shown = shown if len(shown) <= 40 else shown[:37] + "..."
                limit = f"+/-{FLOAT32_MAX:.7g}"
                raise BadRequest(f"instances[{i}][{j}] is {shown}; expected a finite number within {limit}")
    return rows


def parse_feedback(payload: Any) -> tuple[str, list[str] | None, list[int]]:
    """Validate a ``/feedback`` payload: ``{"feedback": [token per row] or "request_id": str, "labels": [...]}``."""
    usage = f'send {{"feedback": [<tokens from /predict>], "labels": [class 0 to {CLASSES - 1} per row]}}'
    tokens = payload.get("feedback") if isinstance(payload, dict) else None
    if tokens is not None and (
        not isinstance(tokens, list) or not all(isinstance(t, str) and len(t) <= 64 for t in tokens)
    ):
        raise BadRequest(f'"feedback" must be the list of tokens /predict answered: {usage}')
    if not isinstance(payload, dict) or (tokens is None and not isinstance(payload.get("request_id"), str)):
        raise BadRequest(f'expected a JSON object with a "feedback" list (or a "request_id" string): {usage}')
    labels = payload.get("labels")
    if not isinstance(labels, list) or not 1 <= len(labels) <= MAX_ROWS:
        raise BadRequest(f'"labels" must be a list of 1 to {MAX_ROWS} classes: {usage}')
    if tokens is not None and len(tokens) != len(labels):
        raise BadRequest(f'"feedback" has {len(tokens)} tokens and "labels" {len(labels)} classes: one per row')
    for i, label in enumerate(labels):
        if isinstance(label, bool) or not isinstance(label, int) or not 0 <= label < CLASSES:
            raise BadRequest(f"labels[{i}] is {json.dumps(label)[:40]}; expected a class 0 to {CLASSES - 1}")
    return str(payload.get("request_id", "")), tokens, labels
