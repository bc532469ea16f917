"""PostgreSQL connections from the configured URL, with retries on connect."""

from __future__ import annotations

from typing import Any

import psycopg2
import psycopg2.extensions
import stamina
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from scorer.errors import ConfigError, RetryableError

_CONNECT_TIMEOUT_SECONDS = 10


def connect_kwargs(url: str) -> dict[str, Any]:
    """libpq keyword arguments for a ``postgresql://`` URL (query options kept)."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise ConfigError("SCORER_DATABASE_URL is not a valid URL") from exc
    kwargs: dict[str, Any] = parsed.translate_connect_args(username="user", database="dbname")
    kwargs.update({key: str(value) for key, value in parsed.query.items()})
    kwargs.setdefault("connect_timeout", _CONNECT_TIMEOUT_SECONDS)
    kwargs.setdefault("application_name", "scorer")
    return kwargs


def password_of(url: str) -> str | None:
    """The password in ``url``, so logging can mask it."""
    try:
        password = make_url(url).password
    except ArgumentError:
        return None
    return None if password is None else str(password)


def safe_url(url: str) -> str:
    """``url`` with its password masked, for logs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparseable URL>"


@stamina.retry(on=psycopg2.OperationalError, attempts=4, timeout=60.0, wait_initial=0.5)
def _connect(kwargs: dict[str, Any]) -> psycopg2.extensions.connection:
    conn: psycopg2.extensions.connection = psycopg2.connect(**kwargs)
    return conn


def connect(url: str) -> psycopg2.extensions.connection:
    """Open a connection, retrying transient failures; ``RetryableError`` if it stays down."""
    try:
        return _connect(connect_kwargs(url))
    except psycopg2.OperationalError as exc:
        raise RetryableError(f"database unreachable at {safe_url(url)}: {exc}".strip()) from None
