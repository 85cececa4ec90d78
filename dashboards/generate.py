"""The Grafana dashboards, generated from code with grafana-foundation-sdk (Grafana 11.6).

Each dashboard is a function returning a builder; `build_all()` renders them to plain dicts
and `render()` to the canonical JSON committed under dashboards/json/ (sorted keys, two
spaces, trailing newline), so a diff of the committed files is a diff of the dashboards.
Regenerate with `driftline dashboards export dashboards/json`.

Every query selects models with `model=~"$model"` (and features with `feature=~"$feature"`);
the variables' "All" value is `.*`, so a query is valid PromQL once the variables are
substituted — the integration test runs each one against a real Prometheus.
"""

from __future__ import annotations

import json
from pathlib import Path

from grafana_foundation_sdk.builders import bargauge, stat, statetimeline, table, timeseries
from grafana_foundation_sdk.builders.common import ReduceDataOptions, VizLegendOptions
from grafana_foundation_sdk.builders.dashboard import (
    Dashboard,
    DatasourceVariable,
    QueryVariable,
    Row,
    ThresholdsConfig,
)
from grafana_foundation_sdk.builders.prometheus import Dataquery
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.common import (
    BarGaugeDisplayMode,
    BigValueColorMode,
    BigValueGraphMode,
    LegendDisplayMode,
    LegendPlacement,
    VizOrientation,
)
from grafana_foundation_sdk.models.dashboard import (
    DataSourceRef,
    Threshold,
    ThresholdsMode,
    ValueMap,
    ValueMappingResult,
    VariableRefresh,
    VariableSort,
)

GRAFANA_TARGET = "11.6"
FOLDER = "driftline"
TAGS = ["driftline", "generated"]
DATASOURCE = DataSourceRef(type_val="prometheus", uid="${datasource}")
STATUS_CHECK = "driftline_check_status"
M = 'model=~"$model"'  # the model selector every query carries

# driftline_check_status (monitor/exporter.py): 0 ok, 1 warn, 2 alert or error,
# -1 insufficient data, -2 scheduled but no result yet.
STATUS_MAPPING = ValueMap({
    "-2": ValueMappingResult(text="pending", color="text", index=0),
    "-1": ValueMappingResult(text="no data", color="blue", index=1),
    "0": ValueMappingResult(text="ok", color="green", index=2),
    "1": ValueMappingResult(text="warn", color="yellow", index=3),
    "2": ValueMappingResult(text="alert", color="red", index=4),
})
OVERALL = 'segment=""'  # value metrics carry segment="" for the whole window


def _steps(*steps: tuple[float | None, str]):
    return ThresholdsConfig().mode(ThresholdsMode.ABSOLUTE).steps([Threshold(v, c) for v, c in steps])


def _query(expr: str, legend: str = "__auto", ref: str = "A", instant: bool = False) -> Dataquery:
    query = Dataquery().expr(expr).legend_format(legend).ref_id(ref)
    return query.instant() if instant else query.range()


def _timeseries(title: str, description: str, *queries: Dataquery, unit: str = "short", width: int = 12,
                height: int = 8, steps=None, min_value: float | None = None):
    panel = (timeseries.Panel().title(title).description(description).datasource(DATASOURCE)
             .unit(unit).span(width).height(height)
             .legend(VizLegendOptions().display_mode(LegendDisplayMode.TABLE).placement(LegendPlacement.BOTTOM)
                     .show_legend(True).calcs(["lastNotNull", "max"])))
    if min_value is not None:
        panel = panel.min(min_value)
    if steps is not None:
        panel = panel.thresholds(steps)
    for query in queries:
        panel = panel.with_target(query)
    return panel


