"""Schema skew: the serving columns against the training schema, with environments.

TFDV keeps training and serving in one schema and marks the columns a serving
environment lacks by design (the label); here `serving_absent` names them. A feature
that is missing or retyped at serving is an alert; a different Arrow type of the same
kind (int64 vs double, string vs dictionary) is reported as `info` since values still
compare. Value domains come from the two profiles: a feature whose serving values are
all missing, categories that serving has and training never had (or the reverse: a
stale mapping renames a category on one side), each over a share threshold.
"""

from __future__ import annotations

from typing import Iterable

import pyarrow as pa

from core.errors import SchemaError
from core.profile import CategoricalProfile, FeatureError, NumericProfile, infer_kind
from skew.results import SchemaIssue, grade

DOMAIN_THRESHOLDS = (0.02, 0.05)  # share of values outside the other side's categories
MAX_LISTED_VALUES = 5


def _kind(arrow_type: pa.DataType) -> str | None:
    try:
        return infer_kind(arrow_type)
    except SchemaError:
        return None


def column_issues(training: pa.Schema, serving: pa.Schema, kinds: dict[str, str],
                  serving_absent: Iterable[str] = (), ignore: Iterable[str] = ()) -> list[SchemaIssue]:
    """Missing, retyped and extra columns. `kinds` are the features to compare; `ignore`
    lists columns that are neither features nor findings (key, timestamp, score, partitions)."""
    absent = set(serving_absent)
    skip = set(ignore) | absent
    issues: list[SchemaIssue] = []
    for name, kind in kinds.items():
        if name in absent:
            continue
        in_training, in_serving = name in training.names, name in serving.names
        t_type = str(training.field(name).type) if in_training else None
        s_type = str(serving.field(name).type) if in_serving else None
        if not in_serving:
            issues.append(SchemaIssue(name, "missing", "alert", "not in the serving data", t_type, None))
            continue
        if not in_training:
            issues.append(SchemaIssue(name, "missing_in_training", "alert", "not in the training data", None, s_type))
            continue
        t_kind, s_kind = _kind(training.field(name).type), _kind(serving.field(name).type)
        if t_kind != s_kind:
            if pa.types.is_null(serving.field(name).type):
                continue  # an all-null column read from CSV/JSON has no type; the domain check reports it
            detail = f"{t_kind or t_type} in training ({t_type}), {s_type} at serving"
            issues.append(SchemaIssue(name, "retyped", "alert", detail, t_type, s_type))
        elif t_type != s_type:
            issues.append(SchemaIssue(name, "type_changed", "info", f"{t_type} in training, {s_type} at serving",
                                      t_type, s_type))
    for name in serving.names:
        if name not in training.names and name not in kinds and name not in skip:
            issues.append(SchemaIssue(name, "extra", "info", "only in the serving data", None,
                                      str(serving.field(name).type)))
    return issues


def domain_issues(name: str, training, serving, thresholds: tuple[float, float] = DOMAIN_THRESHOLDS,
                  ) -> list[SchemaIssue]:
    """Value-domain changes between the two profiles of one feature."""
    if isinstance(training, FeatureError) or isinstance(serving, FeatureError) or training is None or serving is None:
        return []
    issues = []
    if training.count > 0 and serving.rows > 0 and serving.count == 0:
        issues.append(SchemaIssue(name, "all_null", "alert",
                                  f"all {serving.rows} serving values are missing; "
                                  f"{training.count / max(training.rows, 1):.1%} of training values are present"))
        return issues
    if isinstance(training, CategoricalProfile) and isinstance(serving, CategoricalProfile):
        for issue, mine, other, side in (("unseen_values", serving, training, "serving"),
                                         ("vanished_values", training, serving, "training")):
            if mine.count == 0:
                continue
            outside = {k: v for k, v in mine.counts.items() if k not in other.counts}
            share = sum(outside.values()) / mine.count
            severity = grade(share, thresholds)
            if severity != "ok" and not (other.truncated or mine.truncated):
                ranked = sorted(outside.items(), key=lambda kv: -kv[1])[:MAX_LISTED_VALUES]
                listed = ", ".join(repr(k) for k, _ in ranked)
                where = "at serving never seen in training" if side == "serving" else "in training never served"
                issues.append(SchemaIssue(name, issue, severity, f"{share:.1%} of values {where}: {listed}"))
    elif isinstance(training, NumericProfile) and isinstance(serving, NumericProfile) and serving.count:
        if training.count and (serving.min < training.min or serving.max > training.max):
            issues.append(SchemaIssue(name, "out_of_range", "info",
                                      f"serving range [{serving.min:g}, {serving.max:g}] exceeds "
                                      f"training [{training.min:g}, {training.max:g}]"))
    return issues
