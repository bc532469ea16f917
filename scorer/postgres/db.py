"""PostgreSQL: connections, visible transactions, and database failures as exit codes.

- ``connect(url)`` opens a connection, retrying only what a retry may cure.
- ``transaction(conn)`` and ``autocommit(conn)`` are the only places a connection's mode
  changes or a transaction ends: a caller reads where its transaction starts and stops.
- ``database_error(exc)`` and ``database_errors(what)`` translate every psycopg2 error into a
  ``ScorerError`` with its exit code, in one place, with no row data in the message.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

import psycopg2
import psycopg2.errorcodes
import psycopg2.errors
import psycopg2.extensions
import stamina

from scorer.errors import (
    BadDataError,
    ConfigError,
    DatabaseAuthError,
    DatabaseLostError,
    DatabaseMissingError,
    DatabasePrivilegeError,
    DatabaseTlsError,
    DatabaseTransientError,
    DatabaseUnreachableError,
    DuplicateEntityError,
    InternalError,
    SchemaMismatchError,
    ScorerError,
)
from scorer.logs import redact

Connection = psycopg2.extensions.connection
Cursor = psycopg2.extensions.cursor

_CONNECT_TIMEOUT_SECONDS = 10
PERCENT_ENCODE_HINT = (
    "percent-encode reserved characters in the user and password"
    " (@ as %40, : as %3A, / as %2F, # as %23, ? as %3F, % as %25)"
)
# Lines of a server message that can quote row values or SQL with values interpolated.
_VALUE_LINES = ("DETAIL:", "CONTEXT:", "LINE ", "QUERY:", "STATEMENT:", "WHERE:")
_QUOTED = re.compile(r'"[^"]*"')
# Connection-time failures come without a SQLSTATE: libpq's text is all there is.
_AUTH = re.compile(
    r'authentication failed|no password supplied|role "[^"]*" does not exist|pg_hba\.conf',
    re.IGNORECASE,
)
_NO_HBA_ENTRY = re.compile(r"no pg_hba\.conf entry", re.IGNORECASE)
_NO_TLS_HINT = (
    " without TLS: if the server requires TLS, set sslmode=verify-full (and sslrootcert) in"
    " SCORER_DATABASE_URL"
)
_MISSING = re.compile(r'database "[^"]*" does not exist', re.IGNORECASE)
_LOST = re.compile(
    r"server closed the connection|connection already closed|terminating connection"
    r"|ssl connection has been closed|could not receive data from server"
    r"|could not send data to server|no connection to the server|connection to server was lost",
    re.IGNORECASE,
)
# libpq refuses an option before connecting ("invalid sslmode value", "invalid port number"):
# the URL itself is wrong.
_INVALID_OPTION = re.compile(r"^invalid |^GSSAPI encryption required but", re.IGNORECASE)
# TLS failures at connection time (libpq's text): which one, and what to do about it.
_CA_HINT = "set sslrootcert to the CA that signed the server's certificate"
_TLS_FAILURES = (
    (
        re.compile(r"certificate verify failed", re.IGNORECASE),
        "the server's certificate is not signed by the CA in sslrootcert (an unknown CA), or it"
        f" has expired or is not yet valid: {_CA_HINT}",
    ),
    (
        re.compile(
            r"server certificate for .* does not match host name"
            r"|could not get server's host name from server certificate",
            re.IGNORECASE,
        ),
        "host-name mismatch: the server's certificate does not name the host in"
        " SCORER_DATABASE_URL: connect by a host name the certificate carries",
    ),
    (
        re.compile(
            r"root certificate file .* does not exist|could not read root certificate file"
            r"|could not load SSL certificate revocation",
            re.IGNORECASE,
        ),
        "the sslrootcert file is missing or unreadable: mount the CA certificate at that path"
        " (chart: database.tls.caSecret) or fix sslrootcert in SCORER_DATABASE_URL",
    ),
    (
        re.compile(r"server does not support SSL, but SSL was required", re.IGNORECASE),
        "the server offers no TLS, but sslmode requires it: enable TLS on the server (ssl = on)",
    ),
    (
        re.compile(
            r"certificate present, but not private key|could not (open|read|load) "
            r"(certificate|private key)|private key file .* has group or world access",
            re.IGNORECASE,
        ),
        "the client certificate or key (sslcert, sslkey) is missing or unusable",
    ),
    (
        re.compile(
            r"alert (unknown ca|bad certificate|certificate required|certificate "
            r"expired|certificate revoked|protocol version)|unsupported protocol"
            r"|no protocols available",
            re.IGNORECASE,
        ),
        "the server refused the TLS handshake (a client certificate it does not accept, or no"
        " TLS version both sides allow)",
    ),
)
_LOST_CODES = frozenset({"57P01", "57P02", "57P03"})  # admin/crash shutdown, cannot connect now
_TRANSIENT_CLASSES = ("40", "53", "57", "58", "08")  # rollback, resources, operator, system
_TRANSIENT_CODES = frozenset({"55P03", "55006"})  # lock not available, object in use
_SCHEMA_CODES = frozenset({"42703", "42P01"})  # undefined column, undefined table


def _libpq_url(url: str) -> str:
    """``url`` as libpq reads it: a SQLAlchemy-style ``+psycopg2`` driver suffix dropped."""
    scheme, sep, rest = url.partition("://")
    return f"{scheme.removesuffix('+psycopg2')}{sep}{rest}"


def connect_kwargs(url: str) -> dict[str, Any]:
    """libpq keyword arguments for a ``postgresql://`` URL (query options kept).

    libpq's own parser reads the URL, so percent-escapes and options mean exactly what they
    mean to ``psql``.
    """
    try:
        kwargs: dict[str, Any] = psycopg2.extensions.parse_dsn(_libpq_url(url))
    except psycopg2.ProgrammingError:
        # from None: libpq's message can quote the URL, password included.
        raise ConfigError(
            f"SCORER_DATABASE_URL is not a valid URL; {PERCENT_ENCODE_HINT}"
        ) from None
    kwargs.setdefault("connect_timeout", _CONNECT_TIMEOUT_SECONDS)
    kwargs.setdefault("application_name", "scorer")
    return kwargs


def password_of(url: str) -> str | None:
    """The password in ``url`` (percent-escapes decoded), so logging can mask it."""
    try:
        password = psycopg2.extensions.parse_dsn(_libpq_url(url)).get("password")
    except psycopg2.ProgrammingError:
        return None
    return None if password is None else str(password)


def _worth_retrying(exc: Exception) -> bool:
    """stamina's hook: retry a refused or dropped connection, never what no retry cures
    (refused credentials, a missing database, a TLS failure, an invalid option)."""
    return (
        isinstance(exc, psycopg2.OperationalError)
        and database_error(exc).exit_code == DatabaseUnreachableError.exit_code
    )


@stamina.retry(on=_worth_retrying, attempts=4, timeout=60.0, wait_initial=0.5)
def _connect(kwargs: dict[str, Any]) -> Connection:
    conn: Connection = psycopg2.connect(**kwargs)
    return conn


def connect(url: str) -> Connection:
    """Open a connection, retrying transient failures.

    Raises ``DatabaseAuthError``, ``DatabaseMissingError`` or ``DatabaseTlsError`` (exit 2) when
    the server refuses the role, does not have the database or TLS fails (``_TLS_FAILURES``),
    ``ConfigError`` (exit 2) for an option libpq refuses, ``DatabaseUnreachableError`` (exit 1)
    when it stays unreachable.
    """
    kwargs = connect_kwargs(url)
    try:
        return _connect(kwargs)
    except psycopg2.Error as exc:
        failure = database_error(exc, f"connecting to {redact(url)}")
        if failure.exit_code == DatabaseUnreachableError.exit_code:
            failure = DatabaseUnreachableError(
                f"database unreachable at {redact(url)}: {_message(exc)}"
            )
        raise failure from exc


@contextmanager
def transaction(conn: Connection) -> Iterator[None]:
    """One transaction: BEGIN at the block's first statement, COMMIT at its end, ROLLBACK if it
    raises.

    The connection must be idle (no transaction open); its autocommit mode is restored after.
    The block's exception is re-raised as is (a failed ROLLBACK on a lost connection does not
    hide it).
    """
    _require_idle(conn, "open a transaction")
    previous = conn.autocommit
    conn.autocommit = False
    try:
        yield  # psycopg2 sends BEGIN before the block's first statement
    except BaseException:
        if not conn.closed:
            # A lost connection cannot roll back; the server has, and the block's error counts.
            with suppress(psycopg2.Error):
                conn.rollback()
        raise
    else:
        conn.commit()
    finally:
        if not conn.closed:
            conn.autocommit = previous


@contextmanager
def autocommit(conn: Connection) -> Iterator[None]:
    """Every statement in the block commits on its own (session-level work: locks, DDL).

    The connection must be idle; its previous mode is restored after.
    """
    _require_idle(conn, "switch to autocommit")
    previous = conn.autocommit
    conn.autocommit = True
    try:
        yield
    finally:
        if not conn.closed:
            conn.autocommit = previous


def _require_idle(conn: Connection, action: str) -> None:
    status = conn.info.transaction_status
    if status != psycopg2.extensions.TRANSACTION_STATUS_IDLE:
        raise InternalError(
            f"cannot {action}: the connection is not idle (transaction status {status})"
        )


@contextmanager
def database_errors(what: str) -> Iterator[None]:
    """Translate psycopg2 errors raised in the block into exit-code errors (``database_error``)."""
    try:
        yield
    except psycopg2.Error as exc:
        raise database_error(exc, what) from exc


def database_error(  # noqa: PLR0911 - one return per kind reads as the table it is
    exc: psycopg2.Error, what: str | None = None
) -> ScorerError:
    """The ``ScorerError`` for a psycopg2 error; ``what`` was being done (message prefix).

    The message keeps the server's primary text and hint, never its DETAIL or CONTEXT lines
    (they can quote row values, e.g. ``Key (entity_id)=(42)``).
    """
    prefix = f"{what}: " if what else ""
    message = _message(exc)
    code = exc.pgcode or _codes_by_class().get(type(exc), "")
    if not code and (failure := _connection_failure(message, prefix)):
        return failure
    if code == "23505":
        return DuplicateEntityError(
            f"{prefix}duplicate entity ids in the feature relation ({message})"
        )
    if code == "42501":
        return DatabasePrivilegeError(f"{prefix}insufficient privilege: {message}")
    if (code.startswith("28") or not code) and _NO_HBA_ENTRY.search(message):
        return DatabaseAuthError(
            f"{prefix}the server's pg_hba.conf admits no connection for this host, role and"
            f" database{_NO_TLS_HINT if 'no encryption' in message else ''} ({message})"
        )
    if code.startswith("28") or (not code and _AUTH.search(message)):
        return DatabaseAuthError(
            f"{prefix}database authentication failed: the password or role in "
            f"SCORER_DATABASE_URL is wrong ({message})"
        )
    if code == "3D000" or (not code and _MISSING.search(message)):
        return DatabaseMissingError(
            f"{prefix}the database in SCORER_DATABASE_URL does not exist ({message})"
        )
    if code.startswith("22") or isinstance(exc, psycopg2.DataError):
        unquoted = _QUOTED.sub('"…"', message)  # a data exception's text can quote the value
        return BadDataError(f"{prefix}bad data: {unquoted}{_name(code)}")
    if code.startswith("23") or isinstance(exc, psycopg2.IntegrityError):
        return BadDataError(f"{prefix}constraint violated: {message}{_name(code)}")
    if code in _SCHEMA_CODES:
        return SchemaMismatchError(f"{prefix}{message}")
    if code in _LOST_CODES or (
        isinstance(exc, psycopg2.OperationalError | psycopg2.InterfaceError)
        and _LOST.search(message)
    ):
        return DatabaseLostError(f"{prefix}the connection to the database was lost ({message})")
    if (
        code.startswith(_TRANSIENT_CLASSES)
        or code in _TRANSIENT_CODES
        or isinstance(exc, psycopg2.OperationalError)
    ):
        return DatabaseTransientError(f"{prefix}{message}{_name(code)}")
    return InternalError(f"{prefix}unexpected database error: {type(exc).__name__}: {message}")


def _connection_failure(message: str, prefix: str) -> ScorerError | None:
    """A TLS failure or an invalid option, from libpq's text (they carry no SQLSTATE)."""
    for pattern, reason in _TLS_FAILURES:
        if pattern.search(message):
            return DatabaseTlsError(f"{prefix}TLS failed: {reason} ({message})")
    if _INVALID_OPTION.search(message):
        return ConfigError(f"{prefix}SCORER_DATABASE_URL has an invalid option: {message}")
    return None


