"""Order 0: the last computed feature stands in as it is (DBCache's plain residual reuse)."""

from __future__ import annotations

import torch

__all__ = ["Reuse"]


class Reuse:
    """Keeps the newest computed feature."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.value: torch.Tensor | None = None

    @property
    def ready(self) -> bool:
        return self.value is not None

    def update(self, step: int, value: torch.Tensor) -> None:
        self.value = value

    def approximate(self, step: int) -> torch.Tensor:
        if self.value is None:
            raise RuntimeError("Reuse.approximate called before any update")
        return self.value
