"""DCN-V2 (Wang et al. 2020, arXiv 2008.13535) in PyTorch: embeddings, cross network, deep tower.

Imported only by the torch trainers (torch is in the `deep` extra). Modules are rebuilt
from a plain JSON architecture dict (`build_module`) and their state dict, never pickled.

Every module's forward takes (categorical indices (B, F) int64, numerics (B, N) float)
and returns logits (B, T), one column per task; `loss` and `probabilities` say what the
columns mean, so one training loop serves DCN-V2, ESMM and MMoE.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Embedder(nn.Module):
    """All categorical fields in one table (one gather per batch), row 0 of each field is its
    out-of-vocabulary bucket; numerics are appended: x0 = [e_1, ..., e_F, numerics]."""

    def __init__(self, cardinalities: list[int], n_numeric: int, dim: int) -> None:
        super().__init__()
        offsets = torch.tensor([0] + list(cardinalities[:-1]), dtype=torch.int64).cumsum(0)
        self.register_buffer("offsets", offsets if cardinalities else torch.zeros(0, dtype=torch.int64))
        self.table = nn.Embedding(max(1, sum(cardinalities)), dim)
        nn.init.normal_(self.table.weight, std=0.05)
        self.n_fields, self.n_numeric, self.dim = len(cardinalities), n_numeric, dim

    @property
    def output_dim(self) -> int:
        return self.n_fields * self.dim + self.n_numeric

    def forward(self, categorical: torch.Tensor, numeric: torch.Tensor) -> torch.Tensor:
        parts = []
        if self.n_fields:
            parts.append(self.table(categorical + self.offsets).flatten(1))
        if self.n_numeric:
            parts.append(numeric)
        return torch.cat(parts, dim=1)


class CrossLayer(nn.Module):
    """Full-rank cross layer: x_{l+1} = x0 ⊙ (W x_l + b) + x_l."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.linear = nn.Linear(dim, dim)

    def forward(self, x0: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return x0 * self.linear(x) + x


class LowRankMoECross(nn.Module):
    """Low-rank mixture-of-experts cross layer (the paper's DCN-Mix):
    x_{l+1} = Σ_i G_i(x_l) · x0 ⊙ (U_i g(C_i g(V_iᵀ x_l)) + b_i) + x_l, G = softmax of a linear gate."""

    def __init__(self, dim: int, rank: int, experts: int) -> None:
        super().__init__()
        scale = dim ** -0.5
        self.V = nn.Parameter(torch.randn(experts, dim, rank) * scale)
        self.C = nn.Parameter(torch.randn(experts, rank, rank) * rank ** -0.5)
        self.U = nn.Parameter(torch.randn(experts, dim, rank) * rank ** -0.5)
        self.bias = nn.Parameter(torch.zeros(experts, dim))
        self.gate = nn.Linear(dim, experts, bias=False)

    def experts(self, x0: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Each expert's output, (B, K, D)."""
        v = torch.tanh(torch.einsum("bd,kdr->bkr", x, self.V))
        v = torch.tanh(torch.einsum("bkr,ksr->bks", v, self.C))
        return x0.unsqueeze(1) * (torch.einsum("bkr,kdr->bkd", v, self.U) + self.bias)

    def forward(self, x0: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        gates = torch.softmax(self.gate(x), dim=-1)
        return torch.einsum("bk,bkd->bd", gates, self.experts(x0, x)) + x


class CrossNetwork(nn.Module):
    def __init__(self, dim: int, layers: int, rank: int | None = None, experts: int = 4) -> None:
        super().__init__()
        make = (lambda: CrossLayer(dim)) if rank is None else (lambda: LowRankMoECross(dim, rank, experts))
        self.layers = nn.ModuleList(make() for _ in range(layers))

    def forward(self, x0: torch.Tensor) -> torch.Tensor:
        x = x0
        for layer in self.layers:
            x = layer(x0, x)
        return x


def mlp(in_dim: int, hidden: list[int], dropout: float = 0.0) -> tuple[nn.Module, int]:
    layers: list[nn.Module] = []
    for width in hidden:
        layers += [nn.Linear(in_dim, width), nn.ReLU()]
        if dropout:
            layers.append(nn.Dropout(dropout))
        in_dim = width
    return nn.Sequential(*layers), in_dim


class _DCNBody(nn.Module):
    """Everything after the embeddings: x0 -> logit. Its own module so that x0 reaches the
    rest of the network through one call (explain/ attributes at this input)."""

    def __init__(self, dim: int, cross_layers: int, cross_rank: int | None, experts: int,
                 deep_layers: list[int], structure: str, dropout: float) -> None:
        super().__init__()
        self.cross = CrossNetwork(dim, cross_layers, cross_rank, experts)
        self.structure = structure
        if structure == "stacked":
            self.deep, out = mlp(dim, deep_layers, dropout)
        elif structure == "parallel":
            self.deep, deep_out = mlp(dim, deep_layers, dropout)
            out = dim + deep_out
        else:
            raise ValueError(f"structure must be 'stacked' or 'parallel', got {structure!r}")
        self.head = nn.Linear(out, 1)

    def forward(self, x0: torch.Tensor) -> torch.Tensor:
        if self.structure == "stacked":
            return self.head(self.deep(self.cross(x0)))
        return self.head(torch.cat([self.cross(x0), self.deep(x0)], dim=1))


class DCNv2(nn.Module):
    """Single-task DCN-V2: 'stacked' (cross then deep) or 'parallel' (cross beside deep)."""

    tasks = ("ctr",)

    def __init__(self, cardinalities: list[int], n_numeric: int, embedding_dim: int = 16,
                 cross_layers: int = 2, cross_rank: int | None = None, experts: int = 4,
                 deep_layers: list[int] = (256, 128), structure: str = "parallel", dropout: float = 0.0) -> None:
        super().__init__()
        self.embed = Embedder(cardinalities, n_numeric, embedding_dim)
        self.body = _DCNBody(self.embed.output_dim, cross_layers, cross_rank, experts, list(deep_layers),
                             structure, dropout)

    def forward(self, categorical: torch.Tensor, numeric: torch.Tensor) -> torch.Tensor:
        return self.body(self.embed(categorical, numeric))

    @staticmethod
    def loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(logits[:, 0], labels[:, 0])

    @staticmethod
    def probabilities(logits: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"ctr": torch.sigmoid(logits[:, 0])}


def build_module(arch: dict) -> nn.Module:
    """Rebuild a module from its JSON architecture (kind + constructor arguments)."""
    from retrain.multitask import ESMM, MMoE

    kinds = {"dcn_v2": DCNv2, "esmm": ESMM, "mmoe": MMoE}
    arch = dict(arch)
    kind = arch.pop("kind")
    if kind not in kinds:
        raise ValueError(f"unknown module kind {kind!r} (known: {', '.join(kinds)})")
    return kinds[kind](**arch)
