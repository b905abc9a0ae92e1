"""Per-instrument series limits for the providers otel_ml builds, derived from otel_ml's own label bounds.

The OpenTelemetry SDK (1.45.2 on) keeps at most 2,000 series per instrument
and view by default and folds every further one into a single
``otel.metric.overflow="true"`` series: a guard against unbounded labels. A
few of otel_ml's instruments are bounded by otel_ml above that: one
``ModelQuality(classes=range(1000))`` alone makes 2,001 ``ml.model.outcomes``
series, and a service with two ImageNet models makes 2,002 prediction and
false-positive series, so the default would fold real classes together and
the numbers read on ``/metrics`` would be wrong. Those instruments get the
limit otel_ml itself guarantees (:func:`bounded_limits`: the models a process
may declare times the series each may make); every other instrument keeps
the SDK's default, so a label nobody bounds is still caught.

The limit goes through the SDK's public extension point, a ``View`` with
``aggregation_cardinality_limit``. An instrument that two views match is
exported twice, so the view that gives every instrument otel_ml's exemplar
reservoir (:func:`otel_ml.distro._private_random.seed_safe_views`) is split
into views whose name patterns (``fnmatch``, as the SDK matches them) cover
every name but the limited ones, each name exactly once
(:func:`names_except`), beside one view per limited name. An SDK whose
``View`` takes no limit (before 1.45.2) has no limit to raise either: its
views stay as they were.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Iterable, Mapping
from typing import Any

from opentelemetry.sdk.metrics.view import View

_PLAIN = re.compile(r"[a-z0-9_./]+")  # names whose characters are literal both in a pattern and in a [!set]


def view_takes_limit() -> bool:
    """Whether this SDK's ``View`` accepts ``aggregation_cardinality_limit`` (public since SDK 1.45.2)."""
    try:
        return "aggregation_cardinality_limit" in inspect.signature(View).parameters
    except (TypeError, ValueError):  # a View whose signature cannot be read: take it as the older kind
        return False


def names_except(excluded: Iterable[str]) -> list[str]:
    """``fnmatch`` patterns that, together, match every instrument name but ``excluded``, each exactly once.

    Built on the tree of the excluded names' prefixes: at each prefix ``p`` a
    name either ends (``p`` itself, unless excluded), goes on with a character
    no excluded name continues ``p`` with (``p[!...]*``), or goes on down the
    tree. Names are compared lower-cased, as the SDK does.

    Example:
        >>> from fnmatch import fnmatchcase
        >>> patterns = names_except(["ab", "ac"])
        >>> patterns
        ['[!a]*', 'a', 'a[!bc]*', 'ab?*', 'ac?*']
        >>> [[p for p in patterns if fnmatchcase(n, p)] for n in ["ab", "ac", "a", "abc", "b", "ad"]]
        [[], [], ['a'], ['ab?*'], ['[!a]*'], ['a[!bc]*']]
    """
    names = sorted({name.lower() for name in excluded})
    for name in names:
        if not _PLAIN.fullmatch(name):
            raise ValueError(f"{name!r}: only lower-case letters, digits and _./ can be excluded")
    prefixes = sorted({name[:i] for name in names for i in range(len(name) + 1)})
    patterns = []
    for prefix in prefixes:
        if prefix and prefix not in names:
            patterns.append(prefix)
        following = sorted({name[len(prefix)] for name in names if len(name) > len(prefix) and name.startswith(prefix)})
        patterns.append(f"{prefix}[!{''.join(following)}]*" if following else f"{prefix}?*")
    return patterns


def limited_views(limits: Mapping[str, int], **common: Any) -> list[View]:
    """Views with ``common`` keywords: the instruments named in ``limits`` with their limit, every other by name.

    Only where :func:`view_takes_limit`; otherwise one ``"*"`` view.
    """
    if not limits or not view_takes_limit():
        return [View(instrument_name="*", **common)]
    return [
        *(View(instrument_name=pattern, **common) for pattern in names_except(limits)),
        *(
            View(instrument_name=name, aggregation_cardinality_limit=limit, **common)  # type: ignore[call-arg]
            for name, limit in sorted(limits.items())
        ),
    ]


def bounded_limits() -> dict[str, int]:
    """Instrument name -> series limit, for each instrument otel_ml bounds above the SDK's default of 2,000.

    The serving quality counters (:func:`otel_ml.serving._quality.series_limits`)
    and Paddle's run duration (:func:`otel_ml.paddle._registry.series_limits`);
    neither module imports a framework.

    Example:
        >>> sorted(bounded_limits().items())  # doctest: +NORMALIZE_WHITESPACE
        [('ml.inference.duration', 2340), ('ml.model.false_positives', 32032),
         ('ml.model.outcomes', 64032), ('ml.model.predictions', 32032)]
    """
    from otel_ml.paddle._registry import series_limits as paddle
    from otel_ml.serving._quality import series_limits as quality

    return {**quality(), **paddle()}
