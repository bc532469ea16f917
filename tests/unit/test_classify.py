"""Every exception a run can raise becomes one ScorerError with the right exit code and kind.

The exceptions are the real classes (psycopg2's, MLflow's), constructed directly.
"""

from __future__ import annotations

import psycopg2
import psycopg2.errors
import pytest
import requests
from mlflow.exceptions import MlflowException, RestException, get_error_code
from mlflow.protos.databricks_pb2 import (
    INTERNAL_ERROR,
    RESOURCE_DOES_NOT_EXIST,
    TEMPORARILY_UNAVAILABLE,
)

from scorer.errors import (
    EXIT_PERMANENT,
    EXIT_RETRYABLE,
    ModelNotFoundError,
    ScorerError,
    TerminationSignal,
)
from scorer.failures import classify
from scorer.model import registry
from scorer.postgres import db

AT = 'connection to server at "db" (10.0.0.1), port 5432 failed: '
PK_VIOLATION = (
    'could not create unique index "predictions_it_1_pkey"\n'
    "DETAIL:  Key (entity_id)=(4242) is duplicated.\n"
)


@pytest.mark.parametrize(
    ("exc", "kind", "code", "says"),
    [
        (
            psycopg2.errors.UniqueViolation(PK_VIOLATION),
            "duplicate_entity",
            2,
            "duplicate entity ids",
        ),
        (
            psycopg2.errors.InsufficientPrivilege("must be owner of table predictions"),
            "database_privilege",
            2,
            "must be owner of table predictions",
        ),
        (
            psycopg2.errors.InvalidTextRepresentation(
                'invalid input syntax for type double precision: "n/a"\n'
                'CONTEXT:  COPY customers, line 3, column support_calls: "n/a"\n'
            ),
            "bad_data",
            2,
            "invalid input syntax for type double precision",
        ),
        (
            psycopg2.errors.NumericValueOutOfRange('value "1e999" is out of range'),
            "bad_data",
            2,
            "out of range",
        ),
        (psycopg2.DataError("plain DB-API data error"), "bad_data", 2, "bad data"),
        (
            psycopg2.errors.NotNullViolation(
                'null value in column "x" violates not-null constraint\n'
                "DETAIL:  Failing row contains (1, null, secret-value).\n"
            ),
            "bad_data",
            2,
            "violates not-null constraint",
        ),
        (
            psycopg2.errors.UndefinedColumn('column "tenure_months" does not exist'),
            "schema_mismatch",
            2,
            "tenure_months",
        ),
        (
            psycopg2.InterfaceError("connection already closed"),
            "database_lost",
            1,
            "the connection to the database was lost",
        ),
        (
            psycopg2.OperationalError(
                "server closed the connection unexpectedly\n"
                "\tThis probably means the server terminated abnormally\n"
            ),
            "database_lost",
            1,
            "the connection to the database was lost",
        ),
        (
            psycopg2.errors.AdminShutdown("terminating connection due to administrator command"),
            "database_lost",
            1,
            "the connection to the database was lost",
        ),
        (
            psycopg2.errors.DeadlockDetected("deadlock detected\nDETAIL:  Process 7 waits\n"),
            "database_transient",
            1,
            "deadlock detected",
        ),
        (
            psycopg2.errors.QueryCanceled("canceling statement due to statement timeout"),
            "database_transient",
            1,
            "statement timeout",
        ),
        (
            psycopg2.OperationalError(
                'connection to server at "db" (10.0.0.1), port 5432 failed: FATAL:  password '
                'authentication failed for user "scorer"\n'
            ),
            "database_auth",
            2,
            "the password or role in SCORER_DATABASE_URL is wrong",
        ),
        (
            psycopg2.OperationalError(
                f'{AT}FATAL:  no pg_hba.conf entry for host "10.0.0.2", user "scorer", database'
                ' "w", no encryption\n'
            ),
            "database_auth",
            2,
            "if the server requires TLS, set sslmode=verify-full",
        ),
        (
            psycopg2.OperationalError('FATAL:  role "nobody" does not exist\n'),
            "database_auth",
            2,
            "the password or role",
        ),
        (
            psycopg2.errors.InvalidPassword('password authentication failed for user "scorer"'),
            "database_auth",
            2,
            "password",
        ),
        (
            psycopg2.OperationalError('FATAL:  database "scoring" does not exist\n'),
            "database_missing",
            2,
            "does not exist",
        ),
        # libpq's own texts (libpq 17), as tests/integration/test_tls.py meets them for real.
        (
            psycopg2.OperationalError(f"{AT}SSL error: certificate verify failed\n"),
            "database_tls",
            2,
            "an unknown CA",
        ),
        (
            psycopg2.OperationalError(
                f'{AT}server certificate for "db.example" (and 1 other name) does not match'
                ' host name "10.0.0.1"\n'
            ),
            "database_tls",
            2,
            "host-name mismatch",
        ),
        (
            psycopg2.OperationalError(
                f'{AT}root certificate file "/etc/scorer/tls/ca.crt" does not exist\nEither'
                " provide the file, use the system's trusted roots with sslrootcert=system, or"
                " change sslmode to disable server certificate verification.\n"
            ),
            "database_tls",
            2,
            "the sslrootcert file is missing or unreadable",
        ),
        (
            psycopg2.OperationalError(
                f'{AT}could not read root certificate file "/x": no certificate or crl found\n'
            ),
            "database_tls",
            2,
            "the sslrootcert file is missing or unreadable",
        ),
        (
            psycopg2.OperationalError(f"{AT}server does not support SSL, but SSL was required\n"),
            "database_tls",
            2,
            "the server offers no TLS, but sslmode requires it",
        ),
        (
            psycopg2.OperationalError(f'{AT}certificate present, but not private key file "/k"\n'),
            "database_tls",
            2,
            "the client certificate or key",
        ),
        (
            psycopg2.OperationalError(f"{AT}SSL error: tlsv1 alert unknown ca\n"),
            "database_tls",
            2,
            "the server refused the TLS handshake",
        ),
        (
            psycopg2.OperationalError('invalid sslmode value: "verify_full"\n'),
            "config",
            2,
            "SCORER_DATABASE_URL has an invalid option",
        ),
        (
            psycopg2.OperationalError("invalid SSL protocol version range\n"),
            "config",
            2,
            "SCORER_DATABASE_URL has an invalid option",
        ),
        (
            psycopg2.OperationalError(f"{AT}SSL SYSCALL error: EOF detected\n"),
            "database_transient",
            1,
            "EOF detected",
        ),
        (
            psycopg2.errors.SyntaxError('syntax error at or near "SELEC"\nLINE 1: SELEC 1\n'),
            "internal",
            2,
            "unexpected database error: SyntaxError",
        ),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, BaseException) else None,
)
def test_database_errors(exc: psycopg2.Error, kind: str, code: int, says: str) -> None:
    failure = classify(exc)
    assert (failure.kind, failure.exit_code) == (kind, code)
    assert says in str(failure)
    assert failure.__cause__ is exc  # the cause stays chained
    assert failure.kind == db.database_error(exc).kind  # one place: classify delegates to db


