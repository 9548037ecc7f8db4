"""Public entry points: enable_cache, disable_cache, summary, reset_cache.

A *session* ties the controllers of one pipeline (or bare transformer) together and listens to the
pipeline's scheduler: every diffusers pipeline calls ``scheduler.set_timesteps`` once at the start
of ``__call__``, which is exactly when the cache must start afresh. The session lives on the
instance it was enabled on; nothing is patched on a class and nothing is global.
"""

from __future__ import annotations

import functools
import logging
import weakref
from dataclasses import dataclass, field
from typing import Any, Sequence

import torch

from . import compat
from .adapter import find_targets
from .cached_blocks import DBCacheController, controller_of
from .options import CacheOptions
from .patterns import ForwardPattern
from .state import StreamStats

logger = logging.getLogger(__name__)

_SESSION_ATTR = "_cache_dit_session"

__all__ = ["enable_cache", "disable_cache", "summary", "reset_cache", "CacheSummary"]


class _CacheSession:
    """The controllers enabled on one object, plus the scheduler listener."""

    def __init__(self, owner: Any, controllers: list[DBCacheController], options: CacheOptions):
        self.owner_ref = weakref.ref(owner)
        self.controllers = controllers
        self.options = options
        self._scheduler = None
        self._wrapper = None

    def install(self) -> None:
        attached = []
        try:
            for controller in self.controllers:
                controller.attach()
                attached.append(controller)
                controller.before_call = self._check_scheduler
            self._hook_scheduler()
        except BaseException:
            for controller in reversed(attached):
                controller.detach()
            raise

    def remove(self) -> None:
        self._unhook_scheduler()
        for controller in self.controllers:
            controller.detach()
            controller.before_call = None

    # The scheduler listener is an instance attribute shadowing the class method; removing it
    # restores the class method exactly.
    def _hook_scheduler(self) -> None:
        owner = self.owner_ref()
        scheduler = getattr(owner, "scheduler", None) if owner is not None else None
        if scheduler is None or not callable(getattr(scheduler, "set_timesteps", None)):
            return
        original = scheduler.set_timesteps
        session_ref = weakref.ref(self)

        @functools.wraps(original)
        def set_timesteps(*args, **kwargs):
            result = original(*args, **kwargs)
            session = session_ref()
            if session is not None:
                session.on_new_generation(scheduler)
            return result

        scheduler.set_timesteps = set_timesteps
        self._scheduler, self._wrapper = scheduler, set_timesteps

    def _unhook_scheduler(self) -> None:
        scheduler, wrapper = self._scheduler, self._wrapper
        if scheduler is not None and scheduler.__dict__.get("set_timesteps") is wrapper:
            del scheduler.set_timesteps
        self._scheduler = self._wrapper = None

    def _check_scheduler(self) -> None:
        """Follow a scheduler swapped after enable_cache (``pipe.scheduler = ...``)."""
        owner = self.owner_ref()
        scheduler = getattr(owner, "scheduler", None) if owner is not None else None
        if scheduler is not None and scheduler is not self._scheduler:
            self._unhook_scheduler()
            self._hook_scheduler()

    def on_new_generation(self, scheduler) -> None:
        timesteps = getattr(scheduler, "timesteps", None)
        num_steps = len(timesteps) if timesteps is not None else None
        for controller in self.controllers:
            controller.request_new_generation(num_steps)


def _session_of(obj: Any) -> _CacheSession | None:
    return getattr(obj, "__dict__", {}).get(_SESSION_ATTR)


def enable_cache(
    pipe_or_module: Any,
    *,
    transformer: torch.nn.Module | None = None,
    blocks: torch.nn.ModuleList | Sequence[torch.nn.ModuleList] | None = None,
    return_hidden_states_first: bool | None = None,
    forward_pattern: ForwardPattern | Sequence[ForwardPattern] | None = None,
    **options: Any,
) -> Any:
    """Cache the transformer blocks of a diffusers pipeline (or a bare transformer) with DBCache.

    Args:
        pipe_or_module: any ``DiffusionPipeline``, or a transformer module for custom loops.
        transformer: the module to cache (default: every ``transformer*`` component found).
        blocks: its block list(s), in execution order (default: found on the transformer).
        return_hidden_states_first: for blocks returning two same-shaped tensors whose order the
            block's source does not reveal.
        forward_pattern: force the block I/O pattern (one, or one per block list).
        **options: DBCache options, see :class:`cache_dit.CacheOptions` and
            :func:`cache_dit.default_options`.

    Returns:
        The same object, now cached. Calling again reconfigures; :func:`disable_cache` undoes it.

    Raises:
        ValueError / TypeError: bad options or nothing cacheable. The object is then unchanged.
    """
    if compat.is_1x_call(pipe_or_module, options):  # cache-dit 1.x names -> ours, then as usual
        obj, kwargs = compat.translate(
            pipe_or_module, options, transformer=transformer, blocks=blocks,
            return_hidden_states_first=return_hidden_states_first, forward_pattern=forward_pattern)
        return enable_cache(obj, **kwargs)
    if pipe_or_module is None or isinstance(pipe_or_module, (str, bytes, int, float)):
        raise TypeError(
            f"enable_cache needs a diffusers pipeline or a torch.nn.Module, got {pipe_or_module!r}"
        )
    if return_hidden_states_first is not None and not isinstance(return_hidden_states_first, bool):
        raise TypeError(
            f"return_hidden_states_first must be True, False or None, got {return_hidden_states_first!r}"
        )
    if forward_pattern is not None and not isinstance(forward_pattern, ForwardPattern):
        if isinstance(forward_pattern, (str, bytes)) or not all(
            isinstance(p, ForwardPattern) for p in forward_pattern
        ):
            raise TypeError(
                f"forward_pattern must be a cache_dit.ForwardPattern (one of "
                f"{[p.name for p in ForwardPattern]}) or a list of them, got {forward_pattern!r}"
            )
    cache_options = CacheOptions.from_kwargs(options)
    targets = find_targets(pipe_or_module, transformer=transformer, blocks=blocks)
    controllers = [
        DBCacheController(
            target.transformer,
            target.block_lists,
            cache_options.fitted_to(target.num_blocks, explicit=set(options)),
            forward_pattern=forward_pattern,
            return_hidden_states_first=return_hidden_states_first,
            name=target.name,
        )
        for target in targets
    ]
    previous = _session_of(pipe_or_module)
    ours = set(map(id, previous.controllers)) if previous is not None else set()
    for controller in controllers:
        other = controller_of(controller.transformer)
        if other is not None and id(other) not in ours:  # shared with another cached pipeline
            raise ValueError(
                f"{controller.name} ({type(controller.transformer).__name__}) is already cached "
                f"through another pipeline or module; call disable_cache on that one first"
            )
    # Everything is validated; only now touch the object.
    if previous is not None:
        previous.remove()
    session = _CacheSession(pipe_or_module, controllers, cache_options)
    try:
        session.install()
    except BaseException:
        if previous is not None:
            previous.install()
        raise
    # Straight into the instance dict: bypasses nn.Module / pipeline attribute registration.
    pipe_or_module.__dict__[_SESSION_ATTR] = session
    logger.info("cache-dit: %s on %s", cache_options.tag(), [c.name for c in controllers])
    return pipe_or_module


