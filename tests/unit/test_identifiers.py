"""Identifiers from configuration are validated and quoted, never pasted."""

from __future__ import annotations

import pytest

from scorer.postgres.identifiers import Relation, quote_identifier, validate_identifier


@pytest.mark.parametrize("name", ["customers", "_x", "Feature_2", "a" * 63])
def test_valid_identifiers_are_quoted(name: str) -> None:
    assert validate_identifier(name) == name
    assert quote_identifier(name) == f'"{name}"'


@pytest.mark.parametrize(
    "name", ["", "1abc", "a-b", "a b", 'a"b', "a;b", "a" * 64, "ä", "x.y", "x--"]
)
def test_invalid_identifiers_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match="not a valid identifier"):
        quote_identifier(name)


def test_relation_parsing_and_sql() -> None:
    assert Relation.parse("features.customers").sql == '"features"."customers"'
    assert Relation.parse("customers").sql == '"customers"'
    assert str(Relation.parse("features.Customers")) == "features.Customers"
    with pytest.raises(ValueError, match=r"schema\.table"):
        Relation.parse("db.features.customers")
    with pytest.raises(ValueError, match="not a valid identifier"):
        Relation.parse("features.")
