"""`data_drift` and `prediction_drift` as registered checks: their parameters (declared once,
here) and the adapter from the runner's reference and window views to the profile statistics
of checks/drift.py. With `report`, a window that warns or alerts also gets an Evidently
drill-down report (checks/drift_report.py) that opens with this very result."""

from __future__ import annotations

import logging
from typing import Literal

from pydantic import Field

from checks.drift import DriftCheck, FittedDriftCheck
from core.checks import Check, CheckParams, FittedCheck, register_check
from core.errors import ConfigError, DriftlineError
from core.results import CheckResult, ReportOn, report_wanted
from core.settings import Pair

log = logging.getLogger("driftline.checks")
Method = Literal["wasserstein", "psi", "jensenshannon", "linf"]


class DriftParams(CheckParams):
    enabled: bool = True
    features: list[str] | None = Field(default=None, description="default: every schema feature (data_drift) "
                                                                 "or every prediction column (prediction_drift)")
    methods: dict[str, Method] = Field(default={}, description="feature -> method; default wasserstein / linf")
    thresholds: dict[Method, Pair] = Field(default={}, description="method -> [warn, alert]")
    threshold_mode: Literal["static", "learned"] = "static"
    min_samples: int = Field(default=1000, ge=1)
    null_rate_thresholds: Pair = (0.05, 0.1)
    unseen_share_thresholds: Pair = (0.02, 0.05)
    report: bool = Field(default=True, description="an Evidently drill-down report (HTML)")
    report_on: ReportOn = Field(default="warn", description="which windows get one: warn (warn or alert), alert, always")

    def check_params(self) -> dict:
        return {
            "features": tuple(self.features) if self.features else None,
            "methods": dict(self.methods),
            "thresholds": dict(self.thresholds),
            "threshold_mode": self.threshold_mode,
            "min_samples": self.min_samples,
            "null_rate_thresholds": self.null_rate_thresholds,
            "unseen_share_thresholds": self.unseen_share_thresholds,
        }


class ProfileDriftCheck(Check):
    """Distances between the window's profile and the reference's, feature by feature."""

    def __init__(self, name: str, model_config, params: DriftParams, default_features: tuple[str, ...]) -> None:
        self.name = name
        self.model_config = model_config
        self.params = params
        features = tuple(params.features) if params.features else default_features
        if not features:
            raise DriftlineError(f"{name}: no columns to compare (the schema lists none)")
        self.statistic = DriftCheck(name=name, **{**params.check_params(), "features": features})

    def fit(self, reference) -> "FittedProfileDrift":
        missing = [f for f in self.statistic.features or () if f not in reference.profile.features]
        if missing and self.name == "prediction_drift":  # say which key provides the scores
            model = self.model_config.name
            raise ConfigError(f"prediction_drift: '{missing[0]}' is in neither the reference nor a prediction "
                              f"reference; set models.{model}.prediction_reference to the model's scores on "
                              "held-out data")
        return FittedProfileDrift(self, self.statistic.fit(reference.profile, reference.chunks))


class FittedProfileDrift(FittedCheck):
    def __init__(self, check: ProfileDriftCheck, fitted: FittedDriftCheck) -> None:
        self.check = check
        self.fitted = fitted

    def evaluate(self, window) -> CheckResult:
        profile = window.profile()
        bad = window.bad_files()
        result = self.fitted.evaluate(profile, partial=bool(bad), bad_files=bad, **window.result_context)
        params = self.check.params
        if (params.report and window.reports_wanted and profile.rows and result.status != "error"
                and report_wanted(result.status, params.report_on)):
            result = self._with_report(window, result)
        return result

    def _with_report(self, window, result: CheckResult) -> CheckResult:
        from checks.drift_report import render_result_report

        try:
            path = window.report_path(result.check)
            columns = [f.feature for f in result.features]
            render_result_report(result, window.reference_sample(columns), window.sample(columns), path,
                                 kinds={f.feature: f.kind for f in result.features}, title=window.title(result.check))
            return result.with_updates(report_path=str(path))
        except Exception as exc:  # a report is a convenience: never lose the result over it
            log.warning("report for %s %s failed: %s", result.model, result.check, exc)
            return result.with_updates(details={**result.details, "report_error": str(exc)[:300]})


@register_check("data_drift", params=DriftParams, needs=("profile",), preload=("evidently",),
                summary="every feature's distribution in a window vs the reference")
def data_drift_check(model_config, params: DriftParams) -> ProfileDriftCheck:
    return ProfileDriftCheck("data_drift", model_config, params, tuple(model_config.feature_kinds))


@register_check("prediction_drift", params=DriftParams, needs=("profile",),
                summary="the logged score distribution vs the model's scores on reference data")
def prediction_drift_check(model_config, params: DriftParams) -> ProfileDriftCheck:
    return ProfileDriftCheck("prediction_drift", model_config, params,
                             tuple(model_config.model_schema.predictions))
