"""How strings reach a model: xgboost's stored training codes, pandas categoricals, Python strings.

The models are real (xgboost trained here on pandas categoricals, saved with mlflow); the
scorer's own input must give exactly what the library gives for the same rows.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import mlflow.xgboost
import numpy as np
import pandas as pd
import pytest
import xgboost
from mlflow.models import infer_signature

from scorer.errors import ModelOutputError, SchemaMismatchError
from scorer.io.features import Chunk, FeaturePlan, ModelInput, Snapshot
from scorer.model import flavors, reasons
from scorer.postgres import wire
from scorer.postgres.identifiers import Relation

CONTRACTS = ["Two year", "Month-to-month", "One year"]  # not sorted: the chunk's are
PAYMENTS = ["Electronic check", "Mailed check", "Bank transfer (automatic)", "Zelle pay"]
PLANTED = "planted-category-7f3a"


def texts(values: Sequence[str | None]) -> wire.Texts:
    """A chunk's column as the wire gives it: UTF-8 bytes, NULL as empty and flagged."""
    raw = [b"" if value is None else value.encode() for value in values]
    return wire.Texts(np.array(raw, dtype=f"S{max(len(v) for v in raw) or 1}"), np.array(
        [value is None for value in values]
    ))  # fmt: skip


def plan() -> FeaturePlan:
    inputs = (
        ModelInput("contract", "string", "string"),
        ModelInput("tenure", "number", "double"),
        ModelInput("payment", "string", "string"),
    )
    layout = wire.RowLayout((("tail", ">i4"), ("null_id", "u1"), ("f0", ">f8")), 3)
    return FeaturePlan(
        Relation(None, "t"), "customer_id", "text", inputs, Snapshot("", ""), layout, "",
        (), ("tenure",), ("contract", "payment"),
    )  # fmt: skip


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> tuple[xgboost.Booster, Path]:
    """A booster trained on pandas categoricals, saved as an MLflow xgboost model."""
    rng = np.random.default_rng(7)
    n = 4000
    frame = pd.DataFrame({
        "contract": pd.Categorical(rng.choice(CONTRACTS, n), categories=CONTRACTS),
        "tenure": rng.integers(0, 72, n).astype(np.float64),
        "payment": pd.Categorical(rng.choice(PAYMENTS, n), categories=PAYMENTS),
    })  # fmt: skip
    label = (
        (frame["contract"] == "Month-to-month") * 0.5
        + (frame["payment"] == "Zelle pay") * 0.3
        + rng.random(n) * 0.4
        - frame["tenure"] / 200
    ) > 0.4
    booster = xgboost.train(
        {"objective": "binary:logistic", "max_depth": 4, "max_cat_to_onehot": 1},
        xgboost.DMatrix(frame, label.astype(int), enable_categorical=True),
        30,
    )
    path = tmp_path_factory.mktemp("model") / "xgb"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # MLflow comments on its own pyfunc type hints
        signature = infer_signature(frame.astype({"contract": str, "payment": str}))
        mlflow.xgboost.save_model(booster, str(path), signature=signature)
    return booster, path


def chunk(rows: dict[str, list[str | None]], tenure: list[float]) -> Chunk:
    ids = np.array([f"id-{i}".encode() for i in range(len(tenure))])
    numbers = np.array(tenure, dtype=np.float32).reshape(-1, 1)
    return Chunk(ids, numbers, {name: texts(values) for name, values in rows.items()}, len(ids))


def loaded(path: Path) -> flavors.LoadedModel:
    return flavors.load(path, "probability", None, threads=1)


def test_xgboost_scores_strings_by_its_training_codes(
    model: tuple[xgboost.Booster, Path],
) -> None:
    """A chunk's categories in another order, a subset of them, NULLs: the booster's answer
    for the same rows as categoricals of its training categories."""
    booster, path = model
    contract = ["Two year", None, "One year", "Two year", "Month-to-month", None]
    payment = ["Zelle pay", "Mailed check", None, "Electronic check", "Zelle pay", "Mailed check"]
    tenure = [3.0, 50.0, 12.0, 1.0, 70.0, 0.0]
    scorer_model = loaded(path)
    got = scorer_model.predict(chunk({"contract": contract, "payment": payment}, tenure), plan())
    assert sorted(CONTRACTS) != CONTRACTS  # the chunk's categories are not the training ones
    in_training_order = pd.DataFrame(
        {
            "contract": pd.Categorical(contract, categories=CONTRACTS),
            "tenure": tenure,
            "payment": pd.Categorical(payment, categories=PAYMENTS),
        }
    )
    expected = booster.inplace_predict(in_training_order)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-7)
    assert scorer_model.method == "xgboost Booster.inplace_predict"


