"""Write a run's predictions into its own partition of ``predictions``.

Each run loads a fresh table shaped like ``predictions`` whose column defaults are the
run's lineage constants, so the client sends only narrow binary COPY rows
(entity, score, label) and PostgreSQL fills the lineage in. The primary key is built once,
sorted, after the load (cheaper than maintaining it row by row), and the table is attached
as the run's partition in the transaction that publishes the run. A failed or killed run
rolls the table back with everything else; a CHECK on ``run_id`` lets the attach skip
scanning the rows.
"""

from __future__ import annotations

import hashlib
import io
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import numpy.typing as npt

from scorer.features import COPY_SIGNATURE
from scorer.identifiers import quote_identifier

_HEADER = COPY_SIGNATURE + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x00"
_TRAILER = b"\xff\xff"
_ROW = np.dtype(
    [
        ("count", ">i2"),
        ("entity_len", ">i4"),
        ("entity", ">i8"),
        ("score_len", ">i4"),
        ("score", ">f8"),
        ("label_len", ">i4"),
        ("label", ">i2"),
    ]
)
_TEMPLATE = np.array([(3, 8, 0, 8, 0.0, 2, 0)], dtype=_ROW)
_UNSAFE = re.compile(r"[^a-z0-9_]+")


@dataclass(frozen=True)
class Lineage:
    """The per-run constants every prediction row carries."""

    run_id: str
    model_name: str
    model_version: int
    snapshot: str
    scored_at: datetime


def partition_name(run_id: str) -> str:
    """The run's partition table: readable, unique per run id, within 63 bytes."""
    digest = hashlib.sha256(run_id.encode()).hexdigest()[:8]
    readable = _UNSAFE.sub("_", run_id.lower())[:40].strip("_")
    return f"predictions_{readable}_{digest}" if readable else f"predictions_{digest}"


def encode(
    ids: npt.NDArray[np.int64],
    scores: npt.NDArray[np.float64],
    labels: npt.NDArray[np.int16],
) -> bytes:
    """One complete binary COPY stream (header, rows, trailer) of (entity, score, label)."""
    rows = np.repeat(_TEMPLATE, ids.size)
    rows["entity"] = ids
    rows["score"] = scores
    rows["label"] = labels
    return b"".join((_HEADER, rows.tobytes(), _TRAILER))


class RunPartition:
    """The table one run loads and publishes as its partition of ``schema.predictions``."""

    def __init__(self, schema: str, lineage: Lineage) -> None:
        self.lineage = lineage
        quoted = quote_identifier(schema)
        self.parent = f"{quoted}.predictions"
        self.table = f"{quoted}.{quote_identifier(partition_name(lineage.run_id))}"
        self.copy_statement = (
            f"COPY {self.table} (entity_id, score, label) FROM STDIN (FORMAT binary)"
        )

    def create(self, cur: Any) -> None:
        """Create the empty table with its lineage defaults and run id CHECK (not yet committed)."""
        lineage = self.lineage
        cur.execute(
            f"CREATE TABLE {self.table} (LIKE {self.parent}, CHECK (run_id = %s))",
            (lineage.run_id,),
        )
        cur.execute(
            f"ALTER TABLE {self.table}"
            " ALTER COLUMN run_id SET DEFAULT %s,"
            " ALTER COLUMN model_name SET DEFAULT %s,"
            " ALTER COLUMN model_version SET DEFAULT %s,"
            " ALTER COLUMN snapshot SET DEFAULT %s,"
            " ALTER COLUMN scored_at SET DEFAULT %s",
            (
                lineage.run_id,
                lineage.model_name,
                lineage.model_version,
                lineage.snapshot,
                lineage.scored_at,
            ),
        )

    def attach(self, cur: Any) -> None:
        """Build the primary key, then attach the table as the run's partition."""
        cur.execute(f"ALTER TABLE {self.table} ADD PRIMARY KEY (run_id, entity_id)")
        cur.execute(
            f"ALTER TABLE {self.parent} ATTACH PARTITION {self.table} FOR VALUES IN (%s)",
            (self.lineage.run_id,),
        )


def write(cur: Any, statement: str, payload: bytes) -> None:
    """Send one encoded chunk on an open cursor (inside the run's transaction)."""
    cur.copy_expert(statement, io.BytesIO(payload), size=1 << 20)
