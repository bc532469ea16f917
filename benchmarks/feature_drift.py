"""``python -m benchmarks.feature_drift [--rows N] [--pairs P] [--repeat R]``: feature PSI.

1. **Noise.** P pairs of independently generated nights of the benchmark's two table shapes
   (``benchmarks.fixtures``: the telco draws are the ones its models train on, from the
   distributions ``create_telco`` generates in PostgreSQL; the numeric shape's 20 uniform
   features), of 1,000 to N rows: the first night's bins (``scorer.run.drift``), the second
   night's PSI per feature against them. It prints the largest and the median over features
   and pairs.
2. **Shifts.** The PSI of one shifted column against a fresh night's bins: a price rise, the
   next weekly snapshot (tenure + 1, as the benchmark's table has it), a year older, a unit
   change, another contract mix, one more support call.
3. **Cost.** CPU seconds of collecting the evidence (``Collector.add`` on every chunk, then the
   run's bins and figures) against CPU seconds of the telco XGBoost model's own predict (200
   trees, depth 6, one thread) on the same chunks, interleaved; medians of R. A run's CPU is
   predict plus reading, parsing, writing and the server's share, so evidence ÷ predict bounds
   evidence ÷ run from above.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import warnings
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmarks import fixtures
from scorer.io.features import Chunk, FeaturePlan, ModelInput, Precision, Snapshot
from scorer.postgres import wire
from scorer.postgres.identifiers import Relation
from scorer.run import drift

CHUNK_ROWS = 50_000  # SCORER_CHUNK_ROWS' default
Night = Callable[[int, int], pd.DataFrame]


def telco_night(rows: int, seed: int) -> pd.DataFrame:
    """One night of the telco shape (strings as ``str``)."""
    frame: pd.DataFrame = fixtures.telco_training(rows, seed)[0]
    return frame


def numeric_night(rows: int, seed: int) -> pd.DataFrame:
    """One night of the numeric shape: 20 uniform features."""
    values = np.random.default_rng(seed).random((rows, len(fixtures.FEATURES)))
    return pd.DataFrame(values, columns=list(fixtures.FEATURES))


def plan_of(frame: pd.DataFrame, dtype: Precision = np.float64) -> FeaturePlan:
    """A plan reading ``frame``'s columns as the model's inputs (strings where text)."""
    inputs = tuple(
        ModelInput(str(name), "number", "double")
        if pd.api.types.is_numeric_dtype(frame[name])
        else ModelInput(str(name), "string", "string")
        for name in frame.columns
    )
    numbers = tuple(item.name for item in inputs if item.kind == "number")
    strings = tuple(item.name for item in inputs if item.kind == "string")
    return FeaturePlan(
        Relation(None, "t"), "id", "bigint", inputs, Snapshot("", ""),
        wire.RowLayout((("id", ">i8"),)), "", (), numbers, strings, dtype=dtype,
    )  # fmt: skip


def chunks(frame: pd.DataFrame, plan: FeaturePlan) -> list[Chunk]:
    """``frame`` as the chunks a run streams (its numbers row-major, as in a run)."""
    numbers = frame[list(plan.numbers)].to_numpy(dtype=plan.dtype)
    texts = {
        name: np.array(frame[name].to_numpy(dtype=str), dtype=np.bytes_) for name in plan.strings
    }
    out = []
    for start in range(0, len(frame), CHUNK_ROWS):
        part = slice(start, start + CHUNK_ROWS)
        block = np.ascontiguousarray(numbers[part])  # row-major, as a run's parse fills it
        strings = {
            name: wire.Texts(values[part], np.zeros(values[part].size, dtype=bool))
            for name, values in texts.items()
        }
        nulls = dict(zip(plan.numbers, np.isnan(block).sum(axis=0).tolist(), strict=True))
        ids = np.arange(block.shape[0])
        out.append(Chunk(ids, block, strings, block.shape[0], Counter(), nulls))
    return out


def collect(
    frame: pd.DataFrame, known: dict[str, tuple[str, ...]], reference: drift.Bins | None
) -> drift.Collector:
    plan = plan_of(frame)
    collector = drift.Collector(plan, known, reference, "reference")
    for chunk in chunks(frame, plan):
        collector.add(chunk)
    return collector


def psi_between(
    first: pd.DataFrame, second: pd.DataFrame, known: dict[str, tuple[str, ...]]
) -> dict[str, float]:
    """Each feature's PSI of ``second`` against ``first``'s bins."""
    bins = collect(first, known, None).bins()
    return collect(second, known, bins).figures().psi


def noise(night: Night, rows: int, pairs: int, known: dict[str, tuple[str, ...]]) -> list[float]:
    """Every feature's PSI between independent nights, over ``pairs`` pairs."""
    found: list[float] = []
    for pair in range(pairs):
        first, second = night(rows, 1000 + 2 * pair), night(rows, 1001 + 2 * pair)
        found += psi_between(first, second, known).values()
    return found


