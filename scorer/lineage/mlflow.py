"""The scoring run as an MLflow run, in the experiment ``scoring/<model name>`` by default.

One MLflow run per attempt of a scoring run, made after the run ends (after publish, or after
a failure), in five calls: find (or create) the experiment, create the run with its tags,
log its params and metrics in one batch, log its inputs, and end it FINISHED or FAILED.

- **params**: run id, model, selector, resolved version, snapshot, features relation,
  threshold, score kind, shard count;
- **metrics**: rows read, scored and rejected, score mean/p50/p90, share above threshold,
  the quality gate's score PSI against the previous run (when it computed one), and the
  seconds of each step (``seconds_<step>``);
- **tags**: ``scorer.run_id``, the Kubernetes namespace, Job, pod, node and CronJob, the image,
  the trigger, the model, the OpenLineage run id, and a description (``mlflow.note.content``);
- **inputs**: the features relation as a dataset, and the model as a logged-model input.

The dataset uses MLflow's entity API (``mlflow.entities.Dataset`` logged with
``MlflowClient.log_inputs``): MLflow has no SQL dataset source, and a ``DatasetSource``
subclass would add a source type MLflow cannot load (nor register outside this process) for
nothing the UI shows. The entity carries a name (``database.schema.table``, as OpenLineage
names it), a digest, the source as JSON with a PostgreSQL URI without credentials
(``source_type`` ``postgresql``), the relation's columns as an MLflow column spec and a profile
(rows read, snapshot).

The model link is the logged-model input (``LoggedModelInput(model_id)``, the MLflow 3 link
the run page shows) plus the ``scorer.model_*`` tags, which hold the registry name and
version; metrics are not attached to the logged model, so the training experiment's model
comparisons keep only training metrics.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Mapping
from contextlib import suppress
from typing import TYPE_CHECKING, Any

from scorer import __version__

if TYPE_CHECKING:
    from datetime import datetime

    from scorer.lineage.types import Outcome, Start

_MAX_TAG = 5000  # MLflow takes 8000 characters; a description needs far fewer
_RESOURCE_ALREADY_EXISTS = "RESOURCE_ALREADY_EXISTS"


class RecordError(Exception):
    """The MLflow run could not be recorded (whole); ``run_id`` if a partial one was made."""

    def __init__(self, message: str, run_id: str | None) -> None:
        super().__init__(message)
        self.run_id = run_id


def record(start: Start, outcome: Outcome, openlineage: bool) -> str:
    """Record the scoring run as an MLflow run; return its id. Raises ``RecordError``."""
    from mlflow import MlflowClient  # noqa: PLC0415 - imported by the registry already
    from mlflow.entities import (  # noqa: PLC0415
        DatasetInput,
        InputTag,
        LoggedModelInput,
        RunStatus,
    )

    # stdout carries the JSON log lines: no "View run" links there (and no get_run to make them).
    os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = "true"
    settings = start.settings
    client = MlflowClient(tracking_uri=settings.tracking_uri)
    run_id: str | None = None
    try:
        experiment_id = _experiment(client, settings.experiment, start.resolved.name)
        run = client.create_run(
            experiment_id,
            start_time=_ms(start.started_at),
            tags=tags(start, outcome, openlineage),
            run_name=settings.run_id,
        )
        run_id = str(run.info.run_id)
        dataset = dataset_entity(start, outcome)
        client.log_batch(run_id, metrics=metrics(start, outcome), params=params(start))
        model_id = start.resolved.model_id
        client.log_inputs(
            run_id,
            datasets=[DatasetInput(dataset, tags=[InputTag("mlflow.data.context", "scoring")])],
            models=[LoggedModelInput(model_id)] if model_id else None,
        )
        status = RunStatus.FINISHED if outcome.succeeded else RunStatus.FAILED
        client.set_terminated(
            run_id, RunStatus.to_string(status), end_time=_ms(outcome.finished_at)
        )
    except Exception as exc:  # MLflow down, refusing, or the experiment deleted: all a warning
        if run_id is not None:  # do not leave a half-made run RUNNING
            with suppress(Exception):
                client.set_terminated(run_id, "FAILED")
        message = getattr(exc, "message", None) or str(exc)
        raise RecordError(f"{type(exc).__name__}: {message}", run_id) from exc
    return run_id


def record_comparison(
    tracking_uri: str,
    record_run_id: str,
    figures: Mapping[str, float | None],
    tags: Mapping[str, str],
) -> None:
    """Add a comparison with another scoring run to a run's MLflow record: each figure as the
    metric ``compare_<name>`` (an empty one is left out), and ``tags``. Raises ``RecordError``."""
    from mlflow import MlflowClient  # noqa: PLC0415 - imported by the registry already
    from mlflow.entities import Metric, RunTag  # noqa: PLC0415

    now = int(time.time() * 1000)
    metrics = [Metric(f"compare_{k}", v, now, 0) for k, v in figures.items() if v is not None]
    try:
        MlflowClient(tracking_uri=tracking_uri).log_batch(
            record_run_id, metrics=metrics, tags=[RunTag(k, v) for k, v in tags.items()]
        )
    except Exception as exc:  # MLflow down, or the record deleted: the caller warns
        message = getattr(exc, "message", None) or str(exc)
        raise RecordError(f"{type(exc).__name__}: {message}", record_run_id) from exc


def _experiment(client: Any, name: str, model_name: str) -> str:
    """The experiment's id; created on a model's first scoring run."""
    from mlflow.exceptions import MlflowException  # noqa: PLC0415

    found = client.get_experiment_by_name(name)
    if found is None:
        try:
            return str(
                client.create_experiment(
                    name,
                    tags={
                        "scorer.model_name": model_name,
                        # The UI's model-training view (runs, metric charts), not the GenAI one.
                        "mlflow.experimentKind": "custom_model_development",
                        "mlflow.note.content": f"Batch scoring runs of the registered model "
                        f"`{model_name}`, one MLflow run per scoring run (scorer).",
                    },
                )
            )
        except MlflowException as exc:
            if exc.error_code != _RESOURCE_ALREADY_EXISTS:
                raise
            found = client.get_experiment_by_name(name)  # a concurrent run made it first
            if found is None:
                raise
    if found.lifecycle_stage != "active":
        raise RuntimeError(
            f"experiment {name!r} is deleted: restore it, or record elsewhere with "
            "SCORER_MLFLOW_EXPERIMENT"
        )
    return str(found.experiment_id)


def params(start: Start) -> list[Any]:
    """The run's parameters (what was asked, and what it resolved to)."""
    from mlflow.entities import Param  # noqa: PLC0415

    settings = start.settings
    values: dict[str, object | None] = {
        "run_id": settings.run_id,
        "model_name": start.resolved.name,
        "model_selector": start.resolved.selector,
        "model_version": start.resolved.version,
        "snapshot": start.snapshot,
        "snapshot_column": start.snapshot_column,
        "features_relation": settings.features_table,
        "threshold": settings.label_threshold,
        "score_kind": settings.score_kind,
        "shards": settings.shards,
    }
    return [Param(key, str(value)) for key, value in values.items() if value is not None]


