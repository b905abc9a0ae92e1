"""Text that comes from outside (environment, paths, program arguments) made valid UTF-8 once, where it enters.

Python hands undecodable bytes of ``os.environ``, ``sys.argv`` and file names
to the program as lone surrogates (``surrogateescape``): ``b"caf\\xe9"``
becomes ``"caf\\udce9"``. Such a string cannot be encoded as UTF-8, so one of
them in a label value made every ``/metrics`` scrape a 500 and an OTLP export
drop the attribute. :func:`valid_label` gives the same bytes a valid spelling:
the undecodable ones as ``\\xNN`` escapes, so that two names that differ only
in those bytes stay two series (a replacement character would merge them).
"""

from __future__ import annotations

from typing import Any


def valid_label(value: Any) -> str:
    """``value`` as a string that encodes as UTF-8; valid strings come back unchanged (the same object).

    Example:
        >>> valid_label("caf\\udce9")  # os.fsdecode(b"caf\\xe9")
        'caf\\\\xe9'
        >>> valid_label("café")
        'café'
    """
    if not isinstance(value, str):
        value = str(value)
    if value.isascii():
        return value
    try:
        value.encode("utf-8")
        return value
    except UnicodeEncodeError:
        pass
    try:  # surrogate-escaped bytes: back to the bytes, then every invalid one escaped
        return value.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # other lone surrogates (e.g. from a JSON "\ud800")
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
