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

    def update(self, step: int, value: torch.Tensor) -> None:
        self.last_step = check_update("ReuseCalibrator", step, value, self.last_step)
        self.value = value

    def approximate(self, step: int) -> torch.Tensor:
        check_approximate("ReuseCalibrator", step, self.last_step)
        return self.value

    def __repr__(self) -> str:
        return "ReuseCalibrator()"