def _stat(title: str, description: str, expr: str, unit: str = "short", width: int = 6, steps=None,
          legend: str = "__auto"):
    panel = (stat.Panel().title(title).description(description).datasource(DATASOURCE).unit(unit)
             .span(width).height(4).graph_mode(BigValueGraphMode.NONE).color_mode(BigValueColorMode.BACKGROUND)
             .reduce_options(ReduceDataOptions().calcs(["lastNotNull"]).values(False))
             .with_target(_query(expr, legend, instant=True)))
    return panel.thresholds(steps) if steps is not None else panel


def _top(title: str, description: str, expr: str, legend: str, unit: str = "short", steps=None, width: int = 12):
    panel = (bargauge.Panel().title(title).description(description).datasource(DATASOURCE).unit(unit)
             .span(width).height(8).orientation(VizOrientation.HORIZONTAL)
             .display_mode(BarGaugeDisplayMode.GRADIENT).min(0)
             .reduce_options(ReduceDataOptions().calcs(["lastNotNull"]).values(False))
             .with_target(_query(expr, legend, instant=True)))
    return panel.thresholds(steps) if steps is not None else panel


def _status_timeline(title: str, description: str, expr: str, width: int = 24, height: int = 8):
    return (statetimeline.Panel().title(title).description(description).datasource(DATASOURCE)
            .span(width).height(height).mappings([STATUS_MAPPING]).show_value("never").merge_values(True)
            .thresholds(_steps((None, "blue"), (0, "green"), (1, "yellow"), (2, "red")))
            .with_target(_query(expr, "{{model}} {{check}}")))


def _base(uid: str, title: str, description: str, feature_variable: str | None = None) -> Dashboard:
    """Common settings and variables; `feature_variable` is the series selector listing features."""
    model = (QueryVariable("model").label("Model").datasource(DATASOURCE)
             .query(f"label_values({STATUS_CHECK}, model)").refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
             .sort(VariableSort.ALPHABETICAL_ASC).multi(True).include_all(True).all_value(".*"))
    dashboard = (Dashboard(title).uid(uid).description(description).tags(TAGS).editable()
                 .time("now-7d", "now").refresh("1m").timezone("utc")
                 .with_variable(DatasourceVariable("datasource").label("Data source").type("prometheus"))
                 .with_variable(model))
    if feature_variable:
        dashboard = dashboard.with_variable(
            QueryVariable("feature").label("Feature").datasource(DATASOURCE)
            .query(f"label_values({feature_variable}, feature)")
            .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED).sort(VariableSort.ALPHABETICAL_ASC)
            .multi(True).include_all(True).all_value(".*"))
    return dashboard


def overview() -> Dashboard:
    return (
        _base("driftline-overview", "driftline / Overview", "Status of every model and check: 0 ok, 1 warn, 2 alert.")
        .with_panel(_stat("Checks in alert", "Checks whose latest window is in alert.",
                          f"sum(({STATUS_CHECK}{{{M}}} == bool 2))",
                          steps=_steps((None, "green"), (1, "red"))))
        .with_panel(_stat("Checks warning", "Checks whose latest window is at warn.",
                          f"sum(({STATUS_CHECK}{{{M}}} == bool 1))",
                          steps=_steps((None, "green"), (1, "yellow"))))
        .with_panel(_stat("Oldest successful run", "Time since the least recent successful job run.",
                          f"time() - min(driftline_job_last_success_timestamp_seconds{{{M}}})", unit="s",
                          steps=_steps((None, "green"), (2 * 86400, "red"))))
        .with_panel(_stat("Alerts sent (range)", "Notifications delivered by every sink in the time range.",
                          "sum(increase(driftline_alerts_sent_total[$__range]))"))
        .with_row(Row("Status"))
        .with_panel(_status_timeline("Status per model and check", "Latest status of each check over time.",
                                     f"max by (model, check) ({STATUS_CHECK}{{{M}}})", height=10))
        .with_panel(
            table.Panel().title("Current status").description("One row per model and check, latest status.")
            .datasource(DATASOURCE).span(24).height(8).mappings([STATUS_MAPPING])
            .with_target(_query(f"max by (model, check) ({STATUS_CHECK}{{{M}}})", instant=True)
                         .format(_table_format()))
        )
    )


