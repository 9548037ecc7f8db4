"""CPU-time measurement for benchmarks on a shared CPU box.

Process CPU time (not wall time) of one pipeline call, with torch on one thread, repeated and
reduced to a median: on a 2-core shared machine wall time and multi-threaded runs swing by
2-30x, process CPU time of a single thread does not.
"""

from __future__ import annotations

import contextlib
import statistics
import time
from typing import Any, Callable, Iterator

import torch

__all__ = ["median_cpu_time", "block_time_fraction", "count_block_executions"]


def median_cpu_time(fn: Callable[[], Any], repeats: int) -> tuple[float, list[float], Any]:
    """(median CPU seconds, all samples, last result) of ``fn()`` run ``repeats`` times."""
    samples, result = [], None
    for _ in range(repeats):
        start = time.process_time()
        result = fn()
        samples.append(time.process_time() - start)
    return statistics.median(samples), samples, result


def _blocks(transformer: torch.nn.Module, block_lists) -> list[torch.nn.Module]:
    return [block for name in block_lists for block in getattr(transformer, name)]


def block_time_fraction(fn: Callable[[], Any], transformer: torch.nn.Module, block_lists) -> float:
    """Share of ``fn()``'s CPU time spent inside the transformer blocks (one instrumented run)."""
    inside = [0.0]
    starts: list[float] = []
    handles = []
    for block in _blocks(transformer, block_lists):
        handles.append(block.register_forward_pre_hook(lambda *_: starts.append(time.process_time())))
        handles.append(block.register_forward_hook(
            lambda *_: inside.__setitem__(0, inside[0] + time.process_time() - starts.pop())))
    try:
        start = time.process_time()
        fn()
        total = time.process_time() - start
    finally:
        for handle in handles:
            handle.remove()
    return inside[0] / total


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
