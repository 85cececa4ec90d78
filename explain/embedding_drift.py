"""Embedding drift of the deep rankers (DCN-V2, ESMM, MMoE): which IDs' embeddings moved, and
did the cross network's input x0 move.

Between two model versions, per categorical field (offer, advertiser, ...):
- the most-served IDs present in both vocabularies are compared row by row: cosine shift
  1 - cos(old, new) and norm change |new| / |old| - 1, weighted by traffic;
- two separately trained tables live in arbitrarily rotated spaces, so the new table is first
  aligned to the old one by a traffic-weighted orthogonal Procrustes rotation fitted on those
  IDs; what remains is the IDs' own movement, not the space's;
- IDs whose shift is an outlier among the compared ones (beyond median + k * MAD, and beyond an
  absolute floor) are the movers; the check alerts when they carry more than `mover_share`
  of the compared traffic, and lists them.
On the same served rows, x0 of the two versions is compared field block by field block the same
way (aligned, cosine and norm per row). On serving windows of one version, `x0_window_shift`
measures how far each field block's mean moved from the reference, in units of the reference's
own spread, against the shift between random halves of the reference sized like the window.

Pure numpy over arrays; `field_embeddings` and `x0_of` read a retrain/ TorchModel (torch
imported inside them only).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MAD_SCALE = 1.4826  # MAD of a normal sample times this estimates its sd


def procrustes(old: np.ndarray, new: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """The orthogonal R minimising sum_i w_i |new_i R - old_i|^2."""
    w = np.ones(len(old)) if weights is None else np.asarray(weights, dtype=np.float64)
    u, _, vt = np.linalg.svd((new * w[:, None]).T @ old)
    return u @ vt


def _cosine_and_norm(old: np.ndarray, new: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    old_norm, new_norm = np.linalg.norm(old, axis=1), np.linalg.norm(new, axis=1)
    safe = np.maximum(old_norm * new_norm, 1e-12)
    return 1.0 - np.sum(old * new, axis=1) / safe, new_norm / np.maximum(old_norm, 1e-12) - 1.0


@dataclass(frozen=True)
class ShiftParams:
    top_n: int = 1000          # the most-served IDs compared
    movers: int = 10           # how many movers to list
    mad_k: float = 6.0         # an ID moved when its shift > median + mad_k * MAD-sd ...
    min_shift: float = 0.05    # ... and > this cosine shift
    mover_share: tuple[float, float] = (0.01, 0.03)  # [warn, alert] traffic share on movers
    align: bool = True


def embedding_shift(old_ids, old: np.ndarray, new_ids, new: np.ndarray, traffic: dict[str, float],
                    params: ShiftParams = ShiftParams()) -> dict:
    """Compare one field's embeddings between two versions on its most-served IDs."""
    old_row = {str(k): i for i, k in enumerate(old_ids)}
    new_row = {str(k): i for i, k in enumerate(new_ids)}
    served = sorted(((float(c), k) for k, c in traffic.items() if k in old_row and k in new_row and c > 0),
                    reverse=True)[:params.top_n]
    total = sum(traffic.values())
    if len(served) < 3:
        return {"ids": len(served), "status": "insufficient_data"}
    ids = [k for _, k in served]
    weights = np.array([c for c, _ in served])
    weights = weights / weights.sum()
    a = old[[old_row[k] for k in ids]].astype(np.float64)
    b = new[[new_row[k] for k in ids]].astype(np.float64)
    keep = np.ones(len(ids), dtype=bool)
    for _ in range(2 if params.align else 1):  # refit the rotation without the movers: they would bend it
        aligned = b @ procrustes(a[keep], b[keep], weights[keep]) if params.align else b
        shift, norm_change = _cosine_and_norm(a, aligned)
        median = float(np.median(shift))
        spread = MAD_SCALE * float(np.median(np.abs(shift - median)))
        cut = max(params.min_shift, median + params.mad_k * spread)
        moved = shift > cut
        keep = ~moved
    share = float(weights[moved].sum())
    warn, alert = params.mover_share
    order = np.argsort(-shift, kind="stable")[:params.movers]
    return {
        "ids": len(ids), "traffic_covered": float(sum(c for c, _ in served) / total) if total else 0.0,
        "aligned": params.align,
        "weighted_cosine_shift": float(weights @ shift),
        "weighted_norm_change": float(weights @ np.abs(norm_change)),
        "median_shift": median, "mover_cut": cut, "moved_ids": int(moved.sum()), "moved_traffic_share": share,
        "top_movers": [{"id": ids[i], "traffic_share": float(weights[i]), "cosine_shift": float(shift[i]),
                        "norm_change": float(norm_change[i])} for i in order],
        "status": "alert" if share > alert else "warn" if share > warn else "ok",
    }


