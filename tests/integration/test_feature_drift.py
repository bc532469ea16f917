"""Per-feature drift in the quality gate, against real runs: a fresh night passes, a shifted
numeric or categorical column fails naming itself with its PSI, single or sharded, and no
feature value is shown."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd
import pytest

from tests.support import fixtures, services

pytestmark = pytest.mark.integration

NUMERIC = "features.drift_nightly"
TELCO = "features.drift_telco"
ROWS = 4_000
TELCO_ROWS = 3_000
PLANTED = 98765.4321  # one customer's usage: a value that must never be shown


def night(seed: int) -> pd.DataFrame:
    """One night's load: the same population, a fresh draw."""
    return fixtures.synthetic_customers(ROWS, seed=seed)


def score(env: dict[str, str], run_id: str, **extra: str) -> Any:
    return services.run_scorer({**env, "SCORER_RUN_ID": run_id, **extra}, "run")


def run_row(url: str, target: str, run_id: str) -> dict[str, Any]:
    rows = services.query(
        url,
        f'SELECT status, quality, feature_bins FROM "{target}".scoring_runs WHERE run_id = %s',
        (run_id,),
    )
    status, quality, bins = rows[0]
    return {"status": status, "quality": quality, "feature_bins": bins}


def feature_checks(record: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        check["check"].removeprefix("feature_psi:"): check
        for check in record["quality"]["checks"]
        if check["check"].startswith("feature_psi:")
    }


def numeric_features_passed(record: dict[str, Any]) -> None:
    """Assert that every numeric feature of the run was checked and passed."""
    found = feature_checks(record)
    assert set(found) == set(fixtures.NUMERIC_FEATURES)
    assert all(check["status"] == "passed" for check in found.values()), found


def published(url: str, target: str, view: str = "latest_predictions") -> list[str]:
    rows = services.query(url, f'SELECT DISTINCT run_id FROM "{target}".{view}')
    return [str(row[0]) for row in rows]


@pytest.fixture
def env(scorer_env: dict[str, str]) -> dict[str, str]:
    return {**scorer_env, "SCORER_FEATURES_TABLE": NUMERIC}


def test_noise_passes_and_a_shifted_numeric_column_fails_naming_it_with_its_psi(
    env: dict[str, str], postgres_url: str, target_schema: str
) -> None:
    fixtures.load_features(postgres_url, NUMERIC, night(1))
    assert score(env, "d1").returncode == 0
    bins = run_row(postgres_url, target_schema, "d1")["feature_bins"]
    assert set(bins["numeric"]) == set(fixtures.NUMERIC_FEATURES)
    assert bins["categorical"] == {}

    fixtures.load_features(postgres_url, NUMERIC, night(2))  # night-to-night noise
    noise = score(env, "d2")
    assert noise.returncode == 0, noise.stdout + noise.stderr
    record = run_row(postgres_url, target_schema, "d2")
    numeric_features_passed(record)
    assert max(check["value"] for check in feature_checks(record).values()) < 0.02

    shifted = night(3)
    shifted["data_usage_gb"] *= 1.5  # an upstream unit change the model barely uses
    fixtures.load_features(postgres_url, NUMERIC, shifted)
    refused = score(env, "d3")
    assert refused.returncode == 2, refused.stdout + refused.stderr
    summary = services.json_lines(refused.stdout)[-1]
    assert summary["kind"] == "quality_gate"
    record = run_row(postgres_url, target_schema, "d3")
    found = feature_checks(record)
    failed = {name for name, check in found.items() if check["status"] == "failed"}
    assert failed == {"data_usage_gb"}
    psi = found["data_usage_gb"]["value"]
    assert psi > 0.2
    assert f"feature_psi:data_usage_gb {psi:.4g} > 0.2" in summary["error"]
    assert record["status"] == "failed"
    assert record["quality"]["reference_run_id"] == "d2"
    assert published(postgres_url, target_schema) == ["d2"]  # nothing published


