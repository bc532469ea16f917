"""Migrations: numbered SQL files (scorer/postgres/migrations), never changed once released."""

from __future__ import annotations

import fnmatch
import hashlib
import re
import tomllib
from pathlib import Path

import pytest

from scorer.errors import InternalError
from scorer.postgres import schema

MIGRATIONS = Path(schema.__file__).parent / "migrations"
PYPROJECT = Path(__file__).parents[2] / "pyproject.toml"

RELEASED = {
    "0001_runs_and_predictions.sql": (
        "d24fbe7b78cdf3821152656b2b42d915093c266bacb4e32faeaa25258af4667f"
    ),
    "0002_predictions_partitioned_by_run.sql": (
        "8ecc5e5cd0fab11d4f74ef9332b6650e40fb263359e8c956df6a65689b0fdfb1"
    ),
    "0003_real_tables.sql": "ebb76e5ef2474cf20f7a48d7144cc8772919d68e566a91c1e9820010663edcbf",
    "0004_run_evidence_and_pruned_status.sql": (
        "572fb63dc3c321c6402de834996c871cdad0c183f9606f53f4eb175b6dc0b7d3"
    ),
    "0005_lineage.sql": "922ae61ac30a1dd982929f1a451b5af348bd9a1239c550b3950baf69902f290a",
    "0006_shards.sql": "d70b2aa98f6205edaa9a2df242a369a64722c0a0c8ca58adff52fd9838a692e5",
    "0007_run_models.sql": "3c366a1c9f210d9d3317d3eb17f36efd6fe0fcb51a88c9472cad80eafd2e7116",
    "0008_least_privilege.sql": "639cb4b0b466c8b12ca4dcf4715f38d7c1131207cf473fca10c2c8487a65f58a",
    "0009_feature_bins.sql": "a16b014319068afd15bc7ee037c3a81a9c4f57fcf0a99696244efaf7873cc20b",
    "0010_shadow_runs.sql": "3dd497ca27e825b193ee867fa9951c427347de525917715126b705322751bb74",
    "0011_run_evaluations.sql": "a615ebb221dce35371e7eb76dce34fe8b766fa8c319fcfbe640d0170d52b5515",
    "0012_reasons.sql": "19278c6cea6cfcb8bf6dfa435704fd79c5325174c20aa05543c9cc6e36cb2677",
    "0013_shard_feature_drift.sql": (
        "287510dd7f9acc4c56e9ae51afa27b6d05a6c0ce405e0fa41f3e107a68943987"
    ),
}
"""Each released migration's sha256. A new migration is added here when it is released."""


def test_the_files_are_numbered_one_to_n_without_gaps() -> None:
    names = sorted(path.name for path in MIGRATIONS.glob("*.sql"))
    numbers = [int(name[:4]) for name in names]
    assert numbers == list(range(1, len(names) + 1)), names
    assert all(re.fullmatch(r"\d{4}_[a-z0-9_]+\.sql", name) for name in names), names
    assert [migration.file_name for migration in schema.MIGRATIONS] == names
    assert len(names) == schema.SCHEMA_VERSION


@pytest.mark.parametrize("name", sorted(RELEASED))
def test_a_released_migration_never_changes(name: str) -> None:
    path = MIGRATIONS / name
    assert path.exists(), f"released migration {name} is gone: restore it"
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert digest == RELEASED[name], (
        f"{name} was released and must not change (a schema that applied it keeps the old "
        "text): restore it and add a new migration instead"
    )


def test_the_package_data_carries_every_migration() -> None:
    globs = tomllib.loads(PYPROJECT.read_text())["tool"]["setuptools"]["package-data"]["scorer"]
    package = MIGRATIONS.parents[1]
    for path in MIGRATIONS.glob("*.sql"):
        relative = path.relative_to(package).as_posix()
        assert any(fnmatch.fnmatch(relative, glob) for glob in globs), relative


def test_only_the_schema_placeholders_are_filled() -> None:
    migration = schema.Migration(
        1, "0001_x.sql", "CREATE TABLE {s}.t (a text DEFAULT {n}, b int[] DEFAULT '{1,2}');"
    )
    assert (
        migration.sql("ml")
        == """CREATE TABLE "ml".t (a text DEFAULT 'ml', b int[] DEFAULT '{1,2}');"""
    )


def write(directory: Path, *names: str) -> Path:
    for name in names:
        (directory / name).write_text("SELECT 1;\n")
    return directory


def test_files_load_in_number_order(tmp_path: Path) -> None:
    write(tmp_path, "0002_b.sql", "0001_a.sql", "0003_c.sql", "notes.md")
    loaded = schema.load(tmp_path)
    assert [(m.version, m.file_name) for m in loaded] == [
        (1, "0001_a.sql"),
        (2, "0002_b.sql"),
        (3, "0003_c.sql"),
    ]


def test_a_gap_in_the_numbering_is_refused(tmp_path: Path) -> None:
    write(tmp_path, "0001_a.sql", "0002_b.sql", "0004_d.sql")
    with pytest.raises(InternalError, match=r"without gaps; missing: \[3\]"):
        schema.load(tmp_path)


def test_a_number_used_twice_is_refused(tmp_path: Path) -> None:
    write(tmp_path, "0001_a.sql", "0002_b.sql", "0002_c.sql")
    with pytest.raises(InternalError, match="share number 2"):
        schema.load(tmp_path)


@pytest.mark.parametrize("name", ["1_a.sql", "0001-a.sql", "0001_A.sql", "0001.sql"])
def test_a_misnamed_file_is_refused(tmp_path: Path, name: str) -> None:
    write(tmp_path, name)
    with pytest.raises(InternalError, match=r"not named NNNN_name\.sql"):
        schema.load(tmp_path)
