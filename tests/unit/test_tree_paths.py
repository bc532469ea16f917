"""Path contributions from the per-leaf table (``scorer.model.tree_paths``), against the
libraries themselves: xgboost's own ``approx_contribs`` computes the same values; for lightgbm
(which has none) the contributions and the bias sum to its raw score. Real models, trained here.
"""

from __future__ import annotations

from typing import Any

import lightgbm
import numpy as np
import pandas as pd
import pytest
import xgboost

from scorer.errors import ConfigError
from scorer.model import reasons, tree_paths

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
    np.testing.assert_array_equal(dense(x)[0], sparse(x)[0])


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
