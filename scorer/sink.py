"""Write prediction rows with binary COPY, the run's lineage constants on every row."""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt

from scorer.features import COPY_SIGNATURE
from scorer.identifiers import quote_identifier

_HEADER = COPY_SIGNATURE + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x00"
_TRAILER = b"\xff\xff"
_PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
COLUMNS = (
    "run_id",
    "entity_id",
    "score",
    "label",
    "model_name",
    "model_version",
    "snapshot",
    "scored_at",
)


@dataclass(frozen=True)
class Lineage:
    """The per-run constants every prediction row carries."""

    run_id: str
    model_name: str
    model_version: int
    snapshot: str
    scored_at: datetime


class PredictionEncoder:
    """Encodes chunks of (entity, score, label) as binary COPY rows with the lineage."""

    def __init__(self, lineage: Lineage) -> None:
        self._constants = {
            "run_id": lineage.run_id.encode(),
            "model_name": lineage.model_name.encode(),
            "snapshot": lineage.snapshot.encode(),
        }
        self._version = lineage.model_version
        delta = lineage.scored_at - _PG_EPOCH
        self._scored_at = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
        text = {name: f"S{len(value)}" for name, value in self._constants.items()}
        self._dtype = np.dtype(
            [
                ("count", ">i2"),
                ("run_id_len", ">i4"),
                ("run_id", text["run_id"]),
                ("entity_len", ">i4"),
                ("entity", ">i8"),
                ("score_len", ">i4"),
                ("score", ">f8"),
                ("label_len", ">i4"),
                ("label", ">i2"),
                ("model_name_len", ">i4"),
                ("model_name", text["model_name"]),
                ("version_len", ">i4"),
                ("version", ">i4"),
                ("snapshot_len", ">i4"),
                ("snapshot", text["snapshot"]),
                ("scored_at_len", ">i4"),
                ("scored_at", ">i8"),
            ]
        )
        self._template = np.zeros(1, dtype=self._dtype)
        row = self._template[0]
        row["count"] = len(COLUMNS)
        for name, value in self._constants.items():
            row[f"{name}_len"] = len(value)
            row[name] = value
        for name, size in (
            ("entity_len", 8),
            ("score_len", 8),
            ("label_len", 2),
            ("version_len", 4),
            ("scored_at_len", 8),
        ):
            row[name] = size
        row["version"] = self._version
        row["scored_at"] = self._scored_at

    def encode(
        self,
        ids: npt.NDArray[np.int64],
        scores: npt.NDArray[np.float64],
        labels: npt.NDArray[np.int16],
    ) -> bytes:
        """One complete binary COPY stream (header, rows, trailer) for a chunk."""
        rows = np.repeat(self._template, ids.size)
        rows["entity"] = ids
        rows["score"] = scores
        rows["label"] = labels
        return b"".join((_HEADER, rows.tobytes(), _TRAILER))


def copy_sql(schema: str) -> str:
    """The COPY statement matching ``PredictionEncoder``'s rows."""
    columns = ", ".join(COLUMNS)
    return f"COPY {quote_identifier(schema)}.predictions ({columns}) FROM STDIN (FORMAT binary)"


def write(cur: Any, statement: str, payload: bytes) -> None:
    """Send one encoded chunk on an open cursor (inside the run's transaction)."""
    cur.copy_expert(statement, io.BytesIO(payload), size=1 << 20)
