"""A downloaded model's ``MLmodel`` file, read without importing MLflow.

The scorer needs two things from it: the flavors the model was saved in (and each flavor's
own settings, such as the xgboost booster's file name), and the input signature's columns.
MLflow writes the signature inline as JSON (``signature.inputs``), one object per column:
``{"type": "double", "name": "age", "required": true}``. Reading that JSON takes PyYAML
alone, where ``mlflow.models.Model`` takes ``import mlflow`` (1.5 CPU-s in the image): a
sharded run's later shards load their model without it (``scorer.model.run_copy``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from scorer.errors import SchemaMismatchError


@dataclass(frozen=True)
class ModelMeta:
    """The flavors of a saved model, and its signature's input columns (if it has one)."""

    flavors: dict[str, dict[str, Any]]
    inputs: list[dict[str, Any]] | None

    @property
    def named_inputs(self) -> bool:
        """Whether the signature names every input column (a column-based signature)."""
        return bool(self.inputs) and all("name" in spec for spec in self.inputs or ())


def read(path: Path) -> ModelMeta:
    """The ``MLmodel`` file in the model directory ``path``."""
    try:
        document = yaml.safe_load((path / "MLmodel").read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise SchemaMismatchError(
            f"the model's MLmodel file cannot be read ({type(exc).__name__}): is it an "
            "MLflow model?"
        ) from None
    if not isinstance(document, dict) or not isinstance(document.get("flavors"), dict):
        raise SchemaMismatchError(
            "the model's MLmodel file names no flavors: is it an MLflow model?"
        )
    signature = document.get("signature") or {}
    raw = signature.get("inputs") if isinstance(signature, dict) else None
    inputs = json.loads(raw) if isinstance(raw, str) else raw
    if inputs is not None and not isinstance(inputs, list):
        raise SchemaMismatchError("the model's signature inputs are not a list of columns")
    return ModelMeta(dict(document["flavors"]), inputs)
