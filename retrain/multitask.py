"""Multi-task heads for click + conversion sharing one embedding table (torch modules).

- ESMM (Ma et al. 2018): a CTR tower and a CVR tower; pCTCVR = pCTR × pCVR. Both losses
  are taken over all impressions (CTR on clicks, CTCVR on click-and-convert), so the CVR
  tower is never trained on the clicked subset alone (no sample-selection bias).
- MMoE (Ma et al. 2018): shared experts, one softmax gate and one tower per task. By
  default its heads are CTR and CTCVR (click × conversion); with independent tasks (the
  paper's census-income: income > 50K, never married) one head per label column.

Labels come in as (B, 2): [click, conversion], where conversion counts only after a click;
or (B, T), one column per independent task.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from retrain.dcn import CrossNetwork, Embedder, mlp

_EPS = 1e-7


class _Tower(nn.Module):
    """Optional cross network over x0, then an MLP, then one logit."""

    def __init__(self, dim: int, cross_layers: int, cross_rank: int | None, experts: int,
                 hidden: list[int], dropout: float) -> None:
        super().__init__()
        self.cross = CrossNetwork(dim, cross_layers, cross_rank, experts) if cross_layers else None
        self.deep, out = mlp(dim, hidden, dropout)
        self.head = nn.Linear(out, 1)

    def forward(self, x0: torch.Tensor) -> torch.Tensor:
        x = self.cross(x0) if self.cross is not None else x0
        return self.head(self.deep(x))


def _ctcvr_target(labels: torch.Tensor) -> torch.Tensor:
    return labels[:, 0] * labels[:, 1]


class _ESMMBody(nn.Module):
    def __init__(self, dim: int, cross_layers: int, cross_rank: int | None, experts: int,
                 deep_layers: list[int], dropout: float) -> None:
        super().__init__()
        self.ctr = _Tower(dim, cross_layers, cross_rank, experts, deep_layers, dropout)
        self.cvr = _Tower(dim, cross_layers, cross_rank, experts, deep_layers, dropout)

    def forward(self, x0: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.ctr(x0), self.cvr(x0)], dim=1)


class ESMM(nn.Module):
    tasks = ("ctr", "cvr", "ctcvr")

    def __init__(self, cardinalities: list[int], n_numeric: int, embedding_dim: int = 16,
                 cross_layers: int = 1, cross_rank: int | None = None, experts: int = 4,
                 deep_layers: list[int] = (128, 64), dropout: float = 0.0) -> None:
        super().__init__()
        self.embed = Embedder(cardinalities, n_numeric, embedding_dim)
        self.body = _ESMMBody(self.embed.output_dim, cross_layers, cross_rank, experts, list(deep_layers), dropout)

    def forward(self, categorical: torch.Tensor, numeric: torch.Tensor) -> torch.Tensor:
        return self.body(self.embed(categorical, numeric))

    @staticmethod
    def loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        ctr_loss = F.binary_cross_entropy_with_logits(logits[:, 0], labels[:, 0])
        # log pCTCVR = log σ(a) + log σ(b), computed in log space for stability.
        log_p = F.logsigmoid(logits[:, 0]) + F.logsigmoid(logits[:, 1])
        log_not_p = torch.log((-torch.expm1(log_p)).clamp_min(_EPS))
        y = _ctcvr_target(labels)
        ctcvr_loss = -(y * log_p + (1 - y) * log_not_p).mean()
        return ctr_loss + ctcvr_loss

    @staticmethod
    def probabilities(logits: torch.Tensor) -> dict[str, torch.Tensor]:
        p_ctr, p_cvr = torch.sigmoid(logits[:, 0]), torch.sigmoid(logits[:, 1])
        return {"ctr": p_ctr, "cvr": p_cvr, "ctcvr": p_ctr * p_cvr}


class _MMoEBody(nn.Module):
    def __init__(self, dim: int, tasks: int, experts: int, expert_layers: list[int], deep_layers: list[int],
                 dropout: float) -> None:
        super().__init__()
        built = [mlp(dim, expert_layers, dropout) for _ in range(experts)]
        self.experts = nn.ModuleList(m for m, _ in built)
        width = built[0][1]
        self.gates = nn.ModuleList(nn.Linear(dim, experts) for _ in range(tasks))
        self.towers = nn.ModuleList(_Tower(width, 0, None, 0, deep_layers, dropout) for _ in range(tasks))

    def gate_weights(self, x0: torch.Tensor) -> torch.Tensor:
        """(B, tasks, experts), each row a softmax."""
        return torch.stack([torch.softmax(g(x0), dim=-1) for g in self.gates], dim=1)

    def forward(self, x0: torch.Tensor) -> torch.Tensor:
        expert_out = torch.stack([e(x0) for e in self.experts], dim=1)  # (B, K, H)
        mixed = torch.einsum("btk,bkh->bth", self.gate_weights(x0), expert_out)
        return torch.cat([tower(mixed[:, t]) for t, tower in enumerate(self.towers)], dim=1)


class MMoE(nn.Module):
    """task_names: the heads; independent=False means (ctr, ctcvr) trained on click and
    click × conversion, True one head per label column, each on its own label."""

    def __init__(self, cardinalities: list[int], n_numeric: int, embedding_dim: int = 16,
                 experts: int = 4, expert_layers: list[int] = (128,), deep_layers: list[int] = (64,),
                 dropout: float = 0.0, task_names: list[str] = ("ctr", "ctcvr"), independent: bool = False) -> None:
        super().__init__()
        self.tasks, self.independent = tuple(task_names), independent
        self.embed = Embedder(cardinalities, n_numeric, embedding_dim)
        self.body = _MMoEBody(self.embed.output_dim, len(self.tasks), experts, list(expert_layers),
                              list(deep_layers), dropout)

    def forward(self, categorical: torch.Tensor, numeric: torch.Tensor) -> torch.Tensor:
        return self.body(self.embed(categorical, numeric))

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if self.independent:
            return sum(F.binary_cross_entropy_with_logits(logits[:, t], labels[:, t]) for t in range(len(self.tasks)))
        return (F.binary_cross_entropy_with_logits(logits[:, 0], labels[:, 0])
                + F.binary_cross_entropy_with_logits(logits[:, 1], _ctcvr_target(labels)))

    def probabilities(self, logits: torch.Tensor) -> dict[str, torch.Tensor]:
        return {name: torch.sigmoid(logits[:, t]) for t, name in enumerate(self.tasks)}