def data_drift() -> Dashboard:
    # Only the drift checks: attribution_drift also reports per-feature scores, on its own dashboard.
    score = 'driftline_feature_drift_score{%s, check=~"data_drift|prediction_drift"%s}'
    every, selected = score % (M, ""), score % (M, ', feature=~"$feature"')
    legend = "{{feature}} ({{method}})"
    return (
        _base("driftline-data-drift", "driftline / Data drift",
              "Per-feature drift scores (effect sizes, not p-values) of data_drift and prediction_drift. "
              "Scales differ by method: wasserstein in reference standard deviations, linf and psi unitless.",
              feature_variable=every)
        .with_panel(_timeseries("Drift score per feature", "Latest window's score of each selected feature.",
                                _query(f"max by (feature, method) ({selected})", legend), width=24, height=10,
                                min_value=0))
        .with_panel(_top("Most drifted features", "Top 10 features by current score.",
                         f"topk(10, max by (feature, method) ({every}))", legend))
        .with_panel(_top("Most drifted over the range", "Top 10 features by their highest score in the range.",
                         f"topk(10, max by (feature, method) (max_over_time({every}[$__range])))", legend))
        .with_panel(_status_timeline("Drift check status", "data_drift and prediction_drift per model.",
                                     f'max by (model, check) ({STATUS_CHECK}{{{M}, check=~"data_drift|prediction_drift"}})'))
    )


def calibration() -> Dashboard:
    def overall(metric: str) -> str:
        return f"max by (model, prediction) ({metric}{{{M}, {OVERALL}}})"

    legend = "{{model}} {{prediction}}"
    return (
        _base("driftline-calibration", "driftline / Calibration and performance",
              "Calibration (sum of predictions / sum of outcomes, ideally 1), ECE, AUC and normalized entropy "
              "of the whole window, per prediction column, on windows whose labels have arrived.")
        .with_panel(_timeseries("Calibration ratio", "Predicted over observed CTR; 1 is perfectly calibrated.",
                                _query(overall("driftline_calibration_ratio"), legend),
                                steps=_steps((None, "red"), (0.9, "green"), (1.1, "red"))))
        .with_panel(_timeseries("Expected calibration error", "ECE over equal-mass bins; lower is better.",
                                _query(overall("driftline_ece"), legend), min_value=0))
        .with_panel(_timeseries("AUC", "Ranking quality on labelled windows.",
                                _query(overall("driftline_auc"), legend), unit="percentunit"))
        .with_panel(_timeseries("Normalized entropy", "Log loss over the entropy of the base rate; lower is better,"
                                " 1 is no better than predicting the average CTR.",
                                _query(overall("driftline_normalized_entropy"), legend),
                                steps=_steps((None, "green"), (1, "red"))))
        .with_panel(_timeseries("Calibration change before labels mature",
                                "label_maturity: the change of sum(p)/sum(y) vs the reference, on windows whose "
                                "labels are still arriving, corrected by the learned maturity curve.",
                                _query(f"max by (model, label) (driftline_label_immature_ratio_change{{{M}}})",
                                       "{{model}} {{label}}"),
                                steps=_steps((None, "red"), (0.95, "green"), (1.05, "red"))))
        .with_panel(_timeseries("Label maturity and arrivals", "Share of the window's eventual positives expected "
                                "by now, and the KS distance of their arrivals from the maturity curve (a jump: "
                                "a tracking or attribution break).",
                                _query(f"max by (model, label) (driftline_label_maturity_share{{{M}}})",
                                       "maturity {{model}} {{label}}"),
                                _query(f"max by (model, label) (driftline_label_curve_ks_distance{{{M}}})",
                                       "arrival KS {{model}} {{label}}", ref="B"), min_value=0))
        .with_panel(_status_timeline("Labelled check status", "Checks other than drift (calibration, "
                                     "performance, concept drift, skew ...).",
                                     f'max by (model, check) ({STATUS_CHECK}{{{M}, check!~".*drift.*"}})'))
    )


