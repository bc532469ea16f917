"""Errors carry the process exit code the chart's podFailurePolicy relies on.

- ``RetryableError`` (exit 1): a retry may cure it (database or registry unreachable,
  timeout, terminated, another run holds the lock).
- ``PermanentError`` (exit 2): no retry can cure it (bad settings, model not found,
  promotion gate not met, schema mismatch, too many rejected rows, schema not migrated).
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_RETRYABLE = 1
EXIT_PERMANENT = 2


class ScorerError(Exception):
    """Base class: a failure with a user-facing message and an exit code."""

    exit_code = EXIT_RETRYABLE
    kind = "error"
    logged = False  # set once the failure's summary line has been written


class RetryableError(ScorerError):
    """A failure a retry may cure."""

    exit_code = EXIT_RETRYABLE
    kind = "retryable"


class PermanentError(ScorerError):
    """A failure no retry can cure."""

    exit_code = EXIT_PERMANENT
    kind = "permanent"


class ConfigError(PermanentError):
    """Settings are missing, malformed or contradictory."""

    kind = "config"


class ModelNotFoundError(PermanentError):
    """The registered model, alias, stage or version does not exist."""

    kind = "model_not_found"


class PromotionGateError(PermanentError):
    """The resolved version lacks the required alias or stage."""

    kind = "promotion_gate"


class SchemaMismatchError(PermanentError):
    """The feature relation does not fit the model signature."""

    kind = "schema_mismatch"


class RejectedRowsError(PermanentError):
    """More rows were rejected than the configured ratio allows."""

    kind = "rejected_rows"


class NotMigratedError(PermanentError):
    """The target schema has not been created by ``scorer migrate``."""

    kind = "not_migrated"


class TerminatedError(RetryableError):
    """The process received SIGTERM or SIGINT."""

    kind = "terminated"


class LockBusyError(RetryableError):
    """Another run for the same model and snapshot holds the advisory lock."""

    kind = "lock_busy"


class EmptyRelationError(PermanentError):
    """The feature relation (or the run's snapshot) has no rows: nothing is published."""

    kind = "empty_relation"


class ModelOutputError(PermanentError):
    """The model cannot give a probability of the positive class, or it failed to predict."""

    kind = "model_output"


class DuplicateEntityError(PermanentError):
    """An entity id appears more than once in what one run scores."""

    kind = "duplicate_entity"
