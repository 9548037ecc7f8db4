"""Public entry points: enable_cache, disable_cache, summary, reset_cache.

A *session* ties the controllers of one pipeline (or bare transformer) together. It lives on the
instance it was enabled on, in its ``__dict__``; nothing is patched on a class, on the scheduler or
anywhere global. Each controller reads its owner's scheduler at call time (see
:mod:`cache_dit.clock`), so swapping or sharing schedulers, and deep copies, just work.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Sequence

import torch

from . import compat
from .adapter import find_targets, unwrap
from .controller import CacheController
from .hooks import controller_of
from .options import CacheOptions
from .patterns import ForwardPattern
from .stats import StreamStats

logger = logging.getLogger(__name__)

_SESSION_ATTR = "_cache_dit_session"

__all__ = ["enable_cache", "disable_cache", "summary", "reset_cache", "CacheSummary"]


class _CacheSession:
    """The controllers enabled on one object. Holds its owner strongly, so a deep copy of the
    owner gets a session of its own (a weak reference would still point at the original)."""

    def __init__(self, owner: Any, controllers: list[CacheController], options: CacheOptions):
        self.owner = owner
        self.controllers = controllers
        self.options = options

    def install(self) -> None:
        attached = []
        try:
            for controller in self.controllers:
                controller.attach()
                attached.append(controller)
                controller.owner = self.owner
        except BaseException:
            for controller in reversed(attached):
                controller.detach()
            raise

    def remove(self) -> None:
        for controller in self.controllers:
            controller.detach()


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
        CacheController(
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
    """Remove the cache; the object computes exactly as before. Harmless if not enabled.

    Raises:
        ValueError: the cache on this module was enabled through another object (its pipeline):
            disable it there.
    """
    session = _session_of(pipe_or_module)
    if session is None:
        controller = controller_of(unwrap(pipe_or_module)) if isinstance(
            pipe_or_module, torch.nn.Module) else None
        if controller is not None:
            owner = controller.owner
            raise ValueError(
                f"the cache on this {type(pipe_or_module).__name__} was enabled through "
                f"{type(owner).__name__} (as its {controller.name!r}); call "
                f"cache_dit.disable_cache on that {type(owner).__name__}"
            )
        return pipe_or_module
    session.remove()
    del pipe_or_module.__dict__[_SESSION_ATTR]
    return pipe_or_module


def reset_cache(pipe_or_module: Any, num_inference_steps: int | None = None) -> None:
    """Start a new generation on the next call (for custom sampling loops on a bare transformer).

    ``num_inference_steps``: steps of the coming generations, for loops without a scheduler (the
    cache then resets itself after that many steps).
    """
    session = _session_of(pipe_or_module)
    if session is None:
        raise ValueError(f"cache is not enabled on this {type(pipe_or_module).__name__}")
    if num_inference_steps is not None:
        CacheOptions(num_inference_steps=num_inference_steps)  # validates, naming the value
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
    compute_budget: float | None = None  # the fraction of block executions asked for, if any

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

    @property
    def kept_fraction(self) -> float:
        """Block executions kept over the last generation (all streams): 1 - saved."""
        return 1.0 - self.blocks_saved_fraction

    def __str__(self) -> str:
        lists = ", ".join(f"{name}[{n}]" for name, n in self.block_lists.items())
        lines = [f"{self.name}: {self.tag}  blocks: {lists}",
                 f"  patterns: {self.patterns}",
                 f"  block executions saved: {self.blocks_saved_fraction:.1%}"]
        if self.compute_budget is not None:
            lines.append(f"  compute budget: {self.compute_budget:.1%} kept asked, "
                         f"{self.kept_fraction:.1%} kept")
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


def _stream_stats(streams: dict, cfg_compute_first: bool) -> dict[str, StreamStats]:
    """Statistics per stream label; under per-sample decisions one entry per sample
    (``cond[0]``, ``cond[1]``, ...)."""
    out = {}
    for branch, stream in streams.items():
        label = _stream_label(branch, len(streams), cfg_compute_first)
        if stream.samples:
            out.update({f"{label}[{i}]": sample.stats for i, sample in enumerate(stream.samples)})
        else:
            out[label] = stream.stats
    return out


def summary(pipe_or_module: Any, details: bool = False, **kwargs: Any) -> list[CacheSummary]:
    """Per cached transformer: config tag, cached steps, residual diffs, block executions saved.

    ``logging=True`` (or ``details=True``) also writes the report to the ``cache_dit.api`` logger
    at INFO level (``logging.basicConfig(level=logging.INFO)`` shows it).
    """
    log_report = kwargs.pop("logging", False)
    if kwargs:
        raise TypeError(f"summary() got unexpected keyword arguments {sorted(kwargs)}; allowed: "
                        f"details, logging")
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
            streams=_stream_stats(streams, controller.options.cfg_compute_first),
            compute_budget=controller.options.compute_budget,
        ))
    if log_report or details:
        for item in out:
            logger.info("%s", item)
    return out
