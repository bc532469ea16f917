"""The reasons behind every score on a real kind cluster: a release with ``scoring.reasons: 3``
passes ``SCORER_REASONS`` to its pods, and a run of its CronJob publishes predictions whose
consumer view ``latest_predictions`` carries three reasons per row, named by the model's
features. One install in a namespace of its own."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support import services
from tests.support.fixtures import NUMERIC_FEATURES
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

NAMESPACE = "scorer-e2e-reasons"
MODEL = "churn-e2e-reasons"
CUSTOMERS = 1_000
K = 3
JOB = "reasons-manual"


def install_values(mlflow_uri: str) -> dict[str, Any]:
    """A suspended release that stores 3 reasons per score."""
    return {
        "suspend": True,
        "model": {"name": MODEL, "alias": "champion", "stage": "", "version": ""},
        "features": {"table": "features.customers", "entityColumn": "customer_id"},
        "scoring": {"reasons": K},
        "log": {"format": "json", "level": "INFO"},
        "mlflow": {"trackingUri": mlflow_uri, "recordRuns": False},
        "database": {"existingSecret": DATABASE_SECRET},
        "image": {"repository": IMAGE_REPOSITORY, "tag": IMAGE_TAG, "pullPolicy": "Never"},
    }


@pytest.fixture(scope="module")
def explained(
    kind_cluster: Any, host_address_for_pods: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Kube, str]]:
    """The release installed and one Job of its CronJob run: the namespace and the database."""
    helm = find_helm()
    if helm is None:
        pytest.fail("helm is not built: run hack/helm.sh")
    work = tmp_path_factory.mktemp("e2e-reasons")
    build_and_load_image(kind_cluster, IMAGE)
    host = host_address_for_pods
    with (
        services.mlflow_server(work / "mlflow", host=host) as mlflow_uri,
        services.fresh_database("scorer_e2e_reasons") as database_url,
    ):
        seed(database_url, mlflow_uri, MODEL, CUSTOMERS, seed=9)
        kube = Kube(
            kubectl_path=Path(kind_cluster.kubectl_path),
            helm_path=helm,
            kubeconfig=Path(kind_cluster.kubeconfig_path),
            namespace=NAMESPACE,
        )
        kube.kubectl("create", "namespace", NAMESPACE)
        create_database_secret(kube.kubectl, NAMESPACE, database_url, host)
        values = work / "reasons-values.yaml"
        values.write_text(yaml.safe_dump(install_values(mlflow_uri)))
        try:
            kube.helm(
                "upgrade", "--install", RELEASE, str(services.REPO / "charts" / "scorer"),
                "-f", str(ENV_VALUES["dev"]), "-f", str(values), "--wait",
            )  # fmt: skip
            kube.kubectl("create", "job", f"--from=cronjob/{CRONJOB}", JOB)
            kube.wait_job(JOB, "complete")
            yield kube, database_url
        finally:
            kube.kubectl("delete", "namespace", NAMESPACE, "--wait=false", check=False)


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
