"""DBCache under diffusers' native context parallelism (``transformer.enable_parallelism``).

With context parallelism (CP) every rank of the CP group holds a shard of the token sequence
inside the blocks. The cache itself stays per process: residual buffers, per-block residuals and
TaylorSeer state are computed from the local shard, which is exactly right *as long as every rank
takes the same decision on every step*. Two things can break that, and this module fixes both:

1. **The decision.** Each rank's relative L1 diff of its own shard differs from the global one,
   so near the threshold one rank would skip the middle blocks while another enters the attention
   all-to-all: a deadlock. :class:`ShardedDiffReducer` sums ``[sum|a-b|, sum|b|]`` over the CP
   group (one ``all_reduce`` of two float64 numbers per decision) before the ratio is taken, so
   every rank gets the ratio of the whole sequence, bit for bit the same (correct for unequal
   shards too). It is installed only when the transformer is really sharded; a single process or
   plain data-parallel ranks never issue a collective.

2. **Where the split happens.** diffusers splits inputs with hooks from the model's ``_cp_plan``:
   Flux at the transformer's entry, Wan (and Qwen-Image, ...) on ``blocks.0``. In a
   :class:`~diffusers.hooks.HookRegistry` the hook registered last is the outermost. When
   ``enable_cache`` runs *after* ``enable_parallelism``, our block hook on ``blocks.0`` would
   wrap diffusers' split hook and see the whole input but the local output. :func:`arrange_hooks`
   puts each of our block hooks *inside* every CP hook of its block (so it sees what the block
   itself sees: the local shard in, the local shard out) and our transformer hook *outside* every
   CP hook of the transformer (so it reads the whole timestep, which Wan splits when it is given
   per token). It re-registers hooks through the registry's public API and does nothing when the
   order is already right. When ``enable_cache`` came first, the call on which this is noticed
   has already read a split timestep: the controller then takes its max over the group once.

:class:`ContextParallelSync` does this lazily at call time: on every transformer call it compares
the transformer's ``_parallel_config`` with the one it saw last (an identity check), so both orders
(``enable_cache`` then ``enable_parallelism`` and the reverse) work.

Nothing here is global: each controller owns one :class:`ContextParallelSync`.
"""

from __future__ import annotations

from typing import Sequence

import torch

__all__ = [
    "ShardedDiffReducer",
    "ContextParallelSync",
    "context_parallel_group",
    "arrange_hooks",
]

_UNSEEN = object()


def context_parallel_group(transformer: torch.nn.Module):
    """``(process_group, size, device)`` of the CP group the transformer's sequence is sharded
    over, or ``None`` when it is not sharded (no parallel config, tensor parallelism only, or CP
    degree 1).

    The group is the one diffusers built in ``enable_parallelism``: the flattened ring x ulysses
    mesh, which is a sub-group of the world when CP is combined with other parallelism."""
    config = getattr(transformer, "_parallel_config", None)
    cp = getattr(config, "context_parallel_config", None)
    mesh = getattr(cp, "_flattened_mesh", None)
    if mesh is None:
        return None
    size = mesh.size()
    if size <= 1:
        return None
    return mesh.get_group(), size, getattr(cp, "_device", None)


class ShardedDiffReducer:
    """The controller's ``diff_reducer`` on a sharded model: sums the local
    ``[sum|current - reference|, sum|reference|]`` (float64) over the CP group.

    Sums, not an average of per-rank ratios: the result is the relative L1 of the whole sequence
    (up to float summation order), whatever the shard sizes. All ranks get identical bits from the
    all-reduce, so they compare the same number with the same threshold.

    ``calls`` counts the collectives issued; ``local_parts`` keeps this rank's own parts of the
    current generation (what this rank alone would have decided from), for diagnostics.
    """

    def __init__(self, group, size: int, device: torch.device | None = None) -> None:
        self.group = group
        self.size = size
        self.device = device  # where a collective's tensor must live (NCCL: this rank's GPU)
        self.calls = 0
        self.local_parts: list[torch.Tensor] = []

    def new_generation(self) -> None:
        self.local_parts = []

    def __call__(self, parts: torch.Tensor) -> torch.Tensor:
        import torch.distributed as dist

        self.local_parts.append(parts.detach().clone())
        reduced = parts.detach().clone()
        dist.all_reduce(reduced, op=dist.ReduceOp.SUM, group=self.group)
        self.calls += 1
        return reduced

    def max(self, value: float) -> float:
        """The largest ``value`` over the group (one collective)."""
        import torch.distributed as dist

        tensor = torch.tensor([value], dtype=torch.float64, device=self.device)
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX, group=self.group)
        self.calls += 1
        return float(tensor.item())


