"""`exploration`: is the ranker still exploring as configured, and are its logs usable off-policy?

Per window, from the serving rows:
- the explored share (rows whose exploration flag is set) overall and per segment value (top-N of
  each configured column, e.g. partner), against the configured epsilon. Under the configured
  policy the explored count is Binomial(n, epsilon); a share significantly below
  `collapse` x epsilon is an alert (exploration collapsed), one significantly outside
  [warn_band[0], warn_band[1]] x epsilon a warning. Groups share one noise budget
  (Benjamini-Hochberg at alpha); a group with fewer than `min_rows` rows is insufficient_data;
- catalogue coverage: the share of catalogue items (the distinct values of `item_column` in the
  reference, or `catalogue_size`) with at least `min_item_impressions` impressions, and the Gini
  coefficient of impressions across the catalogue (unshown items count as zeros). Below
  `min_coverage` or above `max_gini` (when set) warns;
- logged propensities: the share missing and the share outside (0, 1]; more than
  `max_bad_propensity` of either is an alert (IPS-style estimates would be biased or undefined).
"""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field, model_validator

from checks.labelled import _encode, numeric, top_groups, window_table
from checks.thresholds import decide
from core.checks import CheckParams, WindowCheck, register_check
from core.errors import SchemaError
from core.results import CheckResult, MetricPoint, worst_status


# The MetricPoint names results of this check declare (the dashboards query these).
EXPORTED = ("exploration_share", "exploration_epsilon", "catalogue_coverage", "impressions_gini",
            "propensity_missing_ratio", "propensity_out_of_range_ratio")


class ExplorationParams(CheckParams):
    enabled: bool = False
    epsilon: float = Field(default=0.1, gt=0, le=1, description="configured share of explored decisions")
    explored_column: str = Field(default="explored", description="1/true where the decision explored")
    propensity_column: str | None = Field(default="propensity", description="logged probability of the shown "
                                                                             "offer; null: not checked")
    item_column: str = Field(default="offer_id", description="the offer (catalogue item) shown")
    segments: list[str] = Field(default=[], description="explored share per value of these columns (partner, ...)")
    top_n: int = Field(default=20, ge=1)
    min_rows: int = Field(default=500, ge=1, description="fewer rows in a group: insufficient_data")
    collapse: float = Field(default=0.5, gt=0, lt=1, description="alert below this share of epsilon")
    warn_band: tuple[float, float] = Field(default=(0.8, 1.25), description="warn outside [low, high] x epsilon")
    alpha: float = Field(default=0.01, gt=0, lt=1, description="false-discovery rate over groups")
    catalogue_size: int | None = Field(default=None, ge=1, description="default: distinct items in the reference")
    min_item_impressions: int = Field(default=10, ge=1, description="N: an item is covered with >= N impressions")
    min_coverage: float | None = Field(default=None, ge=0, le=1, description="warn below this coverage")
    max_gini: float | None = Field(default=None, ge=0, le=1, description="warn above this Gini of impressions")
    max_bad_propensity: float = Field(default=0.001, ge=0, le=1, description="alert above this share of "
                                                                              "missing or out-of-(0, 1] propensities")

    @model_validator(mode="after")
    def _band(self):
        low, high = self.warn_band
        if not (self.collapse <= low <= 1 <= high):
            raise ValueError(f"warn_band: expected collapse <= low <= 1 <= high, got {list(self.warn_band)}")
        return self


def gini(counts: np.ndarray) -> float:
    """Gini coefficient of non-negative counts (0: all equal, -> 1: all on one item)."""
    x = np.sort(np.asarray(counts, dtype=float))
    n, total = len(x), x.sum()
    if n == 0 or total == 0:
        return math.nan
    return float((2.0 * np.arange(1, n + 1) - n - 1) @ x / (n * total))


def share_pvalues(explored: np.ndarray, rows: np.ndarray, params: ExplorationParams) -> tuple[np.ndarray, np.ndarray]:
    """Exact binomial p-values: (warn: outside the band, two-sided), (alert: below collapse x epsilon)."""
    from scipy.stats import binom

    eps = params.epsilon
    low, high = params.warn_band
    p_alert = binom.cdf(explored, rows, params.collapse * eps)
    p_below = binom.cdf(explored, rows, low * eps)
    p_above = binom.sf(explored - 1, rows, min(high * eps, 1.0)) if high * eps < 1 else np.ones(len(rows))
    return np.minimum(1.0, 2.0 * np.minimum(p_below, p_above)), p_alert


