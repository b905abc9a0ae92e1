"""The docs name every variable, metric, span and attribute, and their links lead somewhere.

"The docs" are the README and every page of ``docs/``: the README is the front
door, the pages are the reference, and a name counts as documented wherever
it is. Each check fails, naming what is missing, when a name is added to the
code and not to the docs.
"""

from __future__ import annotations

import re
from pathlib import Path

from otel_ml import environment_variables
from otel_ml._core import semconv as sc

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
DOCS = "\n".join(page.read_text() for page in PAGES)
CONFIGURATION = ROOT / "docs" / "configuration.md"
METRIC_NAMES = ROOT / "docs" / "metric-names.md"


def _constants(prefix: str) -> dict[str, str]:
    return {k: v for k, v in vars(sc).items() if k.startswith(prefix) and isinstance(v, str)}


def test_every_otel_ml_variable_is_declared_with_a_docstring_and_in_the_docs() -> None:
    source = (ROOT / "otel_ml" / "environment_variables.py").read_text()
    names = [v for k, v in vars(environment_variables).items() if k.startswith("OTEL_ML_")]
    assert len(names) >= 7
    for name in names:
        assert re.search(rf'^{name}: Final = "{name}"\n"""\n\.\. envvar:: {name}\n', source, re.M), name
        assert f"`{name}`" in DOCS, f"{name} is not in the README or docs/"


def test_every_training_metric_has_its_prometheus_series_and_every_keras_span_is_named() -> None:
    prometheus = {
        sc.METRIC_TRAIN_STEP_DURATION: "ml_train_step_duration_seconds",
        sc.METRIC_TRAIN_STEPS: "ml_train_steps_total",
        sc.METRIC_TRAIN_SAMPLES: "ml_train_samples_total",
        sc.METRIC_TRAIN_EPOCHS: "ml_train_epochs_total",
        sc.METRIC_TRAIN_EPOCH_DURATION: "ml_train_epoch_duration_seconds",
        sc.METRIC_TRAIN_LOSS: "ml_train_loss",
        sc.METRIC_TRAIN_METRIC: "ml_train_metric",
        sc.METRIC_TRAIN_LEARNING_RATE: "ml_train_learning_rate",
        sc.METRIC_TRAIN_ANOMALIES: "ml_train_anomalies_total",
    }
    for otel, prom in prometheus.items():
        row = next((line for line in DOCS.splitlines() if line.startswith(f"| `{otel}` |")), None)
        assert row is not None and f"`{prom}" in row, f"{otel} -> {prom} missing from the docs' tables"
    for span in (sc.SPAN_KERAS_FIT, sc.SPAN_KERAS_EPOCH, sc.SPAN_KERAS_TRAIN_STEP, sc.SPAN_KERAS_EVALUATE):
        assert f"`{span}`" in DOCS


def test_every_metric_has_a_row_with_its_prometheus_name_in_metric_names() -> None:
    # The first cell names the metric (a † marks those that are not conventions yet);
    # the row names the series, which starts with the dotted name in underscores.
    rows = [ln for ln in METRIC_NAMES.read_text().splitlines() if ln.startswith("| `")]
    metrics = _constants("METRIC_")
    assert len(metrics) >= 40
    for name in metrics.values():
        row = next((ln for ln in rows if re.match(rf"\| `{re.escape(name)}`( †)? \|", ln)), None)
        assert row is not None, f"{name} has no row in docs/metric-names.md"
        assert f"`{name.replace('.', '_')}" in row, f"{name}: its Prometheus series is not in its row"


def test_every_span_and_attribute_name_is_in_the_docs() -> None:
    spans = _constants("SPAN_")
    # Attribute keys are the constants that are neither metrics, spans nor units and hold a dotted
    # name; the values grouped under a key (``train``, ``gpu``) are plain words.
    keys = {
        k: v
        for k, v in vars(sc).items()
        if isinstance(v, str) and k.isupper() and "." in v and not k.startswith(("METRIC_", "SPAN_", "UNIT_"))
    }
    assert len(spans) >= 6 and len(keys) >= 50
    for name in [*spans.values(), *keys.values()]:
        # A prefix (``ml.logs.``) is documented with what follows it (``ml.logs.<name>``), a key
        # alone or with its values (``hw.gpu.task=general|encoder``).
        shown = [f"`{name}"] if name.endswith(".") else [f"`{name}`", f"`{name}="]
        assert any(s in DOCS for s in shown), f"{name} is not in the README or docs/"


