"""Shadow runs and ``scorer compare`` against a real PostgreSQL and a real MLflow server.

The models are functions whose truth is known: a challenger identical to the champion, one
that scores ``1 - p`` (the champion's ranking reversed), and broken ones.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from mlflow.models import infer_signature

from scorer.postgres.identifiers import quote_identifier
from scorer.postgres.privileges import VIEWS
from scorer.run.challenger import shadow_run_id
from tests.integration.test_run import run_row
from tests.support import fixtures, services
from tests.support.stack import CUSTOMERS

pytestmark = pytest.mark.integration

MODEL = "churn-shadow"
INPUTS = ["tenure_months", "monthly_charges", "support_calls"]


def _probability(frame: pd.DataFrame) -> Any:
    logit = (
        0.03 * (frame["monthly_charges"].to_numpy(np.float64) - 65)
        - 0.04 * frame["tenure_months"].to_numpy(np.float64)
        + 0.3 * frame["support_calls"].to_numpy(np.float64)
    )
    return np.round(1 / (1 + np.exp(-logit)), 4)  # on a grid, so that 1 - p keeps every tie


def _inverted(frame: pd.DataFrame) -> Any:
    return np.round(1 - _probability(frame), 4)


def _labels(frame: pd.DataFrame) -> Any:
    return (_probability(frame) >= 0.5) * 1.0  # labels, not probabilities: the run refuses


@pytest.fixture(scope="module")
def shadow_models(mlflow_uri: str) -> dict[str, int]:
    """Versions of ``churn-shadow``, each under its alias: champion, inverted, labels, and
    wider (an input the feature table lacks)."""
    sample = fixtures.synthetic_customers(50, seed=1)[INPUTS]
    wider = sample.assign(days_since_login=1.0)
    versions = {}
    for alias, predict, inputs in (
        ("champion", _probability, sample),
        ("inverted", _inverted, sample),
        ("labels", _labels, sample),
        ("wider", _probability, wider),
    ):

        def log(name: str, predict: Any = predict, inputs: pd.DataFrame = inputs) -> Any:
            return mlflow.pyfunc.log_model(
                name="model",
                python_model=fixtures.pyfunc_model(predict),
                signature=infer_signature(inputs, np.zeros(len(inputs))),
                registered_model_name=name,
            )

        versions[alias] = fixtures.register(mlflow_uri, MODEL, log, alias=alias)
    return versions


@pytest.fixture
def env(scorer_env: dict[str, str], shadow_models: dict[str, int]) -> dict[str, str]:
    """A champion run of ``churn-shadow`` under a fresh run id (no challenger yet)."""
    return {
        **scorer_env,
        "SCORER_MODEL_NAME": MODEL,
        "SCORER_RUN_ID": f"shadow-{uuid.uuid4().hex[:10]}",
    }


def _summary(stdout: str) -> dict[str, Any]:
    """The process's last line: the shadow's summary."""
    return services.json_lines(stdout)[-1]


def _view_runs(url: str, target: str) -> dict[str, set[str]]:
    """The run ids each consumer view shows."""
    return {
        view: {
            row[0]
            for row in services.query(
                url, f"SELECT DISTINCT run_id FROM {quote_identifier(target)}.{view}"
            )
        }
        for view in VIEWS
    }


def _runs_of_two_snapshots(env: dict[str, str]) -> list[str]:
    """Runs of the snapshots 2026-11-01 and 2026-11-02 (each with its shadow if one is set)."""
    runs = []
    for snapshot in ("2026-11-01", "2026-11-02"):
        run_id = f"{env['SCORER_RUN_ID']}-{snapshot}"
        ran = services.run_scorer({**env, "SCORER_RUN_ID": run_id, "SCORER_SNAPSHOT": snapshot},
                                  "run")  # fmt: skip
        assert ran.returncode == 0, ran.stdout + ran.stderr
        if "SCORER_SHADOW_ALIAS" in env:
            assert _summary(ran.stdout)["event"] == "shadow.succeeded"
        runs.append(run_id)
    return runs


def test_an_identical_challenger_agrees_exactly_and_is_recorded_everywhere(
    env: dict[str, str],
    shadow_models: dict[str, int],
    postgres_url: str,
    target_schema: str,
    mlflow_uri: str,
) -> None:
    champion = env["SCORER_RUN_ID"]
    result = services.run_scorer(
        {**env, "SCORER_SHADOW_VERSION": str(shadow_models["champion"])}, "run"
    )
    assert result.returncode == 0, result.stdout + result.stderr
    shadow = shadow_run_id(champion)

    summary = _summary(result.stdout)
    assert summary["event"] == "shadow.succeeded"
    assert summary["run_id"] == champion
    assert summary["shadow"]["outcome"] == "scored"
    figures = summary["shadow"]["comparison"]
    assert figures["rows_compared"] == CUSTOMERS
    assert figures["spearman"] == pytest.approx(1.0, abs=1e-12)
    assert figures["top_overlap"] == 1.0
    assert figures["top_rows"] == CUSTOMERS // 10
    assert figures["psi"] == 0.0
    assert figures["label_disagreement"] == 0.0
    assert figures["mean_abs_diff"] == 0.0
    shadow_line = next(
        line
        for line in services.json_lines(result.stdout)
        if line.get("run_id") == shadow and line["event"] == "run.succeeded"
    )
    assert shadow_line["shadow_of"] == champion

    champion_row, shadow_row = (run_row(postgres_url, target_schema, r) for r in (champion, shadow))
    assert champion_row is not None
    assert shadow_row is not None
    assert (champion_row["status"], champion_row["shadow"]) == ("succeeded", False)
    assert (shadow_row["status"], shadow_row["shadow"]) == ("succeeded", True)
    assert shadow_row["shadow_of"] == champion
    assert shadow_row["model_version"] == shadow_models["champion"]
    assert shadow_row["snapshot"] == champion_row["snapshot"]
    assert shadow_row["rows_scored"] == CUSTOMERS  # the full evidence of a run
    assert shadow_row["quality"]["override"] == f"shadow of run {champion}"
    assert champion_row["comparison"]["compared_with"] == shadow
    assert shadow_row["comparison"]["compared_with"] == champion
    assert shadow_row["comparison"]["spearman"] == figures["spearman"]

    client = MlflowClient(mlflow_uri)
    for row, other in ((champion_row, shadow), (shadow_row, champion)):
        assert row["mlflow_record_status"] == "recorded"
        record = client.get_run(str(row["mlflow_record_run_id"]))
        assert record.data.metrics["compare_top_overlap"] == 1.0
        assert record.data.metrics["compare_psi"] == 0.0
        assert record.data.tags["scorer.compared_with"] == other
    assert summary["shadow"]["mlflow_record"] == "recorded"

    shown = services.run_scorer(env, "show", shadow)
    assert shown.returncode == 0, shown.stdout + shown.stderr
    assert f"of run {champion}: in no consumer view" in shown.stdout
    assert f"with run {champion}: spearman 1.0000 · top overlap 1.0000" in shown.stdout
    listed = services.run_scorer(env, "runs")
    assert "succeeded (shadow)" in listed.stdout


def test_an_inverted_challenger_ranks_in_reverse(
    env: dict[str, str], postgres_url: str, target_schema: str
) -> None:
    result = services.run_scorer({**env, "SCORER_SHADOW_ALIAS": "inverted"}, "run")
    assert result.returncode == 0, result.stdout + result.stderr
    figures = _summary(result.stdout)["shadow"]["comparison"]
    assert figures["spearman"] == pytest.approx(-1.0, abs=1e-9)
    assert figures["top_overlap"] == 0.0
    assert figures["psi"] > 1.0
    row = run_row(postgres_url, target_schema, shadow_run_id(env["SCORER_RUN_ID"]))
    assert row is not None
    assert row["comparison"]["spearman"] == pytest.approx(-1.0, abs=1e-9)


@pytest.mark.parametrize(
    ("challenger", "kind", "row_status"),
    [
        ({"SCORER_SHADOW_ALIAS": "labels"}, "model_output", "failed"),
        ({"SCORER_SHADOW_ALIAS": "no-such-alias"}, "model_not_found", None),
    ],
    ids=["fails-after-its-row-opened", "fails-before-its-row-opens"],
)
def test_a_failing_shadow_leaves_the_champion_published_and_exits_0(
    env: dict[str, str],
    postgres_url: str,
    target_schema: str,
    challenger: dict[str, str],
    kind: str,
    row_status: str | None,
) -> None:
    champion = env["SCORER_RUN_ID"]
    result = services.run_scorer({**env, **challenger}, "run")
    assert result.returncode == 0, result.stdout + result.stderr
    summary = _summary(result.stdout)
    assert summary["event"] == "shadow.failed"
    assert summary["exit_code"] == 0
    assert summary["shadow"]["outcome"] == "failed"
    assert summary["shadow"]["exit_code"] == 2
    assert summary["shadow"]["error"]
    assert summary["shadow"]["comparison"] is None
    shadow_failed = [
        line for line in services.json_lines(result.stdout) if line["event"] == "run.failed"
    ]
    assert [line["kind"] for line in shadow_failed] == [kind]
    assert _view_runs(postgres_url, target_schema)["latest_predictions"] == {champion}
    assert run_row(postgres_url, target_schema, champion)["status"] == "succeeded"  # type: ignore[index]
    shadow = run_row(postgres_url, target_schema, shadow_run_id(champion))
    assert (None if shadow is None else shadow["status"]) == row_status


def test_a_shadow_run_is_in_no_consumer_view_and_never_the_gates_reference(
    env: dict[str, str], postgres_url: str, target_schema: str
) -> None:
    first = env["SCORER_RUN_ID"]
    result = services.run_scorer({**env, "SCORER_SHADOW_ALIAS": "inverted"}, "run")
    assert result.returncode == 0, result.stdout + result.stderr
    shadow = shadow_run_id(first)
    assert services.query(
        postgres_url,
        f"SELECT count(*) FROM {quote_identifier(target_schema)}.predictions WHERE run_id = %s",
        (shadow,),
    ) == [(CUSTOMERS,)]  # scored and kept, in a partition of its own
    views = _view_runs(postgres_url, target_schema)
    assert views["latest_predictions"] == {first}
    assert views["published_predictions"] == {first}
    assert all(shadow not in runs for runs in views.values())

    second = f"{first}-next"  # the next night's champion compares with the champion, not the shadow
    result = services.run_scorer({**env, "SCORER_RUN_ID": second}, "run")
    assert result.returncode == 0, result.stdout + result.stderr
    row = run_row(postgres_url, target_schema, second)
    assert row is not None
    assert row["quality"]["reference_run_id"] == first


def test_compare_prints_the_figures_of_two_runs_of_one_snapshot(
    env: dict[str, str], shadow_models: dict[str, int]
) -> None:
    first, second = env["SCORER_RUN_ID"], f"{env['SCORER_RUN_ID']}-b"
    for run_id, alias in ((first, "champion"), (second, "inverted")):
        ran = services.run_scorer(
            {**env, "SCORER_RUN_ID": run_id, "SCORER_MODEL_ALIAS": alias,
             "SCORER_QUALITY_OVERRIDE": "a test of compare"},
            "run",
        )  # fmt: skip
        assert ran.returncode == 0, ran.stdout + ran.stderr

    result = services.run_scorer(env, "compare", first, second, "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert (figures["run_a"], figures["run_b"]) == (first, second)
    assert figures["version_b"] == shadow_models["inverted"]
    assert figures["spearman"] == pytest.approx(-1.0, abs=1e-9)
    assert figures["rows_compared"] == CUSTOMERS

    same = services.run_scorer(
        {**env, "SCORER_COMPARE_TOP_SHARE": "0.25"}, "compare", first, first, "--json"
    )
    figures = json.loads(same.stdout.strip().splitlines()[-1])
    assert (figures["top_share"], figures["top_rows"]) == (0.25, CUSTOMERS // 4)
    assert (figures["top_overlap"], figures["psi"]) == (1.0, 0.0)

    text = services.run_scorer(env, "compare", first, second)
    assert text.returncode == 0, text.stdout + text.stderr
    assert "spearman rank correlation" in text.stdout
    assert "-1.000000" in text.stdout


def test_compare_refuses_runs_of_different_snapshots_and_missing_runs(
    env: dict[str, str],
) -> None:
    runs = _runs_of_two_snapshots(env)

    result = services.run_scorer(env, "compare", *runs)
    assert result.returncode == 2
    failed = services.json_lines(result.stdout)[-1]
    assert failed["event"] == "compare.failed"
    assert "different snapshots (2026-11-01 and 2026-11-02)" in failed["error"]

    missing = services.run_scorer(env, "compare", runs[0], "no-such-run")
    assert missing.returncode == 2
    failed = services.json_lines(missing.stdout)[-1]
    assert failed["kind"] == "run_not_found"
    assert "no-such-run" in failed["error"]


def test_retention_prunes_shadow_runs_like_any_run(
    env: dict[str, str], postgres_url: str, target_schema: str
) -> None:
    older, newer = _runs_of_two_snapshots({**env, "SCORER_SHADOW_ALIAS": "inverted"})

    pruned = services.run_scorer({**env, "SCORER_KEEP_RUNS": "1"}, "prune")
    assert pruned.returncode == 0, pruned.stdout + pruned.stderr
    status = {
        run_id: run_row(postgres_url, target_schema, run_id)["status"]  # type: ignore[index]
        for run_id in (older, shadow_run_id(older), newer, shadow_run_id(newer))
    }
    assert status == {
        older: "pruned",
        shadow_run_id(older): "pruned",
        newer: "succeeded",
        shadow_run_id(newer): "succeeded",
    }
    assert _view_runs(postgres_url, target_schema)["latest_predictions"] == {newer}


def _no_run_rows(postgres_url: str, target_schema: str) -> bool:
    table = f"{quote_identifier(target_schema)}.scoring_runs"
    return services.query(postgres_url, f"SELECT count(*) FROM {table}") == [(0,)]


def test_check_resolves_the_challenger_and_names_it_writing_nothing(
    env: dict[str, str], shadow_models: dict[str, int], postgres_url: str, target_schema: str
) -> None:
    result = services.run_scorer({**env, "SCORER_SHADOW_ALIAS": "inverted"}, "check")
    assert result.returncode == 0, result.stdout + result.stderr
    lines = services.json_lines(result.stdout)
    passed = lines[-1]
    assert passed["event"] == "check.passed"
    assert passed["run_id"] == env["SCORER_RUN_ID"]
    assert passed["model_version"] == shadow_models["champion"]
    assert passed["shadow"]["selector"] == "alias:inverted"
    assert passed["shadow"]["model_version"] == shadow_models["inverted"]
    assert passed["shadow"]["run_id"] == shadow_run_id(env["SCORER_RUN_ID"])
    assert passed["shadow"]["features"] == len(INPUTS)
    checked = [line for line in lines if line["event"] == "features.checked"]
    assert len(checked) == 2  # the champion's, then the challenger's, over the same snapshot
    assert checked[0]["snapshot"] == checked[1]["snapshot"] == passed["shadow"]["snapshot"]
    assert _no_run_rows(postgres_url, target_schema)

    alone = services.run_scorer(env, "check")  # no challenger: none is named
    assert alone.returncode == 0, alone.stdout + alone.stderr
    assert services.json_lines(alone.stdout)[-1]["shadow"] is None


@pytest.mark.parametrize(
    ("challenger", "setting", "kind"),
    [
        ({"SCORER_SHADOW_ALIAS": "no-such-alias"}, "SCORER_SHADOW_ALIAS", "model_not_found"),
        ({"SCORER_SHADOW_ALIAS": "wider"}, "SCORER_SHADOW_ALIAS", "schema_mismatch"),
        ({"SCORER_SHADOW_VERSION": "wider"}, "SCORER_SHADOW_VERSION", "schema_mismatch"),
    ],
    ids=["alias-not-found", "inputs-the-table-lacks", "by-version"],
)
def test_check_refuses_a_challenger_that_cannot_score_naming_the_setting(
    env: dict[str, str],
    shadow_models: dict[str, int],
    postgres_url: str,
    target_schema: str,
    challenger: dict[str, str],
    setting: str,
    kind: str,
) -> None:
    value = next(iter(challenger.values()))
    if setting == "SCORER_SHADOW_VERSION":
        value = str(shadow_models[value])
    result = services.run_scorer({**env, setting: value}, "check")
    assert result.returncode == 2, result.stdout + result.stderr
    failed = services.json_lines(result.stdout)[-1]
    assert failed["event"] == "check.failed"
    assert failed["kind"] == kind
    assert f"the shadow run's challenger ({setting}={value})" in failed["error"]
    assert f"Fix {setting}" in failed["error"]
    if kind == "schema_mismatch":
        assert "days_since_login" in failed["error"]  # the input the table lacks, by name
    assert _no_run_rows(postgres_url, target_schema)
