"""Per-stream buffers: one set per CFG branch of one cached transformer, reset every generation."""

from __future__ import annotations

from typing import Any, Callable

import torch

from .calibrators import Calibrator
from .stats import StreamStats

__all__ = ["StreamState"]

Pair = tuple[torch.Tensor | None, torch.Tensor | None]


class StreamState:
    """The decision rule's state and what stands in for skipped blocks, for one stream."""

    def __init__(self, rule_state: Any, hidden_calibrator: Callable[[], Calibrator],
                 encoder_calibrator: Callable[[], Calibrator]) -> None:
        self.rule = rule_state
        self._hidden_calibrator = hidden_calibrator
        self._encoder_calibrator = encoder_calibrator
        self.stats = StreamStats()
        # Under per-sample decisions: one state per sample of the batch (this one's own buffers
        # then stay unused).
        self.samples: list[StreamState] = []
        self.reset()

    def reset(self) -> None:
        """Drop every tensor (statistics stay)."""
        self.rule.reset()
        # Per block-list segment: calibrators of the skipped middle blocks (hidden, encoder).
        self.middle: dict[int, tuple[Calibrator, Calibrator]] = {}
        # Per Bn block skipped through Bn_compute_blocks_ids: its own (hidden, encoder) residual.
        self.block_residuals: dict[int, Pair] = {}
        # Per skipped block with extra outputs (not hidden/encoder): its last computed outputs.
        self.block_values: dict[int, tuple] = {}
        self.continuous_cached = 0
        for sample in self.samples:
            sample.reset()

    def calibrators(self, segment: int) -> tuple[Calibrator, Calibrator]:
        """The segment's (hidden, encoder) calibrators, created on first use."""
        pair = self.middle.get(segment)
        if pair is None:
            pair = (self._hidden_calibrator(), self._encoder_calibrator())
            self.middle[segment] = pair
        return pair
