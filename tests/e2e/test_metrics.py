"""Run metrics on a real kind cluster: a scheduled run pushes to a Pushgateway its pod reaches
through the release's NetworkPolicy (egress to the Pushgateway allowed), and the series are
read back from it. The Pushgateway (hack/prometheus.sh) runs on the docker host, beside
PostgreSQL and MLflow, bound to the address pods reach it on. One install in a namespace of its
own."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.support import services
from tests.support.kube import (
    CRONJOB,
    EVERY_MINUTE,
    RELEASE,
    Cluster,
    Deployment,
    Kube,
)

pytestmark = pytest.mark.e2e

NAMESPACE = "scorer-e2e-metrics"
MODEL = "churn-e2e-metrics"
CUSTOMERS = 2_000


def install_values(deployment: Deployment, pushgateway: str, suspend: bool) -> dict[str, Any]:
    """A scheduled release that pushes its metrics, with egress to this host's services only."""
    return {
        **EVERY_MINUTE,
        "activeDeadlineSeconds": 600,
        "successfulJobsHistoryLimit": 20,
        "suspend": suspend,
        "model": {"stage": "", "version": ""},
        "mlflow": {"recordRuns": False},
        "metrics": {"pushgateway": {"url": pushgateway}},
        "networkPolicy": deployment.network_policy(pushgateway=pushgateway),
    }


@pytest.fixture(scope="module")
def pushing(
    cluster: Cluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Kube, str, str]]:
    """The release installed, its first scheduled Job run (then suspended): the namespace, the
    Pushgateway's URL and the Job's name."""
    work = tmp_path_factory.mktemp("e2e-metrics")
    with (
        services.pushgateway(work / "pushgateway", host=cluster.host) as pushgateway,
        cluster.deploy(NAMESPACE, work, model=MODEL, customers=CUSTOMERS, seed=5) as deployment,
    ):
        kube = deployment.kube
        deployment.install(install_values(deployment, pushgateway, suspend=False))
        job = kube.first_scheduled_job(timeout=150)
        kube.wait_job(job, "complete")
        deployment.install(install_values(deployment, pushgateway, suspend=True))
        for other in kube.scheduled_jobs():
            kube.wait_job(other, "complete")
        yield kube, pushgateway, job


def test_a_scheduled_run_pushes_through_the_network_policy(
    pushing: tuple[Kube, str, str],
) -> None:
    kube, pushgateway, job = pushing
    policy = kube.kubectl_json("get", "networkpolicy", CRONJOB)
    assert any(
        rule["ports"][0]["port"] == int(pushgateway.rsplit(":", 1)[1])
        for rule in policy["spec"]["egress"]
    )
    (pod,) = kube.pods_of(job)
    summary = kube.pod_log_lines(pod)[-1]
    assert summary["event"] == "run.succeeded"
    assert summary["metrics"]["pushgateway"] == "pushed", summary
    series: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in services.scrape(pushgateway):
        for sample in family.samples:
            labels = dict(sample.labels)
            if labels.get("model") == MODEL:
                series.setdefault(sample.name, []).append((labels, sample.value))
    ((info, _),) = series["scorer_last_run_info"]
    assert info["job"] == "scorer"
    assert (info["namespace"], info["release"]) == (NAMESPACE, RELEASE)
    assert info["run_id"] == job  # the Job's name: `scorer show <job>`
    assert info["model_version"] == "1"
    outcome = {labels["outcome"]: v for labels, v in series["scorer_last_run_outcome"]}
    assert outcome == {"succeeded": 1, "refused": 0, "failed": 0}
    assert series["scorer_last_run_rows_scored"][0][1] == CUSTOMERS
    assert "scorer_last_success_timestamp_seconds" in series
