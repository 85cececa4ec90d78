"""Exact path-dependent TreeSHAP for LightGBM boosters, the Fast TreeSHAP v2 way, in numba.

The values are LightGBM's `pred_contrib` (and shap.TreeExplainer's tree_path_dependent
mode): the same cover-weighted game, computed in another order. Only the cost changes.
LightGBM's recursion costs O(leaves x depth^2) per tree and row; here it is O(nodes +
leaves x depth) per tree and row, after a per-model precomputation of O(leaves x 2^depth)
time and memory (Yang 2021, "Fast TreeSHAP: Accelerating SHAP Value Computation for
Trees", arXiv:2109.09847, algorithm v2).

Why it works. For one leaf with value v, let F be the distinct features split on along its
path; for j in F, z_j is the product of the cover fractions (child count / parent count) of
the path's edges on j, and o_j is 1 when the row follows every one of those edges, else 0.
The leaf's term of the path-dependent expectation is v x prod_{j in S} o_j x prod_{j in F \\ S} z_j
for a known set S, so with A = {j : o_j = 1} and k = |F| its Shapley values are

    i not in A:  phi_i = -P(A) E(A)
    i in A:      phi_i = (1 - z_i) P(A) E(A \\ {i})

where P(A) = v prod_{j in F \\ A} z_j and E(B) = sum_{S subset of B} |S|!(k-|S|-1)!/k! prod_{j in B \\ S} z_j.
Both depend on the leaf and on the subset only, so T(B) = P(B) E(B) is tabulated once per
leaf for all 2^k subsets, and since T(A \\ {i}) = z_i P(A) E(A \\ {i}) a row's terms are
phi_i = -T(A) and phi_i = (1 - z_i) / z_i T(A \\ {i}) (z_i > 0: nodes with no data are refused).
A row then needs only the agreement mask A of every leaf (one pass over the nodes in
preorder) and k table reads per leaf.

Decisions follow LightGBM's `Tree::Decision` on raw values exactly: numeric splits with
missing type None / Zero / NaN and `default_left`; categorical splits go left for the listed
categories only (NaN, negative and out-of-range codes go right, fractions truncate); values
with |x| <= 1e-35 count as 0, as LightGBM's dense-row conversion makes them.

`prepare(booster)` raises `Unsupported` (with the reason) for what this path does not cover:
multiclass and linear-tree models, random-forest averaging, zero counts, and trees whose
tables would exceed the memory budget; the caller then uses `pred_contrib`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# LightGBM's kZeroThreshold (1e-35f) as a double.
ZERO_THRESHOLD = float(np.float32(1e-35))
MAX_UNIQUE = 20  # distinct features on one path: a leaf's table has 2^k entries
DEFAULT_TABLE_BUDGET = 1 << 25  # table entries over the whole model (8 bytes each: 256 MiB)
ALGORITHM = "path-dependent TreeSHAP, Fast TreeSHAP v2 (numba; equals LightGBM pred_contrib)"


class Unsupported(ValueError):
    """The booster is outside what the fast path covers; use `pred_contrib`."""


@dataclass(frozen=True)
class Plan:
    """A booster flattened for the kernels: nodes in preorder per tree, per-leaf path data and tables."""

    num_features: int
    base_value: float
    tree_nodes: np.ndarray  # int64, preorder node range of each tree
    tree_splits: np.ndarray  # int64, range of each tree's internal nodes
    tree_leaves: np.ndarray  # int64, range of each tree's leaves
    max_nodes: int
    parent: np.ndarray  # int32 per node: preorder index of the parent within its tree (-1 at the root)
    is_left: np.ndarray  # int64 per node: it is its parent's left child
    position: np.ndarray  # int64 per node: position of the parent's split feature on the path (a mask bit)
    split_node: np.ndarray  # int32 per internal node: its preorder index within its tree
    feature: np.ndarray  # int32 per internal node: split feature
    categorical: np.ndarray  # uint8
    missing: np.ndarray  # uint8: 0 None, 1 Zero, 2 NaN
    default_left: np.ndarray  # uint8
    threshold: np.ndarray  # float64
    cat_start: np.ndarray  # int64, first word of the node's category bitset in cat_bits
    cat_words: np.ndarray  # int32
    cat_bits: np.ndarray  # uint32
    leaf_node: np.ndarray  # int32 per leaf: its preorder index within its tree
    leaf_unique: np.ndarray  # int64, k = distinct features on the leaf's path
    leaf_value: np.ndarray  # float64
    leaf_offset: np.ndarray  # int64, start of the leaf's k entries in path_feature / path_zero
    path_feature: np.ndarray  # int32
    path_zero: np.ndarray  # float64, z_j
    path_ratio: np.ndarray  # float64, (1 - z_j) / z_j
    table_offset: np.ndarray  # int64, start of the leaf's 2^k entries in table
    table: np.ndarray  # float64, T(B) = v prod_{j not in B} z_j E(B) per leaf and subset B

    @property
    def nbytes(self) -> int:
        return sum(v.nbytes for v in vars(self).values() if isinstance(v, np.ndarray))


def prepare(booster, table_budget: int | None = None) -> Plan:
    """Flatten a LightGBM booster (the trees `booster.predict` uses) and tabulate T per leaf.

    `table_budget` caps the table entries (default DEFAULT_TABLE_BUDGET); beyond it: Unsupported.
    """
    table_budget = DEFAULT_TABLE_BUDGET if table_budget is None else table_budget
    dump = booster.dump_model()
    if int(dump.get("num_class", 1)) != 1 or int(dump.get("num_tree_per_iteration", 1)) != 1:
        raise Unsupported("multiclass model")
    if dump.get("average_output"):
        raise Unsupported("random-forest model (averaged output)")
    nodes = _Columns("parent", "is_left", "position")
    splits = _Columns("split_node", "feature", "categorical", "missing", "default_left", "threshold",
                      "cat_start", "cat_words")
    leaves = _Columns("leaf_node", "leaf_unique", "leaf_value", "leaf_offset", "table_offset")
    cat_bits: list[int] = []
    path_feature: list[int] = []
    path_zero: list[float] = []
    tree_nodes, tree_splits, tree_leaves = [0], [0], [0]
    base, entries, max_nodes = 0.0, 0, 1
    for tree in dump["tree_info"]:
        root = tree["tree_structure"]
        if "leaf_coeff" in root:
            raise Unsupported("linear-tree model")
        if "leaf_value" in root:  # a single leaf: it only moves the base value
            base += float(root["leaf_value"])
        else:
            first = len(nodes)
            total, expected = float(root["internal_count"]), 0.0
            # Depth first, parents before children; a path is (features, zero fractions) in first-seen order.
            stack = [(root, -1, 0, 0, (), ())]
            while stack:
                node, parent, is_left, position, features, zeros = stack.pop()
                here = len(nodes) - first
                nodes.add(parent, is_left, position)
                if "leaf_value" in node:
                    if "leaf_coeff" in node:
                        raise Unsupported("linear-tree model")
                    value = float(node["leaf_value"])
                    expected += float(node["leaf_count"]) / total * value
                    k = len(features)
                    if k > MAX_UNIQUE:
                        raise Unsupported(f"a path splits on {k} distinct features (at most {MAX_UNIQUE})")
                    if entries + (1 << k) > table_budget:
                        raise Unsupported(f"the tables would need more than {table_budget} entries")
                    leaves.add(here, k, value, len(path_feature), entries)
                    entries += 1 << k
                    path_feature.extend(features)
                    path_zero.extend(zeros)
                    continue
                split = int(node["split_feature"])
                splits.add(here, split, *_decision(node, cat_bits))
                count = float(node["internal_count"])
                for child, left in ((node["right_child"], 0), (node["left_child"], 1)):
                    fraction = float(child.get("leaf_count", child.get("internal_count", 0))) / count if count else 0.0
                    if not fraction > 0:
                        raise Unsupported("a node with zero count")
                    if split in features:
                        at = features.index(split)
                        stack.append((child, here, left, at, features,
                                      zeros[:at] + (zeros[at] * fraction,) + zeros[at + 1:]))
                    else:
                        stack.append((child, here, left, len(features), features + (split,), zeros + (fraction,)))
            base += expected
            splits.sort_from(tree_splits[-1], "categorical")  # one branch per kind in the kernel's decision loop
            max_nodes = max(max_nodes, len(nodes) - first)
        tree_nodes.append(len(nodes))
        tree_splits.append(len(splits))
        tree_leaves.append(len(leaves))

    dtypes = dict(parent=np.int32, is_left=np.int64, position=np.int64, split_node=np.int32, feature=np.int32,
                  categorical=np.uint8, missing=np.uint8, default_left=np.uint8, threshold=np.float64,
                  cat_start=np.int64, cat_words=np.int32, leaf_node=np.int32, leaf_unique=np.int64,
                  leaf_value=np.float64, leaf_offset=np.int64, table_offset=np.int64)
    arrays = {name: np.asarray(values, dtype=dtypes[name])
              for columns in (nodes, splits, leaves) for name, values in columns.items()}
    arrays.update(cat_bits=np.asarray(cat_bits, dtype=np.uint32),
                  path_feature=np.asarray(path_feature, dtype=np.int32),
                  path_zero=np.asarray(path_zero, dtype=np.float64), table=np.zeros(entries, dtype=np.float64))
    arrays["path_ratio"] = (1.0 - arrays["path_zero"]) / arrays["path_zero"]
    if len(arrays["leaf_unique"]):
        _kernels().tables(arrays["leaf_unique"], arrays["leaf_value"], arrays["leaf_offset"], arrays["path_zero"],
                          arrays["table_offset"], _factorials(MAX_UNIQUE + 1), arrays["table"])
    return Plan(num_features=int(dump["max_feature_idx"]) + 1, base_value=base, max_nodes=max_nodes,
                tree_nodes=np.asarray(tree_nodes, dtype=np.int64), tree_splits=np.asarray(tree_splits, dtype=np.int64),
                tree_leaves=np.asarray(tree_leaves, dtype=np.int64), **arrays)


def contributions(plan: Plan, matrix: np.ndarray, threads: int | None = 2, block: int = 256) -> np.ndarray:
    """n x (features + 1) SHAP values in raw space, last column the base value (`pred_contrib`'s layout)."""
    matrix = np.ascontiguousarray(matrix, dtype=np.float64)
    if matrix.ndim != 2 or matrix.shape[1] != plan.num_features:
        raise ValueError(f"expected a 2-d matrix with {plan.num_features} columns, got shape {matrix.shape}")
    out = np.zeros((matrix.shape[0], plan.num_features + 1), dtype=np.float64)
    out[:, -1] = plan.base_value
    if not len(matrix) or len(plan.leaf_unique) == 0:
        return out
    import numba

    previous = numba.get_num_threads()
    numba.set_num_threads(max(1, min(threads or previous, numba.config.NUMBA_NUM_THREADS)))
    try:
        _kernels().shap(matrix, out, plan.tree_nodes, plan.tree_splits, plan.tree_leaves, plan.max_nodes,
                        plan.parent, plan.is_left, plan.position, plan.split_node, plan.feature, plan.categorical,
                        plan.missing, plan.default_left, plan.threshold, plan.cat_start, plan.cat_words,
                        plan.cat_bits, plan.leaf_node, plan.leaf_unique, plan.leaf_offset, plan.path_feature,
                        plan.path_ratio, plan.table_offset, plan.table, ZERO_THRESHOLD, block)
    finally:
        numba.set_num_threads(previous)
    return out


class _Columns(dict):
    """Parallel lists, appended to a row at a time."""

    def __init__(self, *names: str) -> None:
        super().__init__((name, []) for name in names)

    def add(self, *values) -> None:
        for column, value in zip(self.values(), values):
            column.append(value)

    def __len__(self) -> int:
        return len(next(iter(self.values())))

    def sort_from(self, start: int, key: str) -> None:
        """Stable-sort the rows from `start` on by one column."""
        order = sorted(range(start, len(self)), key=self[key].__getitem__)
        for column in self.values():
            column[start:] = [column[i] for i in order]


_MISSING = {"None": 0, "Zero": 1, "NaN": 2}


def _decision(node: dict, cat_bits: list[int]) -> tuple:
    """(categorical, missing, default_left, threshold, cat_start, cat_words) of a split, bitset appended."""
    missing = _MISSING[node.get("missing_type", "None")]
    default_left = int(bool(node.get("default_left", False)))
    if node["decision_type"] == "<=":
        return 0, missing, default_left, float(node["threshold"]), 0, 0
    if node["decision_type"] != "==":
        raise Unsupported(f"decision type {node['decision_type']!r}")
    categories = [int(c) for c in str(node["threshold"]).split("||") if c != ""]
    words = max(categories) // 32 + 1 if categories else 0
    bits = [0] * words
    for c in categories:
        bits[c // 32] |= 1 << (c % 32)
    start = len(cat_bits)
    cat_bits.extend(bits)
    return 1, missing, default_left, 0.0, start, words


def _factorials(n: int) -> np.ndarray:
    return np.asarray([float(math.factorial(i)) for i in range(n + 1)], dtype=np.float64)


_KERNELS = None


def _kernels():
    """Compile (or load from numba's cache) the two kernels on first use: numba stays out of imports."""
    global _KERNELS
    if _KERNELS is None:
        from explain import _fasttree_kernels

        _KERNELS = _fasttree_kernels
    return _KERNELS
