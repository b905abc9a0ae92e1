"""Debian's headless Chromium driven by Selenium (``/usr/bin/chromedriver``), as the page's tests use it.

Selenium's own browser download cannot reach its host here, so the Debian
packages ``chromium`` and ``chromium-driver`` are used (scripts/test.sh
installs them). Their absence fails the test that needs them: a skipped
browser test would pass for a page nobody has seen work.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


@contextmanager
def chromium(width: int = 1400, height: int = 1000) -> Iterator[Any]:
    """A headless Chromium that records the console, closed on exit."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not shutil.which(path)]
    assert not missing, f"{missing} missing: apt-get install chromium chromium-driver (scripts/test.sh does)"
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run"):
        options.add_argument(flag)
    options.add_argument(f"--window-size={width},{height}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def console_errors(driver: Any) -> list[dict[str, Any]]:
    """The console's errors and CSP violations since the last call."""
    return [entry for entry in driver.get_log("browser") if entry.get("level") == "SEVERE"]
