"""``python -m benchmarks.dtype_parse [--rows N] [--repeat R]``: the wire parse into each dtype.

CPU seconds of ``features.to_chunk`` on N rows of 20 ``float8`` features, into float32 (what
xgboost computes in) and float64 (every other flavor), interleaved; medians of R. The parse is
the only step of the fast numeric path whose work depends on the model's dtype.
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import replace

import numpy as np

from scorer.io import features
from scorer.io.features import FeaturePlan, ModelInput, Precision, Snapshot
from scorer.postgres import wire
from scorer.postgres.identifiers import Relation

FEATURES = 20


def rows(count: int) -> wire.Rows:
    """``count`` parsed COPY rows: a bigint id, its NULL flag and 20 float8 fields."""
    layout = [
        ("n", ">i2"),
        ("id_len", ">i4"),
        ("id", ">i8"),
        ("flag_len", ">i4"),
        ("null_id", "u1"),
    ]
    layout += [x for i in range(FEATURES) for x in ((f"len{i}", ">i4"), (f"f{i}", ">f8"))]
    data = np.zeros(count, np.dtype(layout))
    data["n"], data["id_len"], data["id"], data["flag_len"] = 2 + FEATURES, 8, np.arange(count), 1
    rng = np.random.default_rng(0)
    for i in range(FEATURES):
        data[f"len{i}"], data[f"f{i}"] = 8, rng.random(count) * 100
    names = ["id", "null_id", *(f"f{i}" for i in range(FEATURES))]
    fields = data.dtype.fields
    assert fields is not None
    fixed = np.dtype(
        {
            "names": names,
            "formats": [fields[name][0] for name in names],
            "offsets": [int(fields[name][1]) for name in names],
            "itemsize": data.dtype.itemsize,
        }
    )
    return wire.Rows(data.view(fixed), ())


def plan(dtype: Precision) -> FeaturePlan:
    """A plan of 20 numeric inputs declared ``double``, parsed into ``dtype``."""
    names = tuple(f"x{i}" for i in range(FEATURES))
    fixed = (("id", ">i8"), ("null_id", "u1"), *((f"f{i}", ">f8") for i in range(FEATURES)))
    inputs = tuple(ModelInput(name, "number", "double") for name in names)
    base = FeaturePlan(
        Relation(None, "t"), "id", "bigint", inputs, Snapshot("", ""), wire.RowLayout(fixed), "",
        (), names, (),
    )  # fmt: skip
    return replace(base, dtype=dtype)


def main() -> None:
    """Print each dtype's median CPU µs per row, and float64 against float32."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=500_000)
    parser.add_argument("--repeat", type=int, default=7)
    options = parser.parse_args()
    parsed = rows(options.rows)
    seconds: dict[str, list[float]] = {"float32": [], "float64": []}
    for _ in range(options.repeat):
        for name, dtype in (("float32", np.float32), ("float64", np.float64)):
            start = time.process_time()
            features.to_chunk(parsed, plan(dtype))
            seconds[name].append(time.process_time() - start)
    medians = {name: statistics.median(values) for name, values in seconds.items()}
    for name, median in medians.items():
        print(
            f"{name}: {median * 1e6 / options.rows:.3f} CPU µs per row (median of {options.repeat})"
        )
    print(f"float64 / float32: {medians['float64'] / medians['float32']:.2f}")


if __name__ == "__main__":
    main()
