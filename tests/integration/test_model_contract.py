"""What a model gives and how it fails, in words: library failures name the column (or the
dtypes handed to the model), a pyfunc's DataFrame is read by column name, a model without a
signature is told how to log one, and a failed run leaves a ``failed`` row and no prediction.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.models import infer_signature

from scorer.postgres.identifiers import quote_identifier
from tests.support import fixtures, services
from tests.support.stack import ChurnModel

pytestmark = pytest.mark.integration

TABLE = "features.contract_customers"
ROWS = 600
PLANTED = 4321.8765  # one customer's monthly charges: never in a message
HOLES = 7  # customers whose support_calls are NULL


@pytest.fixture(scope="module")
def customers(postgres_url: str) -> pd.DataFrame:
    frame = fixtures.synthetic_customers(ROWS, seed=17)
    frame.loc[3, "monthly_charges"] = PLANTED
    fixtures.load_features(postgres_url, TABLE, frame)
    return frame


def numbers(frame: pd.DataFrame, columns: tuple[str, ...]) -> pd.DataFrame:
    return frame[list(columns)].astype(np.float64)


def logistic(frame: pd.DataFrame, columns: tuple[str, ...]) -> Any:
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(max_iter=500).fit(numbers(frame, columns), frame.churned)


def churn_probability(frame: pd.DataFrame) -> Any:
    return 1 / (1 + np.exp(-(frame["tenure_months"].to_numpy(np.float64) - 30) / 10))


def frame_model(columns: Callable[[Any], dict[str, Any]]) -> Any:
    """A pyfunc model returning ``pd.DataFrame(columns(churn probability))``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # MLflow comments on untyped predict signatures
        from mlflow.pyfunc import PythonModel

        class Frame(PythonModel):  # type: ignore[misc]
            def predict(self, context, model_input, params=None):  # type: ignore[no-untyped-def]
                return pd.DataFrame(columns(churn_probability(model_input)))

        return Frame()


@pytest.fixture(scope="module")
def models(mlflow_uri: str, customers: pd.DataFrame) -> dict[str, str]:
    """Registered models, by what they do."""
    used = ("tenure_months", "monthly_charges", "total_charges")
    renamed = ("tenure_months", "monthly_charges", "support_calls")
    signed = numbers(customers, renamed).head(20)

    def sklearn(model: Any, signature: Any) -> Callable[[str], Any]:
        return lambda name: mlflow.sklearn.log_model(
            model, name="model", signature=signature, registered_model_name=name
        )

    def pyfunc(model: Any) -> Callable[[str], Any]:
        return lambda name: mlflow.pyfunc.log_model(
            name="model",
            python_model=model,
            signature=infer_signature(signed, np.zeros(20)),
            registered_model_name=name,
        )

    registered = {
        # A signature out of step with the model: sklearn names the column it never saw.
        "renamed": sklearn(logistic(customers, used), infer_signature(signed)),
        # No NaN allowed: sklearn names no column, so the message lists what it was handed.
        "no-nan": sklearn(logistic(customers, renamed), infer_signature(signed)),
        "unsigned": sklearn(logistic(customers, renamed), None),
        "label-probability": pyfunc(
            frame_model(lambda p: {"probability": p, "label": (p >= 0.5).astype(np.int64)})
        ),
        "classes": pyfunc(frame_model(lambda p: {"0": 1 - p, "1": p})),
    }
    for name, log in registered.items():
        fixtures.register(mlflow_uri, f"mc-{name}", log)
    return {name: f"mc-{name}" for name in registered}


def env_for(scorer_env: dict[str, str], model: str, run_id: str, **extra: str) -> dict[str, str]:
    return {
        **scorer_env,
        "SCORER_MODEL_NAME": model,
        "SCORER_FEATURES_TABLE": TABLE,
        "SCORER_RUN_ID": run_id,
        **extra,
    }


def tables(url: str, target: str) -> list[tuple[Any, ...]]:
    return services.query(
        url,
        "SELECT relname FROM pg_class WHERE relnamespace = %s::regnamespace ORDER BY relname",
        (quote_identifier(target),),
    )


def refused(result: Any, kind: str) -> dict[str, Any]:
    assert result.returncode == 2, result.stdout + result.stderr
    summary = services.json_lines(result.stdout)[-1]
    assert summary["kind"] == kind, summary
    assert str(PLANTED) not in result.stdout + result.stderr
    return summary


