"""Split thresholds read from each library's own model dump, and feature rows that sit on them.

A tree model's score jumps where a feature crosses one of its split thresholds, so rows
holding a feature exactly at a threshold, and at the nearest values its column's type holds
on either side, are where a scorer that rounds features (to float32, to whole seconds) takes
the other branch. Each such row also reaches its split: its other features are those of a
training row that meets every decision on the path from the tree's root.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import Any

import numpy as np
import pandas as pd

PLANS = ("basic", "plus", "premium", "family")
CENT = Decimal("0.01")


@dataclass(frozen=True)
class Node:
    """A tree's inner node: ``feature`` against ``threshold`` (numeric), or in ``left_set``."""

    feature: str
    threshold: float
    left: int
    right: int
    left_set: frozenset[str] | None = None  # categories sent left, for a categorical split


@dataclass(frozen=True)
class Decision:
    """One decision on the way to a split: which branch of ``node`` was taken."""

    node: Node
    went_left: bool

    def holds(self, frame: pd.DataFrame) -> pd.Series[bool]:
        """The rows that take this branch whatever the tie rule (strictly inside it)."""
        values = frame[self.node.feature]
        if self.node.left_set is not None:
            return values.isin(self.node.left_set) == self.went_left
        return values < self.node.threshold if self.went_left else values > self.node.threshold


@dataclass(frozen=True)
class Split:
    """A numeric split and the decisions that lead to it (none in an oblivious tree)."""

    feature: str
    threshold: float
    path: tuple[Decision, ...] = ()


def _walk(nodes: Mapping[int, Node], root: int = 0) -> Iterator[Split]:
    """Every numeric split of one tree, with its path; ``nodes`` holds inner nodes only."""
    pending: list[tuple[int, tuple[Decision, ...]]] = [(root, ())]
    while pending:
        at, path = pending.pop()
        node = nodes.get(at)
        if node is None:  # a leaf
            continue
        if node.left_set is None:
            yield Split(node.feature, node.threshold, path)
        pending.append((node.left, (*path, Decision(node, went_left=True))))
        pending.append((node.right, (*path, Decision(node, went_left=False))))


def xgboost_splits(booster: Any) -> list[Split]:
    """From the booster's JSON model (float32 thresholds, ``x < threshold`` goes left)."""
    names = list(booster.feature_names)
    model = json.loads(booster.save_raw("json"))["learner"]["gradient_booster"]["model"]
    splits: list[Split] = []
    for tree in model["trees"]:
        nodes = {
            index: Node(names[feature], float(threshold), left, right)
            for index, (feature, threshold, left, right) in enumerate(
                zip(
                    tree["split_indices"],
                    tree["split_conditions"],
                    tree["left_children"],
                    tree["right_children"],
                    strict=True,
                )
            )
            if left != -1
        }
        splits += _walk(nodes)
    return splits


def lightgbm_splits(booster: Any) -> list[Split]:
    """From ``dump_model()`` (float64 thresholds, ``x <= threshold`` goes left)."""
    dump = booster.dump_model()
    names = dump["feature_names"]
    splits: list[Split] = []
    for tree in dump["tree_info"]:
        nodes: dict[int, Node] = {}

        def number(node: dict[str, Any], nodes: dict[int, Node] = nodes) -> int:
            """Number the inner nodes depth-first; leaves get -1."""
            if "split_index" not in node:
                return -1
            at = len(nodes)
            nodes[at] = Node("", 0.0, -1, -1)  # reserve the number
            assert node["decision_type"] == "<=", node["decision_type"]
            left, right = number(node["left_child"]), number(node["right_child"])
            nodes[at] = Node(names[node["split_feature"]], float(node["threshold"]), left, right)
            return at

        number(tree["tree_structure"])
        splits += _walk(nodes)
    return splits


