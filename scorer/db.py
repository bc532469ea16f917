"""PostgreSQL connections from the configured URL, with retries on connect."""

from __future__ import annotations

from typing import Any

import psycopg2
import psycopg2.extensions
import stamina

from scorer.errors import ConfigError, RetryableError
from scorer.logs import redact

_CONNECT_TIMEOUT_SECONDS = 10


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
        raise ConfigError("SCORER_DATABASE_URL is not a valid URL") from None
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


@stamina.retry(on=psycopg2.OperationalError, attempts=4, timeout=60.0, wait_initial=0.5)
def _connect(kwargs: dict[str, Any]) -> psycopg2.extensions.connection:
    conn: psycopg2.extensions.connection = psycopg2.connect(**kwargs)
    return conn


def connect(url: str) -> psycopg2.extensions.connection:
    """Open a connection, retrying transient failures; ``RetryableError`` if it stays down."""
    try:
        return _connect(connect_kwargs(url))
    except psycopg2.OperationalError as exc:
        raise RetryableError(f"database unreachable at {redact(url)}: {exc}".strip()) from None
