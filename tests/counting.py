"""Count real block executions from inside the blocks.

A forward hook on the block itself fires even when cache-dit stands in for it, so we hook the
``nn.Linear`` layers *inside* each block: a block whose linears did not run was not executed.
Each block's number of linear calls per forward is calibrated on an uncached call.
"""

from __future__ import annotations

import contextlib
from collections import Counter

import torch


def _blocks(transformer: torch.nn.Module, block_lists) -> list[torch.nn.Module]:
    return [b for name in block_lists for b in getattr(transformer, name)]


@contextlib.contextmanager
def count_linear_calls(transformer: torch.nn.Module, block_lists):
    """Yields a Counter: block index -> number of nn.Linear calls inside it."""
    counts: Counter = Counter()
    handles = []
    for index, block in enumerate(_blocks(transformer, block_lists)):
        for module in block.modules():
            if isinstance(module, torch.nn.Linear):
                handles.append(module.register_forward_hook(
                    lambda *_, i=index: counts.__setitem__(i, counts[i] + 1)))
    try:
        yield counts
    finally:
        for handle in handles:
            handle.remove()


class BlockExecutionCounter:
    """Calibrate linear calls per block forward, then count block executions of later runs."""

    def __init__(self, transformer: torch.nn.Module, block_lists, calibration_calls: int,
                 calibration_counts: Counter) -> None:
        self.transformer = transformer
        self.block_lists = block_lists
        self.per_forward = {}
        for index, total in calibration_counts.items():
            assert total % calibration_calls == 0, "a block's linear calls vary between calls"
            self.per_forward[index] = total // calibration_calls
        self.num_blocks = len(_blocks(transformer, block_lists))
        assert len(self.per_forward) == self.num_blocks, "some block has no nn.Linear to count"

    @contextlib.contextmanager
    def count(self):
        """Yields a dict filled on exit: total executions and per-block executions."""
        result: dict = {}
        with count_linear_calls(self.transformer, self.block_lists) as counts:
            yield result
        per_block = {}
        for index, per in self.per_forward.items():
            assert counts[index] % per == 0
            per_block[index] = counts[index] // per
        result["per_block"] = per_block
        result["total"] = sum(per_block.values())
