"""Data drift and prediction drift from profiles.

`DriftCheck(...).fit(reference_profile, chunks)` fixes what "normal" looks like;
`FittedDriftCheck.evaluate(current_profile)` scores every feature with a distance
(normalised Wasserstein for numerics, from a CDF rebuilt from the histogram and the
quantile sketch (checks/profile_cdf.py), and L-infinity for categoricals by default; PSI
and Jensen-Shannon on request, numerics on exact reference deciles) and turns it into a status with two thresholds. The
null-rate change and, for categoricals, the share of values never seen in the
reference raise a feature's status too. Thresholds are static, or learned from how
much chunks of the reference differ from the whole (scaled to the window's size) and
never below the static ones, so small windows do not raise noise alarms.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from checks import stats
from checks.profile_cdf import profile_wasserstein, start_kernel
from core.results import CheckResult, FeatureDrift, worst_status
from core.errors import ConfigError, NotFittedError
from core.profile import (
    CategoricalProfile,
    DatasetProfile,
    FeatureError,
    NumericProfile,
)

NUMERIC_METHODS = ("wasserstein", "psi", "jensenshannon", "linf")
CATEGORICAL_METHODS = ("linf", "jensenshannon", "psi")
DEFAULT_METHOD = {"numeric": "wasserstein", "categorical": "linf"}

# (warn, alert). Wasserstein and JS warn where Evidently flags drift (0.1); PSI follows
# the industry reading (0.1 moderate, 0.25 significant); L-infinity alerts on a
# 7.5-point move of any category's share.
DEFAULT_THRESHOLDS: dict[str, tuple[float, float]] = {
    "wasserstein": (0.1, 0.2),
    "psi": (0.1, 0.25),
    "jensenshannon": (0.1, 0.2),
    "linf": (0.04, 0.075),
}
# How a score's noise shrinks with sample size n: ~ n**-exponent.
_NOISE_EXPONENT = {"wasserstein": 0.5, "psi": 1.0, "jensenshannon": 0.5, "linf": 0.5}
COARSE_BINS = 10  # PSI and JS on numerics use reference-decile bins, as is customary


@dataclass(frozen=True)
class DriftCheck:
    """Parameters only; `fit` does the work."""

    name: str = "data_drift"
    features: tuple[str, ...] | None = None
    methods: dict[str, str] = field(default_factory=dict)
    thresholds: dict[str, tuple[float, float]] = field(default_factory=dict)
    threshold_mode: Literal["static", "learned"] = "static"
    learned_k: tuple[float, float] = (3.0, 5.0)
    min_samples: int = 1000
    null_rate_thresholds: tuple[float, float] = (0.05, 0.1)
    unseen_share_thresholds: tuple[float, float] = (0.02, 0.05)
    coarse_bins: int = COARSE_BINS

    def __post_init__(self) -> None:
        for feature, method in self.methods.items():
            if method not in NUMERIC_METHODS:
                raise ConfigError(f"methods.{feature}: unknown method {method!r} (known: {', '.join(NUMERIC_METHODS)})")
        for method, pair in self.thresholds.items():
            if method not in DEFAULT_THRESHOLDS:
                raise ConfigError(f"thresholds.{method}: unknown method (known: {', '.join(DEFAULT_THRESHOLDS)})")
            if len(pair) != 2 or not 0 <= pair[0] <= pair[1]:
                raise ConfigError(f"thresholds.{method}: expected [warn, alert] with 0 <= warn <= alert, got {pair}")
        if self.threshold_mode not in ("static", "learned"):
            raise ConfigError(f"threshold_mode: expected static or learned, got {self.threshold_mode!r}")
        if self.min_samples < 1:
            raise ConfigError("min_samples: must be at least 1")

    def method_for(self, feature: str, kind: str) -> str:
        method = self.methods.get(feature, DEFAULT_METHOD[kind])
        if kind == "categorical" and method not in CATEGORICAL_METHODS:
            raise ConfigError(f"methods.{feature}: {method} does not apply to a categorical feature")
        return method

    def static_thresholds(self, method: str) -> tuple[float, float]:
        return tuple(self.thresholds.get(method, DEFAULT_THRESHOLDS[method]))  # type: ignore[return-value]

    def fit(self, reference: DatasetProfile, chunks: list[DatasetProfile] | None = None) -> "FittedDriftCheck":
        names = list(self.features) if self.features else reference.spec.names
        known = set(reference.spec.names)
        unknown = [n for n in names if n not in known]
        if unknown:
            raise ConfigError(f"features: '{unknown[0]}' is not profiled in the reference")
        coarse = {}
        noise = {}
        if self.threshold_mode == "learned" and chunks:
            start_kernel(len(chunks) * _wasserstein_count(self, reference, names))
        for name in names:
            profile = reference.features[name]
            # Binned methods only: Wasserstein scores the CDF (and 10,000 groupings took ~0.4 s of a wide file).
            if isinstance(profile, NumericProfile) and self.method_for(name, "numeric") != "wasserstein":
                coarse[name] = _coarse_groups(profile.bin_counts, self.coarse_bins)
            if self.threshold_mode == "learned" and chunks and not isinstance(profile, FeatureError):
                noise[name] = _chunk_noise(self, name, profile, [c.features[name] for c in chunks], coarse.get(name))
        return FittedDriftCheck(self, reference, tuple(names), coarse, noise)


@dataclass(frozen=True)
class ChunkNoise:
    """Mean and std of a feature's score between reference chunks of `chunk_rows` rows."""

    method: str
    mean: float
    std: float
    chunk_rows: float


