"""Every exception a command can meet, as the ``ScorerError`` that names its kind and exit
code (``scorer.errors``): the one place where a failure is classified."""

from __future__ import annotations

import psycopg2

from scorer.errors import InternalError, ScorerError, TerminatedError, TerminationSignal
from scorer.model import registry
from scorer.postgres import db


def classify(exc: BaseException) -> ScorerError:
    """Map any exception to a ScorerError with the right exit code.

    Database errors are classified by ``db.database_error``, MLflow errors by
    ``registry.registry_errors``; anything else is an ``InternalError`` (a bug, exit 2). The
    original exception stays chained as the ``__cause__``.
    """
    from mlflow.exceptions import MlflowException  # noqa: PLC0415 - keep start-up light

    if isinstance(exc, ScorerError):
        return exc
    failure: ScorerError
    if isinstance(exc, TerminationSignal):
        failure = TerminatedError(str(exc))
    elif isinstance(exc, KeyboardInterrupt):
        failure = TerminatedError("interrupted")
    elif isinstance(exc, psycopg2.Error):
        failure = db.database_error(exc)
    elif isinstance(exc, MlflowException):  # raised outside registry_errors, e.g. on load
        try:
            with registry.registry_errors("model registry"):
                raise exc
        except ScorerError as translated:
            failure = translated
    else:
        failure = InternalError(f"internal error: {type(exc).__name__}: {exc}".strip())
    failure.__cause__ = exc
    return failure
