"""Run metrics on a real kind cluster: a scheduled run pushes to a Pushgateway its pod reaches
through the release's NetworkPolicy (egress to the Pushgateway allowed), and the series are
read back from it. The Pushgateway (hack/prometheus.sh) runs on the docker host, beside
PostgreSQL and MLflow, bound to the address pods reach it on. One install in a namespace of its
own."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support import services
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

NAMESPACE = "scorer-e2e-metrics"
MODEL = "churn-e2e-metrics"
CUSTOMERS = 2_000


def install_values(host: str, mlflow_uri: str, pushgateway: str, suspend: bool) -> dict[str, Any]:
    """A scheduled release that pushes its metrics, with egress to this host's services only."""
    host_peer = [{"ipBlock": {"cidr": f"{host}/32"}}]

    def port(url: str) -> list[dict[str, Any]]:
        return [{"port": int(url.rsplit(":", 1)[1]), "protocol": "TCP"}]

    return {
        "schedule": "* * * * *",
        "timeZone": "Etc/UTC",
        "startingDeadlineSeconds": 300,
        "activeDeadlineSeconds": 600,
        "successfulJobsHistoryLimit": 20,
        "suspend": suspend,
        "model": {"name": MODEL, "alias": "champion", "stage": "", "version": ""},
        "features": {"table": "features.customers", "entityColumn": "customer_id"},
        "log": {"format": "json", "level": "INFO"},  # the dev values log for people
        "mlflow": {"trackingUri": mlflow_uri, "recordRuns": False},
        "database": {"existingSecret": DATABASE_SECRET},
        "metrics": {"pushgateway": {"url": pushgateway}},
        "networkPolicy": {
            "enabled": True,
            "database": {"to": host_peer, "ports": [{"port": 5432, "protocol": "TCP"}]},
            "mlflow": {"to": host_peer, "ports": port(mlflow_uri)},
            "pushgateway": {"to": host_peer, "ports": port(pushgateway)},
        },
        "image": {"repository": IMAGE_REPOSITORY, "tag": IMAGE_TAG, "pullPolicy": "Never"},
    }


@pytest.fixture(scope="module")
def pushing(
    kind_cluster: Any, host_address_for_pods: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Kube, str, str]]:
    """The release installed, its first scheduled Job run (then suspended): the namespace, the
    Pushgateway's URL and the Job's name."""
    helm = find_helm()
    if helm is None:
        pytest.fail("helm is not built: run hack/helm.sh")
    work = tmp_path_factory.mktemp("e2e-metrics")
    build_and_load_image(kind_cluster, IMAGE)
    host = host_address_for_pods
    with (
        services.pushgateway(work / "pushgateway", host=host) as pushgateway,
        services.mlflow_server(work / "mlflow", host=host) as mlflow_uri,
        services.fresh_database("scorer_e2e_metrics") as database_url,
    ):
        seed(database_url, mlflow_uri, MODEL, CUSTOMERS, seed=5)
        kube = Kube(
            kubectl_path=Path(kind_cluster.kubectl_path),
            helm_path=helm,
            kubeconfig=Path(kind_cluster.kubeconfig_path),
            namespace=NAMESPACE,
        )
        kube.kubectl("create", "namespace", NAMESPACE)
        create_database_secret(kube.kubectl, NAMESPACE, database_url, host)
        values = work / "metrics-values.yaml"

        def install(suspend: bool) -> None:
            values.write_text(
                yaml.safe_dump(install_values(host, mlflow_uri, pushgateway, suspend))
            )
            kube.helm(
                "upgrade", "--install", RELEASE, str(services.REPO / "charts" / "scorer"),
                "-f", str(ENV_VALUES["dev"]), "-f", str(values), "--wait",
            )  # fmt: skip

        install(suspend=False)
        try:
            job = kube.first_scheduled_job(timeout=150)
            kube.wait_job(job, "complete")
            install(suspend=True)
            for other in kube.scheduled_jobs():
                kube.wait_job(other, "complete")
            yield kube, pushgateway, job
        finally:
            kube.kubectl("delete", "namespace", NAMESPACE, "--wait=false", check=False)


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
