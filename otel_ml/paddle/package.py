"""The distributions the Paddle instrumentor applies to: any one of them suffices."""

from __future__ import annotations

# The CPU and CUDA builds are separate wheels of the same ``paddle`` package.
_instruments_any = ("paddlepaddle >= 3.0", "paddlepaddle-gpu >= 3.0")