@pytest.mark.parametrize(
    "exc",
    [
        psycopg2.errors.UniqueViolation(PK_VIOLATION),
        psycopg2.errors.NotNullViolation(
            'null value in column "x"\nDETAIL:  Failing row contains (1, secret-value).\n'
        ),
        psycopg2.errors.InvalidTextRepresentation(
            'invalid input syntax for type integer: "secret-value"\n'
            'CONTEXT:  COPY t, line 1: "secret-value"\n'
        ),
        psycopg2.errors.SyntaxError("syntax error\nLINE 1: SELECT 'secret-value' x\n"),
    ],
)
def test_no_row_data_in_the_message(exc: psycopg2.Error) -> None:
    message = str(classify(exc))
    assert "4242" not in message
    assert "secret-value" not in message
    assert "DETAIL" not in message
    assert "CONTEXT" not in message


def test_prefix_names_what_was_being_done() -> None:
    failure = db.database_error(psycopg2.InterfaceError("connection already closed"), "publishing")
    assert str(failure).startswith("publishing: the connection to the database was lost")


def test_database_errors_context_manager_translates_and_chains() -> None:
    original = psycopg2.errors.UniqueViolation(PK_VIOLATION)
    with pytest.raises(ScorerError) as caught, db.database_errors("attaching"):
        raise original
    assert caught.value.kind == "duplicate_entity"
    assert caught.value.__cause__ is original
    assert str(caught.value).startswith("attaching: duplicate entity ids")


