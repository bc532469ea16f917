"""The reasons behind every score (``SCORER_REASONS``): per row, the K inputs that contribute
most to the score, with the model's own contributions, in the consumer views and in
``scorer explain``; never a feature value in a log line or a run row.

The truth is the library's own: for sampled rows, the stored contributions are the ones the
library gives for those inputs, they are the K largest by absolute value, and all of the row's
contributions plus the bias equal the model's margin (to 1e-5). By the default method, path
contributions: xgboost's ``pred_contribs`` with ``approx_contribs=True``, and for lightgbm
(which has no such call) a walk of each row's path through the trees of its dump, row by row.
By ``SCORER_REASONS_METHOD=shapley``: xgboost's ``pred_contribs`` and lightgbm's
``pred_contrib`` (TreeSHAP).
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pytest

from tests.integration.test_real_tables import log_flavor
from tests.support import fixtures, services

pytestmark = pytest.mark.integration

TABLE = "features.telco_reasons"
ROWS = 600
K = 3
TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def telco(postgres_url: str) -> pd.DataFrame:
    frame = fixtures.telco_customers(ROWS, seed=23)
    fixtures.load_telco(postgres_url, TABLE, frame)
    return frame


@pytest.fixture(scope="module")
def newest(telco: pd.DataFrame) -> pd.DataFrame:
    return telco[telco.snapshot_date == telco.snapshot_date.max()].reset_index(drop=True)


@pytest.fixture(scope="module")
def models(mlflow_uri: str, telco: pd.DataFrame) -> Callable[[str], Any]:
    """``models(flavor)``: trained and registered as ``reasons-<flavor>`` on first use."""
    trained: dict[str, Any] = {}

    def get(flavor: str) -> Any:
        if flavor not in trained:
            features, target = fixtures.telco_training(telco)
            model = fixtures.train_classifier(flavor, features, target)
            fixtures.register(mlflow_uri, f"reasons-{flavor}", log_flavor(flavor, model, features))
            trained[flavor] = model
        return trained[flavor]

    return get


def env_for(env: dict[str, str], flavor: str, **extra: str) -> dict[str, str]:
    return {
        **env,
        "SCORER_MODEL_NAME": f"reasons-{flavor}",
        "SCORER_FEATURES_TABLE": TABLE,
        "SCORER_ENTITY_COLUMN": "customer_id",
        "SCORER_SNAPSHOT_COLUMN": "snapshot_date",
        "SCORER_RUN_ID": f"reasons-{uuid.uuid4().hex[:10]}",
        **extra,
    }


def native(
    flavor: str, method: str, model: Any, inputs: pd.DataFrame
) -> tuple[np.ndarray, np.ndarray]:
    """The library's own contributions (bias last) by ``method``, and margins of class 1."""
    frame = fixtures.as_categories(inputs)
    if flavor == "xgboost":
        import xgboost

        booster = model.get_booster()
        matrix = xgboost.DMatrix(frame, enable_categorical=True)
        return (
            booster.predict(matrix, pred_contribs=True, approx_contribs=method == "path").astype(
                np.float64
            ),
            booster.predict(matrix, output_margin=True).astype(np.float64),
        )
    booster = model.booster_
    margins = np.asarray(booster.predict(frame, raw_score=True))
    if method == "shapley":
        return np.asarray(booster.predict(frame, pred_contrib=True)), margins
    return lightgbm_paths(booster, frame), margins


def lightgbm_paths(booster: Any, frame: pd.DataFrame) -> np.ndarray:
    """Path contributions of a lightgbm model, row by row: in each tree, the path from the
    root to the leaf lightgbm says the row reaches, each split's move of the node's value to
    its child's charged to the split's input, the root's value to the bias."""

    def value(node: dict[str, Any]) -> float:
        return float(node.get("leaf_value", node.get("internal_value", 0.0)))

    def path_to(node: dict[str, Any], leaf: int) -> list[dict[str, Any]] | None:
        if "leaf_value" in node:
            return [node] if node.get("leaf_index", 0) == leaf else None
        for child in (node["left_child"], node["right_child"]):
            found = path_to(child, leaf)
            if found is not None:
                return [node, *found]
        return None

    trees = booster.dump_model()["tree_info"]
    leaves = np.asarray(booster.predict(frame, pred_leaf=True)).reshape(len(frame), -1)
    out = np.zeros((len(frame), booster.num_feature() + 1))
    for number, tree in enumerate(trees):
        for row, leaf in enumerate(leaves[:, number]):
            path = path_to(tree["tree_structure"], int(leaf))
            assert path is not None
            out[row, -1] += value(path[0])
            for node, child in itertools.pairwise(path):
                out[row, node["split_feature"]] += value(child) - value(node)
    return out


def published(url: str, target: str, flavor: str) -> pd.DataFrame:
    rows = services.query(
        url,
        f'SELECT entity_id, score, reasons FROM "{target}".latest_predictions_text'
        " WHERE model_name = %s",
        (f"reasons-{flavor}",),
    )
    return pd.DataFrame(rows, columns=["entity_id", "score", "reasons"]).set_index("entity_id")


