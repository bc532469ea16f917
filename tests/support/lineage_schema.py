"""Validate OpenLineage events against the spec's JSON schemas, offline.

The schemas are the spec's own files (``tests/openlineage_spec``, see its README) plus the
scorer's facet schema (``scorer/schemas``), each registered under its ``$id``: the event is
checked against ``OpenLineage.json#/$defs/RunEvent``, and every facet against the schema its
``_schemaURL`` names (the event schema alone checks only a facet's ``_producer`` and
``_schemaURL``). Formats are asserted where jsonschema can (``uuid``, ``date-time``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import referencing

ROOT = Path(__file__).resolve().parents[2]
SPEC = ROOT / "tests" / "openlineage_spec"
RUN_EVENT = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent"
_VALIDATOR = jsonschema.Draft202012Validator


@cache
def registry() -> referencing.Registry[Any]:
    """Every shipped schema, under its ``$id``."""
    files = [
        SPEC / "OpenLineage.json",
        *sorted((SPEC / "facets").glob("*.json")),
        *sorted((ROOT / "scorer" / "schemas").glob("*.json")),
    ]
    resources = []
    for path in files:
        schema = json.loads(path.read_text())
        resources.append((schema["$id"], referencing.Resource.from_contents(schema)))
    return referencing.Registry().with_resources(resources)


def _validator(ref: str) -> jsonschema.protocols.Validator:
    return _VALIDATOR({"$ref": ref}, registry=registry(), format_checker=_VALIDATOR.FORMAT_CHECKER)


def facets(event: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """``(where, name, facet)`` for every facet of the event."""
    parts = [("run", event["run"]), ("job", event["job"])]
    parts += [(f"inputs[{i}]", d) for i, d in enumerate(event.get("inputs") or [])]
    parts += [(f"outputs[{i}]", d) for i, d in enumerate(event.get("outputs") or [])]
    for where, part in parts:
        for key in ("facets", "inputFacets", "outputFacets"):
            for name, facet in (part.get(key) or {}).items():
                yield f"{where}.{key}", name, facet


def validate(event: dict[str, Any]) -> None:
    """Raise ``jsonschema.ValidationError`` unless the event and each facet are valid."""
    _validator(RUN_EVENT).validate(event)
    for where, name, facet in facets(event):
        try:
            _validator(facet["_schemaURL"]).validate(facet)
        except jsonschema.ValidationError as exc:
            exc.message = f"{where}.{name}: {exc.message}"
            raise
