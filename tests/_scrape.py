"""What every scrape of otel_ml's /metrics must hold, and the attribute keys a console export shows.

Shared by tests/test_series_shapes.py and tests/paddle/test_series_shapes_paddle.py.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from typing import Any

import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families as parse_text

# Keys a point carries only when they hold, as the OpenTelemetry conventions say (error.type on a
# failed request or load, ml.model.version when known). The endpoint renders them as "" elsewhere.
CONDITIONAL_KEYS = frozenset({"error.type", "ml.model.version"})
# Upstream opentelemetry-instrumentation-system-metrics names these; promtool's linter dislikes "_count".
UPSTREAM_LINT = frozenset(
    {
        'process_open_file_descriptor_count non-histogram and non-summary metrics should not have "_count" suffix',
        'process_thread_count non-histogram and non-summary metrics should not have "_count" suffix',
    }
)


def promtool_problems(text: str) -> set[str]:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (Debian package prometheus; scripts/test.sh installs it)")
    proc = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60)
    problems = {line.strip() for line in (proc.stdout + proc.stderr).splitlines() if line.strip()}
    assert proc.returncode == 0 or problems, proc
    return problems


def check_scrape(text: str, openmetrics: str) -> dict[str, Any]:
    """The properties every scrape must have; returns the classic text's families by name."""
    families = {family.name: family for family in parse_text(text)}
    om_families = {family.name: family for family in parse_openmetrics(openmetrics)}
    # The OpenMetrics rendering (what Prometheus asks for first) holds the very same series and values.
    om = {(s.name, tuple(sorted(s.labels.items()))): s.value for f in om_families.values() for s in f.samples}
    classic = {(s.name, tuple(sorted(s.labels.items()))): s.value for f in families.values() for s in f.samples}
    assert om.keys() == classic.keys(), sorted(om.keys() ^ classic.keys())[:10]
    seen: set[tuple[str, tuple[tuple[str, str], ...]]] = set()
    for family in families.values():
        keys: dict[str, set[frozenset[str]]] = {}
        for sample in family.samples:
            key = (sample.name, tuple(sorted(sample.labels.items())))
            assert key not in seen, f"series twice in one scrape: {key}"
            seen.add(key)
            keys.setdefault(sample.name, set()).add(frozenset(sample.labels) - {"le"})
            if family.name != "target_info":
                assert sample.labels.get("service_name"), f"{sample.name} without service_name: {sample.labels}"
        assert all(len(sets) == 1 for sets in keys.values()), f"{family.name}: label keys differ: {keys}"
    # promtool's linter passes, but for two names upstream gives the process metrics.
    assert promtool_problems(text) <= UPSTREAM_LINT
    return families


def recorded_key_sets(stdout: str) -> dict[str, dict[str, set[frozenset[str]]]]:
    """metric name -> scope -> attribute-key sets, from the console exporter's JSON documents."""
    decoder = json.JSONDecoder()
    found: dict[str, dict[str, set[frozenset[str]]]] = {}
    position = stdout.find('{\n    "resource_metrics"')
    assert position >= 0, "no console export in the program's output"
    documents = 0
    while position >= 0:
        document, end = decoder.raw_decode(stdout, position)
        documents += 1
        for rm in document["resource_metrics"]:
            for sm in rm["scope_metrics"]:
                for metric in sm["metrics"]:
                    for point in metric["data"]["data_points"]:
                        scopes = found.setdefault(metric["name"], {})
                        scopes.setdefault(sm["scope"]["name"], set()).add(frozenset(point["attributes"]))
        position = stdout.find('{\n    "resource_metrics"', end)
    assert documents >= 1
    return found
