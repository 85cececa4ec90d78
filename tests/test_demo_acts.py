"""`driftline demo` runs retraining and the ranking part in a second process beside the week; what
goes wrong there reaches the demo as it would in one process: a one-line error of the same kind,
or (a crash) an error pointing at the traceback the process printed."""

from __future__ import annotations

import pytest
import yaml

from core.errors import ConfigError
from monitor.demo import acts


def test_a_one_line_error_in_the_second_process_is_raised_again_as_the_same_kind(small_world, demo_raw_config,
                                                                                 tmp_path):
    model = demo_raw_config["models"][0]
    model["retrain"]["registry"] = str(tmp_path / "registry")
    model["retrain"]["exclude"] = ["not a window"]
    config_path = small_world.root.parent / "acts-test.yaml"
    config_path.write_text(yaml.safe_dump(demo_raw_config))
    later = acts.start(small_world.root.parent, small_world.seed, config_path, None)
    try:
        with pytest.raises(ConfigError, match=r"models\.offer-ctr\.retrain\.exclude\.0"):
            later.result()
    finally:
        later.stop()
    assert not (small_world.root.parent / acts.RESULT).exists()


def test_a_crash_in_the_second_process_says_where_its_error_is(tmp_path, capfd):
    later = acts.start(tmp_path / "no-demo-here", 7, tmp_path / "driftline.yaml", None)
    with pytest.raises(RuntimeError, match=r"ended \(exit 1\) without its result; its error is printed above"):
        later.result()
    assert "FileNotFoundError" in capfd.readouterr().err