def disable_cache(pipe_or_module: Any) -> Any:
    """Remove the cache; the object computes exactly as before. Harmless if not enabled."""
    session = _session_of(pipe_or_module)
    if session is None:
        return pipe_or_module
    session.remove()
    del pipe_or_module.__dict__[_SESSION_ATTR]
    return pipe_or_module


def reset_cache(pipe_or_module: Any, num_inference_steps: int | None = None) -> None:
    """Start a new generation on the next call (for custom sampling loops on a bare transformer);
    ``num_inference_steps``, if given, is its length (it sizes a preset steps mask)."""
    session = _session_of(pipe_or_module)
    if session is None:
        raise ValueError(f"cache is not enabled on this {type(pipe_or_module).__name__}")
    if num_inference_steps is not None and (isinstance(num_inference_steps, bool) or not isinstance(
            num_inference_steps, int) or num_inference_steps < 1):
        raise ValueError(f"num_inference_steps must be an int >= 1, got {num_inference_steps!r}")
    for controller in session.controllers:
        controller.request_new_generation(num_inference_steps)


@dataclass
class CacheSummary:
    """What the cache did during the last generation of one transformer."""

    name: str
    tag: str
    block_lists: dict[str, int]
    patterns: dict[str, str]
    streams: dict[str, StreamStats] = field(default_factory=dict)

    @property
    def cached_steps(self) -> list[int]:
        """Cached steps of the first stream (cond branch, or the only one)."""
        first = next(iter(self.streams.values()), None)
        return list(first.cached_steps) if first else []

    @property
    def residual_diffs(self) -> dict[int, float]:
        first = next(iter(self.streams.values()), None)
        return dict(first.residual_diffs) if first else {}

    @property
    def blocks_saved_fraction(self) -> float:
        run = sum(s.blocks_run for s in self.streams.values())
        total = sum(s.blocks_total for s in self.streams.values())
        return 1.0 - run / total if total else 0.0

    def __str__(self) -> str:
        lists = ", ".join(f"{name}[{n}]" for name, n in self.block_lists.items())
        lines = [f"{self.name}: {self.tag}  blocks: {lists}",
                 f"  patterns: {self.patterns}",
                 f"  block executions saved: {self.blocks_saved_fraction:.1%}"]
        for label, stats in self.streams.items():
            diffs = ", ".join(f"{step}:{diff:.3f}" for step, diff in sorted(stats.residual_diffs.items()))
            lines.append(
                f"  [{label}] steps {stats.steps}, cached {len(stats.cached_steps)} "
                f"{stats.cached_steps}, saved {stats.blocks_saved_fraction:.1%}"
            )
            lines.append(f"  [{label}] residual diffs {{{diffs}}}")
        return "\n".join(lines)


def _stream_label(branch: int, num_streams: int, cfg_compute_first: bool) -> str:
    if num_streams == 1:
        return "main"
    names = ("uncond", "cond") if cfg_compute_first else ("cond", "uncond")
    return names[branch] if branch < 2 else f"call{branch}"


def summary(pipe_or_module: Any, details: bool = False, logging: bool = False) -> list[CacheSummary]:
    """Per cached transformer: config tag, cached steps, residual diffs, block executions saved.

    ``logging=True`` (or ``details=True``) also prints the report.
    """
    session = _session_of(pipe_or_module)
    if session is None:
        raise ValueError(f"cache is not enabled on this {type(pipe_or_module).__name__}")
    out = []
    for controller in session.controllers:
        streams = dict(sorted(controller.streams.items()))
        out.append(CacheSummary(
            name=controller.name,
            tag=controller.options.tag(),
            block_lists={name: len(blocks) for name, blocks in controller.block_lists},
            patterns=controller.patterns(),
            streams={
                _stream_label(b, len(streams), controller.options.cfg_compute_first): s.stats
                for b, s in streams.items()
            },
        ))
    if logging or details:
        for item in out:
            print(item)
    return out
