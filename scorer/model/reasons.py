"""The reasons behind each score: the K inputs that contribute most to it, with their
contributions.

The contributions are the model's own, on its margin (log-odds for a classifier): xgboost's
``Booster.predict(DMatrix, pred_contribs=True)`` and lightgbm's ``predict(pred_contrib=True)``
(TreeSHAP: for every row the contributions of all inputs plus the bias sum to the margin). A
categorical input has one contribution, as the libraries give it. Per row the K largest by
absolute value are kept, largest first, and stored in the run's partition as the jsonb column
``reasons``: ``[["contract", 0.31], ["tenure", -0.22]]`` (input name, contribution to 9
significant digits, which is exact for xgboost's float32). Feature values are never stored or
logged: ``scorer explain`` reads them from the features for the one entity asked about.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import numpy.typing as npt

from scorer.errors import ConfigError, ModelOutputError

if TYPE_CHECKING:
    from scorer.io.features import Chunk, FeaturePlan

Contributions = npt.NDArray[np.float64]
"""(rows, inputs + 1): each input's contribution to the margin, the bias last."""
Native = Callable[[Any], Contributions]
"""The model's own contributions for a model input (what its predict takes)."""
FLAVORS = ("xgboost", "lightgbm")
"""The flavors whose libraries give per-row contributions."""
_JSONB_VERSION = b"\x01"


class Explainable(Protocol):
    """What the reasons need of a loaded model (``flavors.LoadedModel``)."""

    @property
    def method(self) -> str:
        """How the model scores, e.g. ``xgboost Booster.inplace_predict``."""

    @property
    def feature_names(self) -> tuple[str, ...]:
        """The input column names, in the model's order."""

    @property
    def contributions(self) -> Callable[[Chunk, FeaturePlan], Contributions] | None:
        """The model's own per-row contributions, if its flavor gives them."""


def native(flavor: str, model: Any, threads: int, index: int | None) -> Native | None:
    """The flavor's own contributions to the positive class's margin (``index``: its output
    column, as the score takes it), or None if the flavor gives none."""
    if flavor == "xgboost":
        return _xgboost(model, threads, index)
    if flavor == "lightgbm":
        return _lightgbm(model, threads, index)
    return None


def require(model: Explainable, k: int) -> None:
    """Refuse ``SCORER_REASONS`` for a model that gives no contributions of its own."""
    if k and model.contributions is None:
        raise ConfigError(
            f"SCORER_REASONS={k} needs the model's own per-row contributions, which only "
            f"{' and '.join(FLAVORS)} models give; this model is scored by {model.method}: "
            "unset SCORER_REASONS (or set it to 0) for this model"
        )


def column(model: Explainable, chunk: Chunk, plan: FeaturePlan, k: int) -> list[bytes]:
    """The chunk's ``reasons`` column: one binary jsonb value per row."""
    assert model.contributions is not None  # require() refused the run before
    found = model.contributions(chunk, plan)
    indices, values = top(found[:, :-1], k)
    if not np.isfinite(values).all():
        raise ModelOutputError(
            f"the model's contributions ({model.method}) are not finite for some rows of a "
            f"chunk of {chunk.ids.size} rows; unset SCORER_REASONS to score without reasons"
        )
    return encode(model.feature_names, indices, values)


def top(
    contributions: npt.NDArray[np.floating[Any]], k: int
) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.float64]]:
    """Per row, the ``k`` (at most every) inputs of largest absolute contribution, largest
    first: their column indices and contributions. One ``argpartition`` over the chunk, then a
    sort of the ``k`` alone."""
    rows, inputs = contributions.shape
    k = min(k, inputs)
    magnitude = np.abs(contributions)
    if k < inputs:
        chosen = np.argpartition(-magnitude, k - 1, axis=1)[:, :k]
    else:
        chosen = np.broadcast_to(np.arange(inputs), (rows, inputs))
    order = np.argsort(-np.take_along_axis(magnitude, chosen, axis=1), axis=1, kind="stable")
    indices = np.take_along_axis(chosen, order, axis=1)
    values = np.take_along_axis(contributions, indices, axis=1).astype(np.float64)
    return indices, values


def encode(
    names: Sequence[str], indices: npt.NDArray[np.intp], values: npt.NDArray[np.float64]
) -> list[bytes]:
    """Binary jsonb values (version 1, then the JSON text): ``[["name", contribution], ...]``."""
    quoted = [json.dumps(name, ensure_ascii=False) for name in names]
    return [
        _JSONB_VERSION
        + (
            "[" + ",".join(f"[{quoted[i]},{v:.9g}]" for i, v in zip(row, vals, strict=True)) + "]"
        ).encode()
        for row, vals in zip(indices.tolist(), values.tolist(), strict=True)
    ]


def _select(out: npt.NDArray[Any], index: int | None, width: int) -> Contributions:
    """The positive class's contributions from a library's output: one margin per row (a
    binary model: negated when the first class is the positive one), else one per class."""
    rows = out.shape[0]
    if out.ndim == 2 and out.shape[1] == width:
        return -out if index == 0 else out
    if index is None:
        raise ModelOutputError(
            "the model gives contributions per class; name the class to explain with "
            "SCORER_POSITIVE_CLASS"
        )
    return np.asarray(out.reshape(rows, -1, width)[:, index, :])


def _xgboost(booster: Any, threads: int, index: int | None) -> Native:
    import xgboost  # noqa: PLC0415 - only the flavor in use is imported

    names, types = booster.feature_names, booster.feature_types
    width = booster.num_features() + 1

    def contributions(data: Any) -> Contributions:
        frame = hasattr(data, "columns")
        matrix = xgboost.DMatrix(
            data,
            feature_names=None if frame else names,
            feature_types=None if frame else types,
            enable_categorical=True,
            nthread=threads,
        )
        out = booster.predict(matrix, pred_contribs=True, validate_features=False)
        return _select(np.asarray(out), index, width)

    return contributions


def _lightgbm(model: Any, threads: int, index: int | None) -> Native:
    booster = model if hasattr(model, "num_trees") else model.booster_

    def contributions(data: Any) -> Contributions:
        out = np.asarray(booster.predict(data, pred_contrib=True, num_threads=threads))
        return _select(out, index, booster.num_feature() + 1)

    return contributions
