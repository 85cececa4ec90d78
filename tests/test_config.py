"""Config: unknown keys and bad values name the key path; the example validates."""

import pytest
import yaml

from monitor.config import example_config_text, load_config, parse_config, parse_duration
from core.errors import ConfigError


def minimal(**overrides):
    model = {
        "name": "m",
        "reference": {"path": "ref.parquet"},
        "serving": {"path": "serving/"},
        "schema": {"timestamp": "ts", "features": [{"name": "a", "kind": "numeric"}]},
    }
    model.update(overrides)
    return {"models": [model]}


def test_example_config_is_valid():
    config = parse_config(yaml.safe_load(example_config_text()))
    assert config.models[0].checks.data_drift.threshold_mode == "learned"


@pytest.mark.parametrize(
    "overrides, path",
    [
        ({"checks": {"data_drift": {"thresold": [0.1, 0.2]}}}, "models.m.checks.data_drift.thresold"),
        ({"schema": {"timestamp": "ts", "features": [{"name": "a", "kind": "text"}]}}, "models.m.schema.features.a.kind"),
        ({"checks": {"data_drift": {"min_samples": 0}}}, "models.m.checks.data_drift.min_samples"),
        ({"profile_granularity": "soon"}, "models.m.profile_granularity"),
        ({"surprise": 1}, "models.m.surprise"),
    ],
)
def test_bad_keys_and_values_name_the_key_path(overrides, path):
    with pytest.raises(ConfigError) as error:
        parse_config(minimal(**overrides), "cfg.yaml")
    assert f"cfg.yaml: {path}:" in str(error.value)


def test_unknown_model_lists_the_configured_ones():
    config = parse_config(minimal())
    with pytest.raises(ConfigError, match="configured: m"):
        config.model("other")


def test_yaml_is_loaded_safely(tmp_path):
    path = tmp_path / "evil.yaml"
    path.write_text("models: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(path)


def test_durations():
    assert parse_duration("6h").total_seconds() == 6 * 3600
    assert parse_duration("2w").days == 14
    with pytest.raises(ValueError):
        parse_duration("six hours")
