"""Shared by the benchmarks: each keeps its own block of bench/RESULTS.md between two markers."""

from __future__ import annotations

from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


def read_block(start: str, end: str) -> tuple[str, str | None, str]:
    """(text before, the block between the markers or None when there is none yet, text after).
    A new block goes above bench.drift's `### ` sections (that script re-sorts those)."""
    text = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    if start in text and end in text:
        before, rest = text.split(start, 1)
        block, after = rest.split(end, 1)
        return before, block, after
    cut = text.find("\n### ")
    before, after = (text, "") if cut < 0 else (text[:cut + 1], text[cut:])
    return before.rstrip("\n") + "\n\n", None, after


def write_block(start: str, end: str, before: str, body: str, after: str) -> None:
    RESULTS.write_text(before + start + "\n" + body + end + ("\n" if not after.startswith("\n") else "") + after)
