"""Lineage of real runs: the MLflow run on the session's real MLflow server, and OpenLineage
events received by a real HTTP endpoint run here, each validated against the spec's schemas.

MLflow "stopping" between publish and record is a real outage: the scorer talks to MLflow
through a proxy that forwards everything (registry, artifacts) until the first request of the
record, then closes its port, so every retry of the record meets a refused connection.
"""

from __future__ import annotations

import http.client
import itertools
import json
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import pytest
from mlflow import MlflowClient

from scorer.io.sink import partition_name, shard_table_name
from scorer.postgres.identifiers import quote_identifier
from tests.support import services
from tests.support.lineage_schema import validate
from tests.support.stack import CUSTOMERS, FEATURES_TABLE, ChurnModel

pytestmark = pytest.mark.integration

CRONJOB = "scorer"
# Job names as the CronJob controller makes them (<cronjob>-<scheduled minute>), one per run:
# recent minutes, so each run counts as scheduled.
_MINUTES = itertools.count(int(time.time() // 60) - 1, -1)


@dataclass
class Endpoint:
    """A lineage endpoint: the OpenLineage events POSTed to it, in arrival order."""

    url: str
    events: list[dict[str, Any]] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)

    def of(self, run_id: str) -> list[dict[str, Any]]:
        """The events of one scoring run (by the scorer's facet)."""
        return [e for e in self.events if e["run"]["facets"]["scorer"]["scoringRunId"] == run_id]


class _Collect(BaseHTTPRequestHandler):
    server: _CollectServer

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.endpoint.paths.append(self.path)
        self.server.endpoint.events.append(json.loads(body))
        self.send_response(201)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _CollectServer(ThreadingHTTPServer):
    endpoint: Endpoint


@contextmanager
def serve(server: ThreadingHTTPServer) -> Iterator[None]:
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture(scope="module")
def endpoint() -> Iterator[Endpoint]:
    """A real HTTP server taking OpenLineage events on loopback."""
    server = _CollectServer(("127.0.0.1", 0), _Collect)
    host, port = server.server_address[:2]
    server.endpoint = Endpoint(f"http://{host}:{port}")
    with serve(server):
        yield server.endpoint


@pytest.fixture(scope="module")
def database(postgres_url: str) -> str:
    return str(urlsplit(postgres_url).path.lstrip("/"))


def scheduled_env(scorer_env: dict[str, str], endpoint: Endpoint, **extra: str) -> dict[str, str]:
    """A run as the chart starts one: run id = Job name, downward-API lineage, OpenLineage on."""
    job = f"{CRONJOB}-{next(_MINUTES)}"
    return {
        **scorer_env,
        "SCORER_RUN_ID": job,
        "SCORER_K8S_JOB": job,
        "SCORER_K8S_CRONJOB": CRONJOB,
        "SCORER_K8S_NAMESPACE": "ml",
        "SCORER_K8S_POD": f"{job}-x7k2p",
        "SCORER_K8S_NODE": "node-1",
        "SCORER_IMAGE": "scorer:it",
        "OPENLINEAGE_URL": endpoint.url,
        **extra,
    }


def run_row(env: dict[str, str], run_id: str) -> dict[str, Any] | None:
    """The run row in the test's own target schema (``env``: its scorer settings)."""
    target = quote_identifier(env["SCORER_TARGET_SCHEMA"])
    rows = services.query(
        env["SCORER_DATABASE_URL"],
        f"SELECT row_to_json(r) FROM {target}.scoring_runs r WHERE run_id = %s",
        (run_id,),
    )
    return None if not rows else dict(rows[0][0])


def published_rows(env: dict[str, str], run_id: str) -> int:
    target = quote_identifier(env["SCORER_TARGET_SCHEMA"])
    rows = services.query(
        env["SCORER_DATABASE_URL"],
        f"SELECT count(*) FROM {target}.predictions WHERE run_id = %s",
        (run_id,),
    )
    return int(rows[0][0])


def summary(result: Any) -> dict[str, Any]:
    return services.json_lines(result.stdout)[-1]


def mlflow_runs(mlflow_uri: str, experiment: str, run_id: str) -> list[Any]:
    client = MlflowClient(mlflow_uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return []
    return list(
        client.search_runs(
            [found.experiment_id],
            filter_string=f"tags.`scorer.run_id` = '{run_id}'",
            order_by=["attributes.start_time ASC"],
        )
    )


def assert_no_secret(result: Any, url: str) -> None:
    password = urlsplit(url).password
    assert password
    assert password not in result.stdout
    assert password not in result.stderr


def test_a_published_run_is_recorded_in_mlflow_and_sent_as_openlineage_events(
    scorer_env: dict[str, str],
    churn_model: ChurnModel,
    postgres_url: str,
    mlflow_uri: str,
    endpoint: Endpoint,
    database: str,
) -> None:
    env = scheduled_env(scorer_env, endpoint)
    run_id = env["SCORER_RUN_ID"]
    result = services.run_scorer(env, "run")
    assert result.returncode == 0, result.stdout + result.stderr
    assert_no_secret(result, postgres_url)
    row = run_row(scorer_env, run_id)
    assert row is not None
    assert (row["status"], row["trigger"]) == ("succeeded", "scheduled")
    assert row["mlflow_record_status"] == "recorded"
    assert row["mlflow_record_error"] is None
    published = published_rows(scorer_env, run_id)
    assert published == CUSTOMERS
    assert set(endpoint.paths) == {"/api/v1/lineage"}
    lineage = summary(result)["lineage"]
    assert lineage["mlflow_record"] == "recorded"
    assert lineage["openlineage"] == "delivered"
    assert lineage["openlineage_run_id"] == row["openlineage_run_id"]

    run = assert_mlflow_run(row, churn_model, postgres_url, mlflow_uri, database)
    predictions = f"{database}.{scorer_env['SCORER_TARGET_SCHEMA']}.predictions"
    events = endpoint.of(run_id)
    assert_events(events, row, churn_model, database, predictions, run.info.run_id, published)
    assert urlsplit(postgres_url).password not in json.dumps(endpoint.of(run_id))


def assert_mlflow_run(
    row: dict[str, Any], churn_model: ChurnModel, postgres_url: str, mlflow_uri: str, database: str
) -> Any:
    """The MLflow run, in scoring/<model name>, next to the model version that scored."""
    run_id = row["run_id"]
    client = MlflowClient(mlflow_uri)
    run = client.get_run(row["mlflow_record_run_id"])
    experiment = client.get_experiment(run.info.experiment_id)
    assert experiment.name == f"scoring/{churn_model.name}"
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    assert run.info.status == "FINISHED"
    assert run.info.run_name == run_id
    params = run.data.params
    assert params["run_id"] == run_id
    assert params["model_selector"] == "alias:champion"
    assert params["model_version"] == str(churn_model.champion)
    assert params["snapshot"] == row["snapshot"]
    assert params["features_relation"] == FEATURES_TABLE
    assert params["threshold"] == "0.5"
    assert params["shards"] == "1"
    metrics = run.data.metrics
    assert metrics["rows_read"] == metrics["rows_scored"] == CUSTOMERS
    assert metrics["rows_rejected"] == 0
    for name in ("score_mean", "score_p50", "score_p90", "share_above_threshold"):
        assert metrics[name] == pytest.approx(row[name])
    for step in row["timings"]:
        assert metrics[f"seconds_{step}"] == pytest.approx(row["timings"][step])
    tags = run.data.tags
    assert tags["scorer.run_id"] == tags["scorer.k8s_job"] == run_id
    assert tags["scorer.k8s_pod"] == f"{run_id}-x7k2p"
    assert tags["scorer.image"] == "scorer:it"
    assert tags["scorer.trigger"] == "scheduled"
    assert tags["scorer.model_version"] == str(churn_model.champion)
    assert tags["scorer.openlineage_run_id"] == row["openlineage_run_id"]
    (dataset_input,) = run.inputs.dataset_inputs
    dataset = dataset_input.dataset
    assert dataset.name == f"{database}.{FEATURES_TABLE}"
    assert dataset.source_type == "postgresql"
    source = json.loads(dataset.source)
    assert source["uri"] == f"postgresql://127.0.0.1:5432/{database}"
    assert source["relation"] == FEATURES_TABLE
    assert len(dataset.digest) == 16
    assert json.loads(dataset.profile)["num_rows"] == CUSTOMERS
    assert {c["name"] for c in json.loads(dataset.schema)["mlflow_colspec"]} >= {"customer_id"}
    assert {t.key: t.value for t in dataset_input.tags} == {"mlflow.data.context": "scoring"}
    version = client.get_model_version(churn_model.name, str(churn_model.champion))
    model_id = getattr(version, "model_id", None) or version.source.removeprefix("models:/")
    assert [m.model_id for m in run.inputs.model_inputs] == [model_id]
    assert urlsplit(postgres_url).password not in json.dumps(
        [run.data.params, run.data.tags, dataset.source]
    )
    return run


def assert_events(
    events: list[dict[str, Any]],
    row: dict[str, Any],
    churn_model: ChurnModel,
    database: str,
    predictions: str,
    mlflow_record_run_id: str,
    published: int,
) -> None:
    """START then COMPLETE, one run id, valid against the spec, named as the spec says."""
    run_id = row["run_id"]
    assert [e["eventType"] for e in events] == ["START", "COMPLETE"]
    for event in events:
        validate(event)
        assert event["run"]["runId"] == row["openlineage_run_id"]
        assert (event["job"]["namespace"], event["job"]["name"]) == (
            "scorer",
            f"scorer.{churn_model.name}",
        )
        (source_ds,) = event["inputs"]
        assert source_ds["namespace"] == "postgres://127.0.0.1:5432"
        assert source_ds["name"] == f"{database}.{FEATURES_TABLE}"
        fields = [f["name"] for f in source_ds["facets"]["schema"]["fields"]]
        assert fields[0] == "customer_id"
        (target,) = event["outputs"]
        assert (target["namespace"], target["name"]) == (
            "postgres://127.0.0.1:5432",
            predictions,
        )
        facets = event["run"]["facets"]
        scheduled = int(run_id.rsplit("-", 1)[1]) * 60
        assert facets["nominalTime"]["nominalStartTime"].startswith(
            time.strftime("%Y-%m-%dT%H:%M:00", time.gmtime(scheduled))
        )
        assert facets["parent"]["job"]["name"] == f"ml.{CRONJOB}"
        scorer = facets["scorer"]
        assert scorer["modelName"] == churn_model.name
        assert scorer["modelVersion"] == churn_model.champion
        assert scorer["modelSelector"] == "alias:champion"
        assert scorer["mlflowRunId"] == row["mlflow_run_id"]
    complete = events[-1]
    assert complete["outputs"][0]["outputFacets"]["outputStatistics"]["rowCount"] == published
    assert complete["inputs"][0]["inputFacets"]["inputStatistics"]["rowCount"] == CUSTOMERS
    assert complete["run"]["facets"]["scorer"]["mlflowRecordRunId"] == mlflow_record_run_id


def test_a_failed_run_then_its_retry(
    scorer_env: dict[str, str],
    churn_model: ChurnModel,
    postgres_url: str,
    mlflow_uri: str,
    endpoint: Endpoint,
) -> None:
    """A run that fails after its row opened is a FAILED MLflow run and a FAIL event; its retry
    (the same run id, as a pod retry of one Job) shares the OpenLineage run id and completes."""
    table = f"features.lineage_{uuid.uuid4().hex[:8]}"
    services.execute(
        postgres_url, f"CREATE TABLE {table} AS SELECT * FROM {FEATURES_TABLE} WITH NO DATA"
    )
    env = scheduled_env(scorer_env, endpoint, SCORER_FEATURES_TABLE=table)
    run_id = env["SCORER_RUN_ID"]

    first = services.run_scorer(env, "run")
    assert first.returncode == 2, first.stdout + first.stderr
    assert summary(first)["kind"] == "empty_relation"
    row = run_row(scorer_env, run_id)
    assert row is not None
    assert (row["status"], row["mlflow_record_status"]) == ("failed", "recorded")
    (failed_run,) = mlflow_runs(mlflow_uri, f"scoring/{churn_model.name}", run_id)
    assert failed_run.info.run_id == row["mlflow_record_run_id"]
    assert failed_run.info.status == "FAILED"
    assert failed_run.data.tags["scorer.error_kind"] == "empty_relation"
    assert failed_run.data.metrics["rows_read"] == 0
    events = endpoint.of(run_id)
    assert [e["eventType"] for e in events] == ["START", "FAIL"]
    for event in events:
        validate(event)
    error = events[-1]["run"]["facets"]["errorMessage"]
    assert error["message"].startswith("empty_relation: feature relation")
    assert "outputStatistics" not in events[-1]["outputs"][0]["outputFacets"]

    services.execute(postgres_url, f"INSERT INTO {table} SELECT * FROM {FEATURES_TABLE}")
    second = services.run_scorer(env, "run")
    assert second.returncode == 0, second.stdout + second.stderr
    row = run_row(scorer_env, run_id)
    assert row is not None
    assert (row["status"], row["attempts"], row["mlflow_record_status"]) == (
        "succeeded",
        2,
        "recorded",
    )
    events = endpoint.of(run_id)
    assert [e["eventType"] for e in events] == ["START", "FAIL", "START", "COMPLETE"]
    assert {e["run"]["runId"] for e in events} == {row["openlineage_run_id"]}
    for event in events:
        validate(event)
    rows = events[-1]["outputs"][0]["outputFacets"]["outputStatistics"]["rowCount"]
    assert rows == published_rows(scorer_env, run_id) == CUSTOMERS
    runs = mlflow_runs(mlflow_uri, f"scoring/{churn_model.name}", run_id)
    assert [r.info.status for r in runs] == ["FAILED", "FINISHED"]
    assert runs[-1].info.run_id == row["mlflow_record_run_id"]
    services.execute(postgres_url, f"DROP TABLE {table}")


# --- a sharded run: a pair of events per shard, one for the run ------------------------------


def kill_once_started(env: dict[str, str]) -> None:
    """Start the shard that opens the run and SIGKILL it once both its STARTs were sent (the
    run's, then its own: a background thread sends them, so the second may follow the first
    rows) and it is streaming rows."""
    process = services.start_scorer(env, "run")
    assert process.stdout is not None
    starts, streaming = 0, False
    for line in process.stdout:
        assert '"shard.succeeded"' not in line, "the shard ended before it could be killed"
        starts += '"openlineage.sent"' in line and '"START"' in line
        streaming = streaming or '"batch.scored"' in line
        if starts == 2 and streaming:
            process.send_signal(signal.SIGKILL)
            break
    process.communicate(timeout=120)
    assert process.returncode == -signal.SIGKILL


def by_shard(events: list[dict[str, Any]]) -> dict[int | None, list[dict[str, Any]]]:
    """The events of one scoring run by shard (``None``: the run's own), in arrival order."""
    found: dict[int | None, list[dict[str, Any]]] = {}
    for event in events:
        found.setdefault(event["run"]["facets"]["scorer"].get("shard"), []).append(event)
    return found


def assert_shard_event(
    event: dict[str, Any], row: dict[str, Any], index: int, kubernetes_job: dict[str, Any]
) -> None:
    """A shard's event: a child run of the scoring run, rooted in the Kubernetes Job, with its
    own table as the output's partition."""
    model = row["model_name"]
    assert event["job"]["name"] == f"scorer.{model}.shard"
    facets = event["run"]["facets"]
    assert facets["scorer"]["shards"] == 3
    parent = facets["parent"]
    assert parent["run"]["runId"] == row["openlineage_run_id"]
    assert (parent["job"]["namespace"], parent["job"]["name"]) == ("scorer", f"scorer.{model}")
    assert parent["root"]["run"] == kubernetes_job["run"]
    assert parent["root"]["job"] == kubernetes_job["job"]
    (output,) = event["outputs"]
    (partition,) = output["outputFacets"]["subset"]["outputCondition"]["partitions"]
    schema = output["name"].split(".")[1]
    assert partition["identifier"] == f"{schema}.{shard_table_name(row['run_id'], index)}"


def test_a_sharded_run_sends_events_per_shard_and_for_the_run(
    scorer_env: dict[str, str],
    churn_model: ChurnModel,
    postgres_url: str,
    endpoint: Endpoint,
    database: str,
) -> None:
    """3 shards, one of them killed and retried: each shard is a child run of the scoring run
    (START, COMPLETE; its retry shares its run id), and the run has one START and COMPLETE."""
    env = scheduled_env(scorer_env, endpoint, SCORER_CHUNK_ROWS="10")
    run_id, target = env["SCORER_RUN_ID"], scorer_env["SCORER_TARGET_SCHEMA"]
    kill_once_started(services.shard_env(env, run_id, 3, 1))  # it opens the run, then dies
    summaries = {}
    for index in (0, 1, 2):  # shard 1 is the killed pod's retry; shard 2 publishes
        code, lines, err = services.finish_scorer(
            services.start_scorer(services.shard_env(env, run_id, 3, index), "run")
        )
        assert code == 0, (lines, err)
        summaries[index] = lines[-1]
    assert summaries[2]["outcome"] == "published"
    row = run_row(scorer_env, run_id)
    assert row is not None
    assert row["status"] == "succeeded"
    published = published_rows(scorer_env, run_id)
    assert published == CUSTOMERS
    parts = services.shard_rows(postgres_url, target, run_id)
    scored = {int(part[0]): int(part[4]) for part in parts}

    events = endpoint.of(run_id)
    for event in events:
        validate(event)
    assert urlsplit(postgres_url).password not in json.dumps(events)
    grouped = by_shard(events)
    assert set(grouped) == {None, 0, 1, 2}
    run_events = grouped[None]
    assert [e["eventType"] for e in run_events] == ["START", "COMPLETE"]
    assert {e["run"]["runId"] for e in run_events} == {row["openlineage_run_id"]}
    assert events[-1] is run_events[-1]  # the run completes after every shard
    complete = run_events[-1]
    assert complete["outputs"][0]["outputFacets"]["outputStatistics"]["rowCount"] == published

    shard_ids = set()
    for index in (0, 1, 2):
        expected = ["START", "START", "COMPLETE"] if index == 1 else ["START", "COMPLETE"]
        assert [e["eventType"] for e in grouped[index]] == expected, index
        (shard_run_id,) = {e["run"]["runId"] for e in grouped[index]}  # the retry shares it
        assert summaries[index]["lineage"]["openlineage_shard_run_id"] == shard_run_id
        shard_ids.add(shard_run_id)
        for event in grouped[index]:
            assert_shard_event(event, row, index, run_events[0]["run"]["facets"]["parent"])
            assert event["inputs"][0]["name"] == f"{database}.{FEATURES_TABLE}"
        statistics = grouped[index][-1]["outputs"][0]["outputFacets"]["outputStatistics"]
        assert statistics["rowCount"] == scored[index]
    assert len(shard_ids | {row["openlineage_run_id"]}) == 4
    assert sum(scored.values()) == published


def test_a_shard_exiting_2_sends_its_fail_and_the_runs(
    scorer_env: dict[str, str], postgres_url: str, endpoint: Endpoint
) -> None:
    """A duplicated id in shard 1's part: shard 1's FAIL, then the run's FAIL."""
    view = f"features.lineage_dup_{uuid.uuid4().hex[:8]}"
    services.execute(
        postgres_url,
        f"CREATE VIEW {view} AS SELECT * FROM {FEATURES_TABLE} UNION ALL"
        f" SELECT * FROM {FEATURES_TABLE} WHERE customer_id = {CUSTOMERS - 10}",
    )
    env = scheduled_env(scorer_env, endpoint, SCORER_FEATURES_TABLE=view)
    run_id = env["SCORER_RUN_ID"]
    for index, wanted in ((0, 0), (1, 2)):
        code, lines, err = services.finish_scorer(
            services.start_scorer(services.shard_env(env, run_id, 2, index), "run")
        )
        assert code == wanted, (lines, err)
    grouped = by_shard(endpoint.of(run_id))
    for events in grouped.values():
        for event in events:
            validate(event)
    assert [e["eventType"] for e in grouped[0]] == ["START", "COMPLETE"]
    assert [e["eventType"] for e in grouped[1]] == ["START", "FAIL"]
    assert [e["eventType"] for e in grouped[None]] == ["START", "FAIL"]
    shard_error = grouped[1][-1]["run"]["facets"]["errorMessage"]["message"]
    run_error = grouped[None][-1]["run"]["facets"]["errorMessage"]["message"]
    assert shard_error.startswith("duplicate_entity: duplicate entity ids")
    assert run_error.startswith("duplicate_entity: ")
    assert "outputStatistics" not in grouped[None][-1]["outputs"][0]["outputFacets"]
    services.execute(postgres_url, f"DROP VIEW {view}")


# --- MLflow going away between publish and record ------------------------------------------


class _ProxyServer(ThreadingHTTPServer):
    daemon_threads = True
    upstream: tuple[str, int]
    stop_at: str
    stopped: threading.Event
    paths: list[str]


class _Proxy(BaseHTTPRequestHandler):
    """Forward to MLflow, until the first request of the record: then stop listening."""

    server: _ProxyServer
    protocol_version = "HTTP/1.1"
    _HOP = frozenset({"host", "connection", "keep-alive", "transfer-encoding", "content-length"})

    def _forward(self) -> None:
        server = self.server
        server.paths.append(self.path)
        if server.stopped.is_set() or self.path.startswith(server.stop_at):
            if not server.stopped.is_set():
                server.stopped.set()
                threading.Thread(target=_stop, args=(server,), daemon=True).start()
            self.close_connection = True  # no answer: the caller sees MLflow go away
            return
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        upstream = http.client.HTTPConnection(*server.upstream, timeout=120)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in self._HOP}
        upstream.request(self.command, self.path, body=body or None, headers=headers)
        reply = upstream.getresponse()
        data = reply.read()
        upstream.close()
        self.send_response(reply.status)
        for key, value in reply.getheaders():
            if key.lower() not in self._HOP:
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self._forward()

    def do_POST(self) -> None:
        self._forward()

    def do_PATCH(self) -> None:
        self._forward()

    def do_DELETE(self) -> None:
        self._forward()

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _stop(server: ThreadingHTTPServer) -> None:
    server.shutdown()
    server.server_close()  # the port is closed: new connections are refused


@contextmanager
def mlflow_that_stops_before_the_record(mlflow_uri: str) -> Iterator[_ProxyServer]:
    parts = urlsplit(mlflow_uri)
    server = _ProxyServer(("127.0.0.1", 0), _Proxy)
    server.upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
    server.stop_at = "/api/2.0/mlflow/experiments/"  # the record's first call: its experiment
    server.stopped = threading.Event()
    server.paths = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        if not server.stopped.is_set():
            _stop(server)
        thread.join(timeout=5)


def test_mlflow_stopped_between_publish_and_record(
    scorer_env: dict[str, str],
    churn_model: ChurnModel,
    postgres_url: str,
    mlflow_uri: str,
    endpoint: Endpoint,
) -> None:
    with mlflow_that_stops_before_the_record(mlflow_uri) as proxy:
        host, port = proxy.server_address[:2]
        env = scheduled_env(scorer_env, endpoint, MLFLOW_TRACKING_URI=f"http://{host}:{port}")
        run_id = env["SCORER_RUN_ID"]
        result = services.run_scorer(env, "run")
    assert proxy.stopped.is_set(), proxy.paths  # MLflow served the model, then went away
    assert result.returncode == 0, result.stdout + result.stderr
    assert_no_secret(result, postgres_url)
    assert published_rows(scorer_env, run_id) == CUSTOMERS
    lines = services.json_lines(result.stdout)
    events = [line["event"] for line in lines]
    assert events.index("run.published") < events.index("mlflow.record_missing")
    warning = lines[events.index("mlflow.record_missing")]
    assert warning["level"] == "warning"
    assert events[-1] == "run.succeeded"
    assert lines[-1]["lineage"]["mlflow_record"] == "missing"
    row = run_row(scorer_env, run_id)
    assert row is not None
    assert (row["status"], row["mlflow_record_status"]) == ("succeeded", "missing")
    assert row["mlflow_record_run_id"] is None
    assert "MlflowException" in row["mlflow_record_error"]
    assert mlflow_runs(mlflow_uri, f"scoring/{churn_model.name}", run_id) == []
    # The lineage endpoint still heard the run complete.
    assert [e["eventType"] for e in endpoint.of(run_id)] == ["START", "COMPLETE"]


# --- an endpoint that is down, settings that are malformed -----------------------------------


def test_an_unreachable_lineage_endpoint_only_warns(
    scorer_env: dict[str, str], postgres_url: str, mlflow_uri: str, churn_model: ChurnModel
) -> None:
    down = f"http://127.0.0.1:{services.free_port()}"
    env = scheduled_env(
        scorer_env, Endpoint(down), OPENLINEAGE_URL=down, SCORER_MLFLOW_RECORD="false"
    )
    run_id = env["SCORER_RUN_ID"]
    result = services.run_scorer(env, "run")
    assert result.returncode == 0, result.stdout + result.stderr
    assert published_rows(scorer_env, run_id) == CUSTOMERS
    lines = services.json_lines(result.stdout)
    warnings = {line["event"] for line in lines if line["level"] == "warning"}
    assert warnings & {"openlineage.emit_failed", "openlineage.undelivered"}, warnings
    lineage = lines[-1]["lineage"]
    assert lineage["openlineage"] in ("failed", "undelivered")
    assert lineage["mlflow_record"] == "disabled"
    row = run_row(scorer_env, run_id)
    assert row is not None
    assert (row["status"], row["mlflow_record_status"]) == ("succeeded", "disabled")
    assert mlflow_runs(mlflow_uri, f"scoring/{churn_model.name}", run_id) == []


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        ({"OPENLINEAGE_URL": "marquez:5000"}, "OPENLINEAGE_URL"),
        ({"OPENLINEAGE_URL": "http://marquez.example:99999"}, "OPENLINEAGE_URL"),
        ({"OPENLINEAGE__TRANSPORT__TYPE": "no_such_transport"}, "OPENLINEAGE__TRANSPORT__"),
        ({"SCORER_MLFLOW_EXPERIMENT": "scoring/\x01churn"}, "SCORER_MLFLOW_EXPERIMENT"),
    ],
    ids=["url-without-scheme", "url-bad-port", "unknown-transport", "experiment"],
)
def test_malformed_lineage_settings_exit_2_before_anything_is_written(
    scorer_env: dict[str, str],
    postgres_url: str,
    mlflow_uri: str,
    churn_model: ChurnModel,
    extra: dict[str, str],
    named: str,
) -> None:
    run_id = f"bad-lineage-{uuid.uuid4().hex[:8]}"
    env = {**scorer_env, "SCORER_RUN_ID": run_id, **extra}
    result = services.run_scorer(env, "run")
    assert result.returncode == 2, result.stdout + result.stderr
    last = summary(result)
    assert (last["event"], last["kind"]) == ("run.failed", "config")
    assert named in last["error"]
    assert run_row(scorer_env, run_id) is None
    with closing(services.psycopg2.connect(postgres_url)) as conn, conn.cursor() as cur:
        table = f"{scorer_env['SCORER_TARGET_SCHEMA']}.{partition_name(run_id)}"
        cur.execute("SELECT to_regclass(%s)", (table,))
        assert cur.fetchone() == (None,)
    assert mlflow_runs(mlflow_uri, f"scoring/{churn_model.name}", run_id) == []
    checked = services.run_scorer(env, "check")
    assert checked.returncode == 2, checked.stdout + checked.stderr