def metrics(start: Start, outcome: Outcome) -> list[Any]:
    """Counts, score statistics, the gate's PSI and seconds per step, at the run's end."""
    from mlflow.entities import Metric  # noqa: PLC0415

    values: dict[str, float | None] = {
        "rows_read": outcome.rows_read,
        "rows_scored": outcome.rows_scored,
        "rows_rejected": outcome.rows_rejected,
        **outcome.figures,
        "score_psi": outcome.psi,
        "seconds": (outcome.finished_at - start.started_at).total_seconds(),
        **{f"seconds_{step}": seconds for step, seconds in outcome.timings.items()},
    }
    at = _ms(outcome.finished_at)
    return [Metric(key, float(value), at, 0) for key, value in values.items() if value is not None]


def tags(start: Start, outcome: Outcome, openlineage: bool) -> dict[str, str]:
    """Where the run came from and what it was; never a credential."""
    settings, model = start.settings, start.resolved
    values: dict[str, object | None] = {
        "scorer.run_id": settings.run_id,
        "scorer.status": "succeeded" if outcome.succeeded else "failed",
        "scorer.error_kind": outcome.kind,
        "scorer.trigger": start.trigger,
        "scorer.model_name": model.name,
        "scorer.model_version": model.version,
        "scorer.model_id": model.model_id,
        "scorer.model_run_id": model.mlflow_run_id,
        "scorer.k8s_namespace": settings.k8s_namespace,
        "scorer.k8s_job": settings.k8s_job,
        "scorer.k8s_pod": settings.k8s_pod,
        "scorer.k8s_node": settings.k8s_node,
        "scorer.k8s_cronjob": settings.k8s_cronjob,
        "scorer.image": settings.image,
        "scorer.version": __version__,
        "scorer.openlineage_run_id": str(start.openlineage_run_id) if openlineage else None,
        "mlflow.source.type": "JOB",
        "mlflow.source.name": "scorer",
        "mlflow.note.content": _description(start, outcome)[:_MAX_TAG],
    }
    return {key: str(value) for key, value in values.items() if value is not None}


