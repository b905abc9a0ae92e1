"""Helpers of the Paddle tests: the example service and one tiny real model, fed two ways.

Kept apart from ``conftest.py`` (which holds the fixtures), so that test
modules import helpers from a module, not from a conftest.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "paddle_service.py"


def load_example() -> ModuleType:
    """Import ``examples/paddle_service.py`` (not a package) as a module."""
    if str(EXAMPLE.parent) not in sys.path:  # its input checks sit beside it, as for `python examples/...`
        sys.path.insert(0, str(EXAMPLE.parent))
    return importlib.import_module("paddle_service")


def new_predictor(prefix: str) -> Any:
    """A predictor made the usual way: ``paddle.inference.create_predictor(Config(...))``."""
    import paddle.inference as pi

    config = pi.Config(prefix + ".json", prefix + ".pdiparams")
    config.disable_glog_info()
    return pi.create_predictor(config)


def run_zero_copy(predictor: Any, batch: int) -> Any:
    """Feed ``batch`` rows through the input handle, ``run()`` with no arguments, read the output."""
    import numpy as np

    handle = predictor.get_input_handle(predictor.get_input_names()[0])
    handle.reshape([batch, 4])
    handle.copy_from_cpu(np.full((batch, 4), 0.5, dtype="float32"))
    predictor.run()
    return predictor.get_output_handle(predictor.get_output_names()[0]).copy_to_cpu()


def run_list(predictor: Any, batch: int, features: int = 4) -> Any:
    """The other form: ``run([tensor])`` returns the outputs."""
    import numpy as np
    import paddle

    return predictor.run([paddle.to_tensor(np.full((batch, features), 0.5, dtype="float32"))])
