"""A simulated ranking world: rollouts (hourly sums, vectorised), and logs with slots, versions, exploration.

Each hour each arm serves `per_hour` impressions; a click happens with the arm's CTR and its
price is one of a few levels (so revenue per impression = price x click has a known law).
The model predicts `predicted` for every impression (calibrated when it equals the CTR).
Returns cumulative ArmSums of shape (rollouts, hours): look h sees everything up to hour h.
"""

from __future__ import annotations

import numpy as np

from checks.sequential import ArmSums

PRICES = np.array([5.0, 20.0, 40.0, 120.0])
PRICE_WEIGHTS = np.array([0.4, 0.3, 0.2, 0.1])


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
    from datetime import datetime, timedelta
    from pathlib import Path

    import pyarrow as pa
    import pyarrow.parquet as pq
    import yaml

    root = Path(root)
    rng = np.random.default_rng(seed)
    n = hours * per_hour
    start = datetime.fromisoformat(START)
    ts = [start + timedelta(seconds=float(s)) for s in np.sort(rng.uniform(0, hours * 3600, n))]
    x = rng.normal(0, 1, n)
    slot = rng.choice(np.array(["1", "2", "3"]), n, p=[0.4, 0.35, 0.25])
    base = np.select([slot == "1", slot == "2"], [1.0, 0.6], 0.4) / (1 + np.exp(-(-2.6 + 0.4 * x)))
    candidate = rng.random(n) < candidate_share
    truth = np.where(candidate, np.clip(base * candidate_lift, 0, 1), base)
    over = candidate & ((slot == overpredicted_slot) if overpredicted_slot else True)
    score = np.where(over, np.clip(truth * candidate_overprediction, 0, 1), truth)
    price = rng.choice(PRICES, n, p=PRICE_WEIGHTS)
    click = (rng.random(n) < truth).astype(np.int8)
    partner = rng.choice(np.array(["p1", "p2", "p3"]), n, p=[0.5, 0.3, 0.2])
    explore = (rng.random(n) < epsilon) & (partner != collapsed_partner)
    greedy = np.minimum((np.abs(x) * 10).astype(int), 29)  # 30 popular offers chosen by context
    offer = np.where(explore, rng.integers(0, catalogue, n), greedy)
    propensity = epsilon / catalogue + (1 - epsilon) * (offer == greedy)
    propensity = np.where(partner == collapsed_partner, 1.0, propensity)
    propensity = np.where(rng.random(n) < bad_propensity_share, np.nan, propensity)
    serving = pa.table({"ts": pa.array(ts, pa.timestamp("us", tz="UTC")), "x": x, "score": score, "click": click,
                        "price": price, "model_version": np.where(candidate, "v7", "v6"), "partner": partner,
                        "explored": explore, "propensity": pa.array(propensity, from_pandas=True),
                        "offer_id": np.char.add("o", offer.astype(str)), "slot": slot})
    pq.write_table(serving, root / "serving.parquet")
    reference = serving.slice(0, 20_000).drop(["ts", "model_version"])
    reference = reference.set_column(reference.schema.get_field_index("offer_id"), "offer_id",
                                     pa.array([f"o{i}" for i in rng.integers(0, catalogue, len(reference))]))
    pq.write_table(reference, root / "reference.parquet")  # every offer of the catalogue shows up there
    config = {
        "version": 1,
        "store": {"url": f"sqlite:///{root / 'store.db'}", "reports_dir": str(root / "reports")},
        "models": [{
            "name": "ranker",
            "reference": {"path": str(root / "reference.parquet")},
            "serving": {"path": str(root / "serving.parquet")},
            "schema": {"timestamp": "ts", "model_version": "model_version",
                       "features": [{"name": "x", "kind": "numeric"}],
                       "predictions": ["score"], "labels": [{"name": "click", "delay": "1h"}]},
            "checks": {"rollout": {"enabled": True, "control": "v6", "candidate": "v7", "stage": stage,
                                   "started": START, "price_column": "price"},
                       "exploration": {"enabled": True, "epsilon": epsilon, "segments": ["partner"]},
                       "slot_calibration": {"enabled": True}},
        }],
    }
    path = root / "driftline.yaml"
    path.write_text(yaml.safe_dump(config))
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
