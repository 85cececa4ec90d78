"""Embedding drift between model versions and x0 drift on serving windows: an embedding table
shifted for a set of offers is caught and its offers named; retraining noise and a rotated
space (a separately trained table) stay quiet; a device-mix shift moves x0's device block only."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from explain.embedding_drift import ShiftParams, embedding_shift, procrustes, x0_version_shift, x0_window_shift

V, D = 2000, 16
PLANTED = [f"offer-{i}" for i in range(3, 200, 13)]  # 16 offers among the most served


def _rotation(rng, d=D) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(d, d)))
    return q * np.sign(np.diag(r))


def versions(seed: int, planted=(), noise: float = 0.03):
    """An old table, a retrained one (rotated space + noise) and the traffic per offer."""
    rng = np.random.default_rng(seed)
    ids = [f"offer-{i}" for i in range(V)]
    old = rng.normal(0, 0.3, (V, D))
    new = (old + rng.normal(0, noise, (V, D))) @ _rotation(rng)
    for key in planted:
        new[ids.index(key)] = rng.normal(0, 0.3, D) @ np.eye(D)
    traffic = {k: float(c) for k, c in zip(ids, 1e6 / np.arange(1, V + 1) ** 1.1)}
    return ids, old, new, traffic


def test_procrustes_recovers_a_rotation():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(500, D))
    q = _rotation(rng)
    assert np.allclose(a @ q @ procrustes(a, a @ q), a, atol=1e-9)


def test_offers_with_a_shifted_embedding_are_caught_and_named():
    ids, old, new, traffic = versions(1, PLANTED)
    result = embedding_shift(ids, old, ids, new, traffic)
    assert result["status"] == "alert"
    assert result["moved_ids"] == len(PLANTED)  # all of them, and only them
    assert {m["id"] for m in result["top_movers"]} <= set(PLANTED)
    assert len(result["top_movers"]) == 10
    assert result["moved_traffic_share"] > 0.03


def test_retraining_noise_in_a_rotated_space_is_quiet_and_the_rate_is_measured():
    statuses, shares = [], []
    for seed in range(20):
        ids, old, new, traffic = versions(100 + seed)
        result = embedding_shift(ids, old, ids, new, traffic)
        statuses.append(result["status"])
        shares.append(result["moved_traffic_share"])
        assert result["weighted_cosine_shift"] < 0.02  # after alignment only the noise is left
    print(f"embedding shift on 20 null version pairs: alerts {statuses.count('alert')}, "
          f"warns {statuses.count('warn')}, max mover share {max(shares):.4f}")
    assert statuses.count("alert") == 0 and statuses.count("warn") <= 1
    ids, old, new, traffic = versions(100)
    raw = embedding_shift(ids, old, ids, new, traffic, ShiftParams(align=False))
    assert raw["weighted_cosine_shift"] > 0.5  # unaligned, the rotation alone looks like drift


def test_insufficient_overlap():
    assert embedding_shift(["a"], np.ones((1, 2)), ["b"], np.ones((1, 2)), {"a": 1.0})["status"] == \
        "insufficient_data"


@pytest.fixture(scope="module")
def torch_versions():
    pytest.importorskip("torch")  # the deep extra; the numpy tests above cover the statistics
    import pandas as pd
    import torch

    from retrain.base import FeatureSet
    from retrain.dcn import build_module
    from retrain.dcn_trainer import Preprocessor, TorchModel
    from retrain.encoding import NumericScaler, Vocabulary

    torch.manual_seed(0)
    offers = [f"offer-{i}" for i in range(V)]
    devices = ["mobile", "desktop", "tablet"]
    features = FeatureSet(numeric=("price",), categorical=("offer_id", "device"))
    prep = Preprocessor(features, Vocabulary({"offer_id": tuple(offers), "device": tuple(devices)}),
                        NumericScaler({"price": 0.0}, {"price": 1.0}))
    arch = {"kind": "dcn_v2", "cardinalities": prep.cardinalities(), "n_numeric": 1, "embedding_dim": 8,
            "deep_layers": [16], "dropout": 0.0, "cross_layers": 1}
    old = TorchModel("dcn_v2", build_module(arch), arch, prep, ("click",), {})
    module = copy.deepcopy(old.module)
    with torch.no_grad():
        for key in PLANTED:
            module.embed.table.weight[1 + offers.index(key)] = torch.randn(8) * 0.05
    new = TorchModel("dcn_v2", module, arch, prep, ("click",), {})
    rng = np.random.default_rng(3)
    p = 1.0 / np.arange(1, V + 1) ** 1.1

    def frame(n, device_p):
        return pd.DataFrame({"offer_id": rng.choice(offers, n, p=p / p.sum()),
                             "device": rng.choice(devices, n, p=device_p), "price": rng.gamma(2, 20, n)})

    return old, new, frame, p


def test_torch_model_offer_table_shift_is_caught(torch_versions):
    from explain.embedding_drift import field_embeddings, x0_of

    old, new, frame, p = torch_versions
    traffic = {f"offer-{i}": float(c) for i, c in enumerate(p)}
    result = embedding_shift(*field_embeddings(old, "offer_id"), *field_embeddings(new, "offer_id"), traffic)
    assert result["status"] == "alert" and {m["id"] for m in result["top_movers"]} <= set(PLANTED)
    quiet = embedding_shift(*field_embeddings(old, "device"), *field_embeddings(new, "device"),
                            {"mobile": 5, "desktop": 4, "tablet": 1})
    assert quiet["status"] == "ok" and quiet["weighted_cosine_shift"] < 1e-9
    served = frame(5000, [0.45, 0.4, 0.15])
    versions_x0 = x0_version_shift(x0_of(old, served), x0_of(new, served), old.feature_slices)
    assert versions_x0["offer_id"]["cosine_shift"] > 0.01 and versions_x0["device"]["cosine_shift"] < 1e-9
    with pytest.raises(ValueError, match="price"):
        field_embeddings(old, "price")


def test_x0_window_drift_names_the_moved_block(torch_versions):
    from explain.embedding_drift import x0_of

    old, _, frame, _ = torch_versions
    reference = x0_of(old, frame(20_000, [0.45, 0.4, 0.15]))
    clean = x0_window_shift(reference, x0_of(old, frame(3000, [0.45, 0.4, 0.15])), old.feature_slices)
    shifted = x0_window_shift(reference, x0_of(old, frame(3000, [0.8, 0.13, 0.07])), old.feature_slices)
    assert all(v["status"] == "ok" for v in clean.values()), clean
    assert shifted["device"]["status"] == "alert"
    assert shifted["offer_id"]["status"] == "ok"


def _run(root, frames, model_dir, baseline_dir, tmp_name):
    from datetime import datetime, timedelta, timezone

    import pyarrow as pa
    import pyarrow.parquet as pq

    from monitor.config import parse_config
    from monitor.runner import ModelRunner
    from monitor.store import ResultsStore

    start = datetime(2024, 6, 1, tzinfo=timezone.utc)
    for name, frame in frames.items():
        table = pa.Table.from_pandas(frame, preserve_index=False)
        ts = pa.array([start + timedelta(seconds=i) for i in range(len(frame))], pa.timestamp("us", tz="UTC"))
        pq.write_table(table.append_column("ts", ts), root / f"{tmp_name}-{name}.parquet")
    raw = {"version": 1, "store": {"url": f"sqlite:///{root / tmp_name}.db", "reports_dir": str(root / "r")},
           "models": [{"name": "dcn", "reference": {"path": str(root / f"{tmp_name}-reference.parquet")},
                       "serving": {"path": str(root / f"{tmp_name}-serving.parquet")},
                       "schema": {"timestamp": "ts", "features": [
                           {"name": "price", "kind": "numeric"}, {"name": "offer_id", "kind": "categorical"},
                           {"name": "device", "kind": "categorical"}]},
                       "checks": {"embedding_drift": {"enabled": True, "model_path": str(model_dir),
                                                      "baseline_model_path": str(baseline_dir),
                                                      "sample_rows": 5000}}}]}
    config = parse_config(raw, "dcn", root)
    store = ResultsStore(config.store_url())
    try:
        return ModelRunner(config, config.models[0], store).run(start, start + timedelta(days=1),
                                                               ["embedding_drift"])[0]
    finally:
        store.close()


def test_embedding_drift_check_through_the_runner(torch_versions, tmp_path):
    old, new, frame, _ = torch_versions
    old.save(tmp_path / "v1")
    new.save(tmp_path / "v2")
    clean = {"reference": frame(10_000, [0.45, 0.4, 0.15]), "serving": frame(5000, [0.45, 0.4, 0.15])}
    shifted = _run(tmp_path, clean, tmp_path / "v2", tmp_path / "v1", "shifted")
    assert shifted.status == "alert", shifted.details
    offer = shifted.details["fields"]["offer_id"]
    assert {m["id"] for m in offer["versions"]["top_movers"]} <= set(PLANTED)
    assert offer["x0"]["status"] == "ok"  # the same model's x0 on the same traffic: no window drift
    row = next(f for f in shifted.features if f.feature == "offer_id")
    assert row.status == "alert" and set(row.reasons) <= set(PLANTED)
    assert {("embedding_moved_traffic_share", "offer_id"), ("embedding_x0_centroid_shift", "device")} <= {
        (m.name, dict(m.labels)["feature"]) for m in shifted.metrics}
    same = _run(tmp_path, clean, tmp_path / "v1", tmp_path / "v1", "same")
    assert same.status == "ok", same.details
    mix = {"reference": clean["reference"], "serving": frame(5000, [0.8, 0.13, 0.07])}
    moved = _run(tmp_path, mix, tmp_path / "v1", tmp_path / "v1", "mix")
    assert moved.details["fields"]["device"]["x0"]["status"] == "alert"
    assert moved.details["fields"]["offer_id"]["x0"]["status"] == "ok"
