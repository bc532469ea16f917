"""Lineage on a real kind cluster: a run the CronJob schedules is recorded on the test MLflow
server, tagged with the pod's Job name, and its OpenLineage events reach an endpoint on the
host. One install of the chart in a namespace of its own (beside tests/e2e/test_scoring.py's)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from mlflow import MlflowClient

from tests.support import services
from tests.support.kube import (
    CRONJOB,
    EVERY_MINUTE,
    IMAGE,
    Cluster,
    Deployment,
    OnDeployment,
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
class Install(OnDeployment):
    deployment: Deployment
    events: Events

    def kubectl_json(self, *args: str) -> Any:
        return self.kube.kubectl_json(*args)

    def logs(self, job: str) -> str:
        return self.kube.kubectl("logs", f"job/{job}").stdout


@pytest.fixture(scope="module")
def install(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Install]:
    server = _EventServer((cluster.host, 0), _Collect)
    server.events = Events()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    work = tmp_path_factory.mktemp("e2e-lineage")
    try:
        with cluster.deploy(
            NAMESPACE, work, model=MODEL, customers=CUSTOMERS, seed=8
        ) as deployment:
            host, port = server.server_address[:2]
            deployment.install(
                {
                    **EVERY_MINUTE,
                    "activeDeadlineSeconds": 600,
                    "successfulJobsHistoryLimit": 5,
                    "failedJobsHistoryLimit": 5,
                    "model": {"stage": "", "version": ""},
                    "openlineage": {"url": f"http://{host}:{port}", "namespace": "e2e"},
                }
            )
            yield Install(deployment, server.events)
    finally:
        server.shutdown()
        server.server_close()


def first_scheduled_job(install: Install) -> str:
    """The first Job the CronJob creates, once it has completed."""
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        jobs = install.kubectl_json("get", "jobs")["items"]
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