@dataclass(frozen=True)
class FittedDriftCheck:
    check: DriftCheck
    reference: DatasetProfile
    feature_names: tuple[str, ...]
    coarse: dict[str, np.ndarray]
    noise: dict[str, ChunkNoise]

    def evaluate(self, current: DatasetProfile, **context) -> CheckResult:
        if current.spec is not self.reference.spec and current.spec != self.reference.spec:
            raise NotFittedError("the current profile was computed with another spec than the reference")
        start_kernel(_wasserstein_count(self.check, self.reference, self.feature_names))
        results = tuple(self._feature(name, current) for name in self.feature_names)
        drifted = [r.feature for r in results if r.status == "alert"]
        details = {
            "features_total": len(results),
            "features_alert": len(drifted),
            "features_warn": sum(r.status == "warn" for r in results),
            "threshold_mode": self.check.threshold_mode,
        }
        return CheckResult(
            check=self.check.name,
            status=worst_status(r.status for r in results),
            features=results,
            reference_rows=self.reference.rows,
            current_rows=current.rows,
            details=details,
            **context,
        )

    def thresholds_for(self, name: str, method: str, current_count: int) -> tuple[float, float]:
        warn, alert = self.check.static_thresholds(method)
        noise = self.noise.get(name)
        if noise is None or noise.method != method or current_count <= 0:
            return warn, alert
        # Window-vs-reference noise ~ (1/n + 1/N); the chunk spread was measured at 1/n_chunk.
        reference_count = max(self.reference.features[name].count, 1)
        scale = (noise.chunk_rows * (1 / current_count + 1 / reference_count)) ** _NOISE_EXPONENT[method]
        k_warn, k_alert = self.check.learned_k
        return (
            max(warn, (noise.mean + k_warn * noise.std) * scale),
            max(alert, (noise.mean + k_alert * noise.std) * scale),
        )

    def _feature(self, name: str, current: DatasetProfile) -> FeatureDrift:
        ref = self.reference.features[name]
        cur = current.features.get(name)
        kind = ref.kind if not isinstance(ref, FeatureError) else "unknown"
        method = self.check.method_for(name, kind) if kind != "unknown" else "none"
        base = dict(feature=name, kind=kind, method=method, reference_count=ref.count)
        if isinstance(ref, FeatureError) or cur is None or isinstance(cur, FeatureError):
            message = ref.message if isinstance(ref, FeatureError) else (
                cur.message if isinstance(cur, FeatureError) else f"column '{name}' is missing"
            )
            warn, alert = self.check.static_thresholds(method) if method != "none" else (None, None)
            return FeatureDrift(**base, score=None, threshold=alert, warn_threshold=warn, status="error",
                                current_count=0, message=message)
        null_ref = _rate(ref.missing_count, ref.rows)
        null_cur = _rate(cur.missing_count, cur.rows)
        warn, alert = self.thresholds_for(name, method, cur.count)
        common = dict(base, current_count=cur.count, threshold=alert, warn_threshold=warn,
                      null_rate_reference=null_ref, null_rate_current=null_cur)
        unseen = _unseen_share(ref, cur) if isinstance(ref, CategoricalProfile) else None
        reasons: list[str] = []
        statuses: list[str] = []
        # The null-rate change is judged even when too few values remain to score.
        if null_ref is not None and null_cur is not None:
            status = _grade(abs(null_cur - null_ref), self.check.null_rate_thresholds)
            if status != "ok":
                reasons.append(f"null rate {null_ref:.3f} -> {null_cur:.3f}")
                statuses.append(status)
        if ref.count < self.check.min_samples or cur.count < self.check.min_samples:
            statuses.append("insufficient_data")
            reasons.append(f"fewer than {self.check.min_samples} values (reference {ref.count}, current {cur.count})")
            return FeatureDrift(**common, score=None, status=_feature_status(statuses),
                                unseen_share=unseen, reasons=tuple(reasons))
        score = self._score(name, method, ref, cur)
        statuses.append(_grade(score, (warn, alert)))
        if statuses[-1] != "ok":
            reasons.append(f"{method} {score:.4f} over {'alert' if statuses[-1] == 'alert' else 'warn'} threshold")
        if unseen is not None:
            status = _grade(unseen, self.check.unseen_share_thresholds)
            if status != "ok":
                reasons.append(f"unseen categories {unseen:.3f} of values")
                statuses.append(status)
        return FeatureDrift(**common, score=score, status=_feature_status(statuses), unseen_share=unseen,
                            reasons=tuple(reasons))

    def _score(self, name: str, method: str, ref, cur) -> float:
        return score_profiles(method, ref, cur, self.coarse.get(name))


