"""Path contributions from the per-leaf table (``scorer.model.tree_paths``) and the compiled
walk of an xgboost forest (``scorer.model.tree_walk``), against the libraries themselves:
xgboost's own ``approx_contribs`` computes the same values, and its ``pred_leaf`` names the
leaves the walk must reach; for lightgbm (which has none) the contributions and the bias sum to
its raw score. Real models, trained here.
"""

from __future__ import annotations

from typing import Any

import lightgbm
import numpy as np
import pandas as pd
import pytest
import xgboost

from scorer.errors import ConfigError
from scorer.model import reasons, tree_paths, tree_walk

ROWS = 2000


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Six inputs with 5% missing, a binary and a three-class label."""
    rng = np.random.default_rng(11)
    x = rng.random((ROWS, 6))
    x[rng.random(x.shape) < 0.05] = np.nan
    binary = (np.nan_to_num(x[:, 0]) + rng.random(ROWS) > 1).astype(int)
    three = np.clip((np.nan_to_num(x[:, 1]) * 3).astype(int), 0, 2)
    return x, binary, three


XGBOOST = {
    "binary, base_score 0.3": ({"objective": "binary:logistic", "base_score": 0.3}, 1),
    "three classes": ({"objective": "multi:softprob", "num_class": 3}, 2),
    "3 parallel trees a round": ({"objective": "binary:logistic", "num_parallel_tree": 3}, 1),
}


@pytest.mark.parametrize("case", XGBOOST)
def test_xgboost_path_contributions_are_its_own_approx_contribs(
    data: tuple[np.ndarray, np.ndarray, np.ndarray], case: str
) -> None:
    x, binary, three = data
    params, index = XGBOOST[case]
    label = three if "num_class" in params else binary
    booster = xgboost.train({**params, "max_depth": 4}, xgboost.DMatrix(x, label=label), 25)
    path = reasons.native("xgboost", booster, 1, index, "path")
    assert path is not None
    found, implied = path(x.astype(np.float32))
    own = booster.predict(xgboost.DMatrix(x), pred_contribs=True, approx_contribs=True)
    own = own if own.ndim == 2 else own[:, index, :]
    np.testing.assert_allclose(found, own, rtol=0, atol=1e-5)
    scores = booster.predict(xgboost.DMatrix(x))
    np.testing.assert_allclose(implied, scores if scores.ndim == 1 else scores[:, index], atol=1e-6)


def test_a_sparse_table_gives_what_a_dense_one_gives(
    data: tuple[np.ndarray, np.ndarray, np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    x, binary, _ = data
    booster = xgboost.train({"objective": "binary:logistic"}, xgboost.DMatrix(x, label=binary), 20)
    dense = reasons.native("xgboost", booster, 1, 1, "path")
    monkeypatch.setattr(tree_paths, "DENSE_BYTES", 0)
    sparse = reasons.native("xgboost", booster, 1, 1, "path")
    assert dense is not None
    assert sparse is not None
    frame = pd.DataFrame(x)  # a DataFrame takes the table (a matrix, the walk)
    np.testing.assert_array_equal(dense(frame)[0], sparse(frame)[0])


def _edge_cases(forest: tree_walk.Forest, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``x`` with a quarter of its cells set to a split condition of their input (a number
    equal to the condition goes right), to the float32 just below one, or to NaN."""
    edged = x.astype(np.float32)
    splits = forest.splits
    numeric = (splits["categorical"] == 0) & (splits["left"] != splits["left"][-1])  # inner
    for column in range(x.shape[1]):
        conditions = splits["threshold"][numeric & (splits["feature"] == column)]
        if conditions.size == 0:
            continue
        cells = rng.random(x.shape[0]) < 0.25
        picked = rng.choice(conditions, int(cells.sum()))
        below = rng.random(picked.size) < 0.5
        picked[below] = np.nextafter(picked[below], np.float32(-np.inf))
        edged[cells, column] = picked
    edged[rng.random(edged.shape) < 0.05] = np.nan
    return edged


SPLITS = {
    "numbers, deep": ({"max_depth": 8}, False),
    "categories, partitions": ({"max_depth": 5, "max_cat_to_onehot": 1}, True),
    "categories, one-hot": ({"max_depth": 5, "max_cat_to_onehot": 64}, True),
}


