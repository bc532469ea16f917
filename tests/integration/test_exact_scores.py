"""Exact or refused, on every flavor: published scores are the model's own on the table's values.

For each flavor a model is trained, registered through the real MLflow server, and scored
over a table built on its own split thresholds (``tests/support/thresholds.py``): each threshold,
and the nearest values the column holds on either side, in ``float8`` columns, two-decimal
``numeric(10,2)`` money, epoch seconds near 1.8e9 (where float32 steps by 128 s), values near
1e39 (beyond float32) and, for the pyfunc model, a ``timestamptz`` at microsecond precision.

The published scores must equal the library's own probabilities on the values read back
from PostgreSQL (numbers as float64, money as ``float(Decimal)``, which is PostgreSQL's own
``numeric::float8``) to 1e-12, row by row. xgboost and CatBoost round their inputs to
float32 themselves, so for them that is their float32 result (and xgboost cannot take values
beyond float32: those rows are rejected); for every other flavor, the same model on any one
column rounded to float32 gives other scores, so a float32 regression fails this test.
scikit-learn's own trees (``DecisionTree``, ``RandomForest``, ``GradientBoosting``) also
round to float32 themselves, so its float64 model here is ``HistGradientBoostingClassifier``.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import psycopg2
import pytest
from mlflow.models import infer_signature

from tests.support import fixtures, services, thresholds
from tests.support.thresholds import Split

pytestmark = pytest.mark.integration

NUMBERS = ("usage", "monthly_charges", "signup_epoch", "magnitude")
TABLE_TYPES = {
    "id": "bigint",
    "usage": "double precision",
    "monthly_charges": "numeric(10,2)",
    "signup_epoch": "double precision",
    "magnitude": "double precision",
    "plan": "text",
    "last_seen": "timestamptz",
}
NEIGHBOURS: dict[str, thresholds.Neighbours] = {
    "usage": thresholds.around_float8,
    "monthly_charges": thresholds.around_cents,
    "signup_epoch": thresholds.around_float8,
    "magnitude": thresholds.around_float8,
    "last_seen": thresholds.around_micros,
}
BEYOND_FLOAT32 = (float(np.nextafter(1e39, 0)), 1e39, float(np.nextafter(1e39, np.inf)))
EPOCH = pd.Timestamp(0, tz="UTC")
HISTOGRAM_TYPES = [  # what MLflow's skops format asks a user to trust for this model
    "functools.partial",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.utils.validation.check_array",
]
TOLERANCE = 1e-12


@dataclass(frozen=True)
class Trained:
    """A trained model, what it reads, and its library's own probability of class 1."""

    inputs: tuple[str, ...]
    splits: list[Split]
    proba: Callable[[pd.DataFrame], Any]  # on a frame as the table holds it
    log: Callable[[str], Any]  # logs and registers it under the given name
    rounds_to_float32: bool = False  # the library converts its inputs to float32 itself


def logged(flavor: str, model: Any, sample: pd.DataFrame, **extra: Any) -> Callable[[str], Any]:
    """Log ``model`` with its own MLflow flavor and the signature MLflow infers."""

    def log(name: str) -> Any:
        signature = infer_signature(sample.head(50))
        return getattr(mlflow, flavor).log_model(
            model, name="model", signature=signature, registered_model_name=name, **extra
        )

    return log


def xgboost_model(training: pd.DataFrame) -> Trained:
    """``XGBClassifier``; xgboost refuses values beyond float32 in training too."""
    import xgboost

    numbers = list(NUMBERS)
    fit = training[~beyond_float32(training.magnitude)]
    model = xgboost.XGBClassifier(n_estimators=30, max_depth=4, random_state=0, n_jobs=1)
    model.fit(fit[numbers], fit.churned)
    return Trained(
        NUMBERS,
        thresholds.xgboost_splits(model.get_booster()),
        lambda frame: model.predict_proba(frame[numbers])[:, 1],
        logged("xgboost", model, fit[numbers]),
        rounds_to_float32=True,
    )


def lightgbm_model(training: pd.DataFrame) -> Trained:
    """``LGBMClassifier``: float64 thresholds, compared in float64."""
    import lightgbm

    numbers = list(NUMBERS)
    model = lightgbm.LGBMClassifier(
        n_estimators=30, num_leaves=15, random_state=0, n_jobs=1, verbose=-1
    ).fit(training[numbers], training.churned)
    return Trained(
        NUMBERS,
        thresholds.lightgbm_splits(model.booster_),
        lambda frame: model.predict_proba(frame[numbers])[:, 1],
        logged("lightgbm", model, training[numbers]),
    )


def catboost_model(training: pd.DataFrame) -> Trained:
    """``CatBoostClassifier``: it stores float32 borders and rounds its inputs to float32."""
    import catboost

    numbers = list(NUMBERS)
    model = catboost.CatBoostClassifier(
        iterations=30, depth=4, random_seed=0, thread_count=1, verbose=False,
        allow_writing_files=False,
    ).fit(training[numbers], training.churned)  # fmt: skip
    return Trained(
        NUMBERS,
        thresholds.catboost_splits(model),
        lambda frame: model.predict_proba(frame[numbers])[:, 1],
        logged("catboost", model, training[numbers]),
        rounds_to_float32=True,
    )


