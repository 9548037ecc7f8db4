"""Order 0: the cached step reuses the feature of the last computed step (plain DBCache)."""

from __future__ import annotations

import torch

from ._history import check_approximate, check_update

__all__ = ["ReuseCalibrator"]


class ReuseCalibrator:
    """Stand in with the newest computed feature as is; what DBCache does without TaylorSeer."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.last_step: int | None = None
        self.value: torch.Tensor | None = None

    @property
    def ready(self) -> bool:
        return self.value is not None

    # A stream shared by the two calls of one step (do_separate_classifier_free_guidance=False on
    # a pipeline that calls cond and uncond separately) updates and reads twice at one step;
    # reuse has no notion of time, so that is allowed here (the forecasters refuse it).
    def update(self, step: int, value: torch.Tensor) -> None:
        last = self.last_step
        self.last_step = check_update("ReuseCalibrator", step, value,
                                      None if last is None or step == last else last)
        self.value = value

    def approximate(self, step: int) -> torch.Tensor:
        last = self.last_step
        check_approximate("ReuseCalibrator", step, last - 1 if last is not None and step == last
                          else last)
        return self.value

    def __repr__(self) -> str:
        return "ReuseCalibrator()"
