"""Test mode works: a test during which otel_ml swallowed an internal error fails.

The fixture lives in ``tests/conftest.py``; here a tiny test file is run by a
real pytest in a subprocess, with that fixture and the project's markers, and
its outcomes are read back from the JUnit report.
"""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent

TINY = """
import threading

import pytest

from otel_ml._core.guard import guarded


@guarded("tiny.hook")
def hook() -> None:
    raise RuntimeError("a bug of ours")


def test_swallowed_error_fails() -> None:
    hook()  # returns None, as it would in a user's program


def test_error_in_another_thread_fails() -> None:
    thread = threading.Thread(target=hook)
    thread.start()
    thread.join()


@pytest.mark.internal_errors_expected
def test_expected_error_passes() -> None:
    hook()


def test_clean_test_passes() -> None:
    assert hook.__name__ == "hook"
"""


def test_a_swallowed_internal_error_fails_the_test_that_caused_it(tmp_path: Path) -> None:
    (tmp_path / "conftest.py").write_text("from tests.conftest import _test_mode, _uninstrumented  # noqa: F401\n")
    (tmp_path / "test_tiny.py").write_text(TINY)
    report = tmp_path / "report.xml"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-c", str(ROOT / "pyproject.toml")]
    command += ["--rootdir", str(tmp_path), "-W", "error::pytest.PytestUnknownMarkWarning", f"--junitxml={report}"]
    result = subprocess.run(
        [*command, str(tmp_path / "test_tiny.py")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    outcomes = {}
    for case in ET.parse(report).iter("testcase"):
        failed = [child for child in case if child.tag in ("failure", "error")]
        outcomes[case.get("name")] = (failed[0].get("message", "") + (failed[0].text or "")) if failed else "passed"
    assert result.returncode == 1, result.stdout + result.stderr
    assert outcomes["test_expected_error_passes"] == "passed"
    assert outcomes["test_clean_test_passes"] == "passed"
    for name in ("test_swallowed_error_fails", "test_error_in_another_thread_fails"):
        assert "otel_ml reported 1 internal error(s) during this test" in outcomes[name]
        assert "in tiny.hook" in outcomes[name]
        assert "RuntimeError: a bug of ours" in outcomes[name]
