"""Per-sample decisions inside a batch: the middle blocks run on the sub-batch of samples that
compute; the others get their own stand-in.

Every input whose first dimension is the batch (hidden and encoder states, ``temb``, masks, also
inside tuples and dicts) is sliced by index; anything else (rotary embeddings, shared tables) is
passed whole. Each sample keeps its own :class:`~cache_dit.stream.StreamState` (the rule's state,
calibrators, statistics), so its decisions follow its own history.
"""

from __future__ import annotations

from typing import Any, Callable

import torch

__all__ = ["slice_batch", "ambiguous_input", "SubBatch"]


# Inputs named like this are per-token tables shared by the whole batch, whatever their shape.
SHARED_HINTS = ("rotary", "rope", "freq", "pos_emb", "position")
# Inputs named like this are per sample (first dimension = batch), whatever the token counts.
BATCH_HINTS = ("hidden", "temb", "timestep", "mask", "guidance", "pooled", "encoder")


def _shared(name: str) -> bool:
    return any(hint in name.lower() for hint in SHARED_HINTS)


def slice_batch(value: Any, index: torch.Tensor, batch: int) -> Any:
    """``value`` with every tensor whose first dimension is ``batch`` restricted to ``index``."""
    if isinstance(value, torch.Tensor):
        return value.index_select(0, index) if value.dim() and value.shape[0] == batch else value
    if isinstance(value, tuple):
        return tuple(slice_batch(v, index, batch) for v in value)
    if isinstance(value, list):
        return [slice_batch(v, index, batch) for v in value]
    if isinstance(value, dict):
        return {k: v if _shared(str(k)) else slice_batch(v, index, batch) for k, v in value.items()}
    return value


def _named(args: tuple, kwargs: dict, positional_names: list[str]) -> list[tuple[str, Any]]:
    names = positional_names + [f"argument {i}" for i in range(len(positional_names), len(args))]
    return list(zip(names, args)) + list(kwargs.items())


def ambiguous_input(args: tuple, kwargs: dict, hidden: torch.Tensor,
                    encoder: torch.Tensor | None, positional_names: list[str]) -> str | None:
    """The name of a block input whose batch dimension cannot be told: its first dimension
    equals the batch size, the batch size is also a token count of the hidden or encoder states
    (so it may be a per-token table), and its name says neither."""
    batch = hidden.shape[0]
    tokens = {t.shape[1] for t in (hidden, encoder) if t is not None and t.dim() > 1}
    if batch == 1 or batch not in tokens:
        return None
    for name, value in _named(args, kwargs, positional_names):
        lowered = name.lower()
        if _shared(lowered) or any(hint in lowered for hint in BATCH_HINTS):
            continue
        for v in value if isinstance(value, (tuple, list)) else (value,):
            if isinstance(v, torch.Tensor) and v.dim() and v.shape[0] == batch:
                return name
    return None


class SubBatch:
    """Which samples compute in the current call, and how to merge their outputs back."""

    def __init__(self, compute: list[int], batch: int, device: torch.device) -> None:
        self.batch = batch
        self.compute = compute
        self.cache = [i for i in range(batch) if i not in set(compute)]
        self.compute_index = torch.tensor(compute, dtype=torch.long, device=device)
        self.cache_index = torch.tensor(self.cache, dtype=torch.long, device=device)

    def run(self, forward: Callable[..., Any], args: tuple, kwargs: dict,
            positional_names: list[str]) -> Any:
        """``forward`` on the computing samples; inputs named as shared tables pass whole."""
        index, batch = self.compute_index, self.batch
        names = positional_names + [""] * (len(args) - len(positional_names))
        sliced_args = [v if _shared(n) else slice_batch(v, index, batch) for n, v in zip(names, args)]
        return forward(*sliced_args, **slice_batch(kwargs, index, batch))

    def merge(self, full: torch.Tensor | None, computed: torch.Tensor | None,
              cached: torch.Tensor | None) -> torch.Tensor | None:
        """The full-batch tensor: computed rows from the sub-batch, cached rows from ``cached``
        (already stood in for) or ``full`` as it came in."""
        if full is None or computed is None or full.dim() == 0 or full.shape[0] != self.batch:
            return full
        out = full.clone() if cached is None else full.index_copy(0, self.cache_index, cached)
        return out.index_copy(0, self.compute_index, computed)