def score_profiles(method: str, ref, cur, coarse: np.ndarray | None = None) -> float:
    """The distance between two feature profiles of one kind (the kernel shared with skew/)."""
    if isinstance(ref, NumericProfile):
        if method == "wasserstein":
            # Population std (ddof=0), as Evidently normalises.
            population_std = math.sqrt(ref.m2 / ref.count) if ref.count else 0.0
            return profile_wasserstein(ref, cur, population_std)
        groups = coarse if coarse is not None else np.arange(len(ref.bin_counts))
        ref_counts = np.bincount(groups, weights=ref.bin_counts)
        cur_counts = np.bincount(groups, weights=cur.bin_counts, minlength=len(ref_counts))
        return _by_name(method)(ref_counts, cur_counts)
    ref_counts, cur_counts = category_counts(ref, cur)
    return _by_name(method)(ref_counts, cur_counts)


def _wasserstein_count(check: DriftCheck, reference: DatasetProfile, names) -> int:
    """How many of `names` are numeric features scored by Wasserstein (what the numba kernel speeds up)."""
    return sum(isinstance(reference.features[n], NumericProfile) and check.method_for(n, "numeric") == "wasserstein"
               for n in names)


def _by_name(method: str):
    return {"psi": stats.psi, "jensenshannon": stats.jensen_shannon, "linf": stats.l_infinity}[method]


def category_counts(ref: CategoricalProfile, cur: CategoricalProfile) -> tuple[np.ndarray, np.ndarray]:
    """Counts over the union of categories, plus one bucket for values folded into `other`."""
    keys = sorted(set(ref.counts) | set(cur.counts))
    ref_counts = np.array([ref.counts.get(k, 0) for k in keys] + [ref.other_count], dtype=np.float64)
    cur_counts = np.array([cur.counts.get(k, 0) for k in keys] + [cur.other_count], dtype=np.float64)
    if ref_counts[-1] == 0 and cur_counts[-1] == 0:
        ref_counts, cur_counts = ref_counts[:-1], cur_counts[:-1]
    return ref_counts, cur_counts


