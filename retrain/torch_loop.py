"""The torch trainers' training loop: one code path for CPU, one GPU and torchrun (DDP).

- The training set goes to the device once; when it does not fit, it is pinned once and
  each batch is gathered into one of two pinned staging buffers (indexing a pinned tensor
  gives pageable memory) and copied asynchronously, overlapping the previous step.
- Under torchrun (WORLD_SIZE > 1) every process draws the same permutation (same seed) and
  takes its share of each global batch; DistributedDataParallel averages the gradients, so
  the run follows the single-process run with the same global batch (gloo on the CPU,
  NCCL on CUDA). Rank 0's validation loss decides early stopping for all.
- The history records each epoch's mean training loss (over every sample, all processes)
  and the validation loss.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from retrain.resources import Distributed

PREDICT_BATCH = 65_536


@dataclass
class LoopResult:
    best_state: dict | None
    best_epoch: int
    history: list[dict] = field(default_factory=list)
    train_seconds: float = 0.0
    trained_samples: int = 0


class _Batches:
    """Rows of the training tensors by index: from device memory, or from pinned host
    memory through two pinned staging buffers and an asynchronous copy."""

    def __init__(self, torch, tensors: list, device, batch: int, pinned: bool) -> None:
        self.torch, self.tensors, self.device, self.pinned = torch, tensors, device, pinned
        if pinned:
            self.staging = [[torch.empty((batch, *t.shape[1:]), dtype=t.dtype).pin_memory() for t in tensors]
                            for _ in range(2)]
            self.copied = [None, None]  # CUDA events: the copy out of each staging buffer is done
        self.slot = 0

    def take(self, idx) -> list:
        if not self.pinned:
            idx = idx.to(self.tensors[0].device)
            return [t.index_select(0, idx) for t in self.tensors]
        slot, self.slot = self.slot, 1 - self.slot
        if self.copied[slot] is not None:
            self.copied[slot].synchronize()  # do not overwrite a buffer still being copied
        out = []
        for tensor, buffer in zip(self.tensors, self.staging[slot]):
            view = buffer[:len(idx)]
            self.torch.index_select(tensor, 0, idx, out=view)
            out.append(view.to(self.device, non_blocking=True))
        event = self.torch.cuda.Event()
        event.record()
        self.copied[slot] = event
        return out


def to_device(torch, arrays: list[np.ndarray], device) -> tuple[list, bool]:
    """(tensors, pinned): on the device when it has room, else pinned host memory (once)."""
    tensors = [torch.from_numpy(np.ascontiguousarray(a)) for a in arrays]
    if device.type != "cuda":
        return tensors, False
    try:
        return [t.to(device) for t in tensors], False
    except torch.OutOfMemoryError:
        return [t.pin_memory() for t in tensors], True


def mean_loss(torch, module, tensors: list, device, autocast: dict) -> float:
    """The loss over every row of (categorical, numeric, labels), in large batches."""
    cat, num, y = tensors
    if len(y) == 0:
        return float("nan")
    total = 0.0
    with torch.no_grad(), torch.autocast(**autocast):
        for lo in range(0, len(y), PREDICT_BATCH):
            sl = slice(lo, lo + PREDICT_BATCH)
            logits = module(cat[sl].to(device), num[sl].to(device)).float()
            total += float(module.loss(logits, y[sl].to(device))) * len(y[sl])
    return total / len(y)


def train_loop(torch, module, train_arrays: list[np.ndarray], valid_arrays: list[np.ndarray], device, *,
               batch: int, epochs: int, patience: int, learning_rate: float, weight_decay: float, seed: int,
               bf16: bool, compile: bool, dist: Distributed,
               progress: Callable[[int, int, str], None] | None = None) -> LoopResult:
    """Adam with early stopping on the validation loss; returns the best epoch's weights."""
    autocast = dict(device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda" and bf16)
    model = module
    if dist.active:
        from torch.nn.parallel import DistributedDataParallel

        model = DistributedDataParallel(module, device_ids=[device.index] if device.type == "cuda" else None)
    step_fn = torch.compile(model) if compile else model
    train_t, pinned = to_device(torch, train_arrays, device)
    valid_t, _ = to_device(torch, valid_arrays, device)
    n = len(train_arrays[2])
    batches = _Batches(torch, train_t, device, -(-batch // dist.world_size), pinned)
    optimiser = torch.optim.Adam(module.parameters(), lr=learning_rate, weight_decay=weight_decay,
                                 fused=device.type == "cuda")
    generator = torch.Generator().manual_seed(seed)
    steps = (n + batch - 1) // batch
    if dist.active and n % batch and n % batch < dist.world_size:
        steps -= 1  # a last batch too small to give every process a row
    result, best_loss, stale = LoopResult(None, 0), float("inf"), 0
    module.train()
    for epoch in range(1, epochs + 1):
        order = torch.randperm(n, generator=generator)  # the same on every process
        started = time.perf_counter()
        loss_sum, rows = torch.zeros((), dtype=torch.float64, device=device), 0
        for step in range(steps):
            idx = order[step * batch:(step + 1) * batch][dist.rank::dist.world_size]
            b_cat, b_num, b_y = batches.take(idx)
            with torch.autocast(**autocast):
                logits = step_fn(b_cat, b_num)
            loss = module.loss(logits.float(), b_y)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            loss_sum += loss.detach().double() * len(idx)
            rows += len(idx)
            if progress is not None and dist.main and (step % 50 == 0 or step == steps - 1):
                progress((epoch - 1) * steps + step + 1, steps * epochs,
                         f"epoch {epoch}/{epochs}, train loss {loss.item():.5f}")
        if device.type == "cuda":
            torch.cuda.synchronize()
        result.train_seconds += time.perf_counter() - started
        result.trained_samples += n
        totals = torch.stack([loss_sum, torch.tensor(float(rows), dtype=torch.float64, device=device)])
        module.eval()
        valid_loss = torch.tensor([mean_loss(torch, module, valid_t, device, autocast)], dtype=torch.float64,
                                  device=device)
        module.train()
        if dist.active:
            torch.distributed.all_reduce(totals)
            torch.distributed.broadcast(valid_loss, 0)
        loss_valid = float(valid_loss[0])
        result.history.append({"epoch": epoch, "train_loss": float(totals[0] / totals[1]), "valid_loss": loss_valid})
        if progress is not None and dist.main:
            progress(epoch * steps, steps * epochs, f"epoch {epoch}/{epochs}, valid loss {loss_valid:.5f}")
        if not loss_valid < best_loss and len(valid_arrays[2]):
            stale += 1
            if stale >= patience:
                break
            continue
        best_loss, result.best_epoch, stale = loss_valid, epoch, 0
        result.best_state = {k: v.detach().clone() for k, v in module.state_dict().items()}
    return result
