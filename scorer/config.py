"""Settings: one typed object read from the environment (prefix ``SCORER_``)."""

from __future__ import annotations

import re
import secrets
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal, TypeVar
from urllib.parse import urlsplit

from pydantic import (
    AliasChoices,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from scorer.errors import ConfigError
from scorer.postgres.identifiers import Relation, validate_identifier

_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
_ALIAS = re.compile(r"[A-Za-z0-9_-]{1,255}")
_STAGES = ("Production", "Staging", "Archived", "None")
_TRACKING_URI_ALIASES = ("MLFLOW_TRACKING_URI", "SCORER_TRACKING_URI")
_SHARD_INDEX_ALIASES = ("SCORER_SHARD_INDEX", "JOB_COMPLETION_INDEX")
_FIELD_OF_ALIAS = {
    **dict.fromkeys(_TRACKING_URI_ALIASES, "tracking_uri"),
    **dict.fromkeys(_SHARD_INDEX_ALIASES, "shard_index"),
}
MAX_SHARDS = 64
"""The most shards one run may have (each holds database connections while it scores)."""
_MAX_EXPERIMENT_NAME = 500  # MLflow's limit (mlflow.utils.validation)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_NO_REGISTRY = "no model registry configured: set MLFLOW_TRACKING_URI or pass --tracking-uri"
_DURATION = re.compile(r"(?:[0-9]+[dhms])+")
_DURATION_PART = re.compile(r"([0-9]+)([dhms])")
_UNIT_SECONDS = {"d": 86_400, "h": 3_600, "m": 60, "s": 1}


class LogSettings(BaseSettings):
    """How every command logs; read and validated first, so even its errors are logged."""

    # populate_by_name: a flag passes a field by name even where the variable is an alias.
    model_config = SettingsConfigDict(
        env_prefix="SCORER_", extra="ignore", frozen=True, populate_by_name=True
    )

    log_format: Literal["json", "console"] = Field(
        "json", description="Log renderer: json (JSON lines) or console"
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="Log level: DEBUG, INFO, WARNING or ERROR"
    )

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value


class SchemaSettings(LogSettings):
    """Which schema holds the tables (``grant --dry-run`` reads no more)."""

    target_schema: str = Field("scoring", description="Schema of the scorer's tables and views")

    @field_validator("target_schema")
    @classmethod
    def _schema_is_identifier(cls, value: str) -> str:
        return validate_identifier(value)


class DatabaseSettings(SchemaSettings):
    """What every database command needs: where the tables live (``migrate``, ``grant``,
    ``runs``, ``show`` and ``explain`` read no more)."""

    database_url: SecretStr = Field(
        description="PostgreSQL URL, postgresql://user:password@host:port/db[?sslmode=...];"
        " percent-encode reserved characters in the password; never logged with it"
    )

    @field_validator("database_url")
    @classmethod
    def _postgres_url(cls, value: SecretStr) -> SecretStr:
        url = value.get_secret_value()
        if not url.startswith(("postgresql://", "postgres://", "postgresql+psycopg2://")):
            raise ValueError("must be a postgresql:// URL")
        from scorer.postgres.db import PERCENT_ENCODE_HINT, connect_kwargs  # noqa: PLC0415 - light --help

        authority = re.split(r"[/?#]", url.partition("://")[2], maxsplit=1)[0]
        if authority.count("@") > 1:
            raise ValueError(f"the user or password holds an unencoded '@'; {PERCENT_ENCODE_HINT}")
        try:
            connect_kwargs(url)  # libpq parses it now: a bad URL fails before anything starts
        except ConfigError:
            raise ValueError(f"not a valid URL; {PERCENT_ENCODE_HINT}") from None
        return value


class TopShareSettings(LogSettings):
    """The top k% that ``compare`` and ``evaluate`` look at (one setting, both commands)."""

    compare_top_share: float = Field(
        0.1,
        gt=0.0,
        le=1.0,
        description="Share k of the highest scores that compare (top-k overlap) and evaluate"
        " (precision and lift in the top k) look at, 0 < k <= 1",
    )


class OutcomeWindowSettings(LogSettings):
    """Where outcomes land and how long after a snapshot they count (``evaluate``; ``prune``
    keeps runs not yet evaluated when the outcome table is set)."""

    outcomes_table: str | None = Field(
        None,
        description="Outcome relation, table or view: schema.table, one row per observed"
        " outcome (evaluation is configured when set)",
    )
    outcome_horizon_days: int | None = Field(
        None,
        ge=1,
        le=3660,
        description="Days after a run's snapshot an outcome counts: outcome time in"
        " (snapshot, snapshot + horizon]; a run is evaluated once that window has passed",
    )

    @field_validator("outcomes_table")
    @classmethod
    def _outcomes_is_relation(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        Relation.parse(value)
        return value


class EvaluateSettings(DatabaseSettings, OutcomeWindowSettings, TopShareSettings):
    """What ``evaluate`` needs: the outcome table, its columns, the horizon, the limit."""

    outcome_entity_column: str | None = Field(
        None, description="Outcome column holding the entity id, of the runs' id type"
    )
    outcome_column: str | None = Field(
        None, description="Outcome column holding what happened: 0/1 (an integer) or boolean"
    )
    outcome_time_column: str | None = Field(
        None, description="Outcome column holding when it happened: date or timestamp"
    )
    min_realized_auc: float | None = Field(
        None,
        ge=0.0,
        le=1.0,
        description="Realized ROC AUC below which evaluate exits 2 (realized_performance),"
        " after recording every figure (off by default)",
    )
    model_name: str | None = Field(
        None, min_length=1, description="Evaluate only this model's runs (default: every model)"
    )
    tracking_uri: str | None = Field(
        None,
        validation_alias=AliasChoices(*_TRACKING_URI_ALIASES, "tracking_uri"),
        description="MLflow server whose run records get the realized figures as metrics"
        " (default: none, nothing logged to MLflow)",
    )

    @field_validator("outcome_entity_column", "outcome_column", "outcome_time_column")
    @classmethod
    def _outcome_column_is_identifier(cls, value: str | None) -> str | None:
        return None if value is None or not value.strip() else validate_identifier(value)

    @model_validator(mode="after")
    def _outcomes_configured(self) -> EvaluateSettings:
        missing = [
            env_name(name)
            for name in (
                "outcomes_table",
                "outcome_entity_column",
                "outcome_column",
                "outcome_time_column",
                "outcome_horizon_days",
            )
            if getattr(self, name) is None
        ]
        if missing:
            raise ValueError(f"evaluate needs {', '.join(missing)}")
        return self

    @property
    def outcomes(self) -> Relation:
        """The outcome relation, parsed."""
        return Relation.parse(self.outcomes_table or "")


class PruneSettings(DatabaseSettings, OutcomeWindowSettings):
    """What ``prune`` needs: the retention rules. It reads and drops tables only (no registry)."""

    model_name: str | None = Field(
        None, min_length=1, description="Prune only this model's runs (default: every model)"
    )
    keep_runs: int | None = Field(
        None, ge=1, description="Keep each model's last K published runs, K >= 1"
    )
    keep_days: int | None = Field(
        None, ge=0, description="Keep the runs published in the last D days, D >= 0"
    )
    prune_lock_timeout_seconds: float = Field(
        2.0,
        gt=0,
        le=60,
        description="Longest wait for the lock a partition's DROP needs; a busy partition is"
        " skipped and goes next time (a run starting meanwhile waits at most this long)",
    )

    @model_validator(mode="after")
    def _some_rule(self) -> PruneSettings:
        if self.keep_runs is None and self.keep_days is None:
            raise ValueError(
                "set SCORER_KEEP_RUNS (--keep-runs) or SCORER_KEEP_DAYS (--keep-days), or both:"
                " prune keeps a run when either rule keeps it"
            )
        return self


class CompareSettings(DatabaseSettings, TopShareSettings):
    """What ``compare`` needs, and how every comparison of two runs of one snapshot reads:
    a run and its shadow run (``scorer.run.shadow``), and ``scorer compare``."""


def _default_snapshot() -> str:
    return datetime.now(UTC).date().isoformat()


def _default_run_id() -> str:
    return f"run-{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


class RunSettings(CompareSettings):
    """Everything ``run``, ``check`` and ``backfill`` need."""

    tracking_uri: str = Field(
        validation_alias=AliasChoices(*_TRACKING_URI_ALIASES),
        description="MLflow tracking/registry server, e.g. http://mlflow:5000"
        " (MLflow's own variable; its credential variables apply)",
    )
    model_name: str = Field(min_length=1, description="Registered model name")
    model_alias: str | None = Field(None, description="Alias to score, e.g. champion")
    model_stage: str | None = Field(None, description="Legacy stage to score, e.g. Production")
    model_version: Annotated[int, Field(gt=0)] | None = Field(
        None, description="Pinned version (GitOps), a positive integer"
    )
    shadow_alias: str | None = Field(
        None,
        description="Challenger alias scored after the run publishes, on the same snapshot, as"
        " an unpublished shadow run compared with it (at most one of SCORER_SHADOW_ALIAS,"
        " SCORER_SHADOW_VERSION; unsharded runs only)",
    )
    shadow_version: Annotated[int, Field(gt=0)] | None = Field(
        None, description="Challenger version scored as a shadow run (see SCORER_SHADOW_ALIAS)"
    )
    require_alias: str | None = Field(None, description="Promotion gate: version must carry it")
    require_stage: str | None = Field(None, description="Promotion gate: version must be in it")
    features_table: str = Field(description="Feature relation, table or view: schema.table")
    entity_column: str = Field(description="Column identifying each entity (integer, text, uuid)")
    snapshot_column: str | None = Field(
        None, description="Column holding each row's snapshot (date, timestamp, text, integer)"
    )
    snapshot: str | None = Field(
        None,
        description="Snapshot to score: the snapshot column's value (default: the newest), "
        "or a label when no snapshot column is set (default: today, UTC)",
    )
    max_snapshot_age: timedelta | None = Field(
        None,
        description="Freshness limit, e.g. 36h, 2d, 1d12h (units d, h, m, s): a snapshot the run"
        " picks (the newest) older than this exits 2 (stale_snapshot); needs a date or timestamp"
        " snapshot column (off by default)",
    )
    score_kind: Literal["probability", "raw"] = Field(
        "probability", description="probability (refuse anything else) or raw (regressors)"
    )
    positive_class: str | None = Field(
        None, description="Class whose probability is the score (default: the positive class)"
    )
    max_score_psi: float = Field(
        0.25, ge=0.0, description="Quality gate: largest score PSI against the previous run"
    )
    min_rows_ratio: float = Field(
        0.8, ge=0.0, le=1.0, description="Quality gate: smallest row count ÷ the previous run's"
    )
    max_null_share_increase: float = Field(
        0.2, ge=0.0, le=1.0, description="Quality gate: largest rise of a feature's NULL share"
    )
    max_feature_psi: float = Field(
        0.2,
        ge=0.0,
        description="Quality gate: largest PSI of any feature's distribution against the previous"
        " run's (numeric: over its quantile bins; categorical: over the model's categories and"
        " 'other'); a warning from 0.1",
    )
    quality_override: str | None = Field(
        None, min_length=1, description="Let this run through the quality gate, for this reason"
    )
    threshold: float | None = Field(
        None,
        description="label = score >= threshold; for probabilities strictly between 0 and 1"
        " (default 0.5)",
    )
    run_id: str = Field(
        default_factory=_default_run_id,
        description="Run identity, 1-128 of letters, digits, '.', '_', ':', '-'; a retry under"
        " the same id replaces its own partial output (the chart passes the Job name;"
        " default: a fresh run-<UTC time>-<hex>)",
    )
    chunk_rows: int = Field(
        50_000,
        ge=1,
        le=5_000_000,
        description="Rows per streamed chunk, 1 to 5,000,000 (memory is flat in the table size)",
    )
    max_rejected_ratio: float = Field(
        0.0, ge=0.0, le=1.0, description="Share of rejected rows tolerated, 0 to 1"
    )
    reasons: int = Field(
        0,
        ge=0,
        le=1000,
        description="Reasons per score: store with each row the K features contributing most"
        " to its score (by absolute contribution to the margin, from the model's own trees:"
        " xgboost and lightgbm), 0 to 1000; 0 (the default) stores none; other flavors exit 2",
    )
    reasons_method: Literal["path", "shapley"] = Field(
        "path",
        description="How SCORER_REASONS' contributions are computed: path (the default: path"
        " contributions read off the leaves each row reaches: a second pass over the trees) or"
        " shapley (exact Shapley values by the libraries' TreeSHAP, a hundred times a"
        " prediction or more)",
    )
    lock_wait_seconds: float = Field(
        0.0, ge=0.0, description="Seconds to wait for a concurrent run of the model and snapshot"
    )
    trigger: Literal["scheduled", "manual", "local"] | None = Field(
        None, description="How the run was started (derived in Kubernetes when unset)"
    )
    k8s_namespace: str | None = Field(None, description="Set by the chart (downward API)")
    k8s_pod: str | None = Field(None, description="Set by the chart (downward API)")
    k8s_node: str | None = Field(None, description="Set by the chart (downward API)")
    k8s_job: str | None = Field(None, description="Set by the chart (the Job name)")
    k8s_cronjob: str | None = Field(None, description="Set by the chart (the CronJob name)")
    image: str | None = Field(None, description="Set by the chart (image reference)")
    mlflow_experiment: str | None = Field(
        None,
        description="MLflow experiment each scoring run is recorded in (default"
        " scoring/<model name>); at most 500 characters, no control characters",
    )
    shards: int = Field(
        1,
        ge=1,
        le=MAX_SHARDS,
        description=f"Shards of one run, 1 to {MAX_SHARDS}: shard i of n scores its own range of"
        " entity ids under the same run id, and the run publishes once every shard succeeded",
    )
    shard_index: int | None = Field(
        None,
        ge=0,
        validation_alias=AliasChoices(*_SHARD_INDEX_ALIASES, "shard_index"),
        description="This pod's shard, 0 to SCORER_SHARDS-1 (default: JOB_COMPLETION_INDEX,"
        " which an Indexed Job sets); required when SCORER_SHARDS > 1",
    )
    shard_timeout_seconds: float = Field(
        21_600.0,
        gt=0,
        description="A sharded run with no live shard and no shard started or finished for"
        " this long no longer holds its model and snapshot: the next run abandons it",
    )
    predict_threads: int | None = Field(
        None,
        ge=1,
        le=256,
        description="Threads the model predicts on (default: the CPUs this process may use,"
        " its affinity capped by its cgroup CPU quota); 1 leaves the other cores to the"
        " reader, the writer and PostgreSQL",
    )
    mlflow_record: bool = Field(
        True,
        description="Record each scoring run as an MLflow run after publish (true/false);"
        " best effort: MLflow down then only warns",
    )

    pushgateway_url: str | None = Field(
        None,
        description="Prometheus Pushgateway each run pushes its metrics to,"
        " http(s)://host[:port][/path], no credentials (default: off); best effort: a"
        " Pushgateway down only warns",
    )
    pushgateway_timeout_seconds: float = Field(
        5.0,
        gt=0,
        le=60,
        description="Longest wait for the Pushgateway at a run's end (0 < s <= 60)",
    )
    release: str | None = Field(
        None, description="Set by the chart (the Helm release): a label of the pushed metrics"
    )

    @field_validator("pushgateway_url")
    @classmethod
    def _pushgateway_is_http(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        parts = urlsplit(value.strip())
        try:
            port_ok = parts.port is None or parts.port > 0  # .port raises on a malformed port
        except ValueError:
            port_ok = False
        if parts.scheme not in ("http", "https") or not parts.hostname or not port_ok:
            raise ValueError("not an http(s) URL: give http(s)://host[:port][/path]")
        if parts.username or parts.password or parts.query or parts.fragment:
            raise ValueError("give http(s)://host[:port][/path]: no credentials, query or #")
        return value.strip()

    @field_validator("tracking_uri")
    @classmethod
    def _registry_is_configured(cls, value: str) -> str:
        if not value.strip():
            raise ValueError(_NO_REGISTRY)
        return value.strip()

    @field_validator("max_snapshot_age", mode="before")
    @classmethod
    def _duration(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        text = value.strip().lower()
        if not text:
            return None
        if not _DURATION.fullmatch(text):
            raise ValueError("a duration such as 36h, 2d or 1d12h (units d, h, m, s)")
        seconds = sum(int(n) * _UNIT_SECONDS[unit] for n, unit in _DURATION_PART.findall(text))
        if seconds == 0:
            raise ValueError("a duration longer than zero")
        return timedelta(seconds=seconds)

    @field_validator("mlflow_experiment")
    @classmethod
    def _experiment_is_valid(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value.strip() or _CONTROL.search(value) or len(value) > _MAX_EXPERIMENT_NAME:
            raise ValueError(
                f"an experiment name is 1-{_MAX_EXPERIMENT_NAME} characters, not blank, with no"
                " control characters"
            )
        return value

    @field_validator("entity_column", "snapshot_column")
    @classmethod
    def _column_is_identifier(cls, value: str | None) -> str | None:
        return None if value is None else validate_identifier(value)

    @field_validator("features_table")
    @classmethod
    def _relation_is_valid(cls, value: str) -> str:
        Relation.parse(value)
        return value

    _shadow_of: str | None = PrivateAttr(None)

    @field_validator("model_alias", "require_alias", "shadow_alias")
    @classmethod
    def _alias_is_valid(cls, value: str | None) -> str | None:
        if value is not None and not _ALIAS.fullmatch(value):
            raise ValueError("aliases are letters, digits, '_' and '-'")
        return value

    @field_validator("model_stage", "require_stage")
    @classmethod
    def _stage_is_known(cls, value: str | None) -> str | None:
        if value is None:
            return None
        for stage in _STAGES:
            if value.lower() == stage.lower():
                return stage
        raise ValueError(f"stage must be one of {', '.join(_STAGES)}")

    @field_validator("run_id")
    @classmethod
    def _run_id_is_valid(cls, value: str) -> str:
        if not _RUN_ID.fullmatch(value):
            raise ValueError("run id: 1-128 of letters, digits, '.', '_', ':', '-'")
        return value

    @model_validator(mode="after")
    def _exactly_one_selector(self) -> RunSettings:
        chosen = [
            name
            for name, value in (
                ("SCORER_MODEL_ALIAS", self.model_alias),
                ("SCORER_MODEL_STAGE", self.model_stage),
                ("SCORER_MODEL_VERSION", self.model_version),
            )
            if value is not None
        ]
        if len(chosen) != 1:
            given = ", ".join(chosen) if chosen else "none"
            raise ValueError(
                "set exactly one of SCORER_MODEL_ALIAS, SCORER_MODEL_STAGE, "
                f"SCORER_MODEL_VERSION (given: {given})"
            )
        if self.require_alias is not None and self.require_stage is not None:
            raise ValueError("set at most one of SCORER_REQUIRE_ALIAS, SCORER_REQUIRE_STAGE")
        if self.snapshot is None and self.snapshot_column is None:
            object.__setattr__(self, "snapshot", _default_snapshot())
        if self.shards > 1 and self.shard_index is None:
            raise ValueError(
                f"SCORER_SHARDS={self.shards} needs this pod's shard: set SCORER_SHARD_INDEX"
                " (an Indexed Job sets JOB_COMPLETION_INDEX)"
            )
        if self.shard_index is not None and self.shard_index >= self.shards:
            raise ValueError(
                f"SCORER_SHARD_INDEX={self.shard_index} is outside 0..{self.shards - 1}"
                f" (SCORER_SHARDS={self.shards})"
            )
        self._check_shadow()
        threshold = self.threshold
        if self.score_kind == "probability" and threshold is not None and not 0 < threshold < 1:
            raise ValueError("SCORER_THRESHOLD must lie strictly between 0 and 1")
        return self

    def _check_shadow(self) -> None:
        if self.shadow_alias is not None and self.shadow_version is not None:
            raise ValueError("set at most one of SCORER_SHADOW_ALIAS, SCORER_SHADOW_VERSION")
        if self.shadow_selector is not None and self.shards > 1:
            name = "SCORER_SHADOW_ALIAS" if self.shadow_alias else "SCORER_SHADOW_VERSION"
            raise ValueError(
                f"{name} scores a shadow run after an unsharded run only; SCORER_SHARDS="
                f"{self.shards}: unset {name}, or score with SCORER_SHARDS=1"
            )

    @property
    def shadow_selector(self) -> str | None:
        """The challenger asked for (``alias:…`` or ``version:…``), if a shadow run is set."""
        if self.shadow_alias is not None:
            return f"alias:{self.shadow_alias}"
        if self.shadow_version is not None:
            return f"version:{self.shadow_version}"
        return None

    @property
    def shadow_of(self) -> str | None:
        """The run id whose shadow this run is (``scorer.run.shadow``); ``None`` otherwise."""
        return self._shadow_of

    def for_shadow(self, champion_run_id: str, **update: object) -> RunSettings:
        """These settings, changed by ``update``, for the shadow run of ``champion_run_id``."""
        copy = self.model_copy(update=update)
        copy._shadow_of = champion_run_id
        return copy

    @property
    def label_threshold(self) -> float | None:
        """The threshold labels follow: 0.5 for probabilities; for raw scores only one set."""
        if self.threshold is not None:
            return self.threshold
        return 0.5 if self.score_kind == "probability" else None

    @property
    def sharded(self) -> bool:
        """More than one shard: the run is opened, scored and published across pods."""
        return self.shards > 1

    @property
    def shard(self) -> int:
        """This pod's shard index (0 for a run of one shard)."""
        return self.shard_index or 0

    @property
    def selector(self) -> str:
        """The selector asked for, as recorded in ``scoring_runs.model_selector``."""
        if self.model_alias is not None:
            return f"alias:{self.model_alias}"
        if self.model_stage is not None:
            return f"stage:{self.model_stage}"
        return f"version:{self.model_version}"

    @property
    def experiment(self) -> str:
        """The MLflow experiment scoring runs are recorded in: ``scoring/<model name>``."""
        return self.mlflow_experiment or f"scoring/{self.model_name}"

    @property
    def features(self) -> Relation:
        """The feature relation, parsed."""
        return Relation.parse(self.features_table)


SettingsT = TypeVar("SettingsT", bound=LogSettings)


def env_name(field: str) -> str:
    """The environment variable of a settings field."""
    if field == "tracking_uri":
        return "MLFLOW_TRACKING_URI"
    return f"SCORER_{field.upper()}"


def flag_name(field: str) -> str:
    """The command-line flag of a settings field."""
    return "--" + field.replace("_", "-")


def load(kind: type[SettingsT], **overrides: object) -> SettingsT:
    """Read settings of ``kind`` from the environment and ``overrides`` (flags, by field name).

    Raises ``ConfigError`` naming each bad variable (and its flag); values are never echoed.
    """
    try:
        return kind(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = "; ".join(_problem(err) for err in exc.errors(include_input=False))
        # from None: pydantic's own rendering of the error would quote the input values.
        raise ConfigError(f"invalid settings: {problems}") from None


def _problem(err: Any) -> str:
    message = str(err["msg"]).removeprefix("Value error, ")
    if not err["loc"]:
        return message
    field = str(err["loc"][0])
    field = _FIELD_OF_ALIAS.get(field, field)
    if err["type"] == "missing":
        if field == "tracking_uri":
            return _NO_REGISTRY
        return f"{env_name(field)} is required (or pass {flag_name(field)})"
    return f"{env_name(field)} ({flag_name(field)}): {message}"
