"""driftline explain package: which features drive a model, and did that change.

- `explain.models`: the model interface (`Model`, `MatrixModel`, `TreeModel`, `DeepModel`) and the
  LightGBM adapter (text format only; categoricals coded by a vocabulary or the model's own categories).
- `explain.tree`: exact path-dependent TreeSHAP (LightGBM `pred_contrib`'s values), mean |SHAP| with
  its sampling error, gain and split importances.
- `explain.fasttree`: the same values for LightGBM boosters, computed the Fast TreeSHAP v2 way in numba.
- `explain.deep`: SHAP at a deep ranker's interaction-network input x0 (expected gradients or
  DeepLIFT, with the additivity error reported), and a model-agnostic permutation-SHAP fallback.
- `explain.permutation`: permutation importance (log loss, AUC; grouped), identical to scikit-learn's.
- `explain.drift` / `explain.check`: attribution drift and the `attribution_drift` check.
- `explain.report`: the HTML report (bar chart, beeswarm, importance over time).

Heavy dependencies (lightgbm, shap, numba, torch, matplotlib) are imported inside functions.
"""