def test_no_feature_value_is_logged_or_recorded(
    env: dict[str, str], postgres_url: str, target_schema: str
) -> None:
    first = night(1)
    first.loc[7, "data_usage_gb"] = PLANTED
    fixtures.load_features(postgres_url, NUMERIC, first)
    runs = [score(env, "v1")]
    second = night(2)
    second.loc[9, "data_usage_gb"] = PLANTED
    fixtures.load_features(postgres_url, NUMERIC, second)
    runs.append(score(env, "v2"))
    assert [run.returncode for run in runs] == [0, 0]
    rows = services.query(
        postgres_url, f'SELECT row_to_json(r)::text FROM "{target_schema}".scoring_runs AS r'
    )
    shown = "".join(run.stdout + run.stderr for run in runs) + "".join(row[0] for row in rows)
    for text in (repr(PLANTED), "98765"):
        assert text not in shown
    # What a run row records of the features: bin edges at the deciles (and the 0.1% and 99.9%
    # quantiles), halfway between two
    # distinct values (no value of the column itself), and each bin's share.
    bins = run_row(postgres_url, target_schema, "v2")["feature_bins"]["numeric"]
    usage = second["data_usage_gb"].to_numpy()
    for edge in bins["data_usage_gb"]["edges"]:
        assert edge not in usage
    assert len(bins["data_usage_gb"]["edges"]) == 11
    assert sum(bins["data_usage_gb"]["shares"]) == pytest.approx(1.0)


def shards(env: dict[str, str], run_id: str, count: int = 3) -> list[Any]:
    """The shards of one run, one after the other (the last publishes or fails it)."""
    return [
        services.run_scorer(services.shard_env(env, run_id, count, index), "run")
        for index in range(count)
    ]


def shard_evidence(url: str, target: str, run_id: str) -> list[str]:
    rows = services.query(
        url,
        f'SELECT feature_drift::text FROM "{target}".scoring_run_shards WHERE run_id = %s'
        " ORDER BY shard",
        (run_id,),
    )
    return [str(row[0]) for row in rows]


def test_a_sharded_run_fails_a_shifted_column_with_a_single_runs_psi_and_shows_no_value(
    env: dict[str, str], postgres_url: str, target_schema: str
) -> None:
    fixtures.load_features(postgres_url, NUMERIC, night(1))
    assert score(env, "s1").returncode == 0
    shifted = night(2)
    shifted["data_usage_gb"] *= 1.5
    shifted.loc[11, "data_usage_gb"] = PLANTED
    fixtures.load_features(postgres_url, NUMERIC, shifted)

    *waited, last = shards(env, "s2")
    assert [run.returncode for run in waited] == [0, 0], waited[0].stdout + waited[0].stderr
    assert last.returncode == 2, last.stdout + last.stderr
    summary = services.json_lines(last.stdout)[-1]
    assert summary["kind"] == "quality_gate"
    sharded = run_row(postgres_url, target_schema, "s2")
    assert sharded["status"] == "failed"
    assert sharded["quality"]["reference_run_id"] == "s1"  # the gate's evidence, as a single run's
    assert set(sharded["feature_bins"]["numeric"]) == set(fixtures.NUMERIC_FEATURES)
    found = feature_checks(sharded)
    assert set(found) == set(fixtures.NUMERIC_FEATURES)
    assert {name for name, check in found.items() if check["status"] == "failed"} == {
        "data_usage_gb"
    }
    psi = found["data_usage_gb"]["value"]
    assert f"feature_psi:data_usage_gb {psi:.4g} > 0.2" in summary["error"]
    assert published(postgres_url, target_schema) == ["s1"]  # nothing published

    # A single run over the same rows against the same reference: the same PSI per feature.
    single = score(env, "s3")
    assert single.returncode == 2, single.stdout + single.stderr
    alone = feature_checks(run_row(postgres_url, target_schema, "s3"))
    assert set(alone) == set(found)
    for name, check in alone.items():
        assert found[name]["value"] == pytest.approx(check["value"], abs=1e-6), name

    # The shards' evidence: counts over the reference's bins and each shard's own sample bins,
    # whose edges lie between the shard's values; no sampled value.
    evidence = shard_evidence(postgres_url, target_schema, "s2")
    assert len(evidence) == 3
    split = services.query(
        postgres_url,
        f'SELECT shard_split FROM "{target_schema}".scoring_runs WHERE run_id = %s',
        ("s2",),
    )[0][0]
    bounds = [-np.inf, *(int(bound) for bound in split["bounds"]), np.inf]
    for shard, text in enumerate(evidence):
        recorded = json.loads(text)
        assert set(recorded) == {"reference_run_id", "numeric", "categorical", "sample"}
        assert recorded["reference_run_id"] == "s1"
        assert "98765" not in text
        ids = shifted["customer_id"]
        rows = shifted[(ids >= bounds[shard]) & (ids < bounds[shard + 1])]
        assert sum(recorded["numeric"]["data_usage_gb"]["counts"]) == len(rows)
        assert set(recorded["sample"]) == set(fixtures.NUMERIC_FEATURES)
        for name, bins in recorded["sample"].items():
            assert not set(bins["edges"]) & set(rows[name].astype(float)), name
    shown = "".join(run.stdout + run.stderr for run in (*waited, last))
    assert "98765" not in shown