def skew() -> Dashboard:
    mismatch = "driftline_skew_mismatch_ratio"
    return (
        _base("driftline-skew", "driftline / Train-serve skew",
              "Share of examples whose serving value differs from the offline value, per feature, and the "
              "share whose logged score differs from the offline score.",
              feature_variable=f"{mismatch}{{{M}}}")
        .with_panel(_timeseries("Feature mismatch ratio", "Per feature, share of joined examples that differ.",
                                _query(f'max by (feature) ({mismatch}{{{M}, feature=~"$feature"}})', "{{feature}}"),
                                unit="percentunit", width=24, min_value=0))
        .with_panel(_top("Most skewed features", "Top 10 features by current mismatch ratio.",
                         f"topk(10, max by (feature) ({mismatch}{{{M}}}))", "{{feature}}", unit="percentunit",
                         steps=_steps((None, "green"), (0.01, "yellow"), (0.05, "red"))))
        .with_panel(_timeseries("Prediction skew ratio", "Share of examples whose logged score differs from the "
                                "offline score.",
                                _query(f"max by (model, prediction) (driftline_prediction_skew_ratio{{{M}, {OVERALL}}})",
                                       "{{model}} {{prediction}}"), unit="percentunit", min_value=0))
    )


def explainability() -> Dashboard:
    importance = "driftline_feature_importance"
    return (
        _base("driftline-explainability", "driftline / Explainability",
              "Global feature importance (mean |SHAP| or permutation) per window, and how it shifts.",
              feature_variable=f"{importance}{{{M}}}")
        .with_panel(_timeseries("Feature importance", "Importance of the selected features per method.",
                                _query(f'max by (feature, method) ({importance}{{{M}, feature=~"$feature"}})',
                                       "{{feature}} ({{method}})"), width=24, height=10, min_value=0))
        .with_panel(_top("Top features now", "Top 10 features by current importance.",
                         f"topk(10, max by (feature, method) ({importance}{{{M}}}))", "{{feature}} ({{method}})"))
        .with_panel(_timeseries("Share of total importance", "Each feature's importance over the sum for its "
                                "model and method: a feature that gains share is driving predictions more.",
                                _query(f"max by (feature, method) ({importance}{{{M}}} / on (model, method) "
                                       f"group_left sum by (model, method) ({importance}{{{M}}}))",
                                       "{{feature}} ({{method}})"), unit="percentunit", min_value=0))
    )


def id_features() -> Dashboard:
    """id_drift (checks/id_drift.py): what a CTR model's ID columns serve, from sketches."""
    selected = '{%s, feature=~"$feature"}' % M
    legend = "{{model}} {{feature}}"

    def per_column(metric: str) -> Dataquery:
        return _query(f"max by (model, feature) ({metric}{selected})", legend)

    return (
        _base("driftline-ids", "driftline / ID features",
              "Declared ID columns (offer, advertiser, partner, hashed user) vs the reference: traffic on unseen "
              "and rarely trained (cold-start) IDs, coverage and churn of the top-k head, and each signal's move "
              "beyond the reference's own holdout baseline (hash collisions included where configured).",
              feature_variable="driftline_id_unseen_traffic_rate{%s}" % M)
        .with_panel(_timeseries("Unseen ID traffic", "Share of the window's rows on IDs absent from the reference.",
                                per_column("driftline_id_unseen_traffic_rate"), unit="percentunit", min_value=0))
        .with_panel(_timeseries("Cold-start exposure", "Share of the window's rows on IDs the reference holds fewer "
                                "than cold_start_min_count times (unseen included).",
                                per_column("driftline_id_cold_start_exposure"), unit="percentunit", min_value=0))
        .with_panel(_timeseries("Top-k coverage", "Share of the window's rows on the reference's top-k IDs.",
                                per_column("driftline_id_topk_coverage"), unit="percentunit", min_value=0))
        .with_panel(_timeseries("Top-k overlap (Jaccard)", "Overlap of the window's and the reference's top-k "
                                "sets; 1 - Jaccard is the head's churn.",
                                per_column("driftline_id_topk_jaccard"), min_value=0))
        .with_panel(_top("Signals beyond baseline", "Each ID signal's move in its bad direction beyond the "
                         "reference's holdout baseline (unseen_traffic, cold_start, topk_coverage, topk_churn, "
                         "collision_rate).",
                         f"topk(10, max by (feature, signal) (driftline_id_signal_excess{selected}))",
                         "{{feature}} {{signal}}", width=24))
        .with_panel(_status_timeline("ID check status", "id_drift per model.",
                                     f'max by (model, check) ({STATUS_CHECK}{{{M}, check="id_drift"}})'))
    )


