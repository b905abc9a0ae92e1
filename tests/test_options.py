"""Each option is declared once, and everything else reads that declaration.

One ``Option`` per ``OTEL_ML_*`` variable gives the keyword of
``otel_ml.instrument()``, the variable, the parser with its bounds and the
default; the variable's docstring is its prose; ``docs/configuration.md`` is
generated from both. These tests pin that down, then check the resolution
order (argument, environment, default) and the messages on every declared
option.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import importlib.util
import logging
from collections import Counter
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from otel_ml import environment_variables as ev
from otel_ml._core.options import Option, forget_reported

ROOT = Path(__file__).resolve().parent.parent
VARIABLES = {name for name in vars(ev) if name.startswith("OTEL_ML_")}


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("configuration_doc", ROOT / "scripts" / "configuration_doc.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


GENERATOR = _generator()
DECLARED: list[Option[Any]] = [option for _, _, options in GENERATOR.declared_options() for option in options]


def _option_calls() -> list[tuple[str, ast.Call]]:
    """Every ``Option(...)`` call in the package's source, with its file."""
    calls = []
    for path in sorted((ROOT / "otel_ml").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) == "Option":
                calls.append((str(path.relative_to(ROOT)), node))
    return calls


def test_every_otel_ml_variable_is_named_by_exactly_one_option_declaration_in_the_source() -> None:
    named: Counter[str] = Counter()
    for path, call in _option_calls():
        variable = call.args[1]
        if isinstance(variable, ast.Constant):  # a standard OTEL_* variable, e.g. the Prometheus host
            assert not str(variable.value).startswith("OTEL_ML_"), f"{path}: name {variable.value} by its constant"
            continue
        assert isinstance(variable, ast.Attribute | ast.Name), f"{path}: {ast.dump(variable)}"
        named[variable.attr if isinstance(variable, ast.Attribute) else variable.id] += 1
    assert {name: count for name, count in named.items() if count != 1} == {}
    assert set(named) == VARIABLES


def test_no_code_spells_an_otel_ml_variable_instead_of_naming_its_constant() -> None:
    spelled = []
    for path in sorted((ROOT / "otel_ml").rglob("*.py")):
        if path.name == "environment_variables.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and node.value in VARIABLES:
                spelled.append((str(path.relative_to(ROOT)), node.value))
    assert spelled == []


def test_the_reference_lists_every_declaration_once() -> None:
    assert sorted(option.variable for option in DECLARED) == sorted(VARIABLES)
    assert len({id(option) for option in DECLARED}) == len(DECLARED)


def test_every_keyword_of_instrument_comes_from_exactly_one_declaration() -> None:
    from otel_ml.distro._instrument import _instrumentors

    by_name: dict[str, set[int]] = {}
    for instrumentor in _instrumentors().values():
        for option in instrumentor.option_table:
            by_name.setdefault(option.name, set()).add(id(option))
    assert {name: len(ids) for name, ids in by_name.items() if len(ids) != 1} == {}
    declared = {option.name: id(option) for option in DECLARED}
    assert {name: ids.pop() for name, ids in by_name.items()} == {name: declared[name] for name in by_name}
    # keras and tf_keras name the very same table, so one setting reaches both
    instrumentors = _instrumentors()
    assert instrumentors["keras"].option_table is instrumentors["tf_keras"].option_table


@pytest.mark.parametrize(
    ("table", "resolved"),
    [
        ("otel_ml._training.options:OPTIONS", "otel_ml._training.options:TrainingOptions"),
        ("otel_ml.paddle._options:OPTIONS", "otel_ml.paddle._options:PaddleOptions"),
        ("otel_ml.gpu._options:OPTIONS", "otel_ml.gpu._options:GpuOptions"),
        ("otel_ml.tf_summary._options:OPTIONS", "otel_ml.tf_summary._options:SummaryOptions"),
    ],
)
def test_each_resolved_options_class_has_the_fields_of_its_table_in_order(table: str, resolved: str) -> None:
    # The typed class the hot path reads is the only other place an option's name is written.
    def load(target: str) -> Any:
        module, _, name = target.partition(":")
        return getattr(importlib.import_module(module), name)

    assert [field.name for field in dataclasses.fields(load(resolved))] == [option.name for option in load(table)]


def test_each_variable_docstring_opens_with_a_one_line_summary() -> None:
    docs = GENERATOR.variable_docs()
    assert set(docs) == VARIABLES
    for name, text in docs.items():
        summary = text.partition("\n\n")[0]
        assert summary.endswith(".") and len(GENERATOR.markdown(summary)) <= 140, name


