"""What the cache did to one stream (CFG branch) during the current generation."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["StreamStats"]


@dataclass
class StreamStats:
    """Counts and per-step diffs of one stream, kept for :func:`cache_dit.summary`."""

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
