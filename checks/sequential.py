"""Always-valid sequential tests for a model rollout: control and candidate serving side by side.

A rollout is judged on cumulative sums per arm (impressions, clicks, predicted clicks, revenue),
looked at as often as one likes (a job every hour). Each metric gets a normal-mixture
confidence sequence (Robbins' mixture; the mSPRT of Johari, Pekelis and Walsh, 2017): with
V the variance of the estimate and tau the mixture's scale, the interval

    estimate +/- sqrt(V (V + tau^2) / tau^2 * (2 log(1/a) + log((V + tau^2) / V)))

covers the true value at every look at once with probability at least 1 - a (asymptotically:
V is plugged in, and the estimates are sums of many independent impressions). tau is the
effect the test is tuned for (`effect` x the control's mean): the sequence is narrowest when
the true difference is about that size.

Metrics:
- ctr: the candidate's click rate minus the control's;
- revenue: revenue per impression (price x click), candidate minus control;
- calibration: the candidate's calibration ratio sum(p)/sum(y), from a sequence on its mean
  residual y - p, whose variance process is sum p (1 - p).

The decision at a look, with the error rate split evenly over the metrics (Bonferroni):
- stop when any metric is proven harmful (the CTR or revenue interval lies below 0, or the
  calibration ratio interval lies outside [1/(1+t), 1+t]);
- promote when CTR and revenue are proven non-inferior (their intervals lie above
  -margin x the control's mean) and nothing says stop;
- continue otherwise (also while an arm has fewer than `min_impressions`).
So a candidate no worse than the control is stopped with probability at most alpha, and a
candidate worse than the margin is promoted with probability at most alpha, over the whole
rollout however often it is looked at. Everything here is numpy and broadcasts, so the same
code judges one rollout or a million simulated ones.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np

STOP, CONTINUE, PROMOTE = -1, 0, 1
DECISIONS = {STOP: "stop", CONTINUE: "continue", PROMOTE: "promote"}
METRICS = ("ctr", "calibration", "revenue")


def mixture_halfwidth(variance, tau, alpha: float):
    """Half-width of the normal-mixture confidence sequence for an estimate of this variance."""
    v = np.maximum(np.asarray(variance, dtype=float), 1e-300)
    t2 = np.maximum(np.asarray(tau, dtype=float), 1e-300) ** 2
    return np.sqrt(v * (v + t2) / t2 * (2.0 * math.log(1.0 / alpha) + np.log((v + t2) / v)))


@dataclass(frozen=True)
class ArmSums:
    """Cumulative sums of one arm (floats or numpy arrays of any shape; they add elementwise)."""

    impressions: object = 0.0
    clicks: object = 0.0
    predicted: object = 0.0       # sum of p
    predicted_var: object = 0.0   # sum of p (1 - p)
    revenue: object = 0.0         # sum of price x click
    revenue_sq: object = 0.0      # sum of (price x click)^2

    def __add__(self, other: "ArmSums") -> "ArmSums":
        return ArmSums(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))

    @classmethod
    def of(cls, clicks: np.ndarray, scores: np.ndarray, price: np.ndarray | None = None) -> "ArmSums":
        clicks = np.asarray(clicks, dtype=float)
        scores = np.asarray(scores, dtype=float)
        revenue = clicks * (np.asarray(price, dtype=float) if price is not None else 0.0)
        return cls(float(len(clicks)), float(clicks.sum()), float(scores.sum()),
                   float((scores * (1.0 - scores)).sum()), float(revenue.sum()), float((revenue ** 2).sum()))

    def to_dict(self) -> dict:
        return {f.name: float(getattr(self, f.name)) for f in fields(self)}


def _mean_var(total, total_sq, n):
    """Mean and the variance of the mean of a per-impression value, from its sum and sum of squares."""
    n = np.maximum(n, 1.0)
    mean = total / n
    return mean, np.maximum(total_sq / n - mean ** 2, 0.0) / n


def _rate_var(clicks, n):
    """Mean and variance of a click rate (shrunk half a click away from 0 and 1, so V > 0 early)."""
    n1 = np.maximum(n, 1.0)
    shrunk = (clicks + 0.5) / (n1 + 1.0)
    return clicks / n1, shrunk * (1.0 - shrunk) / n1


def difference_interval(control: tuple, candidate: tuple, effect: float, alpha: float, floor: float):
    """(estimate, low, high) of candidate minus control mean; each side is (mean, variance)."""
    estimate = candidate[0] - control[0]
    variance = control[1] + candidate[1]
    tau = np.maximum(effect * np.abs(control[0]), floor)
    half = mixture_halfwidth(variance, tau, alpha)
    return estimate, estimate - half, estimate + half


def calibration_interval(arm: ArmSums, effect: float, alpha: float):
    """(ratio, low, high) of sum(p)/sum(y), from a sequence on the mean residual y - p."""
    n = np.maximum(arm.impressions, 1.0)
    pbar = arm.predicted / n
    residual = (arm.clicks - arm.predicted) / n
    variance = np.maximum(arm.predicted_var, 0.25) / n ** 2
    half = mixture_halfwidth(variance, np.maximum(effect * pbar, 1e-12), alpha)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(pbar + residual > 0, pbar / (pbar + residual), np.inf)
        low = np.where(pbar + residual + half > 0, pbar / (pbar + residual + half), np.inf)
        high = np.where(pbar + residual - half > 0, pbar / (pbar + residual - half), np.inf)
    return ratio, low, high


@dataclass(frozen=True)
class Rules:
    """How a look is judged (see the module docs)."""

    alpha: float = 0.05
    metrics: tuple[str, ...] = METRICS
    effect: float = 0.05                 # relative effect the mixture is tuned for
    margin: float = 0.02                 # non-inferiority margin for promotion, relative to the control
    calibration_tolerance: float = 0.1   # the candidate's ratio may sit in [1/(1+t), 1+t]
    min_impressions: float = 1000        # per arm, before any decision

    def __post_init__(self) -> None:
        unknown = [m for m in self.metrics if m not in METRICS]
        if unknown or not self.metrics:
            raise ValueError(f"metrics: unknown {unknown[0]!r} (known: {', '.join(METRICS)})" if unknown
                             else "metrics: at least one is needed")
        if not 0 < self.alpha < 1:
            raise ValueError(f"alpha must lie in (0, 1), got {self.alpha}")

    @property
    def per_metric_alpha(self) -> float:
        return self.alpha / len(self.metrics)


def judge(control: ArmSums, candidate: ArmSums, rules: Rules = Rules()) -> dict:
    """Per metric (estimate, low, high, harmful, non_inferior) arrays, and `decision` codes."""
    a = rules.per_metric_alpha
    out: dict = {}
    harmful = np.zeros(np.broadcast(control.impressions, candidate.impressions).shape, dtype=bool)
    proven = np.ones_like(harmful)
    for metric in rules.metrics:
        if metric == "calibration":
            ratio, low, high = calibration_interval(candidate, rules.effect, a)
            t = rules.calibration_tolerance
            bad = (low > 1.0 + t) | (high < 1.0 / (1.0 + t))
            out[metric] = {"estimate": ratio, "low": low, "high": high, "harmful": bad}
            harmful = harmful | bad
            continue
        if metric == "ctr":
            c, d = _rate_var(control.clicks, control.impressions), _rate_var(candidate.clicks, candidate.impressions)
        else:
            c = _mean_var(control.revenue, control.revenue_sq, control.impressions)
            d = _mean_var(candidate.revenue, candidate.revenue_sq, candidate.impressions)
        floor = 1e-9 if metric == "revenue" else 1e-6
        estimate, low, high = difference_interval(c, d, rules.effect, a, floor)
        bad = high < 0
        ok = low > -rules.margin * np.abs(c[0])
        with np.errstate(divide="ignore", invalid="ignore"):
            base = np.where(c[0] != 0, np.abs(c[0]), np.nan)
        out[metric] = {"estimate": estimate, "low": low, "high": high, "harmful": bad, "non_inferior": ok,
                       "control": c[0], "candidate": d[0], "relative": estimate / base,
                       "relative_low": low / base, "relative_high": high / base}
        harmful = harmful | bad
        proven = proven & ok
    enough = (np.asarray(control.impressions) >= rules.min_impressions) & (
        np.asarray(candidate.impressions) >= rules.min_impressions)
    if not any(m in rules.metrics for m in ("ctr", "revenue")):
        proven = np.zeros_like(proven)  # calibration alone can stop a rollout, never promote one
    out["decision"] = np.where(enough & harmful, STOP, np.where(enough & proven, PROMOTE, CONTINUE))
    return out


def first_decision(decisions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For looks along the last axis: the first non-continue decision and its look (1-based; 0: none)."""
    decided = decisions != CONTINUE
    any_decided = decided.any(axis=-1)
    first = np.argmax(decided, axis=-1)
    code = np.take_along_axis(decisions, first[..., None], axis=-1)[..., 0]
    return np.where(any_decided, code, CONTINUE), np.where(any_decided, first + 1, 0)
