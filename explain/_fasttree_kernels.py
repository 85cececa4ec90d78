"""numba kernels of explain/fasttree.py (imported on first use only; see that module for the maths).

Compiled code is cached on disk by numba (`cache=True`), so only the first run on a machine
pays the compilation (a few seconds).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange


@njit(parallel=True, cache=True)
def tables(leaf_unique, leaf_value, leaf_offset, path_zero, table_offset, factorial, table):
    """T(B) = v prod_{j not in B} z_j E(B) for every leaf and subset B of its path features (|B| < k), with
    E(B) = sum_{S subset of B} |S|!(k-|S|-1)!/k! prod_{j in B \\ S} z_j.

    prod_{j in B}(z_j + t) = sum_m e_m(z_B) t^(|B|-m) is built subset by subset (B from B minus its
    lowest bit), so E(B) = sum_s w(s) e_{|B|-s}(z_B) costs O(k) per subset.
    """
    for g in prange(leaf_unique.shape[0]):
        k = leaf_unique[g]
        size = 1 << k
        offset = table_offset[g]
        zeros = path_zero[leaf_offset[g]:leaf_offset[g] + k]
        weight = np.empty(k + 1)
        for s in range(k):
            weight[s] = factorial[s] * factorial[k - s - 1] / factorial[k]
        poly = np.zeros((size, k + 1))  # poly[B, m] = e_m(z_B)
        poly[0, 0] = 1.0
        product = np.ones(size)  # prod_{j in B} z_j
        count = np.zeros(size, np.int64)
        for subset in range(1, size):
            low = subset & -subset
            rest = subset ^ low
            j = 0
            while (low >> j) != 1:
                j += 1
            n = count[rest] + 1
            count[subset] = n
            z = zeros[j]
            product[subset] = product[rest] * z
            poly[subset, 0] = 1.0
            for m in range(1, n + 1):
                poly[subset, m] = poly[rest, m] + z * poly[rest, m - 1]
        for subset in range(size):
            n = count[subset]
            if n == k:  # the full set: never read
                table[offset + subset] = 0.0
                continue
            total = 0.0
            for s in range(n + 1):
                total += weight[s] * poly[subset, n - s]
            table[offset + subset] = leaf_value[g] * product[(size - 1) ^ subset] * total


@njit(cache=True, inline="always")
def _goes_left(x, categorical, missing, default_left, threshold, cat_start, cat_words, cat_bits, zero):
    """LightGBM's Tree::Decision on a raw value (after its dense-row conversion)."""
    if categorical:
        if np.isnan(x) or x >= 2147483648.0 or x <= -2147483649.0:
            return False  # static_cast<int> gives INT_MIN: negative, so right
        code = int(x)  # truncates toward zero, as static_cast<int>
        if code < 0:
            return False
        word = code >> 5
        if word >= cat_words:
            return False
        return ((cat_bits[cat_start + word] >> np.uint32(code & 31)) & np.uint32(1)) == np.uint32(1)
    if -zero <= x <= zero:
        x = 0.0
    if np.isnan(x):
        if missing == 2:
            return default_left == 1
        x = 0.0
    if missing == 1 and -zero <= x <= zero:
        return default_left == 1
    return x <= threshold


@njit(parallel=True, cache=True)
def shap(matrix, out, tree_nodes, tree_splits, tree_leaves, max_nodes, parent, is_left, position, split_node,
         feature, categorical, missing, default_left, threshold, cat_start, cat_words, cat_bits, leaf_node,
         leaf_unique, leaf_offset, path_feature, path_ratio, table_offset, table, zero, block):
    """Add every tree's SHAP values to `out` (rows x features + 1), blocks of rows in parallel.

    Per tree and row: the decisions of the internal nodes, then each node's agreement mask
    from its parent's (preorder), then each leaf's terms, phi_j = -T(A) for j not in A and
    (1 - z_j) / z_j T(A \\ {j}) for j in A (z_j > 0: prepare rejects empty nodes); the loops are branch-free
    (selects by 0/1 arithmetic, exact for finite values) since the row's path bits are random.
    Trees are the outer loop inside a block, so one tree's tables stay in cache for the block.
    """
    rows = matrix.shape[0]
    blocks = (rows + block - 1) // block
    trees = tree_nodes.shape[0] - 1
    one = np.int64(1)
    for b in prange(blocks):
        lo = b * block
        hi = min(rows, lo + block)
        goes_left = np.zeros(max_nodes, np.int64)
        mask = np.zeros(max_nodes, np.int64)
        for t in range(trees):
            first = np.uint64(tree_nodes[t])
            end = np.uint64(tree_nodes[t + 1])
            if end - first < np.uint64(2):
                continue
            for r in range(lo, hi):
                row = matrix[r]
                # Unsigned indices throughout: numba then skips its negative-index wraparound (~35% here).
                for s in range(np.uint64(tree_splits[t]), np.uint64(tree_splits[t + 1])):
                    goes_left[np.uint64(split_node[s])] = _goes_left(row[np.uint64(feature[s])], categorical[s],
                                                                     missing[s], default_left[s], threshold[s],
                                                                     cat_start[s], cat_words[s], cat_bits, zero)
                mask[0] = -1
                for q in range(first + np.uint64(1), end):
                    p = np.uint64(parent[q])
                    mask[q - first] = mask[p] & ~((goes_left[p] ^ is_left[q]) << position[q])
                phi = out[r]
                for g in range(np.uint64(tree_leaves[t]), np.uint64(tree_leaves[t + 1])):
                    k = leaf_unique[g]
                    subset = mask[np.uint64(leaf_node[g])] & ((one << k) - 1)
                    offset = np.uint64(leaf_offset[g])
                    at = np.uint64(table_offset[g] + subset)
                    outside = table[at]  # -phi_j for j not in A
                    for j in range(k):
                        bit = (subset >> j) & one
                        inside = np.float64(bit)
                        u = offset + np.uint64(j)
                        within = path_ratio[u] * table[at - np.uint64(bit << j)]  # T(A \\ {j}) when j is in A
                        phi[np.uint64(path_feature[u])] += inside * within - (1.0 - inside) * outside
