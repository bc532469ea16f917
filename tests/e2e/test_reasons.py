"""The reasons behind every score on a real kind cluster: a release with ``scoring.reasons: 3``
passes ``SCORER_REASONS`` to its pods, and a run of its CronJob publishes predictions whose
consumer view ``latest_predictions`` carries three reasons per row, named by the model's
features. One install in a namespace of its own."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.support import services
from tests.support.fixtures import NUMERIC_FEATURES
from tests.support.kube import CRONJOB, Cluster, Kube

pytestmark = pytest.mark.e2e

NAMESPACE = "scorer-e2e-reasons"
MODEL = "churn-e2e-reasons"
CUSTOMERS = 1_000
K = 3
JOB = "reasons-manual"


INSTALL: dict[str, Any] = {
    "suspend": True,
    "model": {"stage": "", "version": ""},
    "scoring": {"reasons": K},
    "mlflow": {"recordRuns": False},
}
"""A suspended release that stores 3 reasons per score."""


@pytest.fixture(scope="module")
def explained(
    cluster: Cluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Kube, str]]:
    """The release installed and one Job of its CronJob run: the namespace and the database."""
    work = tmp_path_factory.mktemp("e2e-reasons")
    with cluster.deploy(NAMESPACE, work, model=MODEL, customers=CUSTOMERS, seed=9) as deployment:
        kube = deployment.kube
        deployment.install(INSTALL)
        kube.kubectl("create", "job", f"--from=cronjob/{CRONJOB}", JOB)
        kube.wait_job(JOB, "complete")
        yield kube, deployment.database_url


def test_the_consumer_view_exposes_the_reasons_of_every_score(
    explained: tuple[Kube, str],
) -> None:
    kube, database_url = explained
    cronjob = kube.kubectl_json("get", "cronjob", CRONJOB)
    (container,) = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    assert {"name": "SCORER_REASONS", "value": str(K)} in container["env"]
    (pod,) = kube.pods_of(JOB)
    summary = kube.pod_log_lines(pod)[-1]
    assert summary["event"] == "run.succeeded", summary
    rows = services.query(
        database_url,
        "SELECT run_id, reasons FROM scoring.latest_predictions WHERE model_name = %s",
        (MODEL,),
    )
    assert len(rows) == CUSTOMERS
    assert {run_id for run_id, _ in rows} == {JOB}
    for _, reasons in rows:
        assert len(reasons) == K
        names = [name for name, _ in reasons]
        assert set(names) <= set(NUMERIC_FEATURES)
        magnitudes = [abs(value) for _, value in reasons]
        assert magnitudes == sorted(magnitudes, reverse=True)