@pytest.mark.parametrize("case", SPLITS)
def test_the_compiled_walk_reaches_the_leaves_xgboost_reaches(
    data: tuple[np.ndarray, np.ndarray, np.ndarray], case: str
) -> None:
    """What the per-leaf table gives from xgboost's own ``pred_leaf`` (to the rounding of its
    text dump), on split conditions, the float32 below them, NaN, and categories the model never
    saw, negative, fractional or from 2^24 up (which all go left; xgboost refuses infinity)."""
    x, binary, _ = data
    params, categories = SPLITS[case]
    rng = np.random.default_rng(5)
    x = x.copy()
    types = None
    if categories:
        x[:, 2] = rng.integers(0, 12, ROWS)
        x[:, 3] = rng.integers(0, 40, ROWS)
        binary = ((x[:, 2] % 3 == 0) ^ (x[:, 3] > 20)).astype(int)
        types = ["q", "q", "c", "c", "q", "q"]
    train = xgboost.DMatrix(x, label=binary, feature_types=types, enable_categorical=True)
    booster = xgboost.train({"objective": "binary:logistic", **params}, train, 30)
    probe = xgboost.DMatrix(np.full((1, 6), np.nan), feature_types=types, enable_categorical=True)
    margin = booster.predict(probe, output_margin=True)
    table = tree_paths.xgboost_table(booster, margin, booster.predict(probe, pred_leaf=True))
    forest = tree_walk.xgboost(booster, 1, margin)
    assert (forest.splits["categorical"] == 1).any() == categories
    rows = _edge_cases(forest, x, rng)
    if categories:
        odd = rng.choice([-1.0, 12.5, 3.7, 40.0, 77.0, 2.0**24, 1e30, -1e30], (ROWS, 2))
        unusual = rng.random((ROWS, 2)) < 0.2
        rows[:, 2:4] = np.where(unusual, odd, rows[:, 2:4])
    matrix = xgboost.DMatrix(rows, feature_types=types, enable_categorical=True)
    walked = forest.walk(rows)
    # A wrong turn anywhere moves a row's contributions by a leaf's output (about 0.01 or more).
    np.testing.assert_allclose(
        walked, table.contributions(booster.predict(matrix, pred_leaf=True)), rtol=0, atol=1e-6
    )
    margins = booster.predict(matrix, output_margin=True)
    np.testing.assert_allclose(walked.sum(axis=1), margins, rtol=0, atol=1e-5)


def test_the_walk_refuses_rows_of_another_width(
    data: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> None:
    x, binary, _ = data
    booster = xgboost.train({"objective": "binary:logistic"}, xgboost.DMatrix(x, label=binary), 3)
    probe = xgboost.DMatrix(np.full((1, 6), np.nan))
    forest = tree_walk.xgboost(booster, 1, booster.predict(probe, output_margin=True))
    with pytest.raises(ValueError, match="rows of 6 inputs"):
        forest.walk(x[:, :5])


@pytest.mark.parametrize("classes", [2, 3])
def test_lightgbm_path_contributions_sum_to_its_raw_score(
    data: tuple[np.ndarray, np.ndarray, np.ndarray], classes: int
) -> None:
    x, binary, three = data
    label = binary if classes == 2 else three
    model = lightgbm.LGBMClassifier(n_estimators=30, num_leaves=8, verbose=-1).fit(x, label)
    index = classes - 1
    path = reasons.native("lightgbm", model, 1, index, "path")
    assert path is not None
    found, implied = path(x)
    raw = model.booster_.predict(x, raw_score=True)
    margin = raw if raw.ndim == 1 else raw[:, index]
    np.testing.assert_allclose(found.sum(axis=1), margin, atol=1e-9)
    np.testing.assert_allclose(implied, model.predict_proba(x)[:, index], atol=1e-12)


def test_lightgbm_categorical_splits_are_charged_to_their_input() -> None:
    rng = np.random.default_rng(3)
    frame = pd.DataFrame({
        "usage": rng.random(ROWS),
        "contract": pd.Categorical(rng.choice(["monthly", "yearly", "two-year"], ROWS)),
    })  # fmt: skip
    label = ((frame.contract == "monthly") | (frame.usage > 0.8)).astype(int)
    model = lightgbm.LGBMClassifier(n_estimators=20, num_leaves=6, verbose=-1).fit(frame, label)
    path = reasons.native("lightgbm", model, 1, 1, "path")
    assert path is not None
    found, _ = path(frame)
    monthly = (frame.contract == "monthly").to_numpy()
    # The contract moves a monthly customer's margin up and the others' down.
    assert found[monthly, 1].min() > 0 > found[~monthly, 1].max()


def test_a_dart_booster_is_refused_naming_the_setting(
    data: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> None:
    x, binary, _ = data
    params: dict[str, Any] = {"objective": "binary:logistic", "booster": "dart"}
    booster = xgboost.train(params, xgboost.DMatrix(x, label=binary), 5)
    with pytest.raises(ConfigError, match=r"SCORER_REASONS.*booster is dart"):
        reasons.native("xgboost", booster, 1, 1, "path")


def test_a_lightgbm_random_forest_is_refused_naming_the_setting(
    data: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> None:
    x, binary, _ = data
    forest = lightgbm.LGBMClassifier(
        boosting_type="rf", n_estimators=5, subsample=0.8, subsample_freq=1, verbose=-1
    ).fit(x, binary)
    with pytest.raises(ConfigError, match=r"SCORER_REASONS.*averages its trees"):
        reasons.native("lightgbm", forest, 1, 1, "path")
