"""docs/configuration.md is what hack/configuration_docs.py generates from the settings classes."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType

from pydantic_settings import BaseSettings

from scorer import config

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "configuration.md"


def generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "configuration_docs", ROOT / "hack" / "configuration_docs.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_doc_is_what_the_generator_makes() -> None:
    docs = generator()
    assert DOC.read_text() == docs.render(), f"docs/configuration.md is stale: run {docs.COMMAND}"


def test_every_settings_field_has_a_row_and_a_description() -> None:
    text = DOC.read_text()
    classes = [
        value
        for value in vars(config).values()
        if isinstance(value, type) and issubclass(value, BaseSettings) and value is not BaseSettings
    ]
    assert {cls.__name__ for cls in classes} >= {"RunSettings", "PruneSettings", "LogSettings"}
    for cls in classes:
        assert f"\n## {cls.__name__}\n" in text
        for name, info in cls.model_fields.items():
            assert info.description, f"{cls.__name__}.{name} has no description"
            assert f"`{config.flag_name(name)}`" in text, name


def test_the_quality_gate_and_the_defaults_are_there() -> None:
    """The gate's variables, with the defaults the code has (they once went missing)."""
    rows = dict(
        re.findall(r"^\| `(SCORER_[A-Z_]+)`[^|]*\| [^|]* \| ([^|]*) \|", DOC.read_text(), re.M)
    )
    assert rows["SCORER_MAX_SCORE_PSI"] == "`0.25`"
    assert rows["SCORER_MIN_ROWS_RATIO"] == "`0.8`"
    assert rows["SCORER_MAX_NULL_SHARE_INCREASE"] == "`0.2`"
    assert rows["SCORER_QUALITY_OVERRIDE"] == "unset"
    assert rows["SCORER_DATABASE_URL"] == "**required**"
    assert rows["SCORER_CHUNK_ROWS"] == "`50000`"
