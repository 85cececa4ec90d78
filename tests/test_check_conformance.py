"""Conformance suite over every registered check (sklearn's parametrize_with_checks is the model).

For each check in the registry: its parameters round-trip through YAML and reject unknown keys;
on the demo world's clean day it fits, evaluates and stays quiet (null data: no alert, no
error); its result survives the JSON round trip; and what it declares is on /metrics.
"""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
import yaml
from prometheus_client import CollectorRegistry, generate_latest
from pydantic import ValidationError

from core.checks import CheckParams, CheckSpec
from core.results import CheckResult
from monitor.catalog import get_check, known_checks

CHECKS = known_checks()


def test_every_builtin_is_registered():
    assert {"data_drift", "prediction_drift", "data_quality", "calibration", "performance", "concept_drift",
            "attribution_drift", "train_serve_skew", "id_drift", "label_maturity", "embedding_drift"} <= set(CHECKS)


@pytest.mark.parametrize("name", CHECKS)
def test_params_declared_once_and_round_trip_through_yaml(name):
    spec = get_check(name)
    assert isinstance(spec, CheckSpec) and issubclass(spec.params, CheckParams)
    defaults = spec.params()
    text = yaml.safe_dump(defaults.model_dump(mode="json"))
    assert spec.params.model_validate(yaml.safe_load(text)) == defaults
    with pytest.raises(ValidationError, match="no_such_key"):
        spec.params.model_validate({"no_such_key": 1})
    for field, info in spec.params.model_fields.items():  # the model is the one place the docs live too
        assert info.annotation is not None, f"{name}.{field}"


@pytest.fixture(scope="module")
def clean_day_results(small_world, tmp_path_factory):
    """Every built-in check, enabled as in the demo, on one clean day of the small world."""
    from monitor.config import parse_config
    from monitor.demo.run import demo_config, write_scored_reference
    from monitor.runner import ModelRunner
    from monitor.store import ResultsStore

    folder = tmp_path_factory.mktemp("conformance")
    write_scored_reference(small_world)
    raw = demo_config(small_world, small_world.root.parent)
    raw["store"]["url"] = f"sqlite:///{folder / 'store.db'}"
    raw["store"]["reports_dir"] = str(folder / "reports")
    config = parse_config(raw, "conformance", small_world.root.parent)
    model = config.models[0]
    store = ResultsStore(config.store_url())
    clean = small_world.serving_start  # the first serving day carries no incident
    assert clean.strftime("%Y-%m-%d") in small_world.clean_days()
    runner = ModelRunner(config, model, store, clock=lambda: clean + timedelta(days=30))
    results = {r.check: r for r in runner.run(clean, clean + timedelta(days=1), model.checks.enabled(), report=False)}
    from monitor.exporter import DriftlineCollector

    registry = CollectorRegistry()
    registry.register(DriftlineCollector(store.engine))
    metrics = generate_latest(registry).decode()
    store.close()
    return results, metrics


BUILTIN = ["data_drift", "prediction_drift", "data_quality", "calibration", "performance", "concept_drift",
           "attribution_drift", "train_serve_skew", "id_drift", "label_maturity"]


@pytest.mark.parametrize("name", BUILTIN)
def test_fits_evaluates_and_stays_quiet_on_null_data(name, clean_day_results):
    results, _ = clean_day_results
    result = results[name]
    assert result.status in ("ok", "insufficient_data"), (name, result.status, result.details.get("error"))
    assert result.current_rows > 0 or result.status == "insufficient_data"


@pytest.mark.parametrize("name", BUILTIN)
def test_result_survives_the_json_round_trip(name, clean_day_results):
    results, _ = clean_day_results
    data = results[name].to_dict()
    again = CheckResult.from_dict(json.loads(json.dumps(data))).to_dict()
    assert again == data
    assert data["schema_version"] >= 1 and data["check"] == name


@pytest.mark.parametrize("name", BUILTIN)
def test_status_and_declared_metrics_are_exported(name, clean_day_results):
    results, metrics = clean_day_results
    assert f'driftline_check_status{{check="{name}",model="offer-ctr"}}' in metrics
    declared = set(get_check(name).exports)
    assert {p.name for p in results[name].metrics} <= declared, "a result exports only what its check declares"
    for point in results[name].metrics:
        pairs = sorted([("check", name), ("model", "offer-ctr"), *point.labels])  # exposition sorts label names
        labels = ",".join(f'{k}="{v}"' for k, v in pairs)
        assert f"driftline_{point.name}{{{labels}}}" in metrics


def _plain(value):
    return [_plain(v) for v in value] if isinstance(value, (list, tuple)) else value


# (the check's parameter model, the statistic it configures): where both name a parameter,
# the defaults must agree, so a one-off CLI command and a scheduled check judge alike.
def _statistic_pairs():
    from checks.calibration import CalibrationCheck
    from checks.concept import ConceptCheck
    from checks.drift import DriftCheck
    from checks.drift_check import DriftParams
    from checks.performance import PerformanceCheck
    from checks.quality import SuiteParams
    from checks.settings import (
        CalibrationCheckConfig,
        ConceptCheckConfig,
        PerformanceCheckConfig,
        QualityCheckConfig,
    )

    return [(DriftParams, DriftCheck), (CalibrationCheckConfig, CalibrationCheck),
            (PerformanceCheckConfig, PerformanceCheck), (ConceptCheckConfig, ConceptCheck),
            (QualityCheckConfig, SuiteParams)]


@pytest.mark.parametrize("pair", range(5))
def test_parameter_defaults_agree_with_the_statistic_they_configure(pair):
    from dataclasses import MISSING, fields

    params, statistic = _statistic_pairs()[pair]
    shared = 0
    for f in fields(statistic):
        if f.name not in params.model_fields:
            continue
        default = f.default if f.default is not MISSING else (
            f.default_factory() if f.default_factory is not MISSING else None)
        declared = params.model_fields[f.name].get_default(call_default_factory=True)
        if declared is None and f.name in ("features", "segments"):
            continue  # None in the config means "from the schema"; the statistic gets the resolved list
        assert _plain(declared) == _plain(default), (statistic.__name__, f.name, declared, default)
        shared += 1
    assert shared >= 3, statistic.__name__
