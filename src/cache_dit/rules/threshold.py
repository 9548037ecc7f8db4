"""DBCache's rule: cache while the probe residual barely moved since the last computed step.

The statistic is the relative L1 distance ``sum|p - p_ref| / sum|p_ref|`` between this step's
first-n output residual ``p`` and that of the last *computed* step (a cached step keeps the old
reference, so the distance accumulates over a run of cached steps).
"""

from __future__ import annotations

import torch

__all__ = ["ResidualDiffRule", "ResidualDiffState", "change_parts", "l1_parts", "parts_ratio",
           "relative_l1"]


def l1_parts(current: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """[sum|current - reference|, sum|reference|]: sums (not means) so shards of unequal size add
    up to the global statistic before the ratio is taken. Summed in float32 (torch's pairwise
    reduction, ~1e-7 relative), returned as float64 for the cross-rank sum: accumulating in
    float64 doubled this hot-path cost on CPU for no decision that matters."""
    current, reference = current.float(), reference.float()
    return torch.stack([(current - reference).abs().sum(), reference.abs().sum()]).double()


def change_parts(current: torch.Tensor, reference: torch.Tensor | None) -> torch.Tensor | None:
    """:func:`l1_parts` of ``current`` against ``reference``; None when there is nothing of the
    same shape to compare with (then the step computes)."""
    if reference is None or reference.shape != current.shape:
        return None
    return l1_parts(current, reference)


def parts_ratio(values: list[float]) -> float:
    numerator, denominator = values
    if denominator == 0.0:
        return 0.0 if numerator == 0.0 else float("inf")
    return numerator / denominator


def relative_l1(current: torch.Tensor, reference: torch.Tensor) -> float:
    """mean|current - reference| / mean|reference| (the DBCache residual diff)."""
    return parts_ratio(l1_parts(current, reference).tolist())


class ResidualDiffState:
    """The probe residual of the last computed step."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.reference: torch.Tensor | None = None


class ResidualDiffRule:
    """Cache when the relative L1 change of the probe is below ``threshold``."""

    def __init__(self, threshold: float) -> None:
        self.threshold = threshold

    def new_state(self, schedule: object = None) -> ResidualDiffState:
        return ResidualDiffState()

    def parts(self, state: ResidualDiffState, step: int, probe: torch.Tensor) -> torch.Tensor | None:
        return change_parts(probe, state.reference)

    def decide(self, state: ResidualDiffState, step: int, values: list[float]) -> tuple[bool, float]:
        diff = parts_ratio(values)
        return diff < self.threshold, diff

    def on_compute(self, state: ResidualDiffState, step: int,
                   probe: torch.Tensor | None) -> None:
        state.reference = probe

    def on_cache(self, state: ResidualDiffState, step: int, probe: torch.Tensor | None) -> None:
        pass

    def decide_without_probe(self, state: ResidualDiffState, step: int) -> bool:
        """With no probe (a steps mask decides), every step the mask leaves free is cached."""
        return True
