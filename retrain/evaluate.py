"""Evaluate a candidate against the production model on the same holdout, and gate it.

Metrics, overall and per segment value: AUC, log loss, normalised entropy (log loss over
the entropy of the base rate, He et al. 2014) and the calibration ratio (Σp / Σclicks,
1 is perfect). Gates compare the candidate with production under configurable
tolerances; being worse overall or on a protected segment means not promoted, with the
reasons spelt out. Results are small frozen records with a versioned to_dict().

Every head of a model is evaluated and gated, each on its own target (`head_targets`):
the primary label (CTR), CVR on the clicked rows only (where it is defined), CTCVR =
click × conversion on all rows, and any other head on the label column it is named
after. A head production also has is compared with production's; a new head meets the
absolute floors.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import rankdata

FORMAT = 1
_EPS = 1e-15


def auc(labels: np.ndarray, scores: np.ndarray) -> float | None:
    """Area under the ROC curve (ties count half); None with a single class."""
    y = np.asarray(labels) > 0
    positives = int(y.sum())
    negatives = len(y) - positives
    if positives == 0 or negatives == 0:
        return None
    ranks = rankdata(scores)
    return float((ranks[y].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def log_loss(labels: np.ndarray, scores: np.ndarray) -> float | None:
    if len(labels) == 0:
        return None
    p = np.clip(np.asarray(scores, dtype=np.float64), _EPS, 1 - _EPS)
    y = np.asarray(labels, dtype=np.float64)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def normalized_entropy(labels: np.ndarray, scores: np.ndarray) -> float | None:
    """Log loss divided by the log loss of always predicting the base rate (< 1 is useful)."""
    if len(labels) == 0:
        return None
    rate = float(np.mean(labels))
    if rate <= 0 or rate >= 1:
        return None
    baseline = -(rate * np.log(rate) + (1 - rate) * np.log(1 - rate))
    return log_loss(labels, scores) / baseline


def calibration_ratio(labels: np.ndarray, scores: np.ndarray) -> float | None:
    """Σ predicted / Σ observed: 1 is calibrated, 1.25 over-predicts by a quarter."""
    clicks = float(np.sum(labels))
    return float(np.sum(scores)) / clicks if clicks > 0 else None


@dataclass(frozen=True)
class Metrics:
    rows: int
    positives: int
    auc: float | None
    log_loss: float | None
    normalized_entropy: float | None
    calibration_ratio: float | None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def of(cls, labels: np.ndarray, scores: np.ndarray) -> "Metrics":
        return cls(len(labels), int(np.sum(labels)), auc(labels, scores), log_loss(labels, scores),
                   normalized_entropy(labels, scores), calibration_ratio(labels, scores))


@dataclass(frozen=True)
class Evaluation:
    overall: Metrics
    segments: dict[str, dict[str, Metrics]] = field(default_factory=dict)  # column -> value -> metrics

    def to_dict(self) -> dict[str, Any]:
        return {"overall": self.overall.to_dict(),
                "segments": {c: {v: m.to_dict() for v, m in vs.items()} for c, vs in self.segments.items()}}


def evaluate(frame: pd.DataFrame, label: str | np.ndarray, scores: np.ndarray, segments: list[str] = (),
             min_segment_rows: int = 1) -> Evaluation:
    """Metrics overall and for every value of every segment column with enough rows
    (label: a column of frame, or the target values themselves)."""
    y = (frame[label] if isinstance(label, str) else pd.Series(label)).to_numpy(dtype=np.float64)
    scores = np.asarray(scores, dtype=np.float64)
    by_segment: dict[str, dict[str, Metrics]] = {}
    for column in segments:
        if column not in frame.columns:
            continue
        values = frame[column].astype("string").fillna("<null>").to_numpy(dtype=object)
        uniques, inverse = np.unique(values, return_inverse=True)
        by_segment[column] = {str(u): Metrics.of(y[inverse == i], scores[inverse == i])
                              for i, u in enumerate(uniques) if np.sum(inverse == i) >= min_segment_rows}
    return Evaluation(Metrics.of(y, scores), by_segment)


def head_name(head: str, labels: tuple[str, ...] | list[str]) -> str:
    """The name a head is evaluated under: a model's `ctr` head and a single-task model's
    primary label are the same target (so an ESMM candidate meets a LightGBM production)."""
    return labels[0] if head == "ctr" else head


def head_targets(frame: pd.DataFrame, labels: tuple[str, ...] | list[str],
                 head: str) -> tuple[np.ndarray, np.ndarray] | None:
    """(row mask, 0/1 target) a head predicts, or None when it predicts none of the labels:
    the primary label; `cvr` = conversion among clicked rows; `ctcvr` = click × conversion;
    any other head the label column of its name."""
    everywhere = np.ones(len(frame), dtype=bool)
    column = lambda name: frame[name].to_numpy(dtype=np.float64)  # noqa: E731
    name = head_name(head, labels)
    if name in frame.columns and name in labels:
        return everywhere, column(name)
    if head in ("cvr", "ctcvr") and len(labels) >= 2:
        click, conversion = column(labels[0]), column(labels[1])
        if head == "cvr":
            return click > 0, conversion
        return everywhere, click * conversion
    return None


def evaluate_heads(frame: pd.DataFrame, labels: tuple[str, ...] | list[str], tasks: dict[str, np.ndarray],
                   segments: list[str] = (), min_segment_rows: int = 1) -> dict[str, Evaluation]:
    """An Evaluation per head (named by head_name), each on its own target rows."""
    out = {}
    for head, scores in tasks.items():
        target = head_targets(frame, labels, head)
        if target is None:
            continue
        mask, y = target
        rows = frame if mask.all() else frame.loc[mask].reset_index(drop=True)
        out[head_name(head, labels)] = evaluate(rows, y[mask], np.asarray(scores)[mask], segments, min_segment_rows)
    return out


@dataclass(frozen=True)
class GateCheck:
    scope: str          # "overall" or "column=value"
    metric: str
    candidate: float | None
    production: float | None
    limit: float | None  # the value the candidate had to reach (or stay under)
    passed: bool
    reason: str = ""
    head: str = ""      # the model head (task) checked; "" for a single-head model

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class GateDecision:
    passed: bool
    checks: tuple[GateCheck, ...]

    @property
    def reasons(self) -> list[str]:
        return [c.reason for c in self.checks if not c.passed]

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "passed": self.passed, "reasons": self.reasons,
                "checks": [c.to_dict() for c in self.checks]}


@dataclass(frozen=True)
class Gates:
    """Tolerances; mirrors monitor.config.GatesConfig (see there for the meaning of each)."""

    max_auc_drop: float = 0.005
    max_log_loss_increase: float = 0.005
    max_calibration_error: float = 0.1
    min_auc: float = 0.5
    protected_segments: tuple[str, ...] = ()
    segment_max_auc_drop: float = 0.02
    segment_max_log_loss_increase: float = 0.02
    min_segment_rows: int = 1000
    calibration_noise_z: float = 2.0

    @classmethod
    def from_config(cls, config) -> "Gates":
        data = config.model_dump() if hasattr(config, "model_dump") else dict(config)
        data["protected_segments"] = tuple(data.get("protected_segments", ()))
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})

    def segment_columns(self) -> list[str]:
        return list(dict.fromkeys(p.split("=", 1)[0] for p in self.protected_segments))


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def _compare(scope: str, metric: str, cand: float | None, prod: float | None, tolerance: float,
             higher_is_better: bool, relative: bool = False) -> GateCheck:
    if cand is None:
        return GateCheck(scope, metric, cand, prod, None, False, f"{metric} ({scope}): cannot be computed")
    if prod is None:
        return GateCheck(scope, metric, cand, prod, None, True)
    if higher_is_better:
        limit = prod - tolerance
        ok = cand >= limit
        why = f"{metric} ({scope}) {_fmt(cand)} < production {_fmt(prod)} - {tolerance:g}"
    else:
        limit = prod * (1 + tolerance) if relative else prod + tolerance
        ok = cand <= limit
        how = f"x (1 + {tolerance:g})" if relative else f"+ {tolerance:g}"
        why = f"{metric} ({scope}) {_fmt(cand)} > production {_fmt(prod)} {how}"
    return GateCheck(scope, metric, cand, prod, limit, ok, "" if ok else why)


def _selected(gates: Gates, evaluation: Evaluation) -> list[tuple[str, str]]:
    chosen = []
    for item in gates.protected_segments:
        column, _, value = item.partition("=")
        values = evaluation.segments.get(column, {})
        chosen += [(column, v) for v in values if not value or v == value]
    return chosen


def calibration_tolerance(gates: Gates, positives: int) -> float:
    """max_calibration_error, widened to z/√positives where few positives make Σp/Σy noisy
    (its relative Poisson error): a 30-conversion head is not rejected for noise."""
    noise = gates.calibration_noise_z / np.sqrt(positives) if positives > 0 else 0.0
    return max(gates.max_calibration_error, float(noise))


def apply_gates(candidate: Evaluation, production: Evaluation | None, gates: Gates,
                head: str = "") -> GateDecision:
    """Pass only if the candidate is at least as good as production (within tolerances)
    overall and on every protected segment, and meets the absolute floors. With head,
    every check and reason names it."""
    decision = _apply_gates(candidate, production, gates)
    if not head:
        return decision
    checks = tuple(GateCheck(**dict(c.__dict__, head=head, reason=f"{head}: {c.reason}" if c.reason else ""))
                   for c in decision.checks)
    return GateDecision(decision.passed, checks)


def gate_heads(candidate: dict[str, Evaluation], production: dict[str, Evaluation] | None,
               gates: Gates) -> GateDecision:
    """Every head gated; a model with several heads names the head in each reason."""
    several = len(candidate) > 1
    checks: list[GateCheck] = []
    for head, evaluation in candidate.items():
        prod = (production or {}).get(head)
        checks += apply_gates(evaluation, prod, gates, head if several else "").checks
    for head in (production or {}).keys() - candidate.keys():  # a head that would stop being served
        checks.append(GateCheck("overall", "head", None, None, None, False,
                                f"{head}: production predicts this head, the candidate does not", head))
    return GateDecision(all(c.passed for c in checks), tuple(checks))


def _apply_gates(candidate: Evaluation, production: Evaluation | None, gates: Gates) -> GateDecision:
    c, p = candidate.overall, production.overall if production else None
    checks = [
        GateCheck("overall", "auc", c.auc, None, gates.min_auc, c.auc is not None and c.auc >= gates.min_auc,
                  "" if c.auc is not None and c.auc >= gates.min_auc
                  else f"auc (overall) {_fmt(c.auc)} below the floor {gates.min_auc:g}"),
        _compare("overall", "auc", c.auc, p.auc if p else None, gates.max_auc_drop, True),
        _compare("overall", "log_loss", c.log_loss, p.log_loss if p else None, gates.max_log_loss_increase,
                 False, relative=True),
    ]
    error = None if c.calibration_ratio is None else abs(c.calibration_ratio - 1)
    prod_error = None if not p or p.calibration_ratio is None else abs(p.calibration_ratio - 1)
    tolerance = calibration_tolerance(gates, c.positives)
    # Calibrated within tolerance, or at least no worse than what serves now.
    ok = error is not None and (error <= tolerance or (prod_error is not None and error <= prod_error))
    checks.append(GateCheck("overall", "calibration_ratio", c.calibration_ratio, p.calibration_ratio if p else None,
                            tolerance, ok, "" if ok else
                            f"calibration_ratio (overall) {_fmt(c.calibration_ratio)} is off by more than "
                            f"{tolerance:.3g} and worse than production "
                            f"{_fmt(p.calibration_ratio if p else None)}"))
    for column, value in _selected(gates, candidate):
        scope = f"{column}={value}"
        cm = candidate.segments[column][value]
        pm = production.segments.get(column, {}).get(value) if production else None
        if cm.auc is not None:
            checks.append(_compare(scope, "auc", cm.auc, pm.auc if pm else None, gates.segment_max_auc_drop, True))
        checks.append(_compare(scope, "log_loss", cm.log_loss, pm.log_loss if pm else None,
                               gates.segment_max_log_loss_increase, False, relative=True))
    return GateDecision(all(ch.passed for ch in checks), tuple(checks))
