"""The reasons behind each score: the K inputs that contribute most to it, with their
contributions.

The contributions are the model's own, on its margin (log-odds for a classifier), by one of two
methods (``SCORER_REASONS_METHOD``):

- ``path`` (the default): path contributions (Saabas), read off each row's path through the
  trees; xgboost's own ``approx_contribs`` computes the same values. An xgboost model given
  one matrix is walked in compiled C (``scorer.model.tree_walk``), for about one and a
  half predictions; lightgbm, and xgboost given a DataFrame, sum a per-leaf table over the leaves
  the library's ``pred_leaf`` gives (``scorer.model.tree_paths``), for about three times it.
- ``shapley``: exact Shapley values by TreeSHAP, the libraries' ``pred_contribs`` (xgboost) and
  ``pred_contrib`` (lightgbm), at trees x leaves x depth^2 per row: about a hundred times the
  cost of the scores themselves for trees of depth 6.

By either method a row's contributions and the bias sum to its margin. Every chunk checks that
the margins they sum to imply the scores the model gave, and refuses the run if not. A
categorical input has one contribution, as the libraries give it. Per row the K largest by
absolute value are kept, largest first, and stored in the run's partition as the jsonb column
``reasons``: ``[["contract", 0.31], ["tenure", -0.22]]`` (input name, contribution to 9
significant digits as ``%.9g``), written by ``_reasons.c`` in one pass over the chunk. Feature
values are never stored or logged: ``scorer explain`` reads them from the features for the one
entity asked about.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from functools import cache
from typing import TYPE_CHECKING, Any, Literal, Protocol

import numpy as np
import numpy.typing as npt

from scorer import compiled
from scorer.errors import ConfigError, ModelOutputError
from scorer.model import tree_paths, tree_walk
from scorer.postgres import wire

if TYPE_CHECKING:
    from scorer.io.features import Chunk, FeaturePlan

Method = Literal["path", "shapley"]
"""How contributions are computed (``SCORER_REASONS_METHOD``)."""
Contributions = npt.NDArray[np.float64]
"""(rows, inputs + 1): each input's contribution to the margin, the bias last."""
Explained = tuple[Contributions, npt.NDArray[np.float64]]
"""The positive class's contributions, and the score the margins they sum to imply."""
Native = Callable[[Any], Explained]
"""The model's own contributions for a model input (what its predict takes)."""
FLAVORS = ("xgboost", "lightgbm")
"""The flavors whose libraries give per-row contributions."""
TOLERANCE = 1e-4
"""Largest difference between a score and the one its contributions imply."""


class Explainable(Protocol):
    """What the reasons need of a loaded model (``flavors.LoadedModel``)."""

    @property
    def method(self) -> str:
        """How the model scores, e.g. ``xgboost Booster.inplace_predict``."""

    @property
    def feature_names(self) -> tuple[str, ...]:
        """The input column names, in the model's order."""

    @property
    def contributions(self) -> Callable[[Chunk, FeaturePlan], Explained] | None:
        """The model's own per-row contributions, if reasons were asked for and its flavor
        gives them."""


def native(
    flavor: str, model: Any, threads: int, index: int | None, method: Method
) -> Native | None:
    """The flavor's own contributions to the positive class's margin (``index``: its output
    column, as the score takes it) by ``method``, or None if the flavor gives none."""
    if flavor == "xgboost":
        return _xgboost(model, threads, index, method)
    if flavor == "lightgbm":
        return _lightgbm(model, threads, index, method)
    return None


def require(model: Explainable, k: int) -> None:
    """Refuse ``SCORER_REASONS`` for a model that gives no contributions of its own."""
    if k and model.contributions is None:
        raise ConfigError(
            f"SCORER_REASONS={k} needs the model's own per-row contributions, which only "
            f"{' and '.join(FLAVORS)} models give; this model is scored by {model.method}: "
            "unset SCORER_REASONS (or set it to 0) for this model"
        )


def column(
    model: Explainable,
    chunk: Chunk,
    plan: FeaturePlan,
    k: int,
    scores: npt.NDArray[np.float64],
) -> wire.Fields:
    """The chunk's ``reasons`` column: one binary jsonb field per row. Refused unless the
    contributions reproduce ``scores``, the model's own."""
    assert model.contributions is not None  # require() refused the run before
    found, implied = model.contributions(chunk, plan)
    if not np.isfinite(found).all():
        raise ModelOutputError(
            f"the model's contributions ({model.method}) are not finite for some rows of a "
            f"chunk of {chunk.ids.size} rows; unset SCORER_REASONS to score without reasons"
        )
    gap = float(np.max(np.abs(implied - scores), initial=0.0))
    if not gap <= TOLERANCE:
        raise ModelOutputError(
            f"the model's contributions do not add up to its scores (by up to {gap:.3g} in a "
            f"chunk of {chunk.ids.size} rows), so they would not explain them; nothing "
            "published. Unset SCORER_REASONS to score this model without reasons"
        )
    return encode(model.feature_names, found, k)


