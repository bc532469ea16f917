"""Validate and quote SQL identifiers that come from configuration."""

from __future__ import annotations

import re
from dataclasses import dataclass

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")


def validate_identifier(name: str) -> str:
    """Return ``name`` if it is a plain PostgreSQL identifier, else raise ``ValueError``."""
    if not _IDENTIFIER.fullmatch(name):
        raise ValueError(
            f"{name!r} is not a valid identifier (letters, digits and _, not starting "
            "with a digit, at most 63 characters)"
        )
    return name


def quote_identifier(name: str) -> str:
    """Quote a validated identifier for SQL (``foo`` -> ``"foo"``)."""
    return '"' + validate_identifier(name).replace('"', '""') + '"'


def quote_any(name: str) -> str:
    """Quote any column name as it is (``monthly charges`` -> ``"monthly charges"``).

    For names that come from a model signature or the catalog and are matched exactly;
    names from configuration go through ``quote_identifier``.
    """
    if not name or "\x00" in name or len(name.encode()) > 63:
        raise ValueError(f"{name!r} is not a usable column name (1 to 63 bytes, no NUL)")
    return '"' + name.replace('"', '""') + '"'


@dataclass(frozen=True)
class Relation:
    """A possibly schema-qualified table or view name."""

    schema: str | None
    name: str

    @classmethod
    def parse(cls, text: str) -> Relation:
        """Parse ``table`` or ``schema.table``; each part must be a valid identifier."""
        parts = text.split(".")
        if len(parts) > 2:
            raise ValueError(f"{text!r} must be 'table' or 'schema.table'")
        for part in parts:
            validate_identifier(part)
        return cls(None, parts[0]) if len(parts) == 1 else cls(parts[0], parts[1])

    @property
    def sql(self) -> str:
        """The quoted, qualified name for SQL text."""
        quoted = quote_identifier(self.name)
        return quoted if self.schema is None else f"{quote_identifier(self.schema)}.{quoted}"

    def __str__(self) -> str:
        return self.name if self.schema is None else f"{self.schema}.{self.name}"
