"""Run names and phases: what TensorBoard calls a run, as ``ml.run.name`` and ``ml.phase``."""

from __future__ import annotations

import os
import re

from otel_ml._core import semconv as sc
from otel_ml._core.text import valid_label

# A word that names a phase (lower case) -> the phase: a run's last path part (Keras writes
# <log_dir>/train and <log_dir>/validation; TensorBoard's get-started guide .../train and
# .../test) or one part of a tag (train/loss, PyTorch's Loss/test).
PHASE_WORDS = {
    "train": sc.PHASE_TRAIN,
    "training": sc.PHASE_TRAIN,
    "validation": sc.PHASE_VALIDATION,
    "val": sc.PHASE_VALIDATION,
    "valid": sc.PHASE_VALIDATION,
    "eval": sc.PHASE_VALIDATION,
    "test": sc.PHASE_TEST,
}


class RunNamer:
    """Turns a logdir into ``ml.run.name``: relative to ``root``, then ``pattern``.

    Args:
        root: The directory runs are named relative to; default the working
            directory. A logdir outside it keeps its absolute path.
        pattern: Optional regex searched in the relative name (``/``
            separators); its first group, or the whole match, is the name. A
            match whose group is empty or took no part keeps the relative name.

    Example:
        >>> RunNamer("/logs", re.compile("fit/([^/]+)")).name("/logs/fit/exp_lr_0.01/20241015-143000")
        'exp_lr_0.01'
        >>> RunNamer("/logs", re.compile("(nomatch)?")).name("/logs/fit")
        'fit'
    """

    def __init__(self, root: str | None = None, pattern: re.Pattern[str] | None = None) -> None:
        self._root = os.path.abspath(root or os.getcwd())
        self._pattern = pattern
        self._cache: dict[str, str] = {}

    def name(self, logdir: str) -> str:
        """The run name of ``logdir`` (cached: logdirs do not change)."""
        cached = self._cache.get(logdir)
        if cached is not None:
            return cached
        if "://" in logdir:  # ram://, gs://, s3://: the URL, as TensorBoard shows it
            relative = logdir.rstrip("/")
        else:
            full = os.path.abspath(logdir)
            relative = os.path.relpath(full, self._root)
            if relative.startswith(os.pardir):
                relative = full
            relative = relative.replace(os.sep, "/")
        if self._pattern is not None:
            match = self._pattern.search(relative)
            if match is not None:
                picked = match.group(1) if match.re.groups else match.group(0)
                if picked:  # an optional group that matched nothing must not erase the name
                    relative = picked
        relative = valid_label(relative)
        self._cache[logdir] = relative
        return relative


def run_phase(run: str) -> str:
    """``ml.phase`` of the tags of ``run`` that name no phase themselves: ``unknown`` unless the run's path does.

    Nothing is guessed: the hparams tutorial's ``logs/hparam_tuning/run-0``
    holds a test accuracy, which is not a training one.

    Example:
        >>> run_phase("logs/fit/validation"), run_phase("logs/Test"), run_phase("logs/train")
        ('validation', 'test', 'train')
        >>> run_phase("logs/hparam_tuning/run-0")
        'unknown'
    """
    last = run.rstrip("/").rsplit("/", 1)[-1].lower()
    return PHASE_WORDS.get(last, sc.PHASE_UNKNOWN)