def _is_cp_hook(hook) -> bool:
    from diffusers.hooks.context_parallel import ContextParallelGatherHook, ContextParallelSplitHook

    return isinstance(hook, (ContextParallelSplitHook, ContextParallelGatherHook))


def _rebuild(registry, start: int, new_tail: Sequence[str]) -> None:
    """Replace the hooks at positions ``start..`` (innermost first) by ``new_tail``, a reordering
    of them. Removal goes outermost first: removing a hook that is not the outermost would leave
    a ``new_forward`` hook above it calling the removed one. Public registry API only."""
    order = list(registry._hook_order)
    hooks = {name: registry.hooks[name] for name in order[start:]}
    for name in reversed(order[start:]):
        registry.remove_hook(name, recurse=False)
    for name in new_tail:
        registry.register_hook(hooks[name], name)


def _cp_positions(registry) -> list[int]:
    return [i for i, n in enumerate(registry._hook_order) if _is_cp_hook(registry.hooks[n])]


def _place_inside_cp(module: torch.nn.Module, name: str) -> bool:
    """Make hook ``name`` on ``module`` sit inside every CP hook there. True if it moved."""
    registry = getattr(module, "_diffusers_hook", None)
    if registry is None or name not in registry.hooks:
        return False
    cp = _cp_positions(registry)
    order = list(registry._hook_order)  # innermost first
    if not cp or order.index(name) < cp[0]:
        return False
    # Ours just inside the innermost CP hook; everything from there outward keeps its order.
    _rebuild(registry, cp[0], [name] + [n for n in order[cp[0]:] if n != name])
    return True


def _place_outside_cp(module: torch.nn.Module, name: str) -> bool:
    """Make hook ``name`` on ``module`` wrap every CP hook there. True if it moved (this means
    the arguments of a call already in flight reached it after a CP split)."""
    registry = getattr(module, "_diffusers_hook", None)
    if registry is None or name not in registry.hooks:
        return False
    cp = _cp_positions(registry)
    order = list(registry._hook_order)
    ours = order.index(name)
    if not cp or ours > cp[-1]:
        return False
    _rebuild(registry, ours, [n for n in order[ours:] if n != name] + [name])
    return True


def arrange_hooks(transformer: torch.nn.Module, blocks: Sequence[torch.nn.Module],
                  transformer_hook: str, block_hook: str) -> bool:
    """Our block hooks inside diffusers' CP hooks, our transformer hook outside them.

    Returns True when the transformer hook had to move outward: the current call's arguments
    were already split when it read them.
    """
    for block in blocks:
        _place_inside_cp(block, block_hook)
    moved = _place_outside_cp(transformer, transformer_hook)
    invalidate = getattr(getattr(transformer, "_diffusers_hook", None),
                         "invalidate_child_registries_cache", None)
    if invalidate is not None:
        invalidate()
    return moved


class ContextParallelSync:
    """Per-controller glue: notices ``enable_parallelism`` (before or after ``enable_cache``),
    arranges the hooks and provides the reducer for the decision."""

    def __init__(self, transformer: torch.nn.Module, blocks: Sequence[torch.nn.Module],
                 transformer_hook: str, block_hook: str) -> None:
        self.transformer = transformer
        self.blocks = list(blocks)
        self.transformer_hook = transformer_hook
        self.block_hook = block_hook
        self.reducer: ShardedDiffReducer | None = None
        self.split_seen = False
        self._seen = _UNSEEN

    def reset(self) -> None:
        """Forget what was seen (after our hooks were re-registered): re-check on the next call."""
        self._seen = _UNSEEN

    def refresh(self) -> bool:
        """Call at the start of every transformer call; cheap (one identity check) unless the
        transformer's parallel config changed since the last call. Returns True when it changed:
        then :attr:`reducer` is current (``None`` when not sharded) and :attr:`split_seen` says
        whether this call's inputs reached our transformer hook already split by a CP hook."""
        config = getattr(self.transformer, "_parallel_config", None)
        if config is self._seen:
            return False
        self._seen = config
        self.split_seen = False
        found = context_parallel_group(self.transformer)
        if found is None:
            self.reducer = None
            return True
        group, size, device = found
        if self.reducer is None or self.reducer.group is not group:
            self.reducer = ShardedDiffReducer(group, size, device)
        self.split_seen = arrange_hooks(self.transformer, self.blocks, self.transformer_hook,
                                        self.block_hook)
        return True