def sklearn_model(training: pd.DataFrame) -> Trained:
    """``HistGradientBoostingClassifier`` with ``plan`` as a native category (explicit),
    ordinal-encoded from the strings the scorer hands scikit-learn."""
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OrdinalEncoder

    inputs = ["plan", *NUMBERS]
    encode = ColumnTransformer(
        [("plan", OrdinalEncoder(), ["plan"])],
        remainder="passthrough",
        verbose_feature_names_out=False,
    ).set_output(transform="pandas")
    model = HistGradientBoostingClassifier(
        max_iter=30, max_leaf_nodes=15, categorical_features=["plan"], random_state=0
    )
    pipeline = Pipeline([("encode", encode), ("model", model)]).fit(
        training[inputs], training.churned
    )
    plans = list(pipeline[0].named_transformers_["plan"].categories_[0])
    return Trained(
        tuple(inputs),
        thresholds.histogram_splits(model, {"plan": plans}),
        lambda frame: pipeline.predict_proba(frame[inputs])[:, 1],
        logged("sklearn", pipeline, training[inputs], skops_trusted_types=HISTOGRAM_TYPES),
    )


def pyfunc_model(training: pd.DataFrame) -> Trained:
    """A ``PythonModel`` whose signature declares ``last_seen: datetime``; it scores a
    ``HistGradientBoostingClassifier`` on that timestamp in epoch microseconds."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    inputs = ["monthly_charges", "signup_epoch", "magnitude", "last_seen"]
    classifier = HistGradientBoostingClassifier(max_iter=20, max_leaf_nodes=15, random_state=0)
    classifier.fit(training[inputs], training.churned)

    def probability(frame: pd.DataFrame) -> Any:
        seen = pd.to_datetime(frame["last_seen"], utc=True)  # naive values are UTC
        design = frame[inputs].drop(columns="last_seen").astype(np.float64)
        design["last_seen"] = (seen - EPOCH) / pd.Timedelta(microseconds=1)
        return classifier.predict_proba(design)[:, 1]

    python_model = fixtures.pyfunc_model(probability)
    sample = training[inputs].head(50).assign(last_seen=micros_as_timestamps(training.last_seen))
    sample["last_seen"] = sample["last_seen"].dt.tz_localize(None)  # infer_signature: datetime

    def log(name: str) -> Any:
        return mlflow.pyfunc.log_model(
            name="model",
            python_model=python_model,
            signature=infer_signature(sample, probability(sample)),
            registered_model_name=name,
        )

    return Trained(
        tuple(inputs),
        thresholds.histogram_splits(classifier, {}),
        lambda frame: np.asarray(python_model.predict(None, frame[inputs])),
        log,
    )


TRAIN: dict[str, Callable[[pd.DataFrame], Trained]] = {
    "xgboost": xgboost_model,
    "lightgbm": lightgbm_model,
    "sklearn": sklearn_model,
    "catboost": catboost_model,
    "pyfunc": pyfunc_model,
}


def micros_as_timestamps(micros: pd.Series[float]) -> pd.Series[Any]:
    """Epoch microseconds as UTC timestamps, exactly."""
    return pd.to_datetime(micros.astype(np.int64), unit="us", utc=True)


def beyond_float32(values: pd.Series[float]) -> pd.Series[bool]:
    """The values that float32 cannot hold (they round to infinity)."""
    with np.errstate(over="ignore"):
        beyond = np.isinf(values.to_numpy().astype(np.float32))
    return pd.Series(beyond, index=values.index, dtype=bool)


def table_on_thresholds(model: Trained, training: pd.DataFrame, seed: int) -> pd.DataFrame:
    """Rows on the model's thresholds, ordinary rows, and rows with values near 1e39."""
    on_splits = thresholds.rows_on(model.splits, training, NEIGHBOURS, seed)
    ordinary = thresholds.accounts(200, seed=seed + 1)
    beyond = ordinary.head(len(BEYOND_FLOAT32)).assign(magnitude=BEYOND_FLOAT32)
    frame = pd.concat([on_splits, ordinary, beyond], ignore_index=True)
    frame.insert(0, "id", np.arange(1, len(frame) + 1, dtype=np.int64))
    return frame.assign(last_seen=micros_as_timestamps(frame.last_seen))


def read_back(url: str, table: str) -> pd.DataFrame:
    """The table as psycopg2 reads it, in the types the scorer promises each flavor:
    float64 numbers, ``float(Decimal)`` for ``numeric``, UTC timestamps to the microsecond."""
    with closing(psycopg2.connect(url)) as conn, conn.cursor() as cur:
        cur.execute(f"SELECT * FROM {table} ORDER BY id")
        names = [column.name for column in cur.description or ()]
        frame = pd.DataFrame(cur.fetchall(), columns=names)
    frame["monthly_charges"] = [float(value) for value in frame.monthly_charges]  # Decimal
    frame["last_seen"] = pd.to_datetime(frame.last_seen, utc=True)
    return frame.astype(dict.fromkeys(NUMBERS, np.float64))


