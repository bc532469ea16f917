"""Lineage on a real kind cluster: a run the CronJob schedules is recorded on the test MLflow
server, tagged with the pod's Job name, and its OpenLineage events reach an endpoint on the
host. One install of the chart in a namespace of its own (beside tests/e2e/test_scoring.py's)."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from mlflow import MlflowClient

from tests.support import services
from tests.support.fixtures import load_features, register_versions, synthetic_customers
from tests.support.helm import ENV_VALUES, find_helm
from tests.support.kube import (
    CRONJOB,
    DATABASE_SECRET,
    IMAGE,
    IMAGE_REPOSITORY,
    IMAGE_TAG,
    RELEASE,
    build_and_load_image,
    create_database_secret,
)
from tests.support.lineage_schema import validate

pytestmark = pytest.mark.e2e

NAMESPACE = "scorer-e2e-lineage"
MODEL = "churn-e2e-lineage"
CUSTOMERS = 2_000
TIMEOUT_S = 300


@dataclass
class Events:
    """OpenLineage events POSTed by the pods, in arrival order."""

    received: list[dict[str, Any]] = field(default_factory=list)


class _Collect(BaseHTTPRequestHandler):
    server: _EventServer

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.events.received.append(json.loads(body))
        self.send_response(201)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _EventServer(ThreadingHTTPServer):
    events: Events


@dataclass
class Install:
    kubectl_path: Path
    kubeconfig: Path
    database_url: str
    mlflow_uri: str
    events: Events

    def kubectl(self, *args: str) -> Any:
        proc = subprocess.run(
            [str(self.kubectl_path), *args],
            env={**os.environ, "KUBECONFIG": str(self.kubeconfig)},
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
            check=False,
        )
        assert proc.returncode == 0, f"kubectl {' '.join(args)}: {proc.stderr}"
        return proc.stdout

    def kubectl_json(self, *args: str) -> Any:
        return json.loads(self.kubectl(*args, "-o", "json"))

    def logs(self, job: str) -> str:
        return str(self.kubectl("logs", f"job/{job}", "-n", NAMESPACE))


@pytest.fixture(scope="module")
def install(
    kind_cluster: Any, host_address_for_pods: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Install]:
    helm = find_helm()
    if helm is None:
        pytest.fail("helm is not built: run hack/helm.sh")
    work = tmp_path_factory.mktemp("e2e-lineage")
    build_and_load_image(kind_cluster, IMAGE)

    server = _EventServer((host_address_for_pods, 0), _Collect)
    server.events = Events()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    with (
        services.mlflow_server(work / "mlflow", host=host_address_for_pods) as mlflow_uri,
        services.fresh_database("scorer_e2e_lineage") as database_url,
    ):
        load_features(database_url, "features.customers", synthetic_customers(CUSTOMERS, seed=8))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            register_versions(mlflow_uri, MODEL, synthetic_customers(2_000, seed=4), versions=1)
        deployment = Install(
            Path(kind_cluster.kubectl_path),
            Path(kind_cluster.kubeconfig_path),
            database_url,
            mlflow_uri,
            server.events,
        )
        deployment.kubectl("create", "namespace", NAMESPACE)
        create_database_secret(deployment.kubectl, NAMESPACE, database_url, host_address_for_pods)
        host, port = server.server_address[:2]
        values = {
            "schedule": "* * * * *",
            "timeZone": "Etc/UTC",
            "startingDeadlineSeconds": 300,
            "activeDeadlineSeconds": 600,
            "successfulJobsHistoryLimit": 5,
            "failedJobsHistoryLimit": 5,
            "model": {"name": MODEL, "alias": "champion", "stage": "", "version": ""},
            "features": {"table": "features.customers", "entityColumn": "customer_id"},
            "mlflow": {"trackingUri": mlflow_uri},
            "openlineage": {"url": f"http://{host}:{port}", "namespace": "e2e"},
            "database": {"existingSecret": DATABASE_SECRET},
            "image": {"repository": IMAGE_REPOSITORY, "tag": IMAGE_TAG, "pullPolicy": "Never"},
        }
        path = work / "values.yaml"
        path.write_text(yaml.safe_dump(values))
        proc = subprocess.run(
            [
                str(helm),
                "upgrade",
                "--install",
                RELEASE,
                str(services.REPO / "charts" / "scorer"),
                "-n",
                NAMESPACE,
                "-f",
                str(ENV_VALUES["dev"]),
                "-f",
                str(path),
                "--wait",
            ],
            env={**os.environ, "KUBECONFIG": str(deployment.kubeconfig)},
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr
        try:
            yield deployment
        finally:
            subprocess.run(
                [str(deployment.kubectl_path), "delete", "namespace", NAMESPACE, "--wait=false"],
                env={**os.environ, "KUBECONFIG": str(deployment.kubeconfig)},
                capture_output=True,
                check=False,
                timeout=120,
            )
            server.shutdown()
            server.server_close()


def first_scheduled_job(install: Install) -> str:
    """The first Job the CronJob creates, once it has completed."""
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        jobs = install.kubectl_json("get", "jobs", "-n", NAMESPACE)["items"]
        owned = sorted(
            job["metadata"]["name"]
            for job in jobs
            if any(ref["kind"] == "CronJob" for ref in job["metadata"].get("ownerReferences", []))
        )
        for job in jobs:
            if owned and job["metadata"]["name"] == owned[0]:
                conditions = {c["type"] for c in job["status"].get("conditions", [])}
                assert "Failed" not in conditions, install.logs(owned[0])
                if "Complete" in conditions:
                    return owned[0]
        time.sleep(3)
    raise AssertionError(f"no scheduled Job completed within {TIMEOUT_S}s")


def test_a_scheduled_run_is_recorded_in_mlflow_with_its_job_name(install: Install) -> None:
    job = first_scheduled_job(install)
    client = MlflowClient(install.mlflow_uri)
    experiment = client.get_experiment_by_name(f"scoring/{MODEL}")
    assert experiment is not None, install.logs(job)
    (run,) = client.search_runs(
        [experiment.experiment_id], filter_string=f"tags.`scorer.k8s_job` = '{job}'"
    )
    assert run.info.status == "FINISHED"
    assert run.info.run_name == job
    tags = run.data.tags
    assert tags["scorer.run_id"] == job
    assert tags["scorer.trigger"] == "scheduled"
    assert tags["scorer.k8s_namespace"] == NAMESPACE
    assert tags["scorer.k8s_cronjob"] == CRONJOB
    assert tags["scorer.k8s_pod"].startswith(f"{job}-")
    assert tags["scorer.image"] == IMAGE
    assert run.data.metrics["rows_scored"] == CUSTOMERS
    rows = services.query(
        install.database_url,
        "SELECT mlflow_record_status, mlflow_record_run_id, openlineage_run_id::text"
        " FROM scoring.scoring_runs WHERE run_id = %s",
        (job,),
    )
    assert rows == [("recorded", run.info.run_id, tags["scorer.openlineage_run_id"])]
    events = [
        e for e in install.events.received if e["run"]["facets"]["scorer"]["scoringRunId"] == job
    ]
    assert [e["eventType"] for e in events] == ["START", "COMPLETE"]
    for event in events:
        validate(event)
        assert event["job"]["namespace"] == "e2e"
        assert "nominalTime" in event["run"]["facets"]
        assert event["run"]["facets"]["parent"]["job"]["name"] == f"{NAMESPACE}.{CRONJOB}"
    stats = events[-1]["outputs"][0]["outputFacets"]["outputStatistics"]
    assert stats["rowCount"] == CUSTOMERS
