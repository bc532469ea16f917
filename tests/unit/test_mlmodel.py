"""The MLmodel file read without MLflow, against MLflow's own reading of the same models;
a model directory zipped and unzipped as a sharded run's copy.

The models are real: saved here by mlflow with the signatures users log (columns inferred
from a DataFrame, a tensor from a numpy array, none at all).
"""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import mlflow.xgboost
import numpy as np
import pandas as pd
import pytest
import xgboost
from mlflow.models import Model, infer_signature

from scorer.errors import SchemaMismatchError
from scorer.model import mlmodel, run_copy


def saved(path: Path, signature_of: pd.DataFrame | np.ndarray | None) -> Path:
    """A small booster saved as an MLflow xgboost model with the signature of ``signature_of``."""
    rng = np.random.default_rng(3)
    features = rng.random((200, 3))
    booster = xgboost.train(
        {"objective": "binary:logistic"},
        xgboost.DMatrix(features, (features[:, 0] > 0.5).astype(int)),
        3,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # MLflow comments on its own pyfunc type hints
        signature = None if signature_of is None else infer_signature(signature_of)
        mlflow.xgboost.save_model(booster, str(path), signature=signature)
    return path


FRAME = pd.DataFrame(
    {"age": [31.0], "plan": ["basic"], "seats": np.array([2], dtype=np.int64), "vip": [True]}
)


@pytest.mark.parametrize(
    ("name", "signature_of"),
    [("columns", FRAME), ("tensor", np.zeros((2, 3))), ("none", None)],
)
def test_read_gives_what_mlflow_reads(
    tmp_path: Path, name: str, signature_of: pd.DataFrame | np.ndarray | None
) -> None:
    path = saved(tmp_path / name, signature_of)
    ours, theirs = mlmodel.read(path), Model.load(str(path))
    assert ours.flavors == theirs.flavors
    if theirs.signature is None:
        assert (ours.inputs, ours.named_inputs) == (None, False)
    else:
        # as recorded in scoring_runs.model_signature (JSON: MLflow's tuples are lists)
        assert ours.inputs == json.loads(json.dumps(theirs.signature.inputs.to_dict()))
        assert ours.named_inputs == theirs.signature.inputs.has_input_names()
    if name == "columns":
        assert [(spec["name"], spec["type"]) for spec in ours.inputs or ()] == [
            ("age", "double"),
            ("plan", "string"),
            ("seats", "long"),
            ("vip", "boolean"),
        ]


def test_read_refuses_what_is_not_an_mlflow_model(tmp_path: Path) -> None:
    with pytest.raises(SchemaMismatchError, match="cannot be read"):
        mlmodel.read(tmp_path)
    (tmp_path / "MLmodel").write_text("just: text\n")
    with pytest.raises(SchemaMismatchError, match="names no flavors"):
        mlmodel.read(tmp_path)


def test_an_xgboost_model_loads_without_importing_mlflow(tmp_path: Path) -> None:
    path = saved(tmp_path / "model", pd.DataFrame(np.zeros((2, 3)), columns=["a", "b", "c"]))
    probe = (
        "import sys; from pathlib import Path; from scorer.model import flavors;"
        f" flavors.load(Path({str(path)!r}), 'probability', None, 1);"
        " print(sorted(m for m in sys.modules if m.split('.')[0] == 'mlflow'))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).parents[2],  # the repository: scorer is importable from there
    )
    assert done.stdout.strip() == "[]", done.stdout


def test_a_packed_model_unpacks_to_the_same_files(tmp_path: Path) -> None:
    path = saved(tmp_path / "model", FRAME)
    (path / "code" / "nested").mkdir(parents=True)
    (path / "code" / "nested" / "helper.py").write_text("X = 1\n")
    files = run_copy.pack(path)
    assert files.sha256 == run_copy.pack(path).sha256  # the same files, the same digest
    assert len(repr(files)) < 100  # its bytes never reach a log line through a repr
    run_copy.unpack(files, tmp_path / "copy")
    original = {p.relative_to(path): p.read_bytes() for p in path.rglob("*") if p.is_file()}
    copied = {
        p.relative_to(tmp_path / "copy"): p.read_bytes()
        for p in (tmp_path / "copy").rglob("*")
        if p.is_file()
    }
    assert copied == original
    assert Path("code/nested/helper.py") in copied
