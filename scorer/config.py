"""Settings: one typed object read from the environment (prefix ``SCORER_``)."""

from __future__ import annotations

import re
import secrets
from datetime import UTC, datetime
from typing import Annotated, Literal, TypeVar

from pydantic import (
    AliasChoices,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from scorer.errors import ConfigError
from scorer.identifiers import Relation, validate_identifier

_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
_ALIAS = re.compile(r"[A-Za-z0-9_-]{1,255}")
_STAGES = ("Production", "Staging", "Archived", "None")


class DatabaseSettings(BaseSettings):
    """What every command needs: where the tables live."""

    model_config = SettingsConfigDict(env_prefix="SCORER_", extra="ignore", frozen=True)

    database_url: SecretStr = Field(description="PostgreSQL URL, e.g. postgresql://user:pw@host/db")
    target_schema: str = Field("scoring", description="Schema holding scoring_runs/predictions")
    log_format: Literal["json", "console"] = Field("json", description="Log renderer")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="Log level")

    @field_validator("target_schema")
    @classmethod
    def _schema_is_identifier(cls, value: str) -> str:
        return validate_identifier(value)

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("database_url")
    @classmethod
    def _postgres_url(cls, value: SecretStr) -> SecretStr:
        url = value.get_secret_value()
        if not url.startswith(("postgresql://", "postgres://", "postgresql+psycopg2://")):
            raise ValueError("must be a postgresql:// URL")
        return value


SettingsT = TypeVar("SettingsT", bound=DatabaseSettings)


def _default_snapshot() -> str:
    return datetime.now(UTC).date().isoformat()


def _default_run_id() -> str:
    return f"run-{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


class RunSettings(DatabaseSettings):
    """Everything ``run`` and ``check`` need."""

    tracking_uri: str | None = Field(
        None,
        validation_alias=AliasChoices("MLFLOW_TRACKING_URI", "SCORER_TRACKING_URI"),
        description="MLflow tracking server (MLflow's own variable)",
    )
    model_name: str = Field(min_length=1, description="Registered model name")
    model_alias: str | None = Field(None, description="Alias to score, e.g. champion")
    model_stage: str | None = Field(None, description="Legacy stage to score, e.g. Production")
    model_version: Annotated[int, Field(gt=0)] | None = Field(None, description="Pinned version")
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
    score_kind: Literal["probability", "raw"] = Field(
        "probability", description="probability (refuse anything else) or raw (regressors)"
    )
    positive_class: str | None = Field(
        None, description="Class whose probability is the score (default: the positive class)"
    )
    threshold: float | None = Field(
        None, description="label = score >= threshold (default 0.5 for probabilities)"
    )
    run_id: str = Field(default_factory=_default_run_id, description="Run identity")
    chunk_rows: int = Field(50_000, ge=1, le=5_000_000, description="Rows per streamed chunk")
    max_rejected_ratio: float = Field(0.0, ge=0.0, le=1.0, description="Tolerated rejects")
    lock_wait_seconds: float = Field(0.0, ge=0.0, description="Wait for a concurrent run's lock")
    trigger: Literal["scheduled", "manual", "local"] | None = Field(
        None, description="How the run was started (derived in Kubernetes when unset)"
    )
    k8s_namespace: str | None = Field(None, description="Set by the chart (downward API)")
    k8s_pod: str | None = Field(None, description="Set by the chart (downward API)")
    k8s_node: str | None = Field(None, description="Set by the chart (downward API)")
    k8s_job: str | None = Field(None, description="Set by the chart (the Job name)")
    k8s_cronjob: str | None = Field(None, description="Set by the chart (the CronJob name)")
    image: str | None = Field(None, description="Set by the chart (image reference)")

    @field_validator("entity_column", "snapshot_column")
    @classmethod
    def _column_is_identifier(cls, value: str | None) -> str | None:
        return None if value is None else validate_identifier(value)

    @field_validator("features_table")
    @classmethod
    def _relation_is_valid(cls, value: str) -> str:
        Relation.parse(value)
        return value

    @field_validator("model_alias", "require_alias")
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
        threshold = self.threshold
        if self.score_kind == "probability" and threshold is not None and not 0 < threshold < 1:
            raise ValueError("SCORER_THRESHOLD must lie strictly between 0 and 1")
        return self

    @property
    def label_threshold(self) -> float | None:
        """The threshold labels follow: 0.5 for probabilities; for raw scores only one set."""
        if self.threshold is not None:
            return self.threshold
        return 0.5 if self.score_kind == "probability" else None

    @property
    def selector(self) -> str:
        """The selector asked for, as recorded in ``scoring_runs.model_selector``."""
        if self.model_alias is not None:
            return f"alias:{self.model_alias}"
        if self.model_stage is not None:
            return f"stage:{self.model_stage}"
        return f"version:{self.model_version}"

    @property
    def features(self) -> Relation:
        """The feature relation, parsed."""
        return Relation.parse(self.features_table)


def load(kind: type[SettingsT], **overrides: object) -> SettingsT:
    """Read settings of ``kind`` from the environment; raise ``ConfigError`` on bad input."""
    try:
        return kind(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = "; ".join(
            f"{_env_name(err['loc'])}: {err['msg']}" for err in exc.errors(include_input=False)
        )
        raise ConfigError(f"invalid settings: {problems}") from None


def _env_name(loc: tuple[int | str, ...]) -> str:
    if not loc:
        return "settings"
    field = str(loc[0])
    if field == "tracking_uri":
        return "MLFLOW_TRACKING_URI"
    return f"SCORER_{field.upper()}"