@pytest.mark.parametrize(
    ("exc", "kind", "code"),
    [
        (
            MlflowException("no such model", error_code=RESOURCE_DOES_NOT_EXIST),
            "model_not_found",
            2,
        ),
        (
            RestException({"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "no alias"}),
            "model_not_found",
            2,
        ),
        (RestException({"error_code": "PERMISSION_DENIED", "message": "no"}), "registry_auth", 2),
        (RestException({"error_code": "UNAUTHENTICATED", "message": "who?"}), "registry_auth", 2),
        (  # a proxy's HTML 401: no JSON body, MLflow maps the status code
            MlflowException("401 != 200. Response body: '<html>'", error_code=get_error_code(401)),
            "registry_auth",
            2,
        ),
        (
            MlflowException("403 != 200. Response body: ''", error_code=get_error_code(403)),
            "registry_auth",
            2,
        ),
        (MlflowException("boom", error_code=INTERNAL_ERROR), "registry_unavailable", 1),
        (
            MlflowException("try later", error_code=TEMPORARILY_UNAVAILABLE),
            "registry_unavailable",
            1,
        ),
    ],
    ids=lambda value: getattr(value, "error_code", None),
)
def test_mlflow_errors(exc: MlflowException, kind: str, code: int) -> None:
    failure = classify(exc)
    assert (failure.kind, failure.exit_code) == (kind, code)
    assert failure.__cause__ is exc


def test_registry_auth_names_the_credentials_to_check() -> None:
    failure = classify(RestException({"error_code": "PERMISSION_DENIED", "message": "no"}))
    assert "MLFLOW_TRACKING_TOKEN" in str(failure)
    assert not isinstance(failure, ModelNotFoundError)


def test_registry_unreachable_is_retryable_and_chained() -> None:
    original = requests.exceptions.ConnectionError("Connection refused")
    with pytest.raises(ScorerError) as caught, registry.registry_errors("resolving churn"):
        raise original
    assert (caught.value.kind, caught.value.exit_code) == ("registry_unavailable", EXIT_RETRYABLE)
    assert "registry unreachable" in str(caught.value)
    assert caught.value.__cause__ is original


def test_scorer_errors_pass_through() -> None:
    failure = ModelNotFoundError("x")
    assert classify(failure) is failure


def test_sigterm_is_a_retryable_termination_no_except_exception_can_swallow() -> None:
    signal = TerminationSignal("terminated by signal SIGTERM")
    assert not isinstance(signal, Exception)  # a model library's `except Exception` lets it by
    failure = classify(signal)
    assert (failure.kind, failure.exit_code) == ("terminated", EXIT_RETRYABLE)
    assert str(failure) == "terminated by signal SIGTERM"
    assert failure.__cause__ is signal


def test_interrupt_is_a_retryable_termination() -> None:
    failure = classify(KeyboardInterrupt())
    assert (failure.kind, failure.exit_code) == ("terminated", EXIT_RETRYABLE)


@pytest.mark.parametrize(
    "exc", [TypeError("unsupported operand"), KeyError("x"), ZeroDivisionError(), OSError(28)]
)
def test_anything_else_is_an_internal_error_no_retry_cures(exc: BaseException) -> None:
    failure = classify(exc)
    assert (failure.kind, failure.exit_code) == ("internal", EXIT_PERMANENT)
    assert type(exc).__name__ in str(failure)
    assert failure.__cause__ is exc