def job_health() -> Dashboard:
    duration = "driftline_job_duration_seconds"
    return (
        _base("driftline-jobs", "driftline / Job health",
              "Scheduled runs: duration, failures, last success, alerts sent, and whether the exporter is up.")
        .with_panel(_stat("Exporter up", "Prometheus can scrape driftline /metrics and driftline can read "
                          "its results store.", 'min(up{job="driftline"}) * min(driftline_store_up)',
                          steps=_steps((None, "red"), (1, "green"))))
        .with_panel(_stat("Failures (range)", "Failed job runs in the time range.",
                          f"sum(increase(driftline_job_failures_total{{{M}}}[$__range]))",
                          steps=_steps((None, "green"), (1, "red"))))
        .with_panel(_stat("Runs (range)", "Job runs finished in the time range.",
                          f"sum(increase({duration}_count{{{M}}}[$__range]))"))
        .with_panel(_stat("Oldest successful run", "Time since the least recent successful job run.",
                          f"time() - min(driftline_job_last_success_timestamp_seconds{{{M}}})", unit="s",
                          steps=_steps((None, "green"), (2 * 86400, "red"))))
        .with_panel(_timeseries("Run duration p95", "95th percentile of run duration per model and check.",
                                _query(f"histogram_quantile(0.95, sum by (le, model, check) "
                                       f"(rate({duration}_bucket{{{M}}}[$__rate_interval])))", "{{model}} {{check}}"),
                                unit="s", min_value=0))
        .with_panel(_timeseries("Mean run duration", "Average duration of all runs since the service started.",
                                _query(f"sum by (model, check) ({duration}_sum{{{M}}}) / "
                                       f"sum by (model, check) ({duration}_count{{{M}}})", "{{model}} {{check}}"),
                                unit="s", min_value=0))
        .with_panel(_timeseries("Time since last success", "Per model and check.",
                                _query(f"time() - max by (model, check) "
                                       f"(driftline_job_last_success_timestamp_seconds{{{M}}})", "{{model}} {{check}}"),
                                unit="s", min_value=0))
        .with_panel(_timeseries("Failures", "Failed runs per model and check (increase over 1h).",
                                _query(f"sum by (model, check) (increase(driftline_job_failures_total{{{M}}}[1h]))",
                                       "{{model}} {{check}}"), min_value=0))
        .with_panel(_timeseries("Windows by state", "Run-ledger windows per state: pending, running, succeeded, "
                                "failed, skipped.", _query(f"sum by (state) (driftline_job_windows{{{M}}})", "{{state}}"),
                                min_value=0))
        .with_panel(_timeseries("Skipped windows", "Windows skipped beyond the backfill limit, and triggers "
                                "skipped because the previous run was still going.",
                                _query(f"sum by (model, check, reason) (driftline_job_skipped_total{{{M}}})",
                                       "{{model}} {{check}} {{reason}}"), min_value=0))
        .with_row(Row("Alert delivery"))
        .with_panel(_timeseries("Alerts sent per sink", "Notifications delivered per sink (increase over 1h).",
                                _query("sum by (sink) (increase(driftline_alerts_sent_total[1h]))", "{{sink}}"),
                                width=8, min_value=0))
        .with_panel(_timeseries("Alerts waiting per sink", "Outbox messages not delivered yet (retrying).",
                                _query("sum by (sink) (driftline_alerts_pending)", "{{sink}}"), width=8, min_value=0))
        .with_panel(_timeseries("Dead-lettered alerts per sink", "Messages given up on after the route's attempts.",
                                _query("sum by (sink) (driftline_alerts_dead_lettered_total)", "{{sink}}"),
                                width=8, min_value=0, steps=_steps((None, "green"), (1, "red"))))
    )


