"""Deep-ranker SHAP at x0 on a tiny DCN-style torch model defined here (the retrain issue's
DCN-V2 plugs into the same explain.models.DeepModel interface)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip("torch")

from explain.deep import deep_shap, permutation_shap, to_result, x0_of  # noqa: E402
from explain.models import DeepModel, MatrixModel  # noqa: E402
from tests.explain_fixtures import one_torch_thread  # noqa: E402,F401  (autouse)

CARDS = {"os": 5, "offer": 7}
DIM = 4


class Cross(torch.nn.Module):
    """Two DCN-V2 cross layers: x_{l+1} = x0 * (W x_l + b) + x_l, then a linear logit."""

    def __init__(self, width: int):
        super().__init__()
        self.layers = torch.nn.ModuleList(torch.nn.Linear(width, width) for _ in range(2))
        self.out = torch.nn.Linear(width, 1)

    def forward(self, x0):
        x = x0
        for layer in self.layers:
            x = x0 * layer(x) + x
        return self.out(torch.relu(x) + 0.5 * x)


class TinyDCN(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.embeddings = torch.nn.ModuleList(torch.nn.Embedding(c, DIM) for c in CARDS.values())
        self.cross = Cross(DIM * len(CARDS) + 2)

    def forward(self, categories, dense):
        parts = [e(categories[:, i]) for i, e in enumerate(self.embeddings)] + [dense]
        return self.cross(torch.cat(parts, dim=1))


class TinyModel:
    """explain.models.DeepModel (and MatrixModel, for the raw-column fallback)."""

    name = "tiny-dcn"
    features = ("os", "offer", "price", "tenure")

    def __init__(self, zero_tenure: bool = False):
        self.module = TinyDCN().eval()
        if zero_tenure:  # planted: tenure's column of x0 never reaches the output
            with torch.no_grad():
                for layer in self.module.cross.layers:
                    layer.weight[:, -1] = 0
                    layer.weight[-1, :] = 0
                    layer.bias[-1] = 0
                self.module.cross.out.weight[0, -1] = 0
        self.feature_slices = {"os": slice(0, 4), "offer": slice(4, 8), "price": slice(8, 9), "tenure": slice(9, 10)}

    def inputs(self, frame):
        categories = torch.tensor(frame[["os", "offer"]].to_numpy(), dtype=torch.long)
        dense = torch.tensor(frame[["price", "tenure"]].to_numpy(), dtype=torch.float32)
        return categories, dense

    def interaction_layer(self):
        return self.module.cross

    def encode(self, frame):
        return frame[list(self.features)].to_numpy(dtype=np.float64)

    def predict_matrix(self, matrix):
        frame = pd.DataFrame(matrix, columns=self.features)
        frame[["os", "offer"]] = frame[["os", "offer"]].astype(int)
        with torch.no_grad():
            return torch.sigmoid(self.module(*self.inputs(frame))).numpy().ravel().astype(np.float64)

    def predict(self, frame):
        return self.predict_matrix(self.encode(frame))


def frame(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"os": rng.integers(0, 5, n), "offer": rng.integers(0, 7, n),
                         "price": rng.normal(size=n), "tenure": rng.normal(size=n)})


def test_the_tiny_model_satisfies_the_interfaces():
    model = TinyModel()
    assert isinstance(model, DeepModel) and isinstance(model, MatrixModel)
    assert tuple(x0_of(model, model.inputs(frame(3, 0))).shape) == (3, 10)


@pytest.mark.parametrize("method", ["gradient", "deep"])
def test_x0_attributions_add_up_within_the_reported_error(method):
    model = TinyModel()
    rows, background = frame(30, 1), frame(30, 2)
    attribution = deep_shap(model, rows, background, method=method, nsamples=100)
    assert attribution.values.shape == (30, 4) and attribution.method == method
    # The reported error is the real one ...
    gap = np.abs(attribution.base_value + attribution.values.sum(axis=1) - attribution.raw)
    assert attribution.additivity_error == pytest.approx(gap.max())
    # ... and the logits are the model's own.
    p = model.predict(rows)
    np.testing.assert_allclose(attribution.raw, np.log(p / (1 - p)), rtol=1e-4, atol=1e-4)
    result = to_result(model, attribution).to_dict()
    assert result["additivity_error"] == pytest.approx(attribution.additivity_error)
    assert result["details"]["explainer"] == method


def test_auto_keeps_the_method_with_the_smaller_additivity_error(monkeypatch):
    import explain.deep

    model = TinyModel()
    monkeypatch.setattr(explain.deep, "TOLERANCE", 0.0)  # always probe DeepLIFT too
    attribution = deep_shap(model, frame(12, 3), frame(20, 4), method="auto", nsamples=100, probe_rows=8)
    errors = attribution.probe_errors
    assert set(errors) == {"gradient", "deep"}
    assert attribution.method == min(errors, key=errors.get)
    # Expected gradients already within the tolerance: DeepLIFT's costly probe is skipped.
    monkeypatch.setattr(explain.deep, "TOLERANCE", 1.0)
    attribution = deep_shap(model, frame(12, 3), frame(20, 4), method="auto", probe_rows=8)
    assert set(attribution.probe_errors) == {"gradient"} and attribution.method == "gradient"


def test_a_feature_that_never_reaches_the_output_gets_zero():
    model = TinyModel(zero_tenure=True)
    attribution = deep_shap(model, frame(20, 5), frame(20, 6), method="gradient", nsamples=50)
    importance = np.abs(attribution.values).mean(axis=0)
    assert importance[3] < 1e-6 < importance[:3].min()


def test_permutation_fallback_on_raw_columns_is_additive():
    model = TinyModel(zero_tenure=True)
    attribution = permutation_shap(model, frame(6, 7), frame(10, 8))
    assert attribution.additivity_error < 1e-6
    assert np.abs(attribution.values[:, 3]).max() < 1e-6


def _dcn_v2(data):
    from retrain.base import FeatureSet
    from retrain.dcn import build_module
    from retrain.dcn_trainer import DCNParams, DCNTrainer, Preprocessor, TorchModel

    features = FeatureSet(("price", "tenure"), ("os", "offer"))
    params = DCNParams(embedding_dim=3, deep_layers=(8,), cross_layers=2, min_category_count=1)
    prep = Preprocessor.fit(data, features, params)
    arch = DCNTrainer().architecture(prep, params)
    torch.manual_seed(0)
    return TorchModel("dcn_v2", build_module(arch), arch, prep, ("click",), params.model_dump())


def test_the_retrain_dcn_v2_plugs_into_the_deep_model_interface():
    """retrain's TorchModel (DCN-V2) is an explain.models.DeepModel: attribute it at x0."""
    data = frame(120, 9).astype({"os": str, "offer": str})
    model = _dcn_v2(data)
    assert isinstance(model, DeepModel)
    attribution = deep_shap(model, data.iloc[:16], data.iloc[16:56], method="auto", nsamples=50, probe_rows=6)
    assert attribution.features == ("price", "tenure", "os", "offer")
    p = model.predict(data.iloc[:16])
    np.testing.assert_allclose(attribution.raw, np.log(p / (1 - p)), rtol=1e-4, atol=1e-4)
    assert attribution.additivity_error == pytest.approx(
        np.abs(attribution.base_value + attribution.values.sum(axis=1) - attribution.raw).max())