def _coarse_groups(bin_counts: np.ndarray, target_bins: int) -> np.ndarray:
    """Map fine bins to `target_bins` groups of equal reference mass (reference deciles by default).

    Each group boundary j/target_bins of the cumulative share is rounded to the *nearest*
    fine-bin boundary, so when fine bins are reference percentiles the groups are exactly
    the reference deciles (10 fine bins each, whatever the row count). Boundaries that round
    to the same place (a value holding several deciles' mass) or to an end merge groups.
    """
    total = bin_counts.sum()
    if total == 0 or len(bin_counts) <= target_bins:
        return np.arange(len(bin_counts))
    cumulative = np.cumsum(bin_counts, dtype=np.float64) / total  # share up to the end of each fine bin
    inner = cumulative[:-1]  # boundaries between fine bins 0|1, 1|2, ...
    targets = np.arange(1, target_bins) / target_bins
    # Nearest boundary to each target (ties to the lower one).
    right = np.clip(np.searchsorted(inner, targets, side="left"), 0, len(inner) - 1)
    left = np.clip(right - 1, 0, len(inner) - 1)
    chosen = np.where(np.abs(inner[left] - targets) <= np.abs(inner[right] - targets), left, right)
    cuts = np.unique(chosen)  # a cut after fine bin i
    return np.searchsorted(cuts, np.arange(len(bin_counts)), side="left")


def _chunk_noise(check: DriftCheck, name: str, whole, chunk_profiles, coarse) -> ChunkNoise | None:
    method = check.method_for(name, whole.kind)
    scores, sizes = [], []
    for chunk in chunk_profiles:
        if isinstance(chunk, FeatureError) or chunk.count < 2:
            continue
        scores.append(score_profiles(method, whole, chunk, coarse))
        sizes.append(chunk.count)
    if len(scores) < 3:
        return None
    # A chunk is part of the whole, which shrinks the distance by about sqrt(1 - n/N).
    correction = 1.0 / math.sqrt(max(1e-9, 1 - float(np.mean(sizes)) / max(whole.count, 1)))
    values = np.asarray(scores) * correction
    return ChunkNoise(method, float(values.mean()), float(values.std(ddof=1)), float(np.mean(sizes)))


def _unseen_share(ref: CategoricalProfile, cur: CategoricalProfile) -> float | None:
    if cur.count == 0:
        return None
    unseen = sum(v for k, v in cur.counts.items() if k not in ref.counts)
    return unseen / cur.count


def _rate(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def _grade(value: float, thresholds: tuple[float, float]) -> str:
    warn, alert = thresholds
    if value is None or math.isnan(value):
        return "ok"
    if value >= alert:
        return "alert"
    if value >= warn:
        return "warn"
    return "ok"


def _feature_status(statuses: list[str]) -> str:
    if "alert" in statuses:
        return "alert"
    if "warn" in statuses:
        return "warn"
    if "insufficient_data" in statuses:
        return "insufficient_data"
    return "ok"


def compare_tables(
    reference,
    current,
    features: list[str] | None = None,
    methods: dict[str, str] | None = None,
    numeric_bins: int | None = None,
    **check_params,
) -> CheckResult:
    """One-off drift between two in-memory Arrow tables (tests, notebooks).

    `numeric_bins` sets the fine histogram's bin count; PSI/JS then use those bins as they are.
    """
    from core.profile import DEFAULT_NUMERIC_BINS, build_spec, profile_table

    spec = build_spec(reference, features, n_bins=numeric_bins or DEFAULT_NUMERIC_BINS)
    check = DriftCheck(methods=methods or {}, coarse_bins=numeric_bins or COARSE_BINS, **check_params)
    fitted = check.fit(profile_table(reference, spec))
    return fitted.evaluate(profile_table(current, spec))
