"""DCN-V2 and the multi-task heads: the paper's formulas on hand-computed examples, shapes,
the ESMM identity, real Ali-CCP / AliExpress samples end to end, DCN-V2 against LightGBM
on the demo world, and save -> load in a fresh process reproducing the scores exactly."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip("torch")

from conftest import SHARED_DATA  # noqa: E402
from retrain.base import Dataset, FeatureSet, get_trainer, load_model  # noqa: E402
from retrain.dcn import CrossLayer, CrossNetwork, DCNv2, LowRankMoECross  # noqa: E402
from retrain.evaluate import auc  # noqa: E402
from retrain.infra_validate import infra_validate  # noqa: E402
from retrain.multitask import ESMM, MMoE  # noqa: E402

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # One thread: these models are tiny, and on a shared 2-core machine OpenMP threads that
    # spin-wait for a busy core cost ~10x the CPU (measured: 46 s vs 5 s for the DCN fit).
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_cross_layer_matches_the_paper_on_a_hand_computed_example():
    # x_{l+1} = x0 ⊙ (W x_l + b) + x_l with W = [[1, 0], [2, -1]], b = [0.5, -1], x0 = [1, 2]:
    #   layer 1: W x0 + b = [1.5, -1]  -> x0 ⊙ . = [1.5, -2] -> + x0 = [2.5, 0]
    #   layer 2: W x1 + b = [3, 4]     -> x0 ⊙ . = [3, 8]    -> + x1 = [5.5, 8]
    net = CrossNetwork(2, layers=2)
    for layer in net.layers:
        assert isinstance(layer, CrossLayer)
        with torch.no_grad():
            layer.linear.weight.copy_(torch.tensor([[1.0, 0.0], [2.0, -1.0]]))
            layer.linear.bias.copy_(torch.tensor([0.5, -1.0]))
    x0 = torch.tensor([[1.0, 2.0]])
    assert torch.equal(net.layers[0](x0, x0), torch.tensor([[2.5, 0.0]]))
    assert torch.equal(net(x0), torch.tensor([[5.5, 8.0]]))


def test_low_rank_mixture_shapes_gates_and_formula():
    b, d, r, k = 5, 12, 3, 4
    layer = LowRankMoECross(d, rank=r, experts=k)
    assert layer.U.shape == (k, d, r) and layer.V.shape == (k, d, r) and layer.C.shape == (k, r, r)
    assert layer.bias.shape == (k, d)
    x0, x = torch.randn(b, d), torch.randn(b, d)
    experts = layer.experts(x0, x)
    assert experts.shape == (b, k, d)
    gates = torch.softmax(layer.gate(x), dim=-1)
    assert torch.allclose(gates.sum(dim=1), torch.ones(b))
    out = layer(x0, x)
    assert out.shape == (b, d)
    # Expert i by the formula, in numpy: x0 ⊙ (U_i tanh(C_i tanh(V_iᵀ x)) + b_i)
    U, V, C, bias = (p.detach().numpy() for p in (layer.U, layer.V, layer.C, layer.bias))
    xn, x0n = x.numpy(), x0.numpy()
    for i in range(k):
        expected = x0n * (np.tanh(np.tanh(xn @ V[i]) @ C[i].T) @ U[i].T + bias[i])
        np.testing.assert_allclose(experts[:, i].detach().numpy(), expected, rtol=1e-5, atol=1e-6)
    mixed = (gates.unsqueeze(-1) * experts).sum(1) + x
    assert torch.allclose(out, mixed, atol=1e-6)
    # Low rank: far fewer parameters than a full-rank layer once d is large.
    big_full, big_low = CrossLayer(512), LowRankMoECross(512, rank=32, experts=4)
    assert sum(p.numel() for p in big_low.parameters()) < 0.6 * sum(p.numel() for p in big_full.parameters())


@pytest.mark.parametrize("structure", ["stacked", "parallel"])
@pytest.mark.parametrize("rank", [None, 4])
def test_dcn_forward_shapes(structure, rank):
    model = DCNv2([5, 7, 3], n_numeric=2, embedding_dim=4, cross_layers=2, cross_rank=rank,
                  deep_layers=[8], structure=structure)
    cat = torch.tensor([[0, 6, 2], [4, 0, 1]])
    out = model(cat, torch.randn(2, 2))
    assert out.shape == (2, 1)
    assert model.embed.output_dim == 3 * 4 + 2
    with pytest.raises(ValueError, match="structure"):
        DCNv2([5], 1, structure="sideways")


def test_esmm_product_identity_and_loss_over_all_impressions():
    torch.manual_seed(0)
    model = ESMM([6, 4], n_numeric=1, embedding_dim=3, deep_layers=[8])
    cat, num = torch.randint(0, 4, (64, 2)), torch.randn(64, 1)
    logits = model(cat, num)
    p = ESMM.probabilities(logits)
    assert torch.equal(p["ctcvr"], p["ctr"] * p["cvr"])  # pCTCVR = pCTR × pCVR, exactly
    click = (torch.rand(64) < 0.5).float()
    conversion = click * (torch.rand(64) < 0.5).float()
    labels = torch.stack([click, conversion], 1)
    # Naive BCE of both tasks over all 64 impressions (CVR is never trained on clicks alone).
    naive = (torch.nn.functional.binary_cross_entropy(p["ctr"], click)
             + torch.nn.functional.binary_cross_entropy(p["ctcvr"], click * conversion))
    assert torch.allclose(ESMM.loss(logits, labels), naive, atol=1e-5)


def test_mmoe_gates_are_softmaxes_per_task():
    model = MMoE([5, 5], n_numeric=2, embedding_dim=4, experts=3, expert_layers=[6], deep_layers=[4])
    x0 = model.embed(torch.randint(0, 5, (7, 2)), torch.randn(7, 2))
    weights = model.body.gate_weights(x0)
    assert weights.shape == (7, 2, 3)
    assert torch.allclose(weights.sum(-1), torch.ones(7, 2))
    assert model(torch.randint(0, 5, (7, 2)), torch.randn(7, 2)).shape == (7, 2)


# -- the demo world ------------------------------------------------------------------

def _world_days(days: range, rows: int, seed: int = 7) -> pd.DataFrame:
    from monitor.demo import world as sim

    cat, vocab = sim._catalog(seed), sim._vocabulary()
    frames = [sim._table(sim._simulate_day(seed, d, rows, d * sim._US_PER_DAY, cat, None), d, vocab).to_pandas()
              for d in days]
    return pd.concat(frames, ignore_index=True)


@pytest.fixture(scope="module")
def world_split():
    from monitor.demo.world import CATEGORICAL_FEATURES, NUMERIC_FEATURES

    features = FeatureSet(NUMERIC_FEATURES, CATEGORICAL_FEATURES)
    labels = ("click", "conversion")
    train = Dataset(_world_days(range(0, 6), 20_000), features, labels)     # 120k rows
    valid = Dataset(_world_days(range(6, 7), 15_000), features, labels)
    test = _world_days(range(7, 9), 20_000)                                 # 40k rows, ~800 clicks
    return train, valid, test


DCN_PARAMS = dict(embedding_dim=8, deep_layers=[64, 32], learning_rate=1e-2, batch_size=4096, epochs=8,
                  patience=2, seed=0, device="cpu")


@pytest.fixture(scope="module")
def dcn_model(world_split):
    train, valid, _ = world_split
    trainer = get_trainer("dcn_v2")
    return trainer.fit(train, valid, trainer.validate_params(DCN_PARAMS))


def test_dcn_v2_reaches_lightgbm_auc_on_the_demo_world(world_split, dcn_model):
    train, valid, test = world_split
    lgb = get_trainer("lightgbm")
    lgb_model = lgb.fit(train, valid, lgb.validate_params({"num_threads": 1}))
    y = test["click"].to_numpy()
    dcn_auc, lgb_auc = auc(y, dcn_model.predict(test)), auc(y, lgb_model.predict(test))
    assert dcn_auc >= lgb_auc - 0.01, (dcn_auc, lgb_auc)
    assert dcn_model.info["device"] == "cpu" and dcn_model.info["epochs_run"] <= DCN_PARAMS["epochs"]
    assert dcn_model.info["best_epoch"] >= 1


def test_dcn_save_load_in_a_fresh_process_reproduces_scores_exactly(world_split, dcn_model, tmp_path):
    _, _, test = world_split
    dcn_model.save(tmp_path / "m")
    files = sorted(p.name for p in (tmp_path / "m").iterdir())
    assert files == ["architecture.json", "model.json", "preprocess.json", "weights.safetensors"]
    sample = test.head(3000)
    result = infra_validate(tmp_path / "m", sample, dcn_model.predict(sample), tolerance=0.0)
    assert result.passed, result.message
    assert result.max_abs_diff == 0.0
    # And in this process, through the generic loader.
    assert np.array_equal(load_model(tmp_path / "m").predict(sample), dcn_model.predict(sample))


def test_torch_save_fallback_loads_with_weights_only(world_split, dcn_model, tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "safetensors.torch", None)  # as if safetensors were not installed
    dcn_model.save(tmp_path / "m")
    assert (tmp_path / "m" / "weights.pt").exists() and not (tmp_path / "m" / "weights.safetensors").exists()
    arch = json.loads((tmp_path / "m" / "architecture.json").read_text())
    assert arch["weights"] == "weights.pt"
    state = torch.load(tmp_path / "m" / "weights.pt", weights_only=True)  # plain tensors, no pickled objects
    assert all(isinstance(v, torch.Tensor) for v in state.values())
    sample = world_split[2].head(500)
    assert np.array_equal(load_model(tmp_path / "m").predict(sample), dcn_model.predict(sample))


def test_out_of_vocabulary_and_null_categories_use_the_oov_bucket(world_split, dcn_model):
    sample = world_split[2].head(4).copy()
    sample.loc[0, "offer_id"] = "offer-never-seen"
    sample.loc[1, "os"] = None
    cat, _ = dcn_model.prep.arrays(sample)
    fields = dcn_model.features.categorical
    assert cat[0, fields.index("offer_id")] == 0 and cat[1, fields.index("os")] == 0
    assert cat[2:].min() >= 1
    assert np.all(np.isfinite(dcn_model.predict(sample)))


# -- real click + conversion samples ---------------------------------------------------

ALI_CCP = SHARED_DATA / "ali-ccp"
ALIEXPRESS = SHARED_DATA / "aliexpress"


def _multitask_roundtrip(trainer_name: str, train: Dataset, valid: Dataset, tmp_path):
    trainer = get_trainer(trainer_name)
    model = trainer.fit(train, valid, trainer.validate_params(
        {"epochs": 2, "batch_size": 32, "embedding_dim": 4, "min_category_count": 1, "seed": 0}))
    tasks = model.predict_tasks(valid.frame)
    for values in tasks.values():
        assert values.shape == (len(valid),) and np.all((values >= 0) & (values <= 1))
    if trainer_name == "esmm":
        np.testing.assert_allclose(tasks["ctcvr"], tasks["ctr"] * tasks["cvr"], rtol=1e-6)
    model.save(tmp_path / trainer_name)
    again = load_model(tmp_path / trainer_name).predict_tasks(valid.frame)
    for name in tasks:
        assert np.array_equal(tasks[name], again[name])


@pytest.mark.realdata
@pytest.mark.skipif(not ALI_CCP.exists(), reason="../shared/data/ali-ccp is absent")
@pytest.mark.parametrize("trainer_name", ["esmm", "mmoe"])
def test_multitask_on_ali_ccp(trainer_name, tmp_path):
    frames = {s: pd.read_csv(ALI_CCP / f"ali_ccp_{s}_sample_torchrechub.csv") for s in ("train", "val")}
    dense = tuple(c for c in frames["train"].columns if c.startswith("D"))
    sparse = tuple(c for c in frames["train"].columns if c not in dense and c not in ("click", "purchase"))
    assert len(sparse) == 23 and len(dense) == 8
    features = FeatureSet(dense, sparse)
    _multitask_roundtrip(trainer_name, Dataset(frames["train"], features, ("click", "purchase")),
                         Dataset(frames["val"], features, ("click", "purchase")), tmp_path)


@pytest.mark.realdata
@pytest.mark.skipif(not ALIEXPRESS.exists(), reason="../shared/data/aliexpress is absent")
@pytest.mark.parametrize("trainer_name", ["esmm", "mmoe"])
def test_multitask_on_aliexpress(trainer_name, tmp_path):
    frames = {s: pd.read_csv(ALIEXPRESS / f"aliexpress_tiny_mtl_{s}_fuxictr.csv") for s in ("train", "test")}
    columns = frames["train"].columns
    features = FeatureSet(tuple(c for c in columns if c.startswith("numerical_")),
                          tuple(c for c in columns if c.startswith("categorical_")))
    assert len(features.categorical) == 16 and len(features.numeric) == 63
    _multitask_roundtrip(trainer_name, Dataset(frames["train"], features, ("click", "conversion")),
                         Dataset(frames["test"], features, ("click", "conversion")), tmp_path)


# -- GPU (skipped without CUDA; the CPU path above is the same code) ----------------------

@pytest.mark.gpu
@cuda
def test_dcn_trains_on_cuda_with_bf16(world_split):
    train, valid, test = world_split
    trainer = get_trainer("dcn_v2")
    model = trainer.fit(train, valid, trainer.validate_params(dict(DCN_PARAMS, device="cuda", batch_size=16384,
                                                                   learning_rate=2e-2)))
    assert model.info["device"] == "cuda" and model.info["bf16"]
    assert auc(test["click"].to_numpy(), model.predict(test)) > 0.62


CENSUS = SHARED_DATA / "census-income" / "census-income.test.gz"
CENSUS_COLUMNS = (
    "age class_worker det_ind_code det_occ_code education wage_per_hour hs_college marital_stat major_ind_code "
    "major_occ_code race hisp_origin sex union_member unemp_reason full_or_part_emp capital_gains capital_losses "
    "stock_dividends tax_filer_stat region_prev_res state_prev_res det_hh_fam_stat det_hh_summ instance_weight "
    "mig_chg_msa mig_chg_reg mig_move_reg mig_same mig_prev_sunbelt num_emp fam_under_18 country_father "
    "country_mother country_self citizenship own_or_self vet_question vet_benefits weeks_worked year income_50k"
).split()


@pytest.mark.realdata
@pytest.mark.skipif(not CENSUS.exists(), reason="../shared/data/census-income is absent")
def test_mmoe_with_independent_tasks_on_census_income(tmp_path):
    """The MMoE paper's census-income tasks: income > 50K and never married, one head each."""
    frame = pd.read_csv(CENSUS, header=None, names=CENSUS_COLUMNS, skipinitialspace=True, na_values="?")
    frame = frame.sample(12_000, random_state=0).reset_index(drop=True)
    frame["income_50k"] = (frame["income_50k"] == "50000+.").astype(np.int8)
    frame["never_married"] = (frame["marital_stat"] == "Never married").astype(np.int8)
    features = FeatureSet(("age", "wage_per_hour", "capital_gains", "capital_losses", "stock_dividends", "num_emp",
                           "weeks_worked"),
                          ("class_worker", "education", "sex", "race", "major_ind_code", "major_occ_code",
                           "full_or_part_emp", "citizenship"))
    labels = ("income_50k", "never_married")
    part = lambda rows: Dataset(frame.iloc[rows].reset_index(drop=True), features, labels)  # noqa: E731
    train, valid, test = part(slice(0, 8000)), part(slice(8000, 10_000)), part(slice(10_000, 12_000))
    trainer = get_trainer("mmoe")
    model = trainer.fit(train, valid, trainer.validate_params(
        {"tasks": "independent", "epochs": 4, "embedding_dim": 4, "experts": 2, "expert_layers": [16],
         "deep_layers": [8], "min_category_count": 1, "learning_rate": 0.01, "seed": 0}))
    tasks = model.predict_tasks(test.frame)
    assert list(tasks) == list(labels)  # one head per label, the first the primary one
    assert np.array_equal(model.predict(test.frame), tasks["income_50k"])
    assert auc(test.frame["income_50k"].to_numpy(), tasks["income_50k"]) > 0.85
    assert auc(test.frame["never_married"].to_numpy(), tasks["never_married"]) > 0.85
    # Each head is scored against its own label, not against click x conversion.
    from retrain.evaluate import evaluate_heads

    heads = evaluate_heads(test.frame, labels, tasks)
    assert set(heads) == set(labels) and heads["never_married"].overall.positives == int(
        test.frame["never_married"].sum())
    model.save(tmp_path / "mmoe")
    again = load_model(tmp_path / "mmoe").predict_tasks(test.frame)
    assert all(np.array_equal(tasks[name], again[name]) for name in labels)