def test_the_cli_explains_a_saved_dcn_v2_directory(tmp_path):
    import json

    from typer.testing import CliRunner

    from monitor.cli import app

    data = frame(150, 10).astype({"os": str, "offer": str})
    data["label"] = (np.random.default_rng(0).random(150) < 0.4).astype(int)
    _dcn_v2(data).save(tmp_path / "dcn")
    data.to_parquet(tmp_path / "data.parquet")
    runner = CliRunner()
    for extra in (["--sample", "40"], ["--method", "permutation", "--label", "label", "--repeats", "2"]):
        result = runner.invoke(app, ["explain", "--model", str(tmp_path / "dcn"), "--data",
                                     str(tmp_path / "data.parquet"), "--format", "json", *extra])
        assert result.exit_code == 0, result.output
        payload = json.loads(result.stdout)
        assert {f["feature"] for f in payload["features"]} == {"price", "tenure", "os", "offer"}
    assert payload["method"] == "permutation"


def test_batched_expected_gradients_agree_with_shap_gradient_explainer():
    model = TinyModel()
    rows, background = frame(6, 11), frame(20, 12)
    ours = deep_shap(model, rows, background, method="gradient", nsamples=4000)
    theirs = deep_shap(model, rows, background, method="shap_gradient", nsamples=4000)
    # Same estimator, independent Monte Carlo draws: equal within sampling noise.
    np.testing.assert_allclose(ours.values, theirs.values, atol=0.05)
    assert ours.additivity_error < 0.1
