"""The guard of tests/unit/conftest.py: a unit test cannot reach the network."""

from __future__ import annotations

import socket
import urllib.request

import psycopg2
import pytest
from pytest_socket import SocketBlockedError

from scorer.postgres import db
from tests.unit.conftest import NetworkBlockedError


def test_sockets_are_blocked() -> None:
    with pytest.warns(UserWarning, match="socket"), pytest.raises(SocketBlockedError):
        socket.socket(socket.AF_INET, socket.SOCK_STREAM)


def test_http_is_blocked() -> None:
    with pytest.warns(UserWarning, match="socket"), pytest.raises(SocketBlockedError):
        urllib.request.urlopen("http://127.0.0.1:9/")


def test_libpq_connections_are_blocked() -> None:
    with pytest.raises(NetworkBlockedError):
        psycopg2.connect("host=127.0.0.1 dbname=postgres")
    with pytest.raises(NetworkBlockedError):
        db.connect("postgresql://u:p@127.0.0.1:5432/d")