@pytest.mark.parametrize(
    ("model", "holes", "expected"),
    [
        ("renamed", 0, "ValueError on column support_calls (float64)"),
        (
            "no-nan",
            HOLES,
            "ValueError; inputs: tenure_months float64, monthly_charges float64, "
            f"support_calls float64 with {HOLES} missing",
        ),
    ],
)
def test_a_library_failure_names_the_column_and_leaves_a_failed_row_and_no_prediction(
    scorer_env: dict[str, str],
    postgres_url: str,
    customers: pd.DataFrame,
    models: dict[str, str],
    target_schema: str,
    model: str,
    holes: int,
    expected: str,
) -> None:
    services.execute(
        postgres_url, f"UPDATE {TABLE} SET support_calls = NULL WHERE customer_id <= %s", (holes,)
    )
    before = tables(postgres_url, target_schema)
    env = env_for(scorer_env, models[model], f"fails-{model}")
    try:
        summary = refused(services.run_scorer(env, "run"), "model_output")
    finally:
        fixtures.load_features(postgres_url, TABLE, customers)
    assert (
        f"the model's sklearn predict_proba failed on a chunk of {ROWS} rows: "
        in (summary["error"])
    )
    assert summary["error"].endswith(expected)
    # What a failed run leaves behind: its row, failed, with the error; no prediction, and
    # not a table more than before.
    rows = services.query(
        postgres_url,
        f'SELECT status, error, rows_scored FROM "{target_schema}".scoring_runs',
    )
    assert rows == [("failed", summary["error"], 0)]
    for parent in ("predictions", "predictions_text", "predictions_uuid"):
        count = services.query(postgres_url, f'SELECT count(*) FROM "{target_schema}".{parent}')
        assert count == [(0,)]
    assert tables(postgres_url, target_schema) == before


def scores(url: str, target: str, run_id: str) -> pd.Series:
    rows = services.query(
        url, f'SELECT entity_id, score FROM "{target}".predictions WHERE run_id = %s', (run_id,)
    )
    return pd.Series(dict(rows), dtype=np.float64).sort_index()


def test_a_pyfunc_dataframe_is_scored_by_column_name_never_by_position(
    scorer_env: dict[str, str],
    postgres_url: str,
    customers: pd.DataFrame,
    models: dict[str, str],
    target_schema: str,
    churn_model: ChurnModel,
) -> None:
    expected = pd.Series(churn_probability(customers), index=customers.customer_id)
    result = services.run_scorer(env_for(scorer_env, models["label-probability"], "lp"), "run")
    assert result.returncode == 0, result.stdout + result.stderr
    np.testing.assert_allclose(scores(postgres_url, target_schema, "lp"), expected, atol=1e-12)

    # Two classes and no positive class named: which column is the score is not guessed.
    summary = refused(
        services.run_scorer(env_for(scorer_env, models["classes"], "guess"), "run"),
        "model_output",
    )
    assert "returned a DataFrame of 2 columns (0 float64, 1 float64)" in summary["error"]
    assert "no column named 'probability'" in summary["error"]
    assert "SCORER_POSITIVE_CLASS" in summary["error"]

    env = env_for(scorer_env, models["classes"], "class-0", SCORER_POSITIVE_CLASS="0")
    result = services.run_scorer(env, "run")
    assert result.returncode == 0, result.stdout + result.stderr
    np.testing.assert_allclose(scores(postgres_url, target_schema, "class-0"), 1 - expected,
                               atol=1e-12)  # fmt: skip
    positive = services.query(
        postgres_url,
        f'SELECT positive_class FROM "{target_schema}".scoring_runs WHERE run_id = %s',
        ("class-0",),
    )
    assert positive == [("0",)]


def test_a_model_without_a_signature_is_refused_saying_how_to_log_one(
    scorer_env: dict[str, str], models: dict[str, str], postgres_url: str, target_schema: str
) -> None:
    for command in ("check", "run"):
        result = services.run_scorer(env_for(scorer_env, models["unsigned"], "bare"), command)
        summary = refused(result, "schema_mismatch")
        assert "no input signature" in summary["error"]
        assert "signature=mlflow.models.infer_signature(" in summary["error"]
    assert services.query(postgres_url, f'SELECT count(*) FROM "{target_schema}".scoring_runs') == [
        (0,)
    ]
