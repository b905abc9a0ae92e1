"""The distribution the GPU instrumentor needs: NVIDIA's NVML bindings.

``nvidia-ml-py`` provides the ``pynvml`` module. The older ``pynvml`` package
on PyPI is deprecated and warns on every import, so it is not listed.
"""

from __future__ import annotations

_instruments_any = ("nvidia-ml-py >= 12",)