def encode(names: Sequence[str], contributions: Contributions, k: int) -> wire.Fields:
    """Per row, the ``k`` (at most every) inputs of largest absolute contribution, largest
    first, the earlier input first on a tie, as binary jsonb fields (version 1, then the JSON
    text): ``[["name", contribution], ...]``. ``contributions``: a column per input of
    ``names``, in their order (more columns, such as the bias, are left out). One pass of
    ``_reasons.c`` over the chunk."""
    rows, inputs = contributions.shape[0], len(names)
    if contributions.ndim != 2 or contributions.shape[1] < inputs:
        raise ValueError(f"contributions of {inputs} inputs expected, not {contributions.shape}")
    k = min(k, inputs)
    quoted = [json.dumps(name, ensure_ascii=False).encode() for name in names]
    starts = np.cumsum([0, *map(len, quoted)], dtype=np.int64)
    values = np.ascontiguousarray(contributions, dtype=np.float64)
    data = np.empty(rows * (7 + k * (max(map(len, quoted), default=0) + 29)), dtype=np.uint8)
    ends = np.empty(rows, dtype=np.int64)
    written = compiled.library().scorer_reasons(
        values.ctypes.data,
        rows,
        values.shape[1],
        inputs,
        k,
        b"".join(quoted),
        starts.ctypes.data,
        data.ctypes.data,
        ends.ctypes.data,
    )
    if written < 0:
        raise MemoryError("no memory for the reasons' top K")
    return wire.Fields(data[:written], ends)


def _select(out: npt.NDArray[Any], index: int | None, width: int) -> Explained:
    """The positive class's contributions from a library's output (one margin per row for a
    binary model: negated when the first class is the positive one; else one per class), and
    the score all classes' margins imply."""
    rows = out.shape[0]
    margins = out.reshape(rows, -1, width).sum(axis=2)
    if margins.shape[1] == 1:
        implied = 1.0 / (1.0 + np.exp(-margins[:, 0]))
        return (-out, 1.0 - implied) if index == 0 else (out, implied)
    if index is None:
        raise ModelOutputError(
            "the model gives contributions per class; name the class to explain with "
            "SCORER_POSITIVE_CLASS"
        )
    exponent = np.exp(margins - margins.max(axis=1, keepdims=True))
    implied = exponent[:, index] / exponent.sum(axis=1)
    return np.asarray(out.reshape(rows, -1, width)[:, index, :]), implied


def _missing_row(inputs: int) -> npt.NDArray[np.float64]:
    """One row with every input missing: how a table finds the model's base margin."""
    return np.full((1, inputs), np.nan)


def _xgboost(booster: Any, threads: int, index: int | None, method: Method) -> Native:
    import xgboost  # noqa: PLC0415 - only the flavor in use is imported

    names, types = booster.feature_names, booster.feature_types
    width = booster.num_features() + 1

    def matrix(data: Any) -> Any:
        frame = hasattr(data, "columns")
        return xgboost.DMatrix(
            data,
            feature_names=None if frame else names,
            feature_types=None if frame else types,
            enable_categorical=True,
            nthread=threads,
        )

    if method == "shapley":

        def shapley(data: Any) -> Explained:
            out = booster.predict(matrix(data), pred_contribs=True, validate_features=False)
            return _select(np.asarray(out), index, width)

        return shapley
    probe = matrix(_missing_row(width - 1))
    margin = booster.predict(probe, output_margin=True)
    tree_paths.xgboost_learner(booster)  # refuses a booster without paths
    forest = tree_walk.xgboost(booster, np.asarray(margin).size, margin)

    @cache
    def table() -> tree_paths.LeafTable:
        """The per-leaf table, built for the first DataFrame: a matrix never needs it."""
        return tree_paths.xgboost_table(booster, margin, booster.predict(probe, pred_leaf=True))

    def path(data: Any) -> Explained:
        if not hasattr(data, "columns"):  # one matrix: the compiled walk
            return _select(forest.walk(data), index, width)
        leaves = booster.predict(matrix(data), pred_leaf=True, validate_features=False)
        return _select(table().contributions(np.asarray(leaves)), index, width)

    return path


def _lightgbm(model: Any, threads: int, index: int | None, method: Method) -> Native:
    booster = model if hasattr(model, "num_trees") else model.booster_
    width = booster.num_feature() + 1

    if method == "shapley":

        def shapley(data: Any) -> Explained:
            out = booster.predict(data, pred_contrib=True, num_threads=threads)
            return _select(np.asarray(out), index, width)

        return shapley
    probe = _missing_row(width - 1)
    table = tree_paths.lightgbm_table(
        booster,
        booster.predict(probe, raw_score=True, num_threads=1),
        booster.predict(probe, pred_leaf=True, num_threads=1),
    )

    def path(data: Any) -> Explained:
        leaves = booster.predict(data, pred_leaf=True, num_threads=threads)
        return _select(table.contributions(np.asarray(leaves)), index, width)

    return path
