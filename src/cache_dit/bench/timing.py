"""CPU-time measurement for benchmarks on a shared CPU box.

Process CPU time (not wall time) of one pipeline call, with torch on one thread: on a 2-core shared
machine wall time and multi-threaded runs swing by 2-30x, process CPU time of a single thread far
less. What is left (cache and memory contention from neighbours, frequency drift) moves slowly, so
the runner times uncached and cached calls in pairs (A B A B ...) and reduces the *paired ratios*:
drift then lands on both halves of a pair instead of on whichever config ran first.
"""

from __future__ import annotations

import contextlib
import statistics
import time
from typing import Any, Callable, Iterator, Sequence

import torch

__all__ = ["cpu_time", "median_cpu_time", "block_time_fraction", "count_block_executions",
           "block_timer", "paired_ratios", "ratio_stats", "expected_speedup", "disagrees"]


def cpu_time(fn: Callable[[], Any]) -> tuple[float, Any]:
    """(CPU seconds, result) of one ``fn()`` call."""
    start = time.process_time()
    result = fn()
    return time.process_time() - start, result


def median_cpu_time(fn: Callable[[], Any], repeats: int) -> tuple[float, list[float], Any]:
    """(median CPU seconds, all samples, last result) of ``fn()`` run ``repeats`` times."""
    samples, result = [], None
    for _ in range(repeats):
        seconds, result = cpu_time(fn)
        samples.append(seconds)
    return statistics.median(samples), samples, result


def paired_ratios(uncached: Sequence[float], cached: Sequence[float]) -> list[float]:
    """Speedup of each (uncached, cached) pair timed back to back."""
    if len(uncached) != len(cached) or not uncached:
        raise ValueError(f"need equally many uncached and cached samples (>= 1), got "
                         f"{len(uncached)} and {len(cached)}")
    if min(cached) <= 0:
        raise ValueError(f"cached CPU times must be > 0, got {list(cached)}")
    return [a / b for a, b in zip(uncached, cached)]


def ratio_stats(ratios: Sequence[float]) -> dict[str, float]:
    """Median and min-max spread of paired ratios (few repeats: min-max, not an IQR)."""
    return {"median": statistics.median(ratios), "lo": min(ratios), "hi": max(ratios)}


def expected_speedup(block_share: float, blocks_kept: float) -> float:
    """Amdahl: time outside the blocks stays, block time scales with the fraction of blocks kept.

    ``block_share`` is the share of the uncached call's CPU time spent inside the blocks. The cache's
    own decision cost is not in it, so a measured speedup a bit below this is the cache's overhead.
    """
    for name, value in (("block_share", block_share), ("blocks_kept", blocks_kept)):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{name} must be in [0, 1], got {value}")
    return 1.0 / ((1.0 - block_share) + block_share * blocks_kept)


def disagrees(measured: dict[str, float], expected: float) -> bool:
    """True when the median paired ratio is further from the expected speedup than the ratios'
    own min-max spread (so a single repeat, with no spread, flags any difference)."""
    return abs(measured["median"] - expected) > measured["hi"] - measured["lo"]


def _blocks(transformer: torch.nn.Module, block_lists) -> list[torch.nn.Module]:
    return [block for name in block_lists for block in getattr(transformer, name)]


@contextlib.contextmanager
def block_timer(transformer: torch.nn.Module, block_lists) -> Iterator[dict]:
    """CPU seconds spent inside the transformer blocks while the context is open (``inside``)."""
    result = {"inside": 0.0}
    starts: list[float] = []
    handles = []

    def pre(*_):
        starts.append(time.process_time())

    def post(*_):
        result["inside"] += time.process_time() - starts.pop()

    for block in _blocks(transformer, block_lists):
        handles.append(block.register_forward_pre_hook(pre))
        handles.append(block.register_forward_hook(post))
    try:
        yield result
    finally:
        for handle in handles:
            handle.remove()


def block_time_fraction(fn: Callable[[], Any], transformer: torch.nn.Module, block_lists) -> float:
    """Share of ``fn()``'s CPU time spent inside the transformer blocks (one instrumented run)."""
    with block_timer(transformer, block_lists) as timed:
        total, _ = cpu_time(fn)
    return timed["inside"] / total


@contextlib.contextmanager
def count_block_executions(transformer: torch.nn.Module, block_lists) -> Iterator[dict]:
    """Count blocks that really ran (any nn.Linear inside them fired), per call of each block.

    A hook on the block itself also fires when a cache stands in for it, so we look inside. The
    result dict gets ``executed`` (blocks whose linears ran) and ``calls`` (block calls) on exit.
    """
    result = {"executed": 0, "calls": 0}
    fired = [False]
    handles = []
    for block in _blocks(transformer, block_lists):
        def pre(*_):
            fired[0] = False

        def post(*_):
            result["calls"] += 1
            result["executed"] += int(fired[0])

        handles.append(block.register_forward_pre_hook(pre))
        handles.append(block.register_forward_hook(post))
        for module in block.modules():
            if isinstance(module, torch.nn.Linear):
                handles.append(module.register_forward_hook(lambda *_: fired.__setitem__(0, True)))
    try:
        yield result
    finally:
        for handle in handles:
            handle.remove()
