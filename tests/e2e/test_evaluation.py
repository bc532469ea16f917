"""Realized performance on a real kind cluster: a release with `evaluation.*` scores a past
snapshot (a Job made from its CronJob), the outcomes land on the host's PostgreSQL, and a Job
made from the evaluation CronJob records the run's realized AUC, as scikit-learn computes it,
in `scoring_run_evaluations` and on the run's MLflow record. One install in a namespace of its
own."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from sklearn.metrics import roc_auc_score

from tests.support import services
from tests.support.fixtures import load_table, synthetic_customers
from tests.support.kube import CRONJOB, Cluster, Kube

pytestmark = pytest.mark.e2e

NAMESPACE = "scorer-e2e-evaluation"
MODEL = "churn-e2e-evaluation"
CUSTOMERS = 2_000
SEED = 6
SNAPSHOT = "2026-09-01"
HORIZON = 30


@dataclass(frozen=True)
class Evaluated:
    """The scoring Job (the run id), the evaluation Job, and where to look."""

    kube: Kube
    run_id: str
    evaluation_job: str
    database_url: str
    mlflow_uri: str


INSTALL: dict[str, Any] = {
    "suspend": True,
    "model": {"stage": "", "version": ""},
    "features": {"snapshot": SNAPSHOT},
    "mlflow": {"recordRuns": True},
    "evaluation": {
        "enabled": True,
        "outcomesTable": "outcomes.churn",
        "entityColumn": "customer_id",
        "outcomeColumn": "churned",
        "timeColumn": "observed_on",
        "horizonDays": HORIZON,
        "minRealizedAuc": 0.55,
    },
}
"""Suspended schedules (the test makes its Jobs), a pinned past snapshot, evaluation on."""


def load_outcomes(database_url: str) -> pd.Series[int]:
    """Every customer's true label, observed two weeks after the snapshot."""
    truth = synthetic_customers(CUSTOMERS, seed=SEED)[["customer_id", "churned"]].copy()
    truth["churned"] = truth["churned"].astype(bool)
    truth["observed_on"] = date.fromisoformat(SNAPSHOT) + timedelta(days=14)
    load_table(
        database_url,
        "outcomes.churn",
        truth,
        {"customer_id": "bigint", "churned": "boolean", "observed_on": "date"},
        index=("customer_id",),
    )
    return truth.set_index("customer_id")["churned"].astype(int)


@pytest.fixture(scope="module")
def evaluated(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Evaluated]:
    """The release installed; one scoring Job, then one evaluation Job, both complete."""
    work = tmp_path_factory.mktemp("e2e-evaluation")
    with cluster.deploy(NAMESPACE, work, model=MODEL, customers=CUSTOMERS, seed=SEED) as deployment:
        kube = deployment.kube
        deployment.install(INSTALL)
        kube.kubectl("create", "job", "--from", f"cronjob/{CRONJOB}", "score-past")
        kube.wait_job("score-past", "complete")
        load_outcomes(deployment.database_url)
        kube.kubectl("create", "job", "--from", f"cronjob/{CRONJOB}-evaluate", "evaluate-now")
        kube.wait_job("evaluate-now", "complete")
        yield Evaluated(
            kube, "score-past", "evaluate-now", deployment.database_url, deployment.mlflow_uri
        )


def test_the_evaluation_cronjob_records_a_realized_auc(evaluated: Evaluated) -> None:
    rows = services.query(
        evaluated.database_url,
        "SELECT horizon_days, rows_scored, rows_labelled, label_coverage, roc_auc"
        " FROM scoring.scoring_run_evaluations WHERE run_id = %s",
        (evaluated.run_id,),
    )
    ((horizon, scored, labelled, coverage, auc),) = rows
    assert (horizon, scored, labelled, coverage) == (HORIZON, CUSTOMERS, CUSTOMERS, 1.0)

    truth = synthetic_customers(CUSTOMERS, seed=SEED).set_index("customer_id")["churned"]
    scores = dict(
        services.query(
            evaluated.database_url,
            "SELECT entity_id, score FROM scoring.predictions WHERE run_id = %s",
            (evaluated.run_id,),
        )
    )
    ids = np.array(sorted(scores))
    wanted = roc_auc_score(truth.loc[ids].to_numpy(), np.array([scores[i] for i in ids]))
    assert auc == pytest.approx(wanted, abs=1e-9)
    assert auc > 0.55  # the minimum the release sets: the Job completed

    (pod,) = evaluated.kube.pods_of(evaluated.evaluation_job)
    lines = evaluated.kube.pod_log_lines(pod)
    (line,) = [entry for entry in lines if entry["event"] == "evaluate.evaluated"]
    assert (line["run_id"], line["auc"]) == (evaluated.run_id, pytest.approx(auc))
    assert lines[-1]["event"] == "evaluate.done"

    ((record_id,),) = services.query(
        evaluated.database_url,
        "SELECT mlflow_record_run_id FROM scoring.scoring_runs WHERE run_id = %s",
        (evaluated.run_id,),
    )
    history = MlflowClient(evaluated.mlflow_uri).get_metric_history(record_id, "realized_auc")
    assert [(m.step, m.value) for m in history] == [(HORIZON, pytest.approx(auc))]
