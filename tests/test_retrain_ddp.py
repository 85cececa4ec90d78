"""Data parallelism through torchrun: two CPU processes (gloo) follow the single-process
run's loss curve, since each takes half of every global batch and DDP averages gradients."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")

HERE = Path(__file__).resolve().parent


def test_ddp_with_two_processes_matches_one_process(tmp_path):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(HERE.parent), str(HERE)]), OMP_NUM_THREADS="1")
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    single, ddp = tmp_path / "single.json", tmp_path / "ddp.json"
    done = subprocess.run([sys.executable, str(HERE / "ddp_fit.py"), str(single)], env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           str(HERE / "ddp_fit.py"), str(ddp)], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    one, two = json.loads(single.read_text()), json.loads(ddp.read_text())
    assert (one["processes"], two["processes"]) == (1, 2)
    assert len(one["history"]) == len(two["history"]) == 3
    for a, b in zip(one["history"], two["history"]):
        # Same global batches, gradients averaged: equal up to float summation order.
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-4)
        assert b["valid_loss"] == pytest.approx(a["valid_loss"], rel=1e-4)
    # And it learns: the curve goes down.
    assert two["history"][-1]["valid_loss"] < two["history"][0]["train_loss"]
