"""Per-feature drift's arithmetic: quantile bins, streamed counts, category shares and PSI."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest

from scorer.io.features import Chunk, FeaturePlan, ModelInput, Snapshot
from scorer.postgres import wire
from scorer.postgres.identifiers import Relation
from scorer.run import drift, gate

CONTRACTS = ("Month-to-month", "One year", "Two year")


def plan(numbers: tuple[str, ...], strings: tuple[str, ...] = ()) -> FeaturePlan:
    inputs = tuple(ModelInput(name, "number", "double") for name in numbers) + tuple(
        ModelInput(name, "string", "string") for name in strings
    )
    layout = wire.RowLayout((("id", ">i8"),))
    return FeaturePlan(
        Relation(None, "t"), "id", "bigint", inputs, Snapshot("", ""), layout, "", (), numbers,
        strings,
    )  # fmt: skip


def texts(values: list[str | None]) -> wire.Texts:
    encoded = np.array([(value or "").encode() for value in values], dtype=np.bytes_)
    return wire.Texts(encoded, np.array([value is None for value in values]))


def chunk(numbers: np.ndarray, strings: dict[str, wire.Texts] | None = None) -> Chunk:
    rows = numbers.shape[0]
    nulls = dict(zip(("x", "y"), np.isnan(numbers).sum(axis=0).tolist(), strict=False))
    return Chunk(np.arange(rows), numbers, strings or {}, rows, Counter(), nulls)


def test_psi_is_the_textbook_formula_with_empty_bins_floored() -> None:
    expected = np.array([0.5, 0.3, 0.2])
    actual = np.array([0.4, 0.4, 0.2])
    textbook = 0.1 * np.log(0.4 / 0.5) * -1 + 0.1 * np.log(0.4 / 0.3)
    assert drift.psi(expected, actual) == pytest.approx(textbook)
    assert drift.psi(expected, expected) == 0.0
    floored = drift.psi(np.array([1.0, 0.0]), np.array([0.5, 0.5]))
    assert floored == pytest.approx(-0.5 * np.log(0.5) + (0.5 - 1e-4) * np.log(0.5 / 1e-4))


def test_edges_sit_halfway_between_distinct_values_with_their_shares() -> None:
    bins = drift.quantile_bins(np.arange(1000, dtype=np.float64))
    assert bins is not None
    assert bins.edges.tolist() == [0.5, *(99.5 + 100 * i for i in range(9)), 998.5]
    assert bins.shares.tolist() == pytest.approx([0.001, 0.099, *[0.1] * 8, 0.099, 0.001])


def test_a_new_default_below_the_reference_range_fails() -> None:
    rng = np.random.default_rng(4)
    first = drift.Collector(plan(("x",)), {}, None, None)
    first.add(chunk(rng.uniform(18, 120, (100_000, 1))))
    second = drift.Collector(plan(("x",)), {}, first.bins(), "first")
    night = rng.uniform(18, 120, (100_000, 1))
    night[::10] = 0.0  # one row in ten takes an upstream default
    second.add(chunk(night))
    assert second.figures().psi["x"] > 0.2


def test_repeated_values_give_fewer_bins_with_their_true_shares() -> None:
    binary = np.array([0.0] * 70 + [1.0] * 30 + [np.nan] * 50)
    bins = drift.quantile_bins(binary)
    assert bins is not None
    assert bins.edges.tolist() == [0.5]
    assert bins.shares.tolist() == pytest.approx([0.7, 0.3])
    constant = drift.quantile_bins(np.full(10, 3.0))
    assert constant is not None
    assert constant.edges.size == 0
    assert constant.shares.tolist() == [1.0]
    assert drift.quantile_bins(np.array([np.nan])) is None


def test_streamed_counts_equal_a_histogram_over_the_reference_edges() -> None:
    rng = np.random.default_rng(0)
    edges = np.array([0.2, 0.5, 0.9])
    reference = drift.Bins({"x": drift.NumericBins(edges, np.array([0.2, 0.3, 0.4, 0.1]))})
    collector = drift.Collector(plan(("x",)), {}, reference, "ref")
    values = rng.random(5000)
    values[::7] = np.nan
    for part in np.array_split(values, 4):
        collector.add(chunk(part.reshape(-1, 1)))
    present = values[~np.isnan(values)]
    counts = np.histogram(present, np.concatenate(([-np.inf], edges, [np.inf])))[0]
    expected_psi = drift.psi(np.array([0.2, 0.3, 0.4, 0.1]), counts / present.size)
    figures = collector.figures()
    assert figures.reference_run_id == "ref"
    assert figures.psi["x"] == pytest.approx(expected_psi, abs=1e-6)


def test_noise_stays_low_and_a_shifted_column_stands_out() -> None:
    rng = np.random.default_rng(1)
    first = drift.Collector(plan(("x", "y")), {}, None, None)
    first.add(chunk(np.column_stack((rng.normal(50, 10, 100_000), rng.random(100_000)))))
    bins = first.bins()
    assert set(bins.numeric) == {"x", "y"}
    second = drift.Collector(plan(("x", "y")), {}, bins, "first")
    night = np.column_stack((rng.normal(50, 10, 100_000) * 1.1, rng.random(100_000)))
    second.add(chunk(night))
    figures = second.figures()
    assert figures.psi["y"] < 0.01
    assert figures.psi["x"] > 0.1


def test_the_sample_is_uniform_over_chunks_of_any_size() -> None:
    sample = drift._Sample(1000)
    for start in range(0, 100_000, 7_000):
        stop = min(start + 7_000, 100_000)
        sample.add(np.arange(start, stop, dtype=np.float64).reshape(-1, 1))
    assert sample.rows is not None
    assert sample.rows.shape == (1000, 1)
    assert np.unique(sample.rows).size == 1000
    assert abs(float(np.median(sample.rows)) - 50_000) < 5_000


def test_categories_the_model_does_not_know_count_as_other_and_null_in_none() -> None:
    collector = drift.Collector(plan((), ("contract",)), {"contract": CONTRACTS}, None, None)
    values = ["Month-to-month"] * 5 + ["One year"] * 2 + ["Two year", "Weekly", None, None]
    collector.add(chunk(np.empty((11, 0)), {"contract": texts(values)}))
    shares = collector.bins().categorical["contract"]
    assert shares.categories == pytest.approx(
        {"Month-to-month": 5 / 9, "One year": 2 / 9, "Two year": 1 / 9}
    )
    assert shares.other == pytest.approx(1 / 9)


def test_categories_only_one_model_knows_are_compared_inside_other() -> None:
    before = drift.CategoryShares({"a": 0.5, "b": 0.3, "c": 0.2}, 0.0)
    after = drift.CategoryShares({"a": 0.5, "b": 0.3, "d": 0.1}, 0.1)
    expected, actual = before.against(after)
    assert expected.tolist() == pytest.approx([0.5, 0.3, 0.2])
    assert actual.tolist() == pytest.approx([0.5, 0.3, 0.2])


def test_a_categorical_shift_fails_the_gate_naming_the_feature_with_its_psi() -> None:
    shares = {"Month-to-month": 0.55, "One year": 0.25, "Two year": 0.2}
    reference_bins = drift.Bins(categorical={"contract": drift.CategoryShares(shares, 0.0)})
    known = {"contract": CONTRACTS}
    collector = drift.Collector(plan((), ("contract",)), known, reference_bins, "r")
    values: list[str | None] = ["Month-to-month"] * 20 + ["One year"] * 40 + ["Two year"] * 40
    collector.add(chunk(np.empty((100, 0)), {"contract": texts(values)}))
    reference = gate.Reference("r", 100, None, {}, reference_bins)
    observed = gate.Observed(100, None, {}, collector.figures())
    limits = gate.Limits(0.25, 0.8, 0.2, max_feature_psi=0.2)
    verdict = gate.evaluate(reference, observed, limits, None)
    (failed,) = verdict.failed
    assert failed.check == "feature_psi:contract"
    assert failed.describe().startswith("feature_psi:contract 0.")


def test_bins_survive_the_run_row_and_record_no_other_value() -> None:
    rng = np.random.default_rng(2)
    collector = drift.Collector(plan(("x",), ("contract",)), {"contract": CONTRACTS}, None, None)
    values = rng.integers(0, 1000, 50_000).astype(np.float64)
    contracts = texts(list(rng.choice(["Two year", "secret-value"], 50_000)))
    collector.add(chunk(values.reshape(-1, 1), {"contract": contracts}))
    recorded = collector.bins().as_json()
    assert "secret-value" not in repr(recorded)
    edges = recorded["numeric"]["x"]["edges"]
    assert all(edge % 1 == 0.5 for edge in edges)  # midpoints: no value of the column itself
    again = drift.Bins.from_json(recorded)
    assert again.numeric["x"].edges.tolist() == edges
    assert again.categorical["contract"].other == pytest.approx(0.5, abs=0.01)


def test_features_without_reference_bins_are_named_as_unchecked() -> None:
    collector = drift.Collector(plan(("x",), ("s",)), {}, drift.Bins(), "r")
    collector.add(chunk(np.ones((3, 1)), {"s": texts(["a", "b", None])}))
    figures = collector.figures()
    assert figures.psi == {}
    assert set(figures.unchecked) == {"x", "s"}


def test_many_categories_are_counted_exactly_as_few_are() -> None:
    names = (*(f"category {index}" for index in range(40)), "")
    rng = np.random.default_rng(3)
    values: list[str | None] = list(rng.choice([*names, "unknown one", "x" * 30], 5_000))
    values[::11] = [None] * len(values[::11])
    collector = drift.Collector(plan((), ("c",)), {"c": names}, None, None)
    for start in range(0, 5_000, 1_000):
        collector.add(chunk(np.empty((1_000, 0)), {"c": texts(values[start : start + 1_000])}))
    shares = collector.bins().categorical["c"]
    present = [value for value in values if value is not None]
    expected = {name: present.count(name) / len(present) for name in names}
    assert shares.categories == pytest.approx(expected)
    unknown = sum(value not in names for value in present)
    assert shares.other == pytest.approx(unknown / len(present))


def test_shards_evidence_sums_to_the_single_runs_psi_and_survives_its_row() -> None:
    rng = np.random.default_rng(5)
    first = drift.Collector(plan(("x",), ("contract",)), {"contract": CONTRACTS}, None, None)
    first.add(chunk(rng.normal(50, 10, (20_000, 1)), {"contract": texts(["One year"] * 20_000)}))
    reference = first.bins()
    values = np.sort(rng.normal(53, 10, 30_000)).reshape(-1, 1)  # ranges of ids follow x
    contracts = list(rng.choice(CONTRACTS, 30_000))

    def collect(start: int, stop: int) -> drift.Collector:
        found = drift.Collector(
            plan(("x",), ("contract",)), {"contract": CONTRACTS}, reference, "r"
        )
        found.add(chunk(values[start:stop], {"contract": texts(contracts[start:stop])}))
        return found

    single = collect(0, 30_000)
    parts = [collect(start, start + 10_000).evidence() for start in (0, 10_000, 20_000)]
    recorded = [drift.Evidence.from_json(json.loads(json.dumps(p.as_json()))) for p in parts]
    merged = drift.Evidence.merge(recorded)
    assert merged.figures(reference, ("x",), ("contract",)) == single.figures()
    bins = merged.bins()
    # The whole run's exact shares over the reference's edges, not the lowest shard's sample.
    assert bins.numeric["x"].edges.tolist() == reference.numeric["x"].edges.tolist()
    present = np.histogram(
        values, np.concatenate(([-np.inf], reference.numeric["x"].edges, [np.inf]))
    )[0]
    assert bins.numeric["x"].shares.tolist() == pytest.approx((present / 30_000).tolist())
    assert bins.categorical == single.bins().categorical


def test_without_reference_bins_a_sharded_run_keeps_its_lowest_shards_sample() -> None:
    rng = np.random.default_rng(6)
    parts = []
    for offset in (0.0, 100.0):
        collector = drift.Collector(plan(("x",)), {}, None, None)
        collector.add(chunk(rng.normal(offset, 1, (5_000, 1))))
        parts.append(collector.evidence())
    merged = drift.Evidence.merge(parts)
    assert merged.reference_run_id is None
    assert merged.bins().numeric["x"] == parts[0].sample["x"]
    assert merged.figures(None, ("x",), ()) == drift.Figures(None, {}, {})


def test_a_shards_evidence_records_no_sampled_value() -> None:
    rng = np.random.default_rng(7)
    values = rng.integers(0, 1000, 10_000).astype(np.float64)
    reference = drift.Bins(
        {"x": drift.NumericBins(np.array([250.5, 500.5]), np.array([0.25, 0.25, 0.5]))}
    )
    collector = drift.Collector(plan(("x",)), {}, reference, "r")
    collector.add(chunk(values.reshape(-1, 1)))
    recorded = collector.evidence().as_json()
    assert set(recorded) == {"reference_run_id", "numeric", "categorical", "sample"}
    floats = [*recorded["sample"]["x"]["edges"], *recorded["numeric"]["x"]["edges"]]
    assert all(edge % 1 == 0.5 for edge in floats)  # midpoints: no value of the column
    assert sum(recorded["numeric"]["x"]["counts"]) == 10_000
