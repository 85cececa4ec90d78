"""Model files every layer loads: LightGBM text models (checked before LightGBM parses them) and
categorical vocabularies.

A structural check of LightGBM's text model format runs before LightGBM parses a file.

LightGBM's own parser does not fail cleanly on a damaged file: a truncated copy makes it read
past the buffer (`tree_sizes` gives byte offsets) and a garbled tree makes it call
std::terminate from its OpenMP loop, so one bad model file would kill the whole scheduled
run instead of failing one check. This walks the same structure in Python first (header,
`tree_sizes` offsets, each tree's arrays, child and feature indices) and raises a
DataSourceError naming the file and what is wrong.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from core.errors import DataSourceError, require

_TREE_KEYS = ("num_leaves", "split_feature", "threshold", "decision_type", "left_child", "right_child", "leaf_value")
_END = "\nend of trees"


class _Damaged(ValueError):
    pass


def _pairs(block: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in block.splitlines() if "=" in line)


def _numbers(fields: dict, key: str, count: int, kind=float) -> list:
    try:
        values = [kind(v) for v in fields.get(key, "").split()]
    except ValueError:
        raise _Damaged(f"{key} holds a value that is not a number") from None
    if len(values) != count:
        raise _Damaged(f"{key} has {len(values)} values, expected {count}")
    return values


def _check_tree(block: str, features: int) -> None:
    if any(line and "=" not in line for line in block.splitlines()):
        raise _Damaged("a line that is not key=value")
    fields = _pairs(block)
    missing = [k for k in _TREE_KEYS if k not in fields]
    if missing:
        raise _Damaged(f"no {missing[0]}")
    leaves = _numbers(fields, "num_leaves", 1, int)[0]
    if leaves < 1:
        raise _Damaged(f"num_leaves={leaves}")
    for key in ("leaf_value", "leaf_weight", "leaf_count"):
        if key in fields or key == "leaf_value":
            _numbers(fields, key, leaves)
    if leaves == 1:
        return
    splits = leaves - 1
    if any(not 0 <= f < features for f in _numbers(fields, "split_feature", splits, int)):
        raise _Damaged(f"split_feature outside the {features} features")
    thresholds = _numbers(fields, "threshold", splits)
    for key in ("split_gain", "internal_value", "internal_weight", "internal_count"):
        if key in fields:
            _numbers(fields, key, splits)
    decisions = _numbers(fields, "decision_type", splits, int)
    for key in ("left_child", "right_child"):  # internal nodes 1..splits-1, leaves as ~index
        if any(not (-leaves <= c < splits and c != 0) for c in _numbers(fields, key, splits, int)):
            raise _Damaged(f"{key} points outside the tree")
    categories = _numbers(fields, "num_cat", 1, int)[0] if "num_cat" in fields else 0
    if categories:
        bounds = _numbers(fields, "cat_boundaries", categories + 1, int)
        if bounds[0] != 0 or any(b > a for b, a in zip(bounds, bounds[1:])):
            raise _Damaged("cat_boundaries are not increasing from 0")
        _numbers(fields, "cat_threshold", bounds[-1], int)
    for decision, threshold in zip(decisions, thresholds):
        if decision & 1 and not 0 <= threshold < categories:  # a categorical split indexes cat_boundaries
            raise _Damaged("a categorical split points outside cat_boundaries")


def check_text_model(path: str | Path) -> None:
    """Raise DataSourceError when `path` is not a structurally whole LightGBM text model
    (the same messages as skew.prediction.load_booster for a missing file or another format)."""
    path = Path(path)
    try:
        data = path.read_bytes()
        if not data.startswith(b"tree\n") and b"version=" not in data[:64]:
            raise DataSourceError(f"{path}: not a LightGBM text model")
        text = data.decode("utf-8")
        first = text.find("\nTree=")
        end = text.find(_END, first)
        if first < 0 or end < 0:
            raise _Damaged("no trees, or no 'end of trees' line (truncated?)")
        header = _pairs(text[:first])
        if "max_feature_idx" not in header:
            raise _Damaged("no max_feature_idx in the header")
        features = _numbers(header, "max_feature_idx", 1, int)[0] + 1
        trees = text[first + 1:end + 1]
        blocks = re.split(r"(?<=\n)(?=Tree=)", trees)
        if "tree_sizes" in header:  # LightGBM jumps to each tree by these byte offsets
            sizes = _numbers(header, "tree_sizes", len(blocks), int)
            if [len(b.encode()) for b in blocks] != sizes:
                raise _Damaged("tree_sizes do not match the trees (truncated or edited?)")
        for i, block in enumerate(blocks):
            try:
                _check_tree(block, features)
            except _Damaged as exc:
                raise _Damaged(f"tree {i}: {exc}") from None
    except FileNotFoundError:
        raise DataSourceError(f"{path}: model file not found") from None
    except OSError as exc:
        raise DataSourceError(f"{path}: cannot read the model file ({exc.strerror or exc})") from exc
    except (UnicodeDecodeError, _Damaged) as exc:
        why = "not text" if isinstance(exc, UnicodeDecodeError) else str(exc)
        raise DataSourceError(f"{path}: a damaged LightGBM text model ({why})") from None


def load_vocabulary(path: str | Path) -> dict[str, list[str]]:
    """`{feature: [category, ...]}`, or a manifest with one under "vocabulary" (the demo's world.json)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DataSourceError(f"{path}: cannot read a vocabulary ({exc})") from exc
    if isinstance(data, dict) and isinstance(data.get("vocabulary"), dict):
        data = data["vocabulary"]
    if not isinstance(data, dict) or not all(isinstance(v, list) for v in data.values()):
        raise DataSourceError(f"{path}: expected a vocabulary {{feature: [category, ...]}}")
    return {str(k): [str(c) for c in v] for k, v in data.items()}


def load_booster(path: str | Path):
    lgb = require("lightgbm")
    path = Path(path)
    if not path.is_file():
        raise DataSourceError(f"{path}: model file not found")
    check_text_model(path)  # LightGBM segfaults on some damaged files instead of raising
    try:
        return lgb.Booster(model_file=str(path))
    except Exception as exc:  # LightGBMError on a damaged file
        raise DataSourceError(f"{path}: not a readable LightGBM model ({str(exc).splitlines()[0][:200]})") from exc
