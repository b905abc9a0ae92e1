"""Which model a predictor serves: ``ml.model.name`` and ``ml.model.version``.

Models are usually exported under generic file names (``inference.json``,
``model.pdmodel``), so the file's stem alone would give two services' models
the same name. The name comes, in this order, from: an explicit
:func:`otel_ml.paddle.set_model` on the predictor or on its ``Config``; the
``model_name`` option (``OTEL_ML_MODEL_NAME``); the Triton-style layout
``<name>/<version>/<file>`` (a version directory: ``3``, ``v2``, ``1.2.0``); the file's stem unless it is generic; the
directory's name.

What is known about a live predictor is kept here, in a weak map that
outlives any one instrumentation: after ``uninstrument()`` and
``instrument()`` a predictor keeps its name and is not warmed up again.
"""

from __future__ import annotations

import os
import re
import weakref
from dataclasses import dataclass, field
from typing import Any, Final

from otel_ml._core.text import valid_label

UNKNOWN_MODEL: Final = "unknown"
GENERIC_STEMS: Final = frozenset({"inference", "model", "__model__", "infer", "saved_model", "program", "main"})
"""File stems that say nothing about the model: the directory names it instead."""
_VERSION: Final = re.compile(r"[vV]?\d+(?:\.\d+)*(?:[-+][0-9A-Za-z.]+)?")
"""A directory that names a version: ``3``, ``v2``, ``1.2.0``, ``2.0.1-rc1``."""
MAX_NAME_LENGTH: Final = 128
MAX_VERSION_LENGTH: Final = 64


@dataclass
class Identity:
    """A predictor's model name and version, engine flags, and the runs it made under earlier instrumentations."""

    name: str
    version: str | None = None
    engine: dict[str, bool] = field(default_factory=dict)
    runs: int = 0
    fallback: bool = False
    """Named from the options only (nothing known of its model): the next instrumentation's options apply."""
    batch_input: int | None = -1
    """Which input holds the batch (see ``otel_ml.paddle._registry.batch_input_of``); -1: not looked at yet."""


_known: weakref.WeakKeyDictionary[Any, Identity] = weakref.WeakKeyDictionary()
"""Predictors and ``Config`` objects -> what is known about them (both take weak references)."""


def known(target: Any) -> Identity | None:
    """What is recorded for a predictor or a ``Config``, or None."""
    try:
        return _known.get(target)
    except TypeError:  # an object that takes no weak reference was never recorded
        return None


def remember(target: Any, identity: Identity) -> None:
    """Keep ``identity`` for as long as ``target`` lives."""
    _known[target] = identity


def set_identity(target: Any, name: str, version: str | int | None) -> Identity:
    """Validate and record an explicit name and version for a predictor or a ``Config``.

    Raises:
        ValueError: an empty or over-long name or version.
        TypeError: ``target`` cannot be tracked (it takes no weak reference).
    """
    if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME_LENGTH:
        raise ValueError(f"model name {name!r} is invalid: expected a non-empty string of at most {MAX_NAME_LENGTH}")
    if version is not None:
        if isinstance(version, bool) or not isinstance(version, (str, int)):
            raise ValueError(f"model version {version!r} is invalid: expected a string, a whole number or None")
        version = str(version)
        if not version.strip() or len(version) > MAX_VERSION_LENGTH:
            raise ValueError(
                f"model version {version!r} is invalid: expected a non-empty string of at most {MAX_VERSION_LENGTH}"
            )
    previous = known(target)
    identity = Identity(name, version, previous.engine if previous else {}, previous.runs if previous else 0)
    if previous is not None:
        identity.batch_input = previous.batch_input
    try:
        _known[target] = identity
    except TypeError:
        raise TypeError(
            f"cannot name a {type(target).__name__}: expected a paddle.inference.Predictor or Config"
        ) from None
    return identity


def identity_of_path(path: str, is_file: bool) -> tuple[str, str | None]:
    """Name and version from a model path.

    Example:
        >>> identity_of_path("/models/resnet/2/model.json", is_file=True)
        ('resnet', '2')
        >>> identity_of_path("/srv/ocr_det/inference.json", is_file=True)
        ('ocr_det', None)
        >>> identity_of_path("/srv/iris.json", is_file=True)
        ('iris', None)
        >>> identity_of_path("/models/resnet/3", is_file=False)
        ('resnet', '3')
        >>> identity_of_path("/srv/ocr_det/v2/inference.json", is_file=True)
        ('ocr_det', 'v2')
        >>> identity_of_path("/srv/ocr_det/1.2.0/inference.json", is_file=True)
        ('ocr_det', '1.2.0')
        >>> identity_of_path(os.fsdecode(b"/srv/d\\xe9tection/2/inference.json"), is_file=True)  # undecodable
        ('d\\\\xe9tection', '2')
    """
    path = valid_label(os.path.normpath(path))  # a directory name is bytes: a label must be valid UTF-8
    directory = os.path.dirname(path) if is_file else path
    stem = os.path.splitext(os.path.basename(path))[0] if is_file else ""
    parent = os.path.basename(directory)
    grandparent = os.path.basename(os.path.dirname(directory))
    named = grandparent and grandparent not in (".", os.sep)
    if named and _VERSION.fullmatch(parent) and len(parent) <= MAX_VERSION_LENGTH:
        return grandparent[:MAX_NAME_LENGTH], parent
    if stem and stem.lower() not in GENERIC_STEMS:
        return stem[:MAX_NAME_LENGTH], None
    if parent and parent not in (".", os.sep):
        return parent[:MAX_NAME_LENGTH], None
    return (stem or UNKNOWN_MODEL)[:MAX_NAME_LENGTH], None


def identity_of_config(config: Any) -> tuple[str, str | None]:
    """Name and version from a ``Config``'s model file or directory; ``unknown`` for a model from memory."""
    for getter, is_file in (("prog_file", True), ("model_dir", False)):
        try:
            path = getattr(config, getter)()
        except Exception:  # noqa: BLE001 - a config without that getter
            continue
        if path:
            return identity_of_path(str(path), is_file)
    return UNKNOWN_MODEL, None
