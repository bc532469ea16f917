"""The path contributions of an xgboost model given one matrix, by a compiled walk of its trees
(``_walk.c``): the same values as ``tree_paths.LeafTable`` from the library's ``pred_leaf``, at
about a third of the cost (``benchmarks/RESULTS.md``).

xgboost's ``pred_leaf`` takes one row down one tree at a time, so every step waits on the last
one's branch; it costs about three times the scores' ``inplace_predict`` before a single
contribution is added. Here each tree takes a block of rows down a level at a time, adding
each step's move (the child's value less its parent's, charged to the parent's split input) as
it passes; the roots' values are in the bias. The walk follows xgboost's own decisions
(``predict_fn.h``, ``categorical.h``) on the float32 the library converts every input to:

- a missing input (NaN) takes the node's default child;
- a number goes left when it is less than the split condition, else right;
- a category goes right when it is in the node's set; an unlisted, negative or too large one
  (2^24 and above) goes left.

The forest is read once per model from xgboost's JSON model, whose float32 split conditions are
the library's own (its text dump rounds them).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from scorer import compiled

Ints = npt.NDArray[np.int32]
SPLIT = np.dtype(
    [
        ("left", np.int32),
        ("right", np.int32),
        ("feature", np.int32),
        ("column", np.int32),
        ("threshold", np.float32),
        ("default_right", np.uint8),
        ("categorical", np.uint8),
        ("left_delta", np.float64),
        ("right_delta", np.float64),
    ],
    align=True,
)
"""A node as the walk reads it, in one record (``Split`` in ``_walk.c``): its children, its
split (input, condition, default direction, whether categorical), and the move to each child
(the child's value less its own) with the output column both are charged to (its split
input's)."""


@dataclass(frozen=True)
class Forest:
    """An xgboost forest's nodes as ``SPLIT`` records, numbered across trees. A leaf's children
    are itself, by moves of nil, so a walk of its tree's ``depth`` steps takes every row to its
    leaf and charges each move on the way once. The roots' values are in ``base``."""

    splits: npt.NDArray[np.void]
    roots: Ints
    depth: Ints  # per tree, its longest path's splits
    category_start: npt.NDArray[np.int64]  # per node, and one more: where its set's words start
    category_words: npt.NDArray[np.uint32]  # a categorical node's set, 32 categories a word
    base: npt.NDArray[np.float64]  # per output column, what every row starts from
    inputs: int

    def walk(self, rows: npt.NDArray[Any]) -> npt.NDArray[np.float64]:
        """Per row (inputs in the booster's order), its contributions: ``classes`` blocks of
        ``inputs + 1`` columns, each input's contribution to that class's margin, the bias
        last."""
        x = np.ascontiguousarray(rows, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != self.inputs:
            raise ValueError(f"the walk takes rows of {self.inputs} inputs, not {x.shape}")
        out = np.empty((x.shape[0], self.base.size), dtype=np.float64)
        compiled.library().scorer_walk(
            x.ctypes.data,
            x.shape[0],
            x.shape[1],
            self.splits.ctypes.data,
            self.roots.ctypes.data,
            self.depth.ctypes.data,
            self.roots.size,
            self.category_start.ctypes.data,
            self.category_words.ctypes.data,
            self.base.ctypes.data,
            self.base.size,
            out.ctypes.data,
        )
        return out


def xgboost(booster: Any, classes: int, margin: Any) -> Forest:
    """The forest of an xgboost booster (gbtree) of ``classes`` output groups. An inner node's
    value is its leaves' outputs weighed by cover, as xgboost's own ``approx_contribs``.
    ``margin`` gives the booster's base margin: its prediction for one row, all inputs missing.
    """
    model = json.loads(bytes(booster.save_raw("json")))["learner"]["gradient_booster"]["model"]
    trees: list[dict[str, Any]] = model["trees"]
    sizes = np.array([len(tree["left_children"]) for tree in trees], dtype=np.int32)
    roots = np.concatenate([[0], np.cumsum(sizes[:-1])]).astype(np.int32)

    def joined(key: str, dtype: type[np.generic]) -> npt.NDArray[Any]:
        return np.concatenate([np.asarray(tree[key], dtype=dtype) for tree in trees])

    shift = np.repeat(roots, sizes)
    leaf = joined("left_children", np.int32) < 0
    left = np.where(leaf, -1, joined("left_children", np.int32) + shift)
    right = np.where(leaf, -1, joined("right_children", np.int32) + shift)
    level = _levels(roots, left, right)
    value = _cover_means(
        joined("split_conditions", np.float64),
        joined("sum_hessian", np.float64),
        left,
        right,
        level,
    )
    feature = np.where(leaf, 0, joined("split_indices", np.int32))
    group = np.repeat(np.asarray(model["tree_info"], dtype=np.int32), sizes)
    inputs = booster.num_features()
    itself = np.arange(leaf.size, dtype=np.int32)
    splits = np.zeros(leaf.size, dtype=SPLIT)
    splits["left"] = np.where(leaf, itself, left)
    splits["right"] = np.where(leaf, itself, right)
    splits["feature"] = feature
    splits["column"] = group * (inputs + 1) + np.where(leaf, inputs, feature)
    splits["left_delta"] = value[splits["left"]] - value  # a leaf's: nil
    splits["right_delta"] = value[splits["right"]] - value
    splits["threshold"] = joined("split_conditions", np.float32)
    splits["default_right"] = ~joined("default_left", np.bool_)
    splits["categorical"] = ~leaf & (joined("split_type", np.int32) == 1)
    depth = np.maximum.reduceat(level, roots).astype(np.int32)
    start, words = _category_sets(trees, roots, leaf.size)
    width = classes * (inputs + 1)
    forest = Forest(splits, roots, depth, start, words, np.zeros(width), inputs)
    return _with_base(forest, margin, classes)


def _with_base(forest: Forest, margin: Any, classes: int) -> Forest:
    """The forest with each class's bias: what the probe row's margin has beyond the moves on
    its paths, which is the model's base margin (``base_score``) and its trees' root values."""
    found = np.asarray(margin, dtype=np.float64).reshape(classes)
    summed = forest.walk(np.full((1, forest.inputs), np.nan))[0].reshape(classes, -1)
    base = np.zeros((classes, forest.inputs + 1))
    base[:, -1] = found - summed.sum(axis=1)
    return Forest(
        forest.splits,
        forest.roots,
        forest.depth,
        forest.category_start,
        forest.category_words,
        base.ravel(),
        forest.inputs,
    )


def _levels(roots: Ints, left: Ints, right: Ints) -> Ints:
    """Each node's number of splits above it: all trees a level at a time."""
    level = np.zeros(left.size, dtype=np.int32)
    frontier = roots[left[roots] >= 0]
    depth = 0
    while frontier.size:
        depth += 1
        below = np.concatenate([left[frontier], right[frontier]])
        level[below] = depth
        frontier = below[left[below] >= 0]
    return level


def _cover_means(
    leaf_value: npt.NDArray[np.float64],
    cover: npt.NDArray[np.float64],
    left: Ints,
    right: Ints,
    level: Ints,
) -> npt.NDArray[np.float64]:
    """Each node's value: a leaf's output, an inner node's children's values weighed by their
    cover, from the deepest level up."""
    value = leaf_value.copy()
    for depth in range(int(level.max(initial=0)), -1, -1):
        inner = np.flatnonzero((level == depth) & (left >= 0))
        low, high = left[inner], right[inner]
        value[inner] = (value[low] * cover[low] + value[high] * cover[high]) / cover[inner]
    return value


def _category_sets(
    trees: list[dict[str, Any]], roots: Ints, nodes: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.uint32]]:
    """Each categorical node's set of categories as bits, from the model's lists of them."""
    sets: dict[int, list[int]] = {}
    for tree, root in zip(trees, roots.tolist(), strict=True):
        listed = tree["categories"]
        for node, begin, size in zip(
            tree["categories_nodes"],
            tree["categories_segments"],
            tree["categories_sizes"],
            strict=True,
        ):
            sets[root + int(node)] = [int(c) for c in listed[int(begin) : int(begin) + int(size)]]
    counts = np.zeros(nodes, dtype=np.int64)
    for node, members in sets.items():
        counts[node] = max(members, default=-1) // 32 + 1
    start = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    words = np.zeros(int(start[-1]), dtype=np.uint32)
    for node, members in sets.items():
        for category in members:
            words[start[node] + category // 32] |= np.uint32(1 << (category % 32))
    return start, words