def histogram_splits(model: Any, categories: Mapping[str, Sequence[str]]) -> list[Split]:
    """From a ``HistGradientBoostingClassifier``'s predictors (float64 thresholds,
    ``x <= threshold`` goes left). A categorical feature's values are the codes of
    ``categories[name]`` (an ``OrdinalEncoder``'s, in its order)."""
    names = list(model.feature_names_in_)
    splits: list[Split] = []
    for (predictor,) in model._predictors:  # binary: one tree per iteration
        nodes: dict[int, Node] = {}
        for index, node in enumerate(predictor.nodes):
            if node["is_leaf"]:
                continue
            name = names[node["feature_idx"]]
            left_set = None
            if node["is_categorical"]:
                bits = predictor.raw_left_cat_bitsets[node["bitset_idx"]]
                left_set = frozenset(
                    value
                    for code, value in enumerate(categories[name])
                    if bits[code // 32] >> (code % 32) & 1
                )
            nodes[index] = Node(
                name, float(node["num_threshold"]), int(node["left"]), int(node["right"]), left_set
            )
        splits += _walk(nodes)
    return splits


def catboost_splits(model: Any) -> list[Split]:
    """From ``get_borders()``: oblivious trees evaluate every split, so no path is needed
    (float32 borders, ``x > border`` goes right)."""
    names = list(model.feature_names_)
    return [
        Split(names[feature], float(border))
        for feature, borders in model.get_borders().items()
        for border in borders
    ]


Neighbours = Callable[[float], list[float]]


def around_float8(threshold: float) -> list[float]:
    """The threshold and the float64 values next to it."""
    return [
        float(np.nextafter(threshold, -np.inf)),
        threshold,
        float(np.nextafter(threshold, np.inf)),
    ]


def around_cents(threshold: float) -> list[float]:
    """The two-decimal values at and around the threshold (what ``numeric(10,2)`` holds)."""
    exact = Decimal(threshold)
    below = exact.quantize(CENT, rounding=ROUND_FLOOR)
    above = exact.quantize(CENT, rounding=ROUND_CEILING)
    return sorted({float(v) for v in (below - CENT, below, above, above + CENT)})


def around_micros(threshold: float) -> list[float]:
    """The whole microseconds at and around the threshold (what ``timestamptz`` holds)."""
    below, above = math.floor(threshold), math.ceil(threshold)
    return [float(v) for v in sorted({below - 1, below, above, above + 1})]


def rows_on(
    splits: Sequence[Split],
    training: pd.DataFrame,
    neighbours: Mapping[str, Neighbours],
    seed: int,
) -> pd.DataFrame:
    """For each distinct split, a training row that reaches it, once per neighbour value of
    its threshold in the split feature. Splits no training row reaches strictly are left out.
    """
    rng = np.random.default_rng(seed)
    rows: list[pd.Series[Any]] = []
    seen: set[tuple[str, float, tuple[Decision, ...]]] = set()
    for split in splits:
        key = (split.feature, split.threshold, split.path)
        if key in seen:
            continue
        seen.add(key)
        reaching = np.ones(len(training), dtype=bool)
        for decision in split.path:
            reaching &= decision.holds(training).to_numpy()
        candidates = np.flatnonzero(reaching)
        if candidates.size == 0:
            continue
        base = training.iloc[int(rng.choice(candidates))]
        for value in neighbours[split.feature](split.threshold):
            row = base.copy()
            row[split.feature] = value
            rows.append(row)
    return pd.DataFrame(rows).reset_index(drop=True).astype(training.dtypes.to_dict())


def accounts(rows: int, seed: int) -> pd.DataFrame:
    """Synthetic accounts in the models' own feature space (``last_seen`` in epoch
    microseconds), with a ``churned`` label that depends on every feature."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "usage": rng.gamma(2.0, 10.0, rows),  # any float8
            "monthly_charges": rng.uniform(15, 150, rows).round(2),  # numeric(10,2)
            "signup_epoch": rng.uniform(1.75e9, 1.85e9, rows),  # float32 steps by 128 s here
            "magnitude": 10 ** rng.uniform(37.5, 39.5, rows),  # partly beyond float32
            "plan": rng.choice(PLANS, rows),
            "last_seen": 1.8e15 + rng.integers(-5 * 10**12, 5 * 10**12, rows).astype(np.float64),
        }
    )
    logit = (
        (frame.usage - 20) / 10
        + (frame.monthly_charges - 80) / 30
        + (frame.signup_epoch - 1.8e9) / 2.5e7
        + (np.log10(frame.magnitude) - 38.5) * 1.5
        + frame.plan.map({"basic": -0.5, "plus": 0.3, "premium": 0.8, "family": -0.2})
        + (frame.last_seen - 1.8e15) / 2.5e12
    )
    frame["churned"] = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(np.int8)
    return frame