def float32_rounded(frame: pd.DataFrame) -> pd.DataFrame:
    """A float32 scorer's view: numbers, and timestamps' epoch seconds, rounded to float32."""
    out = frame.copy()
    for name in NUMBERS:
        out[name] = frame[name].to_numpy().astype(np.float32).astype(np.float64)
    seconds = ((frame.last_seen - EPOCH) / pd.Timedelta(seconds=1)).to_numpy()
    out["last_seen"] = pd.to_datetime(seconds.astype(np.float32).astype(np.float64), unit="s")
    out["last_seen"] = out["last_seen"].dt.tz_localize("UTC")
    return out


def differences(published: pd.Series[float], expected: pd.Series[float]) -> str:
    """What differs between two score series by id; empty when they agree to TOLERANCE."""
    missing = expected.index.difference(published.index)
    extra = published.index.difference(expected.index)
    common = expected.index.intersection(published.index)
    gap = (published[common] - expected[common]).abs()
    off = gap[gap > TOLERANCE]
    problems = []
    if len(missing):
        problems.append(f"{len(missing)} rows not published (ids {list(missing[:5])}...)")
    if len(extra):
        problems.append(f"{len(extra)} rows published that should not be")
    if len(off):
        worst = off.sort_values().index[-1]
        problems.append(
            f"{len(off)} of {len(common)} rows off by up to {off.max():.3g} (id {worst}: "
            f"published {published[worst]:.17g}, the library's own {expected[worst]:.17g})"
        )
    return "; ".join(problems)


@pytest.mark.parametrize("flavor", TRAIN)
def test_published_scores_are_the_librarys_own_on_the_tables_values(
    mlflow_uri: str, postgres_url: str, target_schema: str, flavor: str
) -> None:
    training = thresholds.accounts(2_000, seed=41)
    model = TRAIN[flavor](training)
    name = f"exact-{flavor}"
    fixtures.register(mlflow_uri, name, model.log)
    built = table_on_thresholds(model, training, seed=43)
    table = f"features.exact_{flavor}"
    fixtures.load_table(postgres_url, table, built, TABLE_TYPES, primary_key=("id",))
    frame = read_back(postgres_url, table)
    # The table holds the values the rows were built with: they sit on the thresholds.
    pd.testing.assert_frame_equal(frame[list(NUMBERS)], built[list(NUMBERS)])
    assert (frame.last_seen == built.last_seen).all()

    run_id = f"exact-{flavor}-{uuid.uuid4().hex[:8]}"
    env = {
        "MLFLOW_TRACKING_URI": mlflow_uri,
        "SCORER_DATABASE_URL": postgres_url,
        "SCORER_MODEL_NAME": name,
        "SCORER_MODEL_ALIAS": "champion",
        "SCORER_FEATURES_TABLE": table,
        "SCORER_ENTITY_COLUMN": "id",
        "SCORER_TARGET_SCHEMA": target_schema,
        "SCORER_RUN_ID": run_id,
        "SCORER_MAX_REJECTED_RATIO": "1",  # rejected rows are counted below, not fatal
    }
    result = services.run_scorer(env, "run")
    assert result.returncode == 0, result.stdout + result.stderr
    rows = services.query(
        postgres_url,
        f'SELECT entity_id, score FROM "{target_schema}".predictions WHERE run_id = %s',
        (run_id,),
    )
    published = pd.Series(dict(rows), dtype=np.float64)

    # xgboost cannot take values beyond float32: those rows are rejected, naming the column.
    no_rows = pd.Series(False, index=frame.index)
    rejected = beyond_float32(frame.magnitude) if flavor == "xgboost" else no_rows
    scored = frame[~rejected].set_index("id", drop=False)
    expected = pd.Series(model.proba(scored), index=scored.index, dtype=np.float64)
    (rejected_by,) = services.query(
        postgres_url,
        f'SELECT rows_rejected_by FROM "{target_schema}".scoring_runs WHERE run_id = %s',
        (run_id,),
    )[0]
    problems = differences(published, expected)
    assert not problems, f"{flavor}: {problems}; rejected: {rejected_by}"
    assert sum(rejected_by.values()) == int(rejected.sum())
    assert all(reason.startswith("magnitude") for reason in rejected_by)

    # The mutation: the same model on float32-rounded values (what a float32 scorer hands it),
    # one column at a time, so that every kind of column catches it on its own.
    finite = scored[~beyond_float32(scored.magnitude)]
    rounded = float32_rounded(finite)
    for column in (name for name in model.inputs if name != "plan"):
        mutated = pd.Series(
            model.proba(finite.assign(**{column: rounded[column]})),
            index=finite.index,
            dtype=np.float64,
        )
        if model.rounds_to_float32:  # the library's own conversion: the same scores
            pd.testing.assert_series_equal(mutated, expected[finite.index], rtol=0, atol=0)
        else:
            assert differences(published, mutated), f"{flavor}: float32 {column} scores the same"
