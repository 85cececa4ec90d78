"""Prometheus alert and recording rules, their promtool unit tests, and the stack configs."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
RULES = ROOT / "dashboards" / "rules" / "driftline.rules.yml"
RULE_TESTS = sorted((ROOT / "dashboards" / "rules" / "tests").glob("*.yml"))
PROMETHEUS_CONFIG = ROOT / "dashboards" / "prometheus" / "prometheus.yml"
ALERTMANAGER_CONFIG = ROOT / "dashboards" / "alertmanager" / "alertmanager.yml"

needs_promtool = pytest.mark.skipif(shutil.which("promtool") is None,
                                    reason="promtool missing (`make test` installs Debian's prometheus)")


def _run(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=120)


def _rules() -> list[dict]:
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]


def test_recording_rules_use_colons_and_alerts_carry_severity():
    for rule in _rules():
        if "record" in rule:
            assert rule["record"].count(":") == 2, rule["record"]  # level:metric:operations
        else:
            assert rule["labels"]["severity"] in ("critical", "warning", "info"), rule["alert"]
            assert rule["annotations"]["summary"], rule["alert"]


def test_every_alert_has_a_firing_unit_test():
    alerts = {rule["alert"] for rule in _rules() if "alert" in rule}
    firing = set()
    for path in RULE_TESTS:
        for case in yaml.safe_load(path.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                if check.get("exp_alerts"):
                    firing.add(check["alertname"])
    assert alerts <= firing, f"alerts without a test that makes them fire: {sorted(alerts - firing)}"


@needs_promtool
def test_rules_compile():
    completed = _run("promtool", "check", "rules", str(RULES))
    assert completed.returncode == 0, completed.stdout + completed.stderr


@needs_promtool
@pytest.mark.parametrize("path", RULE_TESTS, ids=lambda p: p.name)
def test_promtool_rule_unit_tests(path):
    completed = _run("promtool", "test", "rules", str(path))
    assert completed.returncode == 0, completed.stdout + completed.stderr


@needs_promtool
def test_a_wrong_expectation_fails_the_unit_tests(tmp_path):
    """The promtool tests can fail: flip one expectation and they must."""
    text = RULE_TESTS[0].read_text()
    broken = text.replace("exp_labels: {severity: critical, model: offer-ctr, check: data_drift}",
                          "exp_labels: {severity: warning, model: offer-ctr, check: data_drift}", 1)
    assert broken != text
    (tmp_path / "rules").mkdir()
    shutil.copy(RULES, tmp_path / "driftline.rules.yml")
    (tmp_path / "rules" / "t.yml").write_text(broken)
    assert _run("promtool", "test", "rules", str(tmp_path / "rules" / "t.yml")).returncode != 0


@needs_promtool
def test_prometheus_config_is_valid(tmp_path):
    """The compose Prometheus config, with the token file and rules where promtool can see them."""
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    token = tmp_path / "token"
    token.write_text("t")
    config["scrape_configs"][0]["authorization"]["credentials_file"] = str(token)
    config["rule_files"] = [str(RULES)]
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    completed = _run("promtool", "check", "config", str(tmp_path / "prometheus.yml"))
    assert completed.returncode == 0, completed.stdout + completed.stderr
    # Relative to the config file, the committed rule glob reaches dashboards/rules.
    assert yaml.safe_load(PROMETHEUS_CONFIG.read_text())["rule_files"] == ["../rules/*.yml"]
    assert [p.resolve() for p in (PROMETHEUS_CONFIG.parent / "../rules").glob("*.yml")] == [RULES]


@pytest.mark.skipif(shutil.which("amtool") is None, reason="amtool missing (`make test` installs prometheus-alertmanager)")
def test_alertmanager_config_is_valid():
    completed = _run("amtool", "check-config", str(ALERTMANAGER_CONFIG))
    assert completed.returncode == 0, completed.stdout + completed.stderr