def test_a_sharded_runs_noise_passes_and_its_bins_are_the_next_runs_reference(
    env: dict[str, str], postgres_url: str, target_schema: str
) -> None:
    fixtures.load_features(postgres_url, NUMERIC, night(1))
    assert score(env, "n1").returncode == 0
    fixtures.load_features(postgres_url, NUMERIC, night(2))
    runs = shards(env, "n2")
    assert [run.returncode for run in runs] == [0, 0, 0], runs[-1].stdout + runs[-1].stderr
    assert services.json_lines(runs[-1].stdout)[-1]["outcome"] == "published"
    record = run_row(postgres_url, target_schema, "n2")
    assert record["quality"]["reference_run_id"] == "n1"
    numeric_features_passed(record)
    assert "feature_psi_unchecked" not in record["quality"]
    bins = record["feature_bins"]["numeric"]
    assert set(bins) == set(fixtures.NUMERIC_FEATURES)
    reference = run_row(postgres_url, target_schema, "n1")["feature_bins"]["numeric"]
    for name, item in bins.items():  # the reference's edges, with the run's own shares
        assert item["edges"] == reference[name]["edges"]
        assert sum(item["shares"]) == pytest.approx(1.0)

    fixtures.load_features(postgres_url, NUMERIC, night(3))
    following = score(env, "n3")
    assert following.returncode == 0, following.stdout + following.stderr
    record = run_row(postgres_url, target_schema, "n3")
    assert record["quality"]["reference_run_id"] == "n2"
    numeric_features_passed(record)


def test_shards_binned_against_a_reference_that_moved_fail_the_run_and_publish_nothing(
    env: dict[str, str], postgres_url: str, target_schema: str
) -> None:
    fixtures.load_features(postgres_url, NUMERIC, night(1))
    assert score(env, "m1").returncode == 0
    fixtures.load_features(postgres_url, NUMERIC, night(2))
    first = services.run_scorer(services.shard_env(env, "m2", 2, 0), "run")
    assert first.returncode == 0, first.stdout + first.stderr
    assert services.json_lines(first.stdout)[-1]["outcome"] == "shard_done"
    # A run of the model for another snapshot publishes while the sharded run is open: the
    # gate's reference moves from m1 to it, and the last shard bins against it.
    moved = score(env, "m3", SCORER_SNAPSHOT="another-night")
    assert moved.returncode == 0, moved.stdout + moved.stderr

    last = services.run_scorer(services.shard_env(env, "m2", 2, 1), "run")
    assert last.returncode == 2, last.stdout + last.stderr
    summary = services.json_lines(last.stdout)[-1]
    assert summary["kind"] == "reference_moved"
    assert "(m1, m3:" in summary["error"]
    assert "start a new run" in summary["error"]
    assert [
        json.loads(text)["reference_run_id"]
        for text in shard_evidence(postgres_url, target_schema, "m2")
    ] == ["m1", "m3"]
    record = run_row(postgres_url, target_schema, "m2")
    assert record["status"] == "failed"
    assert record["quality"] is None  # it failed before its gate compared anything
    scored = services.query(
        postgres_url,
        f'SELECT count(*) FROM "{target_schema}".predictions WHERE run_id = %s',
        ("m2",),
    )
    assert scored == [(0,)]  # nothing published
    tables = services.query(
        postgres_url,
        f'SELECT staging_table FROM "{target_schema}".scoring_run_shards WHERE run_id = %s',
        ("m2",),
    )
    assert tables == [(None,), (None,)]  # the shards' tables are dropped


