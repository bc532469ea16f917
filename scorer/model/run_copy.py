"""A sharded run's own copy of its model's files, in PostgreSQL, while the run is open.

The shard that opens a run downloads the resolved version from MLflow and stores its files
here, zipped, in the transaction that records the run. Every later shard and retry of the run
loads that copy instead of asking MLflow again. So all shards score the very same files, the
registry serves one download per run however many pods there are, and a joining shard of an
xgboost model never imports MLflow (about 1.4 CPU-s of each pod's start-up in the image).
The copy goes when the run publishes or fails. A model over ``MAX_BYTES`` zipped is not
copied: its shards each download it from MLflow, as an unsharded run does.
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import psycopg2

from scorer.postgres import db
from scorer.postgres.identifiers import quote_identifier

MAX_BYTES = 256 * 1024 * 1024
"""The largest copy stored (zipped): a bigger model is downloaded by each shard instead."""


@dataclass(frozen=True)
class ModelFiles:
    """A model directory, zipped, and the SHA-256 of the zip (logged by every shard)."""

    data: bytes = field(repr=False)  # never in a log line or a repr

    @property
    def sha256(self) -> str:
        """The digest the shards' ``model.loaded`` lines carry: one per run."""
        return hashlib.sha256(self.data).hexdigest()


def pack(path: Path) -> ModelFiles:
    """The files under the model directory ``path``, zipped (relative names, sorted)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        for file in sorted(item for item in path.rglob("*") if item.is_file()):
            archive.write(file, file.relative_to(path).as_posix())
    return ModelFiles(buffer.getvalue())


def unpack(files: ModelFiles, into: Path) -> None:
    """Write the model's files under ``into`` (zipfile keeps every name inside it)."""
    with zipfile.ZipFile(io.BytesIO(files.data)) as archive:
        archive.extractall(into)


def _table(schema: str) -> str:
    return f"{quote_identifier(schema)}.scoring_run_models"


def store(cur: db.Cursor, schema: str, run_id: str, files: ModelFiles) -> bool:
    """Keep the run's copy (in the caller's transaction); False if it is over ``MAX_BYTES``."""
    if len(files.data) > MAX_BYTES:
        return False
    cur.execute(
        f"INSERT INTO {_table(schema)} (run_id, files, sha256) VALUES (%s, %s, %s)"
        " ON CONFLICT (run_id) DO NOTHING",
        (run_id, psycopg2.Binary(files.data), files.sha256),
    )
    return True


def fetch(cur: db.Cursor, schema: str, run_id: str) -> ModelFiles | None:
    """The run's copy, or None (no copy: too big, or the run is no longer open)."""
    cur.execute(f"SELECT files FROM {_table(schema)} WHERE run_id = %s", (run_id,))
    row = cur.fetchone()
    return None if row is None else ModelFiles(bytes(row[0]))


def drop(cur: db.Cursor, schema: str, run_id: str) -> None:
    """Remove the run's copy (in the transaction that publishes or fails the run)."""
    cur.execute(f"DELETE FROM {_table(schema)} WHERE run_id = %s", (run_id,))
