"""Per-thread scratch arrays for the profile kernel's temporaries."""

from __future__ import annotations

import threading

import numpy as np

# Temporaries of the numeric kernel live in per-thread buffers reused from batch to
# batch: allocating (and page-faulting) fresh megabyte arrays for every column of every
# batch cost about a fifth of the kernel's CPU time. Arrays above this many elements
# are allocated per call, so a one-off huge batch does not pin memory.
_SCRATCH_MAX_ELEMENTS = 1 << 19
_scratch_buffers = threading.local()


def scratch(name: str, size: int, dtype) -> np.ndarray:
    """A per-thread reusable array of `size` elements; valid until the next call with the same name."""
    if size > _SCRATCH_MAX_ELEMENTS:
        return np.empty(size, dtype)
    buffers = _scratch_buffers.__dict__
    buffer = buffers.get(name)
    if buffer is None or buffer.size < size:
        buffer = buffers[name] = np.empty(size, dtype)
    return buffer[:size]