DECISION_MAPPING = ValueMap({
    "-1": ValueMappingResult(text="stop", color="red", index=0),
    "0": ValueMappingResult(text="continue", color="yellow", index=1),
    "1": ValueMappingResult(text="promote", color="green", index=2),
})


def ranking() -> Dashboard:
    """Rollouts (one series per stage: the `stage` label from the rollout check's config), slots, exploration."""
    arm = "{{model}} {{control}} -> {{candidate}} {{stage}}"
    lift = "driftline_rollout_lift"

    def band(metric: str) -> list[Dataquery]:
        return [_query(f'{lift}{suffix}{{{M}, metric="{metric}"}}', f"{arm} {name}", ref)
                for suffix, name, ref in (("", "estimate", "A"), ("_low", "low", "B"), ("_high", "high", "C"))]

    decision = (statetimeline.Panel().title("Decision per stage").description(
        "The always-valid sequential test at every look: stop (alert), continue or promote.")
        .datasource(DATASOURCE).span(24).height(6).mappings([DECISION_MAPPING]).show_value("never")
        .merge_values(True).thresholds(_steps((None, "red"), (0, "yellow"), (1, "green")))
        .with_target(_query(f"min by (model, control, candidate, stage) (driftline_rollout_decision{{{M}}})", arm)))
    return (
        _base("driftline-ranking", "driftline / Ranking: rollouts and exploration",
              "Control vs candidate model versions on a traffic split: decision, candidate share, and the "
              "candidate's CTR and revenue-per-impression lift with intervals valid at every look; then "
              "exploration: explored share against epsilon, catalogue coverage and logged propensities.")
        .with_row(Row("Rollouts"))
        .with_panel(decision)
        .with_panel(_timeseries("Candidate traffic share", "Candidate impressions over both arms' since the "
                                "rollout started (shadow, 5%, 50%, 100%).",
                                _query(f"driftline_rollout_candidate_share{{{M}}}", arm), unit="percentunit",
                                width=8, min_value=0))
        .with_panel(_timeseries("CTR lift", "Candidate minus control CTR, relative to the control; low and high "
                                "bound an interval that holds at every look.", *band("ctr"), unit="percentunit",
                                width=8))
        .with_panel(_timeseries("Revenue per impression lift", "Candidate minus control price x click per "
                                "impression, relative to the control.", *band("revenue"), unit="percentunit",
                                width=8))
        .with_panel(_timeseries("Candidate calibration ratio", "Candidate sum(p)/sum(y) with its always-valid "
                                "interval; the rollout stops when the interval leaves the configured band.",
                                *[_query(f"driftline_rollout_calibration_ratio{suffix}{{{M}}}", f"{arm} {name}", ref)
                                  for suffix, name, ref in (("", "ratio", "A"), ("_low", "low", "B"),
                                                            ("_high", "high", "C"))],
                                width=24, steps=_steps((None, "red"), (0.9, "green"), (1.1, "red"))))
        .with_row(Row("Slots"))
        .with_panel(_timeseries("Calibration ratio per slot and version", "Predicted over observed clicks in each "
                                "slot (position) x model version; 1 is calibrated, so a slot a version over-predicts "
                                "is one series off the band.",
                                _query(f'driftline_slot_calibration_ratio{{{M}, version!=""}}',
                                       "{{model}} slot {{slot}} {{version}}"),
                                width=12, steps=_steps((None, "red"), (0.9, "green"), (1.1, "red"))))
        .with_panel(_timeseries("Observed and predicted CTR per slot", "Position bias: each slot's observed CTR "
                                "against the mean prediction there (all versions).",
                                _query(f'driftline_slot_ctr_observed{{{M}, version=""}}', "{{model}} slot {{slot}} observed"),
                                _query(f'driftline_slot_ctr_predicted{{{M}, version=""}}',
                                       "{{model}} slot {{slot}} predicted", "B"),
                                unit="percentunit", width=12, min_value=0))
        .with_row(Row("Exploration"))
        .with_panel(_timeseries("Explored share vs epsilon", "Share of decisions that explored, overall and per "
                                "segment value, against the configured epsilon (dashed: exploration_epsilon).",
                                _query(f"driftline_exploration_share{{{M}}}", "{{model}} {{segment}}"),
                                _query(f"driftline_exploration_epsilon{{{M}}}", "{{model}} epsilon", "B"),
                                unit="percentunit", width=12, min_value=0))
        .with_panel(_timeseries("Catalogue coverage and impression Gini", "Share of catalogue items with at least N "
                                "impressions in the window; Gini of impressions across items (1: all on one).",
                                _query(f"driftline_catalogue_coverage{{{M}}}", "{{model}} coverage"),
                                _query(f"driftline_impressions_gini{{{M}}}", "{{model}} gini", "B"),
                                unit="percentunit", width=6, min_value=0))
        .with_panel(_timeseries("Bad logged propensities", "Rows without a propensity, or with one outside (0, 1]: "
                                "off-policy estimates need them.",
                                _query(f"driftline_propensity_missing_ratio{{{M}}}", "{{model}} missing"),
                                _query(f"driftline_propensity_out_of_range_ratio{{{M}}}", "{{model}} out of range",
                                       "B"), unit="percentunit", width=6, min_value=0))
    )