def _contracts(column: pd.Series) -> Any:
    """Contracts drawn 60/20/20 instead of in thirds."""
    rng = np.random.default_rng(7)
    values = np.array(fixtures.CATEGORIES["contract"], dtype=object)
    return rng.choice(values, len(column), p=[0.6, 0.2, 0.2])


def _new_default(column: pd.Series) -> Any:
    """One row in ten takes the value 0 (an upstream default for a missing value)."""
    return column.where(np.arange(len(column)) % 10 != 0, 0.0)


SHIFTS: dict[str, tuple[str, Callable[[pd.Series], Any]]] = {
    "monthly_charges x 1.1 (a 10% price rise)": ("monthly_charges", lambda c: c * 1.1),
    "tenure + 1 (the next weekly snapshot)": ("tenure", lambda c: c + 1),
    "tenure + 12 (a year older)": ("tenure", lambda c: c + 12),
    "usage01 x 100 (a unit change)": ("usage01", lambda c: c * 100),
    "support_calls + 1": ("support_calls", lambda c: c + 1),
    "monthly_charges 0 for 10% of rows (a new default)": ("monthly_charges", _new_default),
    "contract 60/20/20 instead of thirds": ("contract", _contracts),
}


def telco_model(workdir: Path) -> Any:
    """The benchmark's telco XGBoost model, saved as MLflow saves it and loaded by the scorer."""
    import mlflow.xgboost  # noqa: PLC0415
    import xgboost  # noqa: PLC0415
    from mlflow.models import infer_signature  # noqa: PLC0415

    from scorer.model import flavors  # noqa: PLC0415

    frame, labels = fixtures.telco_training(20_000)
    matrix = xgboost.DMatrix(fixtures.as_categories(frame), label=labels, enable_categorical=True)
    booster = fixtures._booster(matrix)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        signature = infer_signature(frame.head(100), np.zeros(100))
        mlflow.xgboost.save_model(booster, workdir / "model", signature=signature)
    return flavors.load(workdir / "model", "probability", None, 1)


def cost(rows: int, repeat: int) -> None:
    """Evidence CPU against the model's predict CPU, interleaved, medians of ``repeat``."""
    with tempfile.TemporaryDirectory() as workdir:
        model = telco_model(Path(workdir))
    frame = telco_night(rows, 42)
    plan = plan_of(frame, model.dtype)
    plan = FeaturePlan(
        plan.relation, plan.entity, plan.entity_kind, model.inputs, plan.snapshot, plan.layout,
        "", (), tuple(i.name for i in model.inputs if i.kind != "string"),
        tuple(i.name for i in model.inputs if i.kind == "string"), dtype=model.dtype,
    )  # fmt: skip
    stream = chunks(frame[[item.name for item in model.inputs]], plan)
    reference = collect(telco_night(rows, 41), model.categories, None).bins()
    seconds: dict[str, list[float]] = {"predict": [], "evidence": []}
    for _ in range(repeat):
        start = time.process_time()
        for chunk in stream:
            model.predict(chunk, plan)
        seconds["predict"].append(time.process_time() - start)
        start = time.process_time()
        collector = drift.Collector(plan, model.categories, reference, "reference")
        for chunk in stream:
            collector.add(chunk)
        collector.bins()
        collector.figures()
        seconds["evidence"].append(time.process_time() - start)
    medians = {name: statistics.median(values) for name, values in seconds.items()}
    for name, median in medians.items():
        print(f"  {name}: {median * 1e6 / rows:.3f} CPU µs per row (median of {repeat})")
    print(f"  evidence / predict: {medians['evidence'] / medians['predict']:.4f}")
    print(f"  (predict + evidence) / predict: {1 + medians['evidence'] / medians['predict']:.4f}")


def main() -> None:
    """Print the noise, the shifts' figures and the evidence's cost."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=5)
    options = parser.parse_args()
    known = {name: tuple(values) for name, values in fixtures.CATEGORIES.items()}
    print(f"noise: {options.pairs} pairs of independent nights")
    for rows in sorted({1_000, 10_000, 100_000, options.rows}):
        for shape, night in (("telco", telco_night), ("numeric", numeric_night)):
            found = noise(night, rows, options.pairs, known)
            print(
                f"  {shape}, {rows:,} rows: max {max(found):.5f}, median"
                f" {statistics.median(found):.5f} over {len(found)} feature PSIs"
            )
    print("shifted columns (telco), PSI against a fresh night's bins:")
    for label, (column, shift) in SHIFTS.items():
        shifted = telco_night(options.rows, 1001)
        shifted[column] = shift(shifted[column])
        figure = psi_between(telco_night(options.rows, 1000), shifted, known)[column]
        print(f"  {label}: {figure:.4f}")
    print(f"cost (telco-xgboost, {options.rows:,} rows in chunks of {CHUNK_ROWS:,}):")
    cost(options.rows, options.repeat)


if __name__ == "__main__":
    main()
