"""Check results: small frozen records with a stable, versioned JSON form.

Statistics (scores) are kept apart from the decision (thresholds, statuses) and from
notification (alert routing, elsewhere). No DataFrames, plots or models in here.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, fields
from typing import Any, Literal

RESULT_SCHEMA_VERSION = 1

Status = Literal["ok", "warn", "alert", "insufficient_data", "error", "pending"]
# Order used to roll feature statuses up into a check status. A feature that could not
# be evaluated (missing or retyped column) is as serious as a drifted one. `pending`: the
# window's labels have not matured yet; the run ledger re-runs it later.
SEVERITY: dict[str, int] = {"ok": 0, "pending": 1, "insufficient_data": 1, "warn": 2, "error": 3, "alert": 3}


def json_safe(value):
    """Replace NaN and infinities (not valid JSON) with None, recursively."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def worst_status(statuses) -> str:
    statuses = list(statuses)
    if not statuses:
        return "insufficient_data"
    if all(s == "pending" for s in statuses):
        return "pending"
    if all(s in ("insufficient_data", "pending") for s in statuses):
        return "insufficient_data"
    if all(s == "error" for s in statuses):
        return "error"
    top = max(SEVERITY[s] for s in statuses)
    if top >= SEVERITY["alert"]:
        return "alert"
    if top == SEVERITY["warn"]:
        return "warn"
    return "ok"


# Which windows get a drill-down report (`report_on` of data_drift and attribution_drift):
# "warn" (the default) renders one for windows that warn or alert, "alert" for alerts only,
# "always" for every window. A report of a clean window says little and costs seconds each.
ReportOn = Literal["always", "warn", "alert"]
_REPORTED = {"always": None, "warn": {"warn", "alert"}, "alert": {"alert"}}


def report_wanted(status: str, report_on: ReportOn = "warn") -> bool:
    """Whether a window with this check status gets an HTML report under the `report_on` policy."""
    wanted = _REPORTED[report_on]
    return wanted is None or status in wanted


def window_text(start, end) -> str:
    """A window as every report title writes it: `2024-06-03 00:00 .. 2024-06-04 00:00` (UTC)."""
    from datetime import datetime

    def one(moment) -> str:
        moment = datetime.fromisoformat(moment) if isinstance(moment, str) else moment
        return f"{moment:%Y-%m-%d %H:%M}"

    return f"{one(start)} .. {one(end)}"


@dataclass(frozen=True)
class FeatureDrift:
    feature: str
    kind: str
    method: str
    score: float | None
    threshold: float | None
    status: str
    reference_count: int
    current_count: int
    warn_threshold: float | None = None
    null_rate_reference: float | None = None
    null_rate_current: float | None = None
    unseen_share: float | None = None
    reasons: tuple[str, ...] = ()
    message: str | None = None

    def to_dict(self) -> dict[str, Any]:
        # Every field is a scalar or a tuple of strings: read them as they are (dataclasses.asdict
        # deep-copies each value, ~40 us a feature, 0.4 s of a 10,000-column result).
        data = {name: getattr(self, name) for name in _FEATURE_FIELDS}
        data["reasons"] = list(self.reasons)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "FeatureDrift":
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["reasons"] = tuple(values.get("reasons", ()))
        return cls(**values)


_FEATURE_FIELDS = tuple(f.name for f in fields(FeatureDrift))
METRIC_NAME = re.compile(r"^[a-z][a-z0-9_]{0,99}$")
RESERVED_LABELS = ("model", "check")


@dataclass(frozen=True)
class MetricPoint:
    """A value a result declares for export: `driftline_<name>{model, check, **labels}`.

    Names are snake_case in base units (ratios 0-1); label values must come from bounded sets
    (features, segments from the config or a top-N), never ids. The exporter emits exactly
    these, so a new check needs no exporter change."""

    name: str
    value: float
    labels: tuple[tuple[str, str], ...] = ()
    help: str = ""

    def __post_init__(self) -> None:
        if not METRIC_NAME.match(self.name):
            raise ValueError(f"metric name {self.name!r}: expected snake_case (a-z, 0-9, _)")
        bad = [k for k, _ in self.labels if k in RESERVED_LABELS or not METRIC_NAME.match(k)]
        if bad:
            raise ValueError(f"metric {self.name}: label {bad[0]!r} is reserved or not snake_case")

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "value": self.value, "labels": dict(self.labels), "help": self.help}

    @classmethod
    def from_dict(cls, data: dict) -> "MetricPoint":
        return cls(str(data["name"]), data["value"], tuple(sorted((str(k), str(v)) for k, v in
                                                                   (data.get("labels") or {}).items())),
                   str(data.get("help") or ""))


@dataclass(frozen=True)
class CheckResult:
    check: str
    status: str
    features: tuple[FeatureDrift, ...] = ()
    model: str | None = None
    window_start: str | None = None
    window_end: str | None = None
    reference_rows: int = 0
    current_rows: int = 0
    partial: bool = False
    bad_files: tuple[str, ...] = ()
    report_path: str | None = None
    details: dict = field(default_factory=dict)
    metrics: tuple[MetricPoint, ...] = ()  # what the result exports (see MetricPoint)

    @property
    def alerting_features(self) -> list[str]:
        return [f.feature for f in self.features if f.status in ("alert", "error")]

    def to_dict(self) -> dict[str, Any]:
        return json_safe({
            "schema_version": RESULT_SCHEMA_VERSION,
            "check": self.check,
            "status": self.status,
            "model": self.model,
            "window_start": self.window_start,
            "window_end": self.window_end,
            "reference_rows": self.reference_rows,
            "current_rows": self.current_rows,
            "partial": self.partial,
            "bad_files": list(self.bad_files),
            "report_path": self.report_path,
            "details": self.details,
            "features": [f.to_dict() for f in self.features],
            "metrics": [m.to_dict() for m in self.metrics],
        })

    @classmethod
    def from_dict(cls, data: dict) -> "CheckResult":
        return cls(
            check=data["check"],
            status=data["status"],
            features=tuple(FeatureDrift.from_dict(f) for f in data.get("features", [])),
            model=data.get("model"),
            window_start=data.get("window_start"),
            window_end=data.get("window_end"),
            reference_rows=data.get("reference_rows", 0),
            current_rows=data.get("current_rows", 0),
            partial=data.get("partial", False),
            bad_files=tuple(data.get("bad_files", ())),
            report_path=data.get("report_path"),
            details=data.get("details", {}),
            metrics=tuple(MetricPoint.from_dict(m) for m in data.get("metrics", ())),
        )

    def with_updates(self, **changes) -> "CheckResult":
        from dataclasses import replace

        return replace(self, **changes)
