"""Unit tests cannot reach the network: no sockets (pytest-socket) and no libpq connections.

pytest-socket guards Python's ``socket`` module; libpq opens its sockets in C, so
``psycopg2.connect`` is guarded too. Only the tests in this directory are affected.
"""

from __future__ import annotations

from typing import NoReturn

import psycopg2
import pytest


class NetworkBlockedError(RuntimeError):
    """A unit test tried to open a database connection."""


def _no_connection(*_args: object, **_kwargs: object) -> NoReturn:
    raise NetworkBlockedError("unit tests must not connect to PostgreSQL (tests/unit/conftest.py)")


@pytest.fixture(autouse=True)
def _no_network(socket_disabled: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every unit test runs with sockets disabled and ``psycopg2.connect`` refused."""
    monkeypatch.setattr(psycopg2, "connect", _no_connection)