def telco_night(seed: int, contracts: tuple[float, float, float]) -> pd.DataFrame:
    """One snapshot of the Telco table, contracts drawn with the given shares."""
    frame = fixtures.telco_customers(TELCO_ROWS, snapshots=[f"2026-11-{seed:02d}"], seed=seed)
    rng = np.random.default_rng(seed + 100)
    frame["contract"] = rng.choice(fixtures.CONTRACTS, len(frame), p=contracts)
    return frame


@pytest.fixture(scope="module")
def telco_model(mlflow_uri: str) -> str:
    """An xgboost classifier with categorical inputs: its booster records the categories."""
    import mlflow
    from mlflow.models import infer_signature

    name = "drift-xgboost"
    inputs, target = fixtures.telco_training(telco_night(1, (0.55, 0.25, 0.2)))
    model = fixtures.train_classifier("xgboost", inputs, target)

    def log(registered: str) -> Any:
        signature = infer_signature(inputs.head(50), None)
        return mlflow.xgboost.log_model(
            model, name="model", signature=signature, registered_model_name=registered
        )

    fixtures.register(mlflow_uri, name, log)
    return name


def test_a_categorical_shift_fails_naming_the_feature_and_noise_passes(
    scorer_env: dict[str, str], postgres_url: str, target_schema: str, telco_model: str
) -> None:
    usual = (0.55, 0.25, 0.2)
    nights = pd.concat(
        [telco_night(1, usual), telco_night(2, usual), telco_night(3, (0.2, 0.4, 0.4))],
        ignore_index=True,
    )
    fixtures.load_telco(postgres_url, TELCO, nights)
    env = {
        **scorer_env,
        "SCORER_MODEL_NAME": telco_model,
        "SCORER_FEATURES_TABLE": TELCO,
        "SCORER_ENTITY_COLUMN": "customer_id",
        "SCORER_SNAPSHOT_COLUMN": "snapshot_date",
    }
    assert score(env, "c1", SCORER_SNAPSHOT="2026-11-01").returncode == 0
    bins = run_row(postgres_url, target_schema, "c1")["feature_bins"]
    assert set(bins["categorical"]) == set(fixtures.CATEGORICAL)
    assert set(bins["categorical"]["contract"]["categories"]) == set(fixtures.CONTRACTS)
    assert bins["categorical"]["contract"]["other"] == 0.0

    noise = score(env, "c2", SCORER_SNAPSHOT="2026-11-02")
    assert noise.returncode == 0, noise.stdout + noise.stderr
    found = feature_checks(run_row(postgres_url, target_schema, "c2"))
    assert {"contract", "payment_method", "tenure", "monthly_charges"} <= set(found)
    assert all(check["status"] == "passed" for check in found.values()), found

    refused = score(env, "c3", SCORER_SNAPSHOT="2026-11-03", SCORER_MAX_SCORE_PSI="100")
    assert refused.returncode == 2, refused.stdout + refused.stderr
    summary = services.json_lines(refused.stdout)[-1]
    found = feature_checks(run_row(postgres_url, target_schema, "c3"))
    assert {name for name, check in found.items() if check["status"] == "failed"} == {"contract"}
    psi = found["contract"]["value"]
    assert f"feature_psi:contract {psi:.4g} > 0.2" in summary["error"]
    assert published(postgres_url, target_schema, "latest_predictions_text") == ["c2"]
    assert json.dumps(summary["quality"]).count("feature_psi:contract") == 1