class ExplorationCheck(WindowCheck):
    name = "exploration"

    def __init__(self, model_config, params: ExplorationParams) -> None:
        self.model = model_config
        self.params = params

    def catalogue(self, context) -> int:
        """Catalogue size: configured, else the reference's distinct items (read once per runner)."""
        if self.params.catalogue_size:
            return self.params.catalogue_size
        source = context.runner.engine_source("reference")
        column = self.params.item_column
        if column not in source.schema.names:
            raise SchemaError(f"{source.location} (reference): item column '{column}' is missing "
                              "(or set catalogue_size)")

        def read() -> int:
            values = pa.chunked_array([b.column(0) for b in source.batches([column])], source.schema.field(column).type)
            return len(pc.unique(values.drop_null()))

        return context.state.get_or_create(("exploration.catalogue", source.location, column), read)

    def run(self, context) -> CheckResult:
        p = self.params
        source = context.serving_source()
        where = f"{source.location} (window)"
        columns = list(dict.fromkeys([p.explored_column, p.item_column, *p.segments]
                                     + ([p.propensity_column] if p.propensity_column else [])))
        table = window_table(source, columns, context.start, context.end, where, "exploration")
        flag = numeric(table, p.explored_column, where, "exploration flag")
        explored = np.nan_to_num(flag) > 0
        groups = [("", None, np.ones(len(flag), dtype=bool))]
        for column in p.segments:
            index, names = top_groups(_encode(table.column(column)), p.top_n)
            groups += [(column, name, index == i) for i, name in enumerate(names)]
        rows = np.array([m.sum() for _, _, m in groups], dtype=float)
        hits = np.array([explored[m].sum() for _, _, m in groups], dtype=float)
        p_warn, p_alert = share_pvalues(hits, rows, p)
        enough = rows >= p.min_rows
        statuses = decide(np.where(enough, p_warn, np.nan), np.where(enough, p_alert, np.nan), p.alpha)
        shares = [{"segment": seg, "value": value, "rows": int(n), "explored": int(k),
                   "explored_share": k / n if n else None, "status": status}
                  for (seg, value, _), n, k, status in zip(groups, rows, hits, statuses)]
        coverage = self._coverage(table, context)
        propensity = self._propensity(table, where)
        details = {"epsilon": p.epsilon, "collapse_below": p.collapse * p.epsilon,
                   "warn_band": [p.warn_band[0] * p.epsilon, p.warn_band[1] * p.epsilon],
                   "null_flags": int(np.isnan(flag).sum()), "overall": shares[0], "segments": shares[1:],
                   "coverage": coverage, "propensity": propensity,
                   "collapsed": [f"{s['segment']}={s['value']}" if s["segment"] else "overall"
                                 for s in shares if s["status"] == "alert"]}
        status = worst_status([s["status"] for s in shares] + [coverage["status"], propensity["status"]])
        return CheckResult(check=self.name, status=status, current_rows=len(flag), details=details,
                           metrics=_points(details), **context.result_context)

    def _coverage(self, table: pa.Table, context) -> dict:
        p = self.params
        items = pc.drop_null(table.column(p.item_column))
        counts = np.array(pc.value_counts(items).field("counts").to_pylist() if len(items) else [], dtype=float)
        size = max(self.catalogue(context), len(counts))
        full = np.concatenate([counts, np.zeros(size - len(counts))])
        covered = float((full >= p.min_item_impressions).mean()) if size else math.nan
        g = gini(full)
        low = p.min_coverage is not None and covered < p.min_coverage
        high = p.max_gini is not None and g > p.max_gini
        return {"catalogue_size": size, "items_shown": int(len(counts)), "min_item_impressions": p.min_item_impressions,
                "coverage": covered, "gini": g, "status": "warn" if (low or high) else "ok"}

    def _propensity(self, table: pa.Table, where: str) -> dict:
        p = self.params
        if not p.propensity_column:
            return {"checked": False, "status": "ok"}
        values = numeric(table, p.propensity_column, where, "propensity")
        n = len(values)
        absent = int(np.isnan(values).sum())
        present = values[~np.isnan(values)]
        outside = int(((present <= 0) | (present > 1)).sum())
        bad = (absent + outside) / n if n else 0.0
        return {"checked": True, "missing_share": absent / n if n else None,
                "out_of_range_share": outside / n if n else None,
                "min": float(present.min()) if len(present) else None,
                "max": float(present.max()) if len(present) else None,
                "status": "alert" if bad > p.max_bad_propensity else "ok"}


def _points(details: dict) -> tuple[MetricPoint, ...]:
    points = []
    for s in [details["overall"], *details["segments"]]:
        if s["explored_share"] is not None:
            segment = f"{s['segment']}={s['value']}" if s["segment"] else ""
            points.append(MetricPoint("exploration_share", s["explored_share"], (("segment", segment),),
                                      "share of decisions that explored; compare exploration_epsilon"))
    points.append(MetricPoint("exploration_epsilon", details["epsilon"], (), "configured exploration share"))
    cov, prop = details["coverage"], details["propensity"]
    for name, value, text in (("catalogue_coverage", cov["coverage"], "share of items with >= N impressions"),
                              ("impressions_gini", cov["gini"], "Gini of impressions across the catalogue"),
                              ("propensity_missing_ratio", prop.get("missing_share"), "rows without a propensity"),
                              ("propensity_out_of_range_ratio", prop.get("out_of_range_share"),
                               "rows whose propensity is outside (0, 1]")):
        if value is not None and math.isfinite(value):
            points.append(MetricPoint(name, float(value), (), text))
    return tuple(points)


@register_check("exploration", params=ExplorationParams, needs=("rows",),
                exports=EXPORTED,
                summary="explored share vs epsilon per segment, catalogue coverage and Gini, logged propensities")
def exploration_check(model_config, params: ExplorationParams | None = None) -> ExplorationCheck:
    return ExplorationCheck(model_config, params or ExplorationParams())
