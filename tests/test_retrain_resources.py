"""CPU threads from the cores actually free, and a batch size from the data."""

from __future__ import annotations

import os

import pytest

from retrain import resources
from retrain.resources import Distributed, auto_batch_size, free_cores


@pytest.mark.parametrize("cores, load, expected", [
    (2, 0.3, 2),    # idle but for this process
    (2, 1.2, 2),    # this process and a little more
    (2, 2.0, 1),    # one other busy process: one thread
    (2, 12.0, 1),   # a crowded machine: never fewer than one
    (16, 5.0, 12),  # four other busy processes
])
def test_threads_follow_the_free_cores(monkeypatch, cores, load, expected):
    monkeypatch.setattr(resources, "allowed_cores", lambda: cores)
    monkeypatch.setattr(os, "getloadavg", lambda: (load, load, load))
    assert free_cores() == expected


def test_allowed_cores_respect_the_affinity_mask():
    if not hasattr(os, "sched_getaffinity"):
        pytest.skip("no affinity on this platform")
    assert 1 <= resources.allowed_cores() <= len(os.sched_getaffinity(0))


@pytest.mark.parametrize("rows, device, expected", [
    (1_400, "cpu", 32),          # 44 steps per epoch, not one step of 4,096
    (240_000, "cpu", 2_048),     # ~117 steps
    (50_000_000, "cpu", 4_096),  # capped on the CPU
    (50_000_000, "cuda", 65_536),
    (10, "cpu", 32),
])
def test_batch_size_from_the_data(rows, device, expected):
    assert auto_batch_size(rows, device) == expected


def test_batch_size_is_global_under_ddp_and_torchrun_env_is_read(monkeypatch):
    assert auto_batch_size(240_000, "cpu", world_size=2) == 2_048  # global: each process takes half
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("LOCAL_RANK", "1")
    dist = Distributed.from_env()
    assert dist.active and not dist.main and (dist.world_size, dist.rank, dist.local_rank) == (4, 3, 1)