def _description(start: Start, outcome: Outcome) -> str:
    model, relation = start.resolved, start.settings.features_table
    head = (
        f"Scoring run `{start.settings.run_id}` of `{model.name}` version {model.version} "
        f"({model.selector}) over `{relation}`, snapshot `{start.snapshot}`: "
    )
    if outcome.succeeded:
        return head + f"{outcome.rows_scored} predictions published."
    return head + f"failed ({outcome.kind}), nothing published: {outcome.error}"


def dataset_entity(start: Start, outcome: Outcome) -> Any:
    """The features relation as an MLflow dataset (entity API; see the module's docstring)."""
    from mlflow.entities import Dataset  # noqa: PLC0415

    table = start.features
    source = {
        "uri": table.uri,
        "relation": f"{table.schema}.{table.name}",
        "snapshot_column": start.snapshot_column,
        "snapshot": start.snapshot,
    }
    schema = {
        "mlflow_colspec": [
            {"name": column, "type": sql_type, "required": False}
            for column, sql_type in table.columns
        ]
    }
    profile = {
        "num_rows": outcome.rows_read,
        "rows_rejected": outcome.rows_rejected,
        "snapshot": start.snapshot,
    }
    return Dataset(
        name=table.qualified_name,
        digest=digest(start, outcome),
        source_type="postgresql",
        source=json.dumps(source, sort_keys=True),
        schema=json.dumps(schema),
        profile=json.dumps(profile, sort_keys=True),
    )


def digest(start: Start, outcome: Outcome) -> str:
    """What identifies the data one run read: relation, snapshot, columns and row count.

    Not a hash of the rows (that would cost a pass over the table): two runs over the same
    snapshot of an unchanged relation share it.
    """
    table = start.features
    identity = [table.namespace, table.qualified_name, start.snapshot, table.columns]
    text = json.dumps([*identity, outcome.rows_read], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def log_realized(tracking_uri: str, run_id: str, values: dict[str, float], step: int) -> None:
    """Log ``scorer evaluate``'s figures (``realized_*``) on a scoring run's MLflow record, at
    ``step`` = the horizon in days, so they chart beside ``score_mean``. Raises ``RecordError``."""
    import time  # noqa: PLC0415

    from mlflow import MlflowClient  # noqa: PLC0415
    from mlflow.entities import Metric  # noqa: PLC0415

    os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = "true"
    at = int(time.time() * 1000)
    try:
        MlflowClient(tracking_uri=tracking_uri).log_batch(
            run_id, metrics=[Metric(key, float(value), at, step) for key, value in values.items()]
        )
    except Exception as exc:  # MLflow down, or the record deleted: a warning
        message = getattr(exc, "message", None) or str(exc)
        raise RecordError(f"{type(exc).__name__}: {message}", run_id) from exc