@pytest.mark.parametrize("method", ["path", "shapley"])
@pytest.mark.parametrize("flavor", ["xgboost", "lightgbm"])
def test_the_stored_reasons_are_the_models_own_contributions(
    models: Callable[[str], Any],
    scorer_env: dict[str, str],
    postgres_url: str,
    target_schema: str,
    newest: pd.DataFrame,
    flavor: str,
    method: str,
) -> None:
    model = models(flavor)
    env = env_for(scorer_env, flavor, SCORER_REASONS=str(K), SCORER_REASONS_METHOD=method)
    result = services.run_scorer(env, "run")
    assert result.returncode == 0, result.stdout + result.stderr
    got = published(postgres_url, target_schema, flavor)
    assert len(got) == len(newest)
    assert got.reasons.map(len).eq(K).all(), "K reasons on every row"

    inputs, _ = fixtures.telco_training(newest)
    contributions, margins = native(flavor, method, model, inputs)
    names = list(inputs.columns)
    assert contributions.shape == (len(newest), len(names) + 1)
    # All of a row's contributions plus the bias are its margin, and the score its sigmoid.
    np.testing.assert_allclose(contributions.sum(axis=1), margins, rtol=0, atol=TOLERANCE)
    for row in newest.sample(60, random_state=4).index:
        entity = newest.customer_id[row]
        stored = got.reasons[entity]
        own = dict(zip(names, contributions[row, :-1], strict=True))
        stored_names = [name for name, _ in stored]
        stored_values = np.array([value for _, value in stored])
        np.testing.assert_allclose(
            stored_values, [own[name] for name in stored_names], rtol=0, atol=TOLERANCE
        )
        magnitudes = sorted((abs(value) for value in own.values()), reverse=True)
        np.testing.assert_allclose(np.abs(stored_values), magnitudes[:K], rtol=0, atol=TOLERANCE)
        assert got.score[entity] == pytest.approx(1 / (1 + np.exp(-margins[row])), abs=1e-6)
    run = services.query(
        postgres_url,
        f'SELECT reasons, entity_column FROM "{target_schema}".scoring_runs WHERE run_id = %s',
        (env["SCORER_RUN_ID"],),
    )
    assert run == [(K, "customer_id")]


def test_a_run_without_reasons_stores_none(
    models: Callable[[str], Any], scorer_env: dict[str, str], postgres_url: str, target_schema: str
) -> None:
    models("xgboost")
    result = services.run_scorer(env_for(scorer_env, "xgboost"), "run")
    assert result.returncode == 0, result.stdout + result.stderr
    got = published(postgres_url, target_schema, "xgboost")
    assert len(got)
    assert got.reasons.isna().all()


def test_a_flavor_without_contributions_is_refused_naming_the_setting(
    models: Callable[[str], Any], scorer_env: dict[str, str], postgres_url: str, target_schema: str
) -> None:
    models("sklearn")
    env = env_for(scorer_env, "sklearn", SCORER_REASONS=str(K))
    result = services.run_scorer(env, "run")
    assert result.returncode == 2, result.stdout + result.stderr
    summary = services.json_lines(result.stdout)[-1]
    assert summary["kind"] == "config", summary
    assert "SCORER_REASONS" in summary["error"]
    assert services.query(
        postgres_url, f'SELECT count(*) FROM "{target_schema}".predictions_text'
    ) == [(0,)]


def test_explain_shows_the_values_which_no_log_or_run_row_holds(
    models: Callable[[str], Any],
    scorer_env: dict[str, str],
    postgres_url: str,
    target_schema: str,
    newest: pd.DataFrame,
) -> None:
    models("xgboost")
    env = env_for(scorer_env, "xgboost", SCORER_REASONS=str(K))
    run = services.run_scorer(env, "run")
    assert run.returncode == 0, run.stdout + run.stderr
    got = published(postgres_url, target_schema, "xgboost")
    # An entity whose reasons name its contract, so that its value must be shown.
    entity = next(e for e, pairs in got.reasons.items() if "contract" in dict(pairs))
    contract = newest.set_index("customer_id").contract[entity]
    contribution = dict(got.reasons[entity])["contract"]

    shown = services.run_scorer(env, "explain", entity)
    assert shown.returncode == 0, shown.stdout + shown.stderr
    line = next(text for text in shown.stdout.splitlines() if text.startswith("reasons ("))
    assert env["SCORER_RUN_ID"] in line
    assert f"contract={contract} {contribution:+.3g}" in line
    assert len(line.split(": ", 1)[1].split(", ")) == K
    by_run = services.run_scorer(env, "explain", entity, "--run", env["SCORER_RUN_ID"], "--json")
    assert by_run.returncode == 0, by_run.stderr
    assert f'"value": "{contract}"' in by_run.stdout

    # The values of every category are in the table; none is in a log line or a run row
    # (but for feature_bins: the drift evidence's category names are the model's metadata).
    categories = {*newest.contract, *newest.payment_method}
    rows = services.query(
        postgres_url,
        "SELECT string_agg((to_jsonb(r) - 'feature_bins')::text, '')"
        f' FROM "{target_schema}".scoring_runs r',
    )
    for text in (run.stdout, run.stderr, shown.stderr, rows[0][0]):
        assert not [value for value in categories if value in text]


def test_a_sharded_run_stores_the_reasons_of_every_shard(
    scorer_env: dict[str, str], postgres_url: str, target_schema: str
) -> None:
    """Two shards, one after the other: the published run carries K reasons on every row."""
    env = {**scorer_env, "SCORER_REASONS": str(K)}
    run_id = f"reasons-shards-{uuid.uuid4().hex[:8]}"
    for index in (0, 1):
        result = services.run_scorer(services.shard_env(env, run_id, 2, index), "run")
        assert result.returncode == 0, result.stdout + result.stderr
    counts = services.query(
        postgres_url,
        f"SELECT count(*), count(*) FILTER (WHERE jsonb_array_length(reasons) = {K})"
        f' FROM "{target_schema}".latest_predictions WHERE run_id = %s',
        (run_id,),
    )
    assert counts[0][0] > 0
    assert counts[0][0] == counts[0][1]