def _option_tables() -> list[tuple[str, object]]:
    from otel_ml.distro._instrument import entry_points

    return [(ep.name, ep.load().option_table) for ep in entry_points()]


def _configuration_row(variable: str) -> list[str]:
    # The variable tables start with the variable (possibly linked to its paragraph), its
    # keyword and its default; what follows (meaning, what is accepted) is not checked here.
    first = re.compile(rf"\[?`{variable}`(\]\(#[\w-]+\))?")
    rows = [
        cells
        for ln in CONFIGURATION.read_text().splitlines()
        if ln.startswith("| ")
        and len(cells := [c.strip() for c in ln.strip().strip("|").split("|")]) >= 4
        and first.fullmatch(cells[0])
    ]
    assert len(rows) == 1, f"{variable} needs exactly one row in docs/configuration.md's variable tables"
    return rows[0]


def _shown(default: object) -> str:
    if isinstance(default, bool):
        return f"`{str(default).lower()}`"
    if isinstance(default, float) and default.is_integer():
        return f"`{int(default)}`"
    return f"`{default}`"


def test_every_option_table_row_is_in_the_variable_table_with_its_keyword_and_default() -> None:
    declared = {v for k, v in vars(environment_variables).items() if k.startswith("OTEL_ML_")}
    rows = 0
    for _name, table in _option_tables():
        for option in table:  # type: ignore[attr-defined]
            assert option.variable in declared, f"{option.variable} is not declared in environment_variables.py"
            _, keyword_cell, default_cell, *_ = _configuration_row(option.variable)
            assert keyword_cell == f"`{option.name}`", option.variable
            if option.default is not None:
                assert default_cell == _shown(option.default), (option.variable, default_cell)
            rows += 1
    assert rows >= 14


# --- links -------------------------------------------------------------------------------------

_FENCE = re.compile(r"^```.*?^```", re.M | re.S)
_CODE = re.compile(r"`[^`\n]*`")
_LINK = re.compile(r"(?<!!)\[[^\]\n]*\]\(([^)\s]+)\)")


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = heading.strip().lower().replace("`", "")
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    seen: dict[str, int] = {}
    anchors = set()
    for heading in re.findall(r"^#{1,6} (.+)$", _FENCE.sub("", page.read_text()), re.M):
        slug = _slug(heading)
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        anchors.add(slug if count == 0 else f"{slug}-{count}")
    return anchors


def _broken_links(page: Path) -> list[str]:
    """Each relative link of ``page`` whose file, or whose heading in a Markdown file, does not exist."""
    text = _CODE.sub("", _FENCE.sub("", page.read_text()))
    broken = []
    for target in _LINK.findall(text):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto:: not checked offline
            continue
        path, _, anchor = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        if not resolved.exists():
            broken.append(f"{target}: no such file")
        elif anchor and resolved.suffix == ".md" and anchor not in _anchors(resolved):
            broken.append(f"{target}: no heading #{anchor} in {resolved.name}")
    return broken


def test_every_relative_link_leads_to_a_file_and_heading_that_exist() -> None:
    links = 0
    for page in PAGES:
        assert _broken_links(page) == [], page.relative_to(ROOT)
        links += len(_LINK.findall(_CODE.sub("", _FENCE.sub("", page.read_text()))))
    assert links >= 50


def test_the_link_check_finds_a_missing_file_and_a_missing_heading(tmp_path: Path) -> None:
    (tmp_path / "other.md").write_text("# Other page\n\n## A `code` heading, with punctuation\n")
    page = tmp_path / "page.md"
    page.write_text(
        "# Page\n"
        "[ok](other.md) [ok](other.md#a-code-heading-with-punctuation) [ok](#page)\n"
        "[gone](missing.md) [no heading](other.md#nowhere) [web](https://example.com/x)\n"
        "`[in code](missing-too.md)`\n"
        "```\n[in a block](missing-three.md)\n```\n"
    )
    assert _broken_links(page) == ["missing.md: no such file", "other.md#nowhere: no heading #nowhere in other.md"]


def test_the_docs_index_links_every_page() -> None:
    index = (ROOT / "docs" / "README.md").read_text()
    for page in PAGES:
        if page.parent.name == "docs" and page.name != "README.md":
            assert f"]({page.name})" in index, f"docs/README.md does not link {page.name}"
