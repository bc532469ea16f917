"""Realized performance on a real kind cluster: a release with `evaluation.*` scores a past
snapshot (a Job made from its CronJob), the outcomes land on the host's PostgreSQL, and a Job
made from the evaluation CronJob records the run's realized AUC, as scikit-learn computes it,
in `scoring_run_evaluations` and on the run's MLflow record. One install in a namespace of its
own."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from mlflow import MlflowClient
from sklearn.metrics import roc_auc_score

from tests.support import services
from tests.support.fixtures import load_table, synthetic_customers
from tests.support.helm import ENV_VALUES, find_helm
from tests.support.kube import (
    CRONJOB,
    DATABASE_SECRET,
    IMAGE,
    IMAGE_REPOSITORY,
    IMAGE_TAG,
    RELEASE,
    Kube,
    build_and_load_image,
    create_database_secret,
    seed,
)

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


def install_values(mlflow_uri: str) -> dict[str, Any]:
    """Suspended schedules (the test makes its Jobs), a pinned past snapshot, evaluation on."""
    return {
        "suspend": True,
        "model": {"name": MODEL, "alias": "champion", "stage": "", "version": ""},
        "features": {
            "table": "features.customers",
            "entityColumn": "customer_id",
            "snapshot": SNAPSHOT,
        },
        "log": {"format": "json", "level": "INFO"},
        "mlflow": {"trackingUri": mlflow_uri, "recordRuns": True},
        "database": {"existingSecret": DATABASE_SECRET},
        "evaluation": {
            "enabled": True,
            "outcomesTable": "outcomes.churn",
            "entityColumn": "customer_id",
            "outcomeColumn": "churned",
            "timeColumn": "observed_on",
            "horizonDays": HORIZON,
            "minRealizedAuc": 0.55,
        },
        "image": {"repository": IMAGE_REPOSITORY, "tag": IMAGE_TAG, "pullPolicy": "Never"},
    }


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
def evaluated(
    kind_cluster: Any, host_address_for_pods: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Evaluated]:
    """The release installed; one scoring Job, then one evaluation Job, both complete."""
    helm = find_helm()
    if helm is None:
        pytest.fail("helm is not built: run hack/helm.sh")
    work = tmp_path_factory.mktemp("e2e-evaluation")
    build_and_load_image(kind_cluster, IMAGE)
    host = host_address_for_pods
    with (
        services.mlflow_server(work / "mlflow", host=host) as mlflow_uri,
        services.fresh_database("scorer_e2e_evaluation") as database_url,
    ):
        seed(database_url, mlflow_uri, MODEL, CUSTOMERS, seed=SEED)
        kube = Kube(
            kubectl_path=Path(kind_cluster.kubectl_path),
            helm_path=helm,
            kubeconfig=Path(kind_cluster.kubeconfig_path),
            namespace=NAMESPACE,
        )
        kube.kubectl("create", "namespace", NAMESPACE)
        create_database_secret(kube.kubectl, NAMESPACE, database_url, host)
        values = work / "evaluation-values.yaml"
        values.write_text(yaml.safe_dump(install_values(mlflow_uri)))
        kube.helm(
            "upgrade", "--install", RELEASE, str(services.REPO / "charts" / "scorer"),
            "-f", str(ENV_VALUES["dev"]), "-f", str(values), "--wait",
        )  # fmt: skip
        try:
            kube.kubectl("create", "job", "--from", f"cronjob/{CRONJOB}", "score-past")
            kube.wait_job("score-past", "complete")
            load_outcomes(database_url)
            kube.kubectl("create", "job", "--from", f"cronjob/{CRONJOB}-evaluate", "evaluate-now")
            kube.wait_job("evaluate-now", "complete")
            yield Evaluated(kube, "score-past", "evaluate-now", database_url, mlflow_uri)
        finally:
            kube.kubectl("delete", "namespace", NAMESPACE, "--wait=false", check=False)


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
