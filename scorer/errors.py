"""Errors carry the process exit code the chart's podFailurePolicy relies on.

Every failure of a command ends as one of these, and ``scorer.cli.main`` turns it into the
exit code (``scorer.run.runner.run`` returns it, having written its summary line):

- ``RetryableError`` (exit 1): a retry may cure it (database or registry unreachable, the
  database connection lost, timeout, terminated, another run holds the lock).
- ``PermanentError`` (exit 2): no retry can cure it (bad settings, an invalid connection
  option, no registry configured, model not found, registry or database credentials refused,
  database missing, a TLS or certificate failure, promotion gate not met, schema mismatch, no
  probabilities from the model, an empty relation, bad data, duplicate entity ids, too many
  rejected rows, schema not migrated, insufficient privilege, a transaction pooler between the
  scorer and PostgreSQL, a stale snapshot, a sharded run's moved drift reference, a realized
  AUC below its minimum).
- ``InternalError`` (exit 2, kind ``internal``): an exception that is none of the known kinds,
  that is, a bug. A retry of a bug only repeats it, so it is permanent: the Job fails at once
  instead of being retried ``backoffLimit`` times in silence, and the traceback (passwords
  masked) is logged with the failure.

``kind`` is the machine-readable name logged with every failure (``kind=...``).
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_RETRYABLE = 1
EXIT_PERMANENT = 2


class ScorerError(Exception):
    """Base class: a failure with a user-facing message and an exit code."""

    exit_code = EXIT_RETRYABLE
    kind = "error"


class RetryableError(ScorerError):
    """A failure a retry may cure."""

    exit_code = EXIT_RETRYABLE
    kind = "retryable"


class PermanentError(ScorerError):
    """A failure no retry can cure."""

    exit_code = EXIT_PERMANENT
    kind = "permanent"


class InternalError(PermanentError):
    """An unexpected exception (a bug): its traceback is logged; a retry would only repeat it."""

    kind = "internal"


class ConfigError(PermanentError):
    """Settings are missing, malformed or contradictory (also: no registry configured)."""

    kind = "config"


class ModelNotFoundError(PermanentError):
    """The registered model, alias, stage or version does not exist."""

    kind = "model_not_found"


class RunNotFoundError(PermanentError):
    """No run with the id asked for (``scorer show``)."""

    kind = "run_not_found"


class RegistryAuthError(PermanentError):
    """The registry refused the credentials (HTTP 401 or 403)."""

    kind = "registry_auth"


class RegistryTlsError(PermanentError):
    """The registry's TLS certificate failed verification (an unknown CA, a host-name mismatch),
    or the CA bundle configured for it cannot be read."""

    kind = "registry_tls"


class RegistryUnavailableError(RetryableError):
    """The registry is unreachable or failed on its side."""

    kind = "registry_unavailable"


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


class DatabaseUnreachableError(RetryableError):
    """No connection to the database server could be made."""

    kind = "database_unreachable"


class DatabaseLostError(RetryableError):
    """The connection to the database was lost mid-command (e.g. a server restart)."""

    kind = "database_lost"


class DatabaseTransientError(RetryableError):
    """A database failure a retry may cure: timeout, deadlock, shutdown, out of resources."""

    kind = "database_transient"


class DatabaseAuthError(PermanentError):
    """The server refused the password or the role."""

    kind = "database_auth"


class DatabaseTlsError(PermanentError):
    """TLS to the database failed: an unknown CA, a host-name mismatch, an unreadable
    ``sslrootcert`` or client certificate, or a server without TLS where ``sslmode`` needs it."""

    kind = "database_tls"


class DatabaseMissingError(PermanentError):
    """The database named in the URL does not exist."""

    kind = "database_missing"


class DatabasePrivilegeError(PermanentError):
    """The role lacks a privilege the command needs (``scorer.postgres.privileges`` names each one
    before anything is written; PostgreSQL's own 42501 otherwise)."""

    kind = "database_privilege"


class BadDataError(PermanentError):
    """The database refused a value (out of range, wrong type, a violated constraint)."""

    kind = "bad_data"


class TerminatedError(RetryableError):
    """The process received SIGTERM or SIGINT."""

    kind = "terminated"


class TerminationSignal(BaseException):
    """What the SIGTERM handler raises, wherever the main thread happens to be.

    A ``BaseException``, like ``KeyboardInterrupt``, so that no ``except Exception`` (ours or a
    model library's, e.g. around a predict call) can turn a termination into another failure;
    ``scorer.failures.classify`` makes it a ``TerminatedError`` (exit 1).
    """


class DatabasePoolerError(PermanentError):
    """A pooler between the scorer and PostgreSQL does not keep one server session per
    connection (transaction or statement pooling): the session's advisory locks cannot hold."""

    kind = "database_pooler"


class StaleSnapshotError(PermanentError):
    """The snapshot to score is older than ``SCORER_MAX_SNAPSHOT_AGE``: nothing is published."""

    kind = "stale_snapshot"


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


class QualityGateError(PermanentError):
    """The run's evidence is past a quality gate limit: nothing is published."""

    kind = "quality_gate"


class ReferenceMovedError(PermanentError):
    """A sharded run's shards binned their features against a reference run that is not (or
    no longer) the gate's, because a run published meanwhile: a retry cannot re-bin the rows
    the other shards scored, so the run fails and a new run is the cure."""

    kind = "reference_moved"


class RealizedPerformanceError(PermanentError):
    """A run's realized ROC AUC is below ``SCORER_MIN_REALIZED_AUC`` (``evaluate``; every
    figure is recorded first)."""

    kind = "realized_performance"
