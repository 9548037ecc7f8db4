"""Per-generation cache state: step tracking, one buffer set per CFG branch, statistics.

Everything here belongs to one cached transformer and is reset at the start of each generation;
nothing is shared between transformers or pipelines.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .taylorseer import TaylorSeer

__all__ = ["StepTracker", "StreamState", "StreamStats"]


@dataclass
class StreamStats:
    """What happened to one stream (CFG branch) during the current generation."""

    steps: int = 0
    cached_steps: list[int] = field(default_factory=list)
    residual_diffs: dict[int, float] = field(default_factory=dict)
    blocks_run: int = 0
    blocks_total: int = 0

    @property
    def blocks_saved_fraction(self) -> float:
        if not self.blocks_total:
            return 0.0
        return 1.0 - self.blocks_run / self.blocks_total


class StreamState:
    """Buffers of one stream: the diff reference and what stands in for skipped blocks."""

    def __init__(self, taylor_order: int | None, encoder_taylor_order: int | None) -> None:
        self._taylor_order = taylor_order
        self._encoder_taylor_order = encoder_taylor_order
        self.reset()

    def reset(self) -> None:
        # Fn output residual of the last *computed* step: the reference for the diff.
        self.fn_residual: torch.Tensor | None = None
        # Per block-list segment: (hidden, encoder) residual of the skipped middle blocks.
        self.middle: dict[int, tuple[torch.Tensor | None, torch.Tensor | None]] = {}
        # Per segment: TaylorSeer forecasters for hidden / encoder.
        self.taylor: dict[int, TaylorSeer] = {}
        self.encoder_taylor: dict[int, TaylorSeer] = {}
        # Per Bn block skipped through Bn_compute_blocks_ids: its own (hidden, encoder) residual.
        self.block_residuals: dict[int, tuple[torch.Tensor | None, torch.Tensor | None]] = {}
        # Per skipped block with extra outputs (not hidden/encoder): its last computed outputs.
        self.block_values: dict[int, tuple] = {}
        self.continuous_cached = 0
        self.stats = StreamStats()

    def hidden_forecaster(self, segment: int) -> TaylorSeer | None:
        if self._taylor_order is None:
            return None
        if segment not in self.taylor:
            self.taylor[segment] = TaylorSeer(self._taylor_order)
        return self.taylor[segment]

    def encoder_forecaster(self, segment: int) -> TaylorSeer | None:
        if self._encoder_taylor_order is None:
            return None
        if segment not in self.encoder_taylor:
            self.encoder_taylor[segment] = TaylorSeer(self._encoder_taylor_order)
        return self.encoder_taylor[segment]


class StepTracker:
    """Turns a sequence of transformer calls into (step, branch) pairs.

    Calls at the same timestep belong to one denoising step; the i-th call within a step is
    branch i (cond/uncond in separate-CFG pipelines). Without a visible timestep, calls are
    grouped by ``calls_per_step`` (2 when separate CFG is forced, else 1).
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.step = -1
        self.branch = 0
        self.calls = 0
        self.max_branches = 0
        self.last_timestep: float | None = None
        self.direction = 0.0

    def advance(self, timestep: float | None, calls_per_step: int) -> tuple[int, int]:
        if timestep is None:
            self.step, self.branch = divmod(self.calls, calls_per_step)
        elif self.last_timestep is None or timestep != self.last_timestep:
            if self.last_timestep is not None and not self.direction:
                self.direction = timestep - self.last_timestep
            self.step += 1
            self.branch = 0
        else:
            self.branch += 1
        self.last_timestep = timestep
        self.calls += 1
        self.max_branches = max(self.max_branches, self.branch + 1)
        return self.step, self.branch

    def looks_like_restart(self, timestep: float | None) -> bool:
        """A timestep that moves against the schedule's direction starts a new generation."""
        if timestep is None or self.last_timestep is None or not self.direction:
            return False
        return (timestep - self.last_timestep) * self.direction < 0