def test_docs_configuration_md_is_generated_from_the_declarations() -> None:
    page = (ROOT / "docs" / "configuration.md").read_text()
    assert page == GENERATOR.updated(page), "docs/configuration.md is stale: run python scripts/configuration_doc.py"


def test_a_row_of_the_reference_reads_as_declared() -> None:
    page = (ROOT / "docs" / "configuration.md").read_text()
    row = next(line for line in page.splitlines() if line.startswith("| [`OTEL_ML_SLOW_STEP_FACTOR`]"))
    assert row.split(" | ")[1:4] == ["`slow_step_factor`", "`3`", "a number > 1 and <= 1000"]
    row = next(line for line in page.splitlines() if line.startswith("| [`OTEL_ML_EXIT_TIMEOUT`]"))
    assert row.split(" | ")[1:4] == ["—", "`3`", "a number >= 0 and <= 600"]


# --- resolution, on every declared option --------------------------------------------

_CANDIDATES = ("7", "2", "yes", "no", "exp-1", "0.5", "16", "32", "on", "off")


def _valid_other_than(option: Option[Any], *others: object) -> tuple[str, Any]:
    """A raw value the option accepts that parses to something other than ``others``."""
    for raw in _CANDIDATES:
        try:
            value = option.parse(raw)
        except ValueError:
            continue
        if all(value != other for other in others):
            return raw, value
    raise AssertionError(f"no candidate value for {option.name}")


@pytest.fixture
def fresh_reports() -> Any:
    forget_reported()
    yield
    forget_reported()


@pytest.mark.parametrize("option", DECLARED, ids=lambda option: option.variable)
def test_argument_beats_environment_beats_default(option: Option[Any], monkeypatch, fresh_reports) -> None:
    env_raw, env_value = _valid_other_than(option, option.default)
    arg_raw, arg_value = _valid_other_than(option, env_value)
    monkeypatch.delenv(option.variable, raising=False)
    assert option.resolve(None) == option.default
    monkeypatch.setenv(option.variable, env_raw)
    assert option.resolve(None) == env_value
    assert option.resolve(arg_raw) == arg_value


@pytest.mark.parametrize("option", DECLARED, ids=lambda option: option.variable)
def test_a_bad_argument_raises_naming_the_option_and_what_is_accepted(option: Option[Any]) -> None:
    with pytest.raises(ValueError) as raised:
        option.resolve("x" * 1_001)
    assert str(raised.value) == f"{option.name}={'x' * 1_001!r} is invalid: expected {option.parse.accepts}"


@pytest.mark.parametrize("option", DECLARED, ids=lambda option: option.variable)
def test_a_bad_environment_value_is_logged_once_and_the_default_used(
    option: Option[Any], monkeypatch, caplog, fresh_reports
) -> None:
    monkeypatch.setenv(option.variable, "x" * 1_001)
    with caplog.at_level(logging.ERROR, logger="otel_ml._core.options"):
        assert option.resolve(None) == option.default
        assert option.resolve(None) == option.default
    assert [record.getMessage() for record in caplog.records] == [
        f"{option.variable}={'x' * 77 + '...'!r} is invalid: expected {option.parse.accepts}; "
        f"using the default {option.default!r}"
    ]


def test_instrument_parses_each_explicit_option_once_even_where_two_instrumentors_share_it(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Keras and Keras 2 share one table: ``slow_step_factor=2`` is parsed once, and both get the parsed value."""
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.trace import TracerProvider

    import otel_ml
    from otel_ml._training import options as training

    declared = next(option for option in training.OPTIONS if option.name == "slow_step_factor")
    calls: list[object] = []

    def counting(raw: object) -> float:
        calls.append(raw)
        return declared.parse(raw)

    counted = dataclasses.replace(declared, parse=counting)
    rows = tuple(counted if option is declared else option for option in training.OPTIONS)
    monkeypatch.setattr(training.OPTIONS, "_options", rows)
    otel_ml.instrument(MeterProvider(), TracerProvider(), slow_step_factor="2.5")
    try:
        assert calls == ["2.5"]
        from otel_ml.keras import KerasInstrumentor
        from otel_ml.tf_keras import TfKerasInstrumentor

        for instrumentor in (KerasInstrumentor(), TfKerasInstrumentor()):
            wrappers = instrumentor._wrappers
            assert wrappers is not None and wrappers._opts.slow_step_factor == 2.5
    finally:
        otel_ml.uninstrument()