@functools.cache
def _codes_by_class() -> dict[type[psycopg2.Error], str]:
    """SQLSTATE of each psycopg2.errors class, for errors that carry no pgcode of their own."""
    codes: dict[type[psycopg2.Error], str] = {}
    for name, code in vars(psycopg2.errorcodes).items():
        if name.isupper() and isinstance(code, str) and len(code) == 5:
            with suppress(KeyError):
                codes.setdefault(psycopg2.errors.lookup(code), code)
    return codes


def _message(exc: psycopg2.Error) -> str:
    """The error's text without the lines that can hold values, on one line."""
    primary = exc.diag.message_primary if exc.diag is not None else None
    if primary:  # the server's own fields: the primary text and the hint, never DETAIL/CONTEXT
        hint = exc.diag.message_hint
        return f"{primary} (hint: {hint})" if hint else primary
    kept: list[str] = []
    dropping = False
    for line in str(exc).strip().splitlines():
        if line.startswith(_VALUE_LINES):
            dropping = True
        elif line.startswith("HINT:"):
            dropping = False
        if not dropping and line.strip():
            kept.append(line.strip())
    return " ".join(kept) or type(exc).__name__


def _name(code: str) -> str:
    """`` (SQLSTATE 22P02 invalid_text_representation)``, or nothing without a code."""
    if not code:
        return ""
    with suppress(KeyError):
        return f" (SQLSTATE {code} {psycopg2.errorcodes.lookup(code).lower()})"
    return f" (SQLSTATE {code})"


def one_value(cur: Cursor) -> Any:
    """The first column of the single row the last query returned."""
    row = cur.fetchone()
    if row is None:
        raise InternalError("a query that always returns one row returned none")
    return row[0]