def x0_version_shift(old_x0: np.ndarray, new_x0: np.ndarray, slices: dict[str, slice], align: bool = True) -> dict:
    """x0 of two versions on the same served rows, per field block: mean cosine shift and norm change."""
    out = {}
    for field, part in slices.items():
        a, b = old_x0[:, part].astype(np.float64), new_x0[:, part].astype(np.float64)
        if a.shape[1] > 1:  # a numeric feature's single column has no rotation to remove
            if align:
                b = b @ procrustes(a, b)
            shift, norm_change = _cosine_and_norm(a, b)
            out[field] = {"cosine_shift": float(shift.mean()), "norm_change": float(np.abs(norm_change).mean())}
    return out


def _centroid_shift(reference: np.ndarray, window: np.ndarray) -> float:
    centre = reference.mean(axis=0)
    spread = float(np.sqrt(np.mean(np.sum((reference - centre) ** 2, axis=1))))
    return float(np.linalg.norm(window.mean(axis=0) - centre)) / max(spread, 1e-12)


def x0_window_shift(reference_x0: np.ndarray, window_x0: np.ndarray, slices: dict[str, slice],
                    null_draws: int = 50, k: float = 1.5, seed: int = 0) -> dict:
    """Per field block of x0: the window mean's distance from the reference mean in reference-spread
    units, vs the 99th percentile of that distance between reference halves of the window's size."""
    rng = np.random.default_rng(seed)
    n = min(len(window_x0), len(reference_x0) // 2)
    out = {}
    for field, part in slices.items():
        ref, win = reference_x0[:, part].astype(np.float64), window_x0[:, part].astype(np.float64)
        nulls = []
        for _ in range(null_draws):
            order = rng.permutation(len(ref))
            nulls.append(_centroid_shift(ref[order[n:]], ref[order[:n]]))
        noise = float(np.quantile(nulls, 0.99))
        shift = _centroid_shift(ref, win)
        out[field] = {"centroid_shift": shift, "null_q99": noise,
                      "status": "alert" if shift > k * noise else "ok"}
    return out


def field_embeddings(model, field: str) -> tuple[list[str], np.ndarray]:
    """(IDs in vocabulary order, their embedding rows) of one categorical field of a TorchModel."""
    fields = list(model.features.categorical)
    if field not in fields:
        raise ValueError(f"embedding drift: '{field}' is not a categorical feature of the model "
                         f"(known: {', '.join(fields)})")
    weight = model.module.embed.table.weight.detach().cpu().float().numpy()
    i = fields.index(field)
    offset = int(sum(model.arch["cardinalities"][:i]))
    vocab = model.prep.vocab
    if vocab.hash_buckets:  # hashed: rows are buckets, named as such
        ids = [f"bucket:{b}" for b in range(vocab.hash_buckets)]
    else:
        ids = list(vocab.values[field])
    return ids, weight[offset + 1: offset + 1 + len(ids)]  # row 0 of each field: out of vocabulary


def x0_of(model, frame) -> np.ndarray:
    """The cross network's input x0 for the rows of `frame` (see TorchModel.feature_slices)."""
    import torch  # a TorchModel was loaded, so torch is installed

    categorical, numeric = model.inputs(frame)
    with torch.no_grad():
        return model.module.embed(categorical, numeric).float().numpy()
