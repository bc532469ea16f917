"""Database URLs: parsed by libpq, masked for logs."""

from __future__ import annotations

import pytest

from scorer.errors import ConfigError
from scorer.logs import redact
from scorer.postgres.db import connect_kwargs, password_of


def test_url_becomes_libpq_keywords_with_options_and_defaults() -> None:
    kwargs = connect_kwargs("postgresql://scorer:p%40ss@db.example:6432/scoring?sslmode=require")
    assert kwargs == {
        "user": "scorer",
        "password": "p@ss",
        "host": "db.example",
        "port": "6432",
        "dbname": "scoring",
        "sslmode": "require",
        "connect_timeout": 10,
        "application_name": "scorer",
    }


def test_sqlalchemy_style_driver_suffix_and_short_scheme_are_accepted() -> None:
    assert connect_kwargs("postgresql+psycopg2://u@h/d")["host"] == "h"
    assert connect_kwargs("postgres://u@h/d")["dbname"] == "d"
    assert connect_kwargs("postgresql://u@h/d?application_name=nightly")["application_name"] == (
        "nightly"
    )


def test_unparseable_url_is_a_config_error_that_does_not_echo_it() -> None:
    with pytest.raises(ConfigError) as caught:
        connect_kwargs("postgresql://u:hunter2@h/d?nonsense_option=1")
    assert "hunter2" not in str(caught.value)


def test_password_is_found_decoded_and_masked() -> None:
    url = "postgresql://scorer:s3%2Fcr3t@db:5432/x"
    assert password_of(url) == "s3/cr3t"
    assert password_of("postgresql://scorer@db/x") is None
    assert redact(url) == "postgresql://scorer:***@db:5432/x"
    assert redact("postgresql://scorer@db/x") == "postgresql://scorer@db/x"


def test_an_unparseable_url_gets_the_percent_encoding_hint() -> None:
    with pytest.raises(ConfigError, match=r"percent-encode .*\(@ as %40") as caught:
        connect_kwargs("postgresql://u:100%zz@h/d")
    assert "100%zz" not in str(caught.value)