def _table_format():
    from grafana_foundation_sdk.models.prometheus import PromQueryFormat

    return PromQueryFormat.TABLE


# File stem (under dashboards/json/) -> builder function.
DASHBOARDS = {
    "overview": overview,
    "data-drift": data_drift,
    "calibration": calibration,
    "skew": skew,
    "explainability": explainability,
    "ids": id_features,
    "job-health": job_health,
    "ranking": ranking,
}


def build(name: str) -> dict:
    """One dashboard as a plain dict, panels numbered in layout order."""
    data = json.loads(json.dumps(DASHBOARDS[name]().build(), cls=JSONEncoder))
    for number, panel in enumerate(data.get("panels", []), start=1):
        panel["id"] = number
    return data


def build_all() -> dict[str, dict]:
    return {name: build(name) for name in DASHBOARDS}


def render(dashboard: dict) -> str:
    return json.dumps(dashboard, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def export(directory: str | Path) -> list[Path]:
    """Write every dashboard as <name>.json into `directory`; return the paths."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, dashboard in build_all().items():
        path = directory / f"{name}.json"
        path.write_text(render(dashboard))
        written.append(path)
    return written


def concrete_query(expr: str, range_: str = "1h", rate_interval: str = "1m") -> str:
    """A panel's PromQL as Grafana sends it with every variable at "All" (`.*`)."""
    for name, value in (("$__rate_interval", rate_interval), ("$__range", range_), ("$__interval", rate_interval),
                        ("$model", ".*"), ("$feature", ".*")):
        expr = expr.replace(name, value)
    return expr


def panel_queries(dashboard: dict) -> list[tuple[str, str]]:
    """(panel title, PromQL) for every query of every panel, rows included."""
    found = []
    for panel in dashboard.get("panels", []):
        for inner in [panel, *panel.get("panels", [])]:
            for target in inner.get("targets", []) or []:
                if target.get("expr"):
                    found.append((inner.get("title", ""), target["expr"]))
    return found
