"""Path contributions (Saabas) of a tree ensemble: each input's share of a row's margin, read off
the path the row takes through every tree.

Each node of a tree has a value: a leaf its output, an inner node the mean of its leaves'
outputs (xgboost weighs them by cover, lightgbm records its own ``internal_value``). Along a
row's path from the root to its leaf, every split moves the value from the node's to the
child's; that move is the split input's contribution, and the root's value is the tree's bias.
Per tree the contributions and the bias sum to the leaf's output, so over the ensemble they sum
to the margin the model predicts. xgboost's ``pred_contribs`` with ``approx_contribs=True``
computes the same values; TreeSHAP's (exact Shapley values) cost trees x leaves x depth^2 per
row, these trees x depth.

All of this depends on the leaf alone, so ``LeafTable`` holds, per leaf of every tree, its path's
contributions, built once per model from the model's own dump. Per row the library gives the
leaf it reaches in each tree (``pred_leaf``), and the row's contributions are the sum of those
leaves' rows of the table: one sparse product per chunk.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import scipy.sparse

from scorer.errors import ConfigError

DENSE_BYTES = 64 * 2**20
"""A table up to this size is held dense (the faster product); a larger one sparse, so a model
of thousands of deep trees needs memory in its leaves x depth only."""

Node = Mapping[str, Any]


@dataclass(frozen=True)
class LeafTable:
    """Per leaf of every tree, its path's contributions: ``classes`` blocks of ``inputs + 1``
    columns (each input's contribution to that class's margin, the bias last)."""

    matrix: npt.NDArray[np.float64] | scipy.sparse.csr_array
    offsets: npt.NDArray[np.int64]  # per tree, the row of its leaf 0
    base: npt.NDArray[np.float64]  # per column, added to every row: the model's base margin

    def contributions(self, leaves: npt.NDArray[Any]) -> npt.NDArray[np.float64]:
        """Per row, the sum of the rows of the leaves it reached (``leaves``: rows x trees, as
        the library's ``pred_leaf`` gives them)."""
        rows, trees = leaves.shape
        index = (leaves.astype(np.int64) + self.offsets).ravel()
        reached = scipy.sparse.csr_array(
            (np.ones(index.size), index, np.arange(0, index.size + 1, trees)),
            shape=(rows, self.matrix.shape[0]),
        )
        found = reached @ self.matrix
        dense = found.toarray() if scipy.sparse.issparse(found) else np.asarray(found)
        return dense + self.base


@dataclass(frozen=True)
class _Tree:
    """One tree as the table needs it: its root, its class, and how its leaves are numbered."""

    root: Node
    group: int  # the class whose margin it adds to
    size: int  # leaf numbers are 0 .. size - 1


def _xgboost_trees(booster: Any, classes: int, parallel: int) -> Iterator[_Tree]:
    per_round = classes * parallel
    for number, text in enumerate(booster.get_dump(dump_format="json", with_stats=True)):
        root = json.loads(text)
        size = 1 + max(node["nodeid"] for node in _nodes(root))
        yield _Tree(root, (number % per_round) // parallel, size)


def _lightgbm_trees(dump: Mapping[str, Any]) -> Iterator[_Tree]:
    groups = int(dump["num_tree_per_iteration"])
    for number, info in enumerate(dump["tree_info"]):
        yield _Tree(info["tree_structure"], number % groups, max(1, int(info["num_leaves"])))


def _nodes(node: Node) -> Iterator[Node]:
    """An xgboost tree's nodes."""
    yield node
    for child in node.get("children", ()):
        yield from _nodes(child)


@dataclass(frozen=True)
class _Reader:
    """How one library's dump tells a node's value, its split's input column, its children,
    and its leaf number (None for an inner node)."""

    value: Callable[[Node], float]
    split: Callable[[Node], int]
    children: Callable[[Node], Sequence[Node]]
    leaf: Callable[[Node], int | None]


def _build(
    trees: list[_Tree], inputs: int, classes: int, read: _Reader
) -> tuple[npt.NDArray[np.float64] | scipy.sparse.csr_array, npt.NDArray[np.int64]]:
    """The table's matrix and each tree's first row."""
    width = classes * (inputs + 1)
    offsets = np.cumsum([0, *(tree.size for tree in trees[:-1])], dtype=np.int64)
    rows: list[int] = []
    columns: list[int] = []
    values: list[float] = []
    for tree, offset in zip(trees, offsets.tolist(), strict=True):
        block = tree.group * (inputs + 1)
        stack: list[tuple[Node, dict[int, float]]] = [
            (tree.root, {block + inputs: read.value(tree.root)})
        ]
        while stack:
            node, path = stack.pop()
            number = read.leaf(node)
            if number is not None:
                rows.extend([offset + number] * len(path))
                columns.extend(path)
                values.extend(path.values())
                continue
            column, here = block + read.split(node), read.value(node)
            for child in read.children(node):
                moved = dict(path)
                moved[column] = moved.get(column, 0.0) + read.value(child) - here
                stack.append((child, moved))
    shape = (int(offsets[-1]) + trees[-1].size, width)
    matrix = scipy.sparse.csr_array((values, (rows, columns)), shape=shape)
    if shape[0] * shape[1] * 8 <= DENSE_BYTES:
        return matrix.toarray(), offsets
    return matrix, offsets


def xgboost_learner(booster: Any) -> dict[str, Any]:
    """An xgboost booster's learner configuration, refused unless the booster is ``gbtree``:
    only a plain tree model's paths add up to its margin."""
    learner: dict[str, Any] = json.loads(booster.save_config())["learner"]
    kind = learner["gradient_booster"]["name"]
    if kind != "gbtree":
        raise ConfigError(
            f"SCORER_REASONS needs a tree model's paths; this xgboost model's booster is {kind}:"
            " unset SCORER_REASONS (or set it to 0) for this model"
        )
    return learner


def xgboost_table(booster: Any, margin: Any, leaves: Any) -> LeafTable:
    """The table of an xgboost booster (gbtree), whose inner nodes' values are their leaves'
    outputs weighed by cover, as xgboost's own ``approx_contribs``. ``margin`` and ``leaves``
    give the booster's base margin: they predict one row (all inputs missing)."""
    learner = xgboost_learner(booster)
    classes = max(1, int(learner["learner_model_param"]["num_class"]))
    parallel = int(learner["gradient_booster"]["gbtree_model_param"]["num_parallel_tree"])
    trees = list(_xgboost_trees(booster, classes, max(1, parallel)))
    names = booster.feature_names
    column = {name: i for i, name in enumerate(names)} if names else {}
    means: dict[int, float] = {}

    def mean(node: Node) -> float:
        if "leaf" in node:
            return float(node["leaf"])
        key = id(node)
        if key not in means:
            total = sum(mean(child) * float(child["cover"]) for child in node["children"])
            means[key] = total / float(node["cover"])
        return means[key]

    def split(node: Node) -> int:
        name = node["split"]
        return column[name] if column else int(name.removeprefix("f"))

    inputs = booster.num_features()
    read = _Reader(
        mean,
        split,
        lambda node: node["children"],
        lambda node: node["nodeid"] if "leaf" in node else None,
    )
    matrix, offsets = _build(trees, inputs, classes, read)
    return _with_base(LeafTable(matrix, offsets, np.zeros(matrix.shape[1])), margin, leaves)


def lightgbm_table(booster: Any, margin: Any, leaves: Any) -> LeafTable:
    """The table of a lightgbm booster, from its dump's ``internal_value`` of inner nodes.
    ``margin`` and ``leaves`` predict one row (all inputs missing), as for xgboost."""
    dump = booster.dump_model()
    linear = any(info.get("is_linear") for info in dump["tree_info"])
    if dump.get("average_output") or linear:
        what = "averages its trees (random forest)" if not linear else "has linear leaves"
        raise ConfigError(
            f"SCORER_REASONS needs trees whose leaf outputs add up; this lightgbm model {what}:"
            " unset SCORER_REASONS (or set it to 0) for this model"
        )
    trees = list(_lightgbm_trees(dump))
    classes = int(dump["num_tree_per_iteration"])

    def value(node: Node) -> float:
        return float(node["leaf_value"] if "leaf_value" in node else node["internal_value"])

    read = _Reader(
        value,
        lambda node: int(node["split_feature"]),
        lambda node: (node["left_child"], node["right_child"]),
        lambda node: int(node.get("leaf_index", 0)) if "leaf_value" in node else None,
    )
    matrix, offsets = _build(trees, int(dump["max_feature_idx"]) + 1, classes, read)
    return _with_base(LeafTable(matrix, offsets, np.zeros(matrix.shape[1])), margin, leaves)


def _with_base(table: LeafTable, margin: Any, leaves: Any) -> LeafTable:
    """The table with the model's base margin (xgboost's ``base_score``; lightgbm's is in its
    trees) in each class's bias: what the probe row's margin has beyond its leaves' sum."""
    found = np.asarray(margin, dtype=np.float64).reshape(1, -1)
    summed = table.contributions(np.asarray(leaves).reshape(1, -1))
    classes = found.shape[1]
    width = table.matrix.shape[1] // classes
    base = np.zeros(table.matrix.shape[1])
    for group in range(classes):
        block = summed[0, group * width : (group + 1) * width]
        base[(group + 1) * width - 1] = found[0, group] - block.sum()
    return LeafTable(table.matrix, table.offsets, base)
