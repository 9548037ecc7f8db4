"""The hooks that apply the cache, on diffusers' ``HookRegistry`` of each instance (never a class).

A :class:`TransformerHook` brackets every transformer call (the controller's step bookkeeping and
decision state); one :class:`BlockHook` per block reads the runtime's action table. The hot path,
a block stood in for by its own input, is a table lookup and a pre-built pass-through: no
``torch.compiler.disable`` boundary, no signature binding, no allocation beyond the output tuple.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from diffusers.hooks import HookRegistry, ModelHook
from diffusers.hooks.hooks import StateManager

if TYPE_CHECKING:
    from .controller import CacheController
    from .runtime import Runtime

__all__ = ["TRANSFORMER_HOOK", "BLOCK_HOOK", "TransformerHook", "BlockHook", "register",
           "unregister", "invalidate_registry_cache", "controller_of"]

TRANSFORMER_HOOK = "cache_dit.transformer"
BLOCK_HOOK = "cache_dit.block"

# Action codes (plan.Action) as plain ints: the hot path compares ints, not enum members.
_RUN, _RUN_RECORD, _PASS, _SUB_BATCH = 0, 1, 2, 4


class _ContextReceiver(StateManager):
    """Receives the name diffusers' ``transformer.cache_context("cond")`` sets on stateful hooks'
    state managers; we keep only the name (our state lives in the controller)."""

    def __init__(self) -> None:
        super().__init__(object)

    @property
    def name(self) -> str | None:
        return self._context.name if self._context is not None else None


class TransformerHook(ModelHook):
    """Marks the start and end of each transformer call."""

    _is_stateful = True  # so diffusers calls reset_state at the end of each pipeline call

    def __init__(self, controller: CacheController) -> None:
        super().__init__()
        self.controller = controller
        self.context = _ContextReceiver()
        self._redirect: torch.nn.Module | None = None

    def pre_forward(self, module, *args, **kwargs):
        if module is not self.controller.transformer:
            # A deep copy of a cached module: its forward still runs diffusers' wrapper built for
            # the original. Give the copy its own hooks, then run the call on the copy.
            controller_of(module).repair_after_copy()
            self._redirect = module
        return args, kwargs

    def new_forward(self, module, *args, **kwargs):
        if self._redirect is not None:
            copy, self._redirect = self._redirect, None
            return copy(*args, **kwargs)
        controller = self.controller
        # Taken before begin_call: it may re-arrange the hooks around diffusers' context-parallel
        # hooks, and this call's inputs have already passed the ones that were outside us.
        forward = self.fn_ref.original_forward
        controller.begin_call(args, kwargs, self.context.name)
        try:
            output = forward(*args, **kwargs)
        finally:
            controller.end_call()
        return output

    def reset_state(self, module):
        # diffusers calls this at the end of every pipeline call: free the tensors, keep stats,
        # and start a new generation on the next call.
        self.controller.end_of_pipeline_call()
        return module


class BlockHook(ModelHook):
    """Runs one block, records what the cache needs, or stands in for it."""

    def __init__(self, runtime: Runtime, index: int) -> None:
        super().__init__()
        self.runtime = runtime
        self.index = index
        self.passthrough = None  # built once the block's output layout is known

    def new_forward(self, module, *args, **kwargs):
        runtime = self.runtime
        action = runtime.actions[self.index]
        if action == _PASS:  # the hot path: most blocks of a cached step
            passthrough = self.passthrough
            if passthrough is None:
                passthrough = self.passthrough = runtime.ios[self.index].make_passthrough()
            return passthrough(args, kwargs)
        if action == _RUN:
            return self.fn_ref.original_forward(*args, **kwargs)
        if action == _RUN_RECORD:
            runtime.before(self.index, args, kwargs)
            output = self.fn_ref.original_forward(*args, **kwargs)
            runtime.after(self.index, output)
            return output
        if action == _SUB_BATCH:
            return runtime.sub_batch(self.index, self.fn_ref.original_forward, args, kwargs)
        return runtime.stand_in(self.index, args, kwargs)


def register(module: torch.nn.Module, hook: ModelHook, name: str) -> None:
    HookRegistry.check_if_exists_or_initialize(module).register_hook(hook, name)


def unregister(module: torch.nn.Module, name: str) -> None:
    registry = getattr(module, "_diffusers_hook", None)
    if registry is None:
        return
    registry.remove_hook(name, recurse=False)
    if not registry.hooks:
        # Leave the module exactly as we found it when nothing else uses the registry.
        del module._diffusers_hook


def invalidate_registry_cache(module: torch.nn.Module) -> None:
    """diffusers caches each registry's child registries; ours come and go with the blocks."""
    registry = getattr(module, "_diffusers_hook", None)
    invalidate = getattr(registry, "invalidate_child_registries_cache", None)
    if invalidate is not None:
        invalidate()


def rebuild_registry(module: torch.nn.Module) -> None:
    """Re-register the hooks of a deep-copied module on itself. ``copy.deepcopy`` copies the hooks
    but not the closures diffusers wrapped ``forward`` in, which still call the original's."""
    registry = module.__dict__.get("_diffusers_hook")
    if registry is None:
        return
    hooks = [(name, registry.hooks[name]) for name in registry._hook_order]
    module.__dict__.pop("forward", None)
    del module._diffusers_hook
    for name, hook in hooks:
        register(module, hook, name)


def controller_of(module: Any) -> CacheController | None:
    """The controller cached on a transformer, if any."""
    registry = getattr(module, "_diffusers_hook", None)
    hook = registry.get_hook(TRANSFORMER_HOOK) if registry is not None else None
    return hook.controller if hook is not None else None