def test_xgboost_refuses_a_category_it_never_saw_naming_the_column_not_the_value(
    model: tuple[xgboost.Booster, Path],
) -> None:
    _, path = model
    rows = {"contract": ["One year", PLANTED], "payment": ["Mailed check", "Mailed check"]}
    with pytest.raises(ModelOutputError) as raised:
        loaded(path).predict(chunk(rows, [1.0, 2.0]), plan())
    assert "contract" in str(raised.value)
    assert "never saw" in str(raised.value)
    assert PLANTED not in str(raised.value)


@pytest.mark.parametrize("value", ["One year and more", "One", "one year", ""])
def test_a_value_close_to_a_category_is_not_that_category(
    model: tuple[xgboost.Booster, Path], value: str
) -> None:
    """Matched byte for byte: xgboost 3.2's own re-coding of a DataFrame takes ``"One"`` for
    ``"One year"``; the scorer refuses every value the model never saw."""
    _, path = model
    rows = {"contract": [value], "payment": ["Mailed check"]}
    with pytest.raises(ModelOutputError, match="contract holds a category the model never saw"):
        loaded(path).predict(chunk(rows, [1.0]), plan())


def test_an_xgboost_model_whose_categories_cannot_be_read_back_is_refused_at_load(
    tmp_path: Path,
) -> None:
    """xgboost 3.2 stores a non-ASCII category cut at its length in characters ("Zoë" keeps
    3 of its 4 bytes): such a model is refused before anything is read, naming the input."""
    frame = pd.DataFrame({
        "payment": pd.Categorical(["Zoë", "a", "b", "a"] * 50), "tenure": np.arange(200.0)
    })  # fmt: skip
    booster = xgboost.train(
        {"objective": "binary:logistic"},
        xgboost.DMatrix(frame, np.arange(200) % 2, enable_categorical=True),
        2,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # MLflow comments on its own pyfunc type hints
        signature = infer_signature(frame.astype({"payment": str}))
        mlflow.xgboost.save_model(booster, str(tmp_path / "m"), signature=signature)
    with pytest.raises(SchemaMismatchError, match="'payment' is a string"):
        loaded(tmp_path / "m")


@pytest.mark.parametrize(
    "values",
    [
        ["b", None, "a", "", "b", "ä"],
        [None, None],
        ["only"],
    ],
)
def test_categoricals_and_python_strings_are_what_pandas_makes_of_the_strings(
    values: list[str | None],
) -> None:
    column = texts(values)
    strings = flavors.python_strings(column)
    assert strings.tolist() == values
    expected = pd.Categorical(strings)
    got = flavors._categorical(column)
    assert got.categories.tolist() == expected.categories.tolist()
    assert got.codes.tolist() == expected.codes.tolist()


def test_reasons_of_a_categorical_xgboost_model_are_its_own_path_contributions(
    model: tuple[xgboost.Booster, Path],
) -> None:
    """Through the scorer's coded input: xgboost's ``approx_contribs`` for the same rows, and
    a chunk whose scores the contributions do not reproduce is refused, naming no value."""
    booster, path = model
    contract = ["Two year", None, "One year", "Month-to-month"]
    payment = ["Zelle pay", "Mailed check", None, "Electronic check"]
    tenure = [3.0, 50.0, 12.0, 70.0]
    scorer_model = flavors.load(path, "probability", None, 1, reasons_method="path")
    rows = chunk({"contract": contract, "payment": payment}, tenure)
    assert scorer_model.contributions is not None
    found, implied = scorer_model.contributions(rows, plan())
    frame = pd.DataFrame({
        "contract": pd.Categorical(contract, categories=CONTRACTS),
        "tenure": tenure,
        "payment": pd.Categorical(payment, categories=PAYMENTS),
    })  # fmt: skip
    own = booster.predict(
        xgboost.DMatrix(frame, enable_categorical=True), pred_contribs=True, approx_contribs=True
    )
    np.testing.assert_allclose(found, own, rtol=0, atol=1e-5)
    scores = scorer_model.predict(rows, plan())
    np.testing.assert_allclose(implied, scores, rtol=0, atol=1e-6)
    assert reasons.column(scorer_model, rows, plan(), 2, scores).ends.size == len(tenure)
    with pytest.raises(ModelOutputError, match="do not add up to its scores") as refused:
        reasons.column(scorer_model, rows, plan(), 2, scores + 0.01)
    assert not any(value in str(refused.value) for value in ("Two year", "Zelle", "50"))


def test_without_reasons_asked_for_a_model_gives_no_contributions(
    model: tuple[xgboost.Booster, Path],
) -> None:
    assert loaded(model[1]).contributions is None
