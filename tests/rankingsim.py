"""A simulated ranking world: rollouts (hourly sums, vectorised), and logs with slots, versions, exploration.

Each hour each arm serves `per_hour` impressions; a click happens with the arm's CTR and its
price is one of a few levels (so revenue per impression = price x click has a known law).
The model predicts `predicted` for every impression (calibrated when it equals the CTR).
Returns cumulative ArmSums of shape (rollouts, hours): look h sees everything up to hour h.
"""

from __future__ import annotations

import numpy as np

from checks.sequential import ArmSums
from monitor.demo.ranking import PRICE_WEIGHTS, PRICES  # noqa: F401  (the tests' price law)


def simulate_arm(rng: np.random.Generator, rollouts: int, hours: int, per_hour: int, ctr: float,
                 predicted: float | None = None) -> ArmSums:
    predicted = ctr if predicted is None else predicted
    cells = np.concatenate([PRICE_WEIGHTS * ctr, PRICE_WEIGHTS * (1.0 - ctr)])
    counts = rng.multinomial(per_hour, cells, size=(rollouts, hours))[..., :len(PRICES)].astype(float)
    clicks = counts.sum(-1)
    revenue = counts @ PRICES
    revenue_sq = counts @ PRICES ** 2
    n = np.full((rollouts, hours), float(per_hour))
    hourly = ArmSums(n, clicks, n * predicted, n * predicted * (1 - predicted), revenue, revenue_sq)
    return ArmSums(*(np.cumsum(getattr(hourly, f), axis=1) for f in
                     ("impressions", "clicks", "predicted", "predicted_var", "revenue", "revenue_sq")))


START = "2026-03-02T00:00:00+00:00"


def write_rollout_world(root, hours: int = 48, per_hour: int = 4000, candidate_share: float = 0.5,
                        candidate_lift: float = 1.0, candidate_overprediction: float = 1.0, seed: int = 0,
                        stage: str = "50%", epsilon: float = 0.1, collapsed_partner: str | None = None,
                        bad_propensity_share: float = 0.0, catalogue: int = 200,
                        overpredicted_slot: str | None = None) -> "Path":
    """Serving logs of two model versions side by side (v6 control, v7 candidate), a reference,
    and a driftline config whose `rollout` check compares them; returns the config's path.

    Clicks follow each row's true CTR; the control predicts it exactly; the candidate's true CTR
    is `candidate_lift` times it and its prediction `candidate_overprediction` times the truth.
    Each decision explores with probability `epsilon` (a uniform offer of `catalogue`, else the
    context's greedy offer), logging the flag and the shown offer's propensity; on
    `collapsed_partner` it never explores, and `bad_propensity_share` of propensities are lost.
    Offers land in slots 1-3 with CTR x 1, 0.6, 0.4 (position bias, predicted by both models);
    with `overpredicted_slot` the candidate's over-prediction applies in that slot only."""
    from datetime import datetime
    from pathlib import Path

    import pyarrow.parquet as pq
    import yaml

    from monitor.demo.ranking import demo_checks, ranking_config, simulate_logs, write_reference

    root = Path(root)
    rng = np.random.default_rng(seed)
    start = datetime.fromisoformat(START)
    pq.write_table(simulate_logs(rng, start, hours, hours * per_hour, candidate_share, candidate_lift,
                                 candidate_overprediction, overpredicted_slot, epsilon, collapsed_partner,
                                 bad_propensity_share, catalogue), root / "serving.parquet")
    write_reference(rng, root / "reference.parquet", catalogue)
    checks = demo_checks(start)
    checks["rollout"]["stage"] = stage
    checks["exploration"]["epsilon"] = epsilon
    path = root / "driftline.yaml"
    path.write_text(yaml.safe_dump(ranking_config(root, checks)))
    return path


def run_check(path, check: str, start_hours: float, end_hours: float, now_hours: float = 72):
    """Run one configured check of the world at `path` over [START + start_hours, START + end_hours),
    with the clock at START + now_hours; the result is stored in the world's store too."""
    from datetime import datetime, timedelta

    from monitor.config import load_config
    from monitor.runner import ModelRunner
    from monitor.store import ResultsStore

    config = load_config(path)
    store = ResultsStore(config.store_url())
    start = datetime.fromisoformat(START)
    try:
        runner = ModelRunner(config, config.models[0], store, clock=lambda: start + timedelta(hours=now_hours))
        (result,) = runner.run(start + timedelta(hours=start_hours), start + timedelta(hours=end_hours), [check],
                               report=False)
    finally:
        store.close()
    return result


def exported(path) -> str:
    """The /metrics text of the world's store."""
    from prometheus_client import CollectorRegistry, generate_latest

    from monitor.config import load_config
    from monitor.exporter import DriftlineCollector
    from monitor.store import ResultsStore

    store = ResultsStore(load_config(path).store_url())
    try:
        registry = CollectorRegistry()
        registry.register(DriftlineCollector(store.engine))
        return generate_latest(registry).decode()
    finally:
        store.close()


def with_setting(path, check: str, key: str, value, where):
    """A copy of the world's config (written under `where`) with checks.<check>.<key> = value."""
    from pathlib import Path

    import yaml

    raw = yaml.safe_load(Path(path).read_text())
    raw["models"][0]["checks"][check][key] = value
    changed = Path(where) / f"{check}-{key}.yaml"
    changed.write_text(yaml.safe_dump(raw))
    return changed
