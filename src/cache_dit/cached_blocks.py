"""DBCache over a chain of transformer blocks, applied through diffusers' hook registry.

All block lists of a transformer (Flux: double-stream then single-stream) form ONE chain for
Fn/Bn counting. On every call the first Fn blocks run; the relative L1 change of their output
residual against the last computed step decides whether the middle blocks run or are stood in for
by the residual they added last time (or a TaylorSeer forecast of it); the last Bn blocks run
always (except those skipped via ``Bn_compute_blocks_ids``).

Skipped blocks are not removed: each still gets called by the transformer's own loop and returns
its input (the first skipped block of each list adds the cached residual). That costs one Python
call per block and needs no knowledge of the model's forward code.

State layout: one :class:`DBCacheController` per transformer (installed as two kinds of hooks),
one :class:`~cache_dit.state.StreamState` per CFG branch inside it.
"""

from __future__ import annotations

import enum
import inspect
import logging
from dataclasses import dataclass
from typing import Any, Sequence

import torch
from diffusers.hooks import HookRegistry, ModelHook

from .options import CacheOptions
from .parallel import ContextParallelSync
from .patterns import BlockIO, ForwardPattern, describe
from .state import StepTracker, StreamState

logger = logging.getLogger(__name__)

TRANSFORMER_HOOK = "cache_dit.transformer"
BLOCK_HOOK = "cache_dit.block"

__all__ = ["DBCacheController", "TRANSFORMER_HOOK", "BLOCK_HOOK", "Role", "BlockPlan"]


class Role(enum.Enum):
    FRONT = "Fn"
    MIDDLE = "middle"
    BACK = "Bn"


class _Mode(enum.IntEnum):
    COMPUTE = 0
    STAND_IN_MIDDLE = 1
    STAND_IN_BACK = 2
    PASS_THROUGH = 3  # called outside a transformer call: not ours to touch


@dataclass(frozen=True)
class BlockPlan:
    """The static place of one block in the chain."""

    index: int
    segment: int
    name: str
    role: Role
    segment_start: bool
    middle_start: bool
    middle_end: bool
    skippable_back: bool  # a Bn block outside Bn_compute_blocks_ids
    decides: bool  # the last Fn block: its output residual drives the decision


def l1_parts(current: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """[sum|current - reference|, sum|reference|]: sums (not means) so shards of unequal size add
    up to the global statistic before the ratio is taken. Summed in float32 (torch's pairwise
    reduction, ~1e-7 relative), returned as float64 for the cross-rank sum: accumulating in
    float64 doubled this hot-path cost on CPU for no decision that matters."""
    current, reference = current.float(), reference.float()
    return torch.stack([(current - reference).abs().sum(), reference.abs().sum()]).double()


def parts_ratio(parts: torch.Tensor) -> float:
    numerator, denominator = (float(v) for v in parts.tolist())
    if denominator == 0.0:
        return 0.0 if numerator == 0.0 else float("inf")
    return numerator / denominator


def relative_l1(current: torch.Tensor, reference: torch.Tensor) -> float:
    """mean|current - reference| / mean|reference| (the DBCache residual diff)."""
    return parts_ratio(l1_parts(current, reference))


def _sub(a: torch.Tensor | None, b: torch.Tensor | None) -> torch.Tensor | None:
    if a is None or b is None or a.shape != b.shape:
        return None
    return a - b


class _Call:
    """Scratch state of one transformer call."""

    __slots__ = (
        "stream", "step", "branch", "use_cache", "skip_back", "decided", "blocks_run",
        "segment_inputs", "middle_inputs", "block_inputs",
    )

    def __init__(self, stream: StreamState, step: int, branch: int) -> None:
        self.stream = stream
        self.step = step
        self.branch = branch
        self.use_cache = False
        self.skip_back = False
        self.decided = False
        self.blocks_run = 0
        self.segment_inputs: dict[int, torch.Tensor] = {}
        self.middle_inputs: dict[int, tuple[torch.Tensor, torch.Tensor | None]] = {}
        self.block_inputs: dict[int, tuple[torch.Tensor, torch.Tensor | None]] = {}


class DBCacheController:
    """Owns the DBCache state of one transformer and the hooks that apply it."""

    def __init__(
        self,
        transformer: torch.nn.Module,
        block_lists: Sequence[tuple[str, torch.nn.ModuleList]],
        options: CacheOptions,
        forward_pattern: ForwardPattern | Sequence[ForwardPattern] | None = None,
        return_hidden_states_first: bool | None = None,
        name: str = "transformer",
    ) -> None:
        self.transformer = transformer
        self.name = name
        self.options = options
        self.block_lists = list(block_lists)
        blocks = [(f"{list_name}.{i}", seg, block)
                  for seg, (list_name, blocks) in enumerate(self.block_lists)
                  for i, block in enumerate(blocks)]
        self.num_blocks = len(blocks)
        options.validate_for_blocks(self.num_blocks, f"{name} ({type(transformer).__name__})")
        patterns = self._patterns_per_list(forward_pattern)
        self.ios = [
            BlockIO(block, patterns[seg], return_hidden_states_first, where=f"{name}.{block_name}")
            for block_name, seg, block in blocks
        ]
        self.blocks = [block for _, _, block in blocks]
        self.plans = self._plan(blocks)
        self.has_middle = any(p.role is Role.MIDDLE for p in self.plans)
        self._timestep_param = _timestep_parameter(transformer)
        self._taylor_order = options.taylorseer_order if options.enable_taylorseer else None
        self._encoder_taylor_order = (
            options.taylorseer_order if options.enable_encoder_taylorseer else None
        )
        self.tracker = StepTracker()
        self.streams: dict[int, StreamState] = {}
        self._leader: dict[int, tuple[bool, float | None]] = {}
        self._call: _Call | None = None
        self._pending_reset = False
        self._num_steps: int | None = options.num_inference_steps
        self._mask = options.compute_mask(self._num_steps)
        self._warned: set[str] = set()
        self.generations = 0
        self.before_call = None  # set by the session: follows a swapped scheduler
        # Sums the [numerator, denominator] of the diff across the shards of a context-parallel
        # group, so every rank takes the same decision; None when the model is not sharded.
        self.diff_reducer = None
        # Notices diffusers' enable_parallelism (before or after us) at call time: sets
        # diff_reducer and keeps our hooks on the right side of diffusers' split/gather hooks.
        self._parallel = ContextParallelSync(transformer, self.blocks, TRANSFORMER_HOOK, BLOCK_HOOK)

    # ------------------------------------------------------------------ layout
    def _patterns_per_list(self, forward_pattern) -> list[ForwardPattern | None]:
        count = len(self.block_lists)
        if forward_pattern is None or isinstance(forward_pattern, ForwardPattern):
            return [forward_pattern] * count
        patterns = list(forward_pattern)
        if len(patterns) != count or not all(isinstance(p, ForwardPattern) for p in patterns):
            raise ValueError(
                f"forward_pattern must be one ForwardPattern or one per block list ({count}: "
                f"{[n for n, _ in self.block_lists]}), got {forward_pattern!r}"
            )
        return patterns

    def _plan(self, blocks) -> list[BlockPlan]:
        fn, bn = self.options.Fn_compute_blocks, self.options.Bn_compute_blocks
        total = self.num_blocks
        ids = self.options.Bn_compute_blocks_ids
        roles = [Role.FRONT if i < fn else Role.BACK if i >= total - bn else Role.MIDDLE
                 for i in range(total)]
        members: dict[int, list[int]] = {}
        for i, (_, seg, _) in enumerate(blocks):
            members.setdefault(seg, []).append(i)
        plans = []
        for i, (block_name, seg, _) in enumerate(blocks):
            same_seg = members[seg]
            middles = [j for j in same_seg if roles[j] is Role.MIDDLE]
            back_id = i - (total - bn)
            plans.append(BlockPlan(
                index=i,
                segment=seg,
                name=block_name,
                role=roles[i],
                segment_start=i == same_seg[0],
                middle_start=bool(middles) and i == middles[0],
                middle_end=bool(middles) and i == middles[-1],
                skippable_back=roles[i] is Role.BACK and ids is not None and back_id not in ids,
                decides=i == fn - 1,
            ))
        return plans

    # ------------------------------------------------------------------ hooks
    def attach(self) -> None:
        """Register the transformer hook and one hook per block (undone by :meth:`detach`)."""
        attached: list[tuple[torch.nn.Module, str]] = []
        try:
            for plan, block in zip(self.plans, self.blocks):
                _register(block, _BlockHook(self, plan), BLOCK_HOOK)
                attached.append((block, BLOCK_HOOK))
            _register(self.transformer, _TransformerHook(self), TRANSFORMER_HOOK)
            attached.append((self.transformer, TRANSFORMER_HOOK))
            self._parallel.reset()  # fresh hooks: re-arrange around any CP hooks on the next call
        except BaseException:
            for module, hook_name in reversed(attached):
                _unregister(module, hook_name)
            raise
        finally:
            _invalidate_registry_cache(self.transformer)

    def detach(self) -> None:
        for block in self.blocks:
            _unregister(block, BLOCK_HOOK)
        _unregister(self.transformer, TRANSFORMER_HOOK)
        _invalidate_registry_cache(self.transformer)
        self.release_buffers()

    # ------------------------------------------------------------------ generations
    def request_new_generation(self, num_steps: int | None = None) -> None:
        """Called when the pipeline sets its scheduler's timesteps: the next call starts afresh."""
        self._pending_reset = True
        if num_steps:
            self._num_steps = num_steps

    def new_generation(self) -> None:
        self.tracker.reset()
        self.streams = {}
        self._leader = {}
        self._call = None
        self._pending_reset = False
        self._mask = self.options.compute_mask(self._num_steps)
        self.generations += 1
        reset_reducer = getattr(self.diff_reducer, "new_generation", None)
        if reset_reducer is not None:
            reset_reducer()

    def release_buffers(self) -> None:
        """Drop tensors at the end of a pipeline call (statistics stay for summary())."""
        for stream in self.streams.values():
            stats = stream.stats
            stream.reset()
            stream.stats = stats
        self._call = None

    # ------------------------------------------------------------------ per call
    @torch.compiler.disable
    def begin_call(self, args: tuple, kwargs: dict) -> None:
        if self.before_call is not None:
            self.before_call()
        timestep = self._read_timestep(args, kwargs)
        if self._parallel.refresh():  # enable_parallelism happened (or changed) since last call
            self.diff_reducer = self._parallel.reducer
            if self._parallel.split_seen and timestep is not None and self.diff_reducer is not None:
                # Only on the call where our hook was moved outside diffusers' split hook: a
                # per-token timestep arrived sharded, so agree on the whole tensor's max.
                timestep = self.diff_reducer.max(timestep)
        opts = self.options
        calls_per_step = 2 if opts.do_separate_classifier_free_guidance else 1
        tracker = self.tracker
        if self._pending_reset or tracker.looks_like_restart(timestep) or (
            self._bare_steps_done(timestep, calls_per_step)
        ):
            self.new_generation()
        step, branch = tracker.advance(timestep, calls_per_step)
        if opts.do_separate_classifier_free_guidance is False:
            if branch > 0:
                self._warn_once(
                    "shared",
                    f"{self.name} is called {branch + 1}x per step (separate CFG) but "
                    f"do_separate_classifier_free_guidance=False: cond and uncond share one cache, "
                    f"so their diffs compare unlike tensors. Leave the option unset to detect it.",
                )
            branch = 0
        if branch not in self.streams:
            self.streams[branch] = StreamState(self._taylor_order, self._encoder_taylor_order)
        stream = self.streams[branch]
        stream.stats.steps += 1
        self._call = _Call(stream, step, branch)

    def _bare_steps_done(self, timestep: float | None, calls_per_step: int) -> bool:
        steps = self.options.num_inference_steps
        if not steps or self.tracker.step < 0:
            return False
        if timestep is None:
            return self.tracker.calls // calls_per_step >= steps
        return timestep != self.tracker.last_timestep and self.tracker.step + 1 >= steps

    @torch.compiler.disable
    def end_call(self) -> None:
        call, self._call = self._call, None
        if call is None:
            return
        stats = call.stream.stats
        stats.blocks_run += call.blocks_run
        stats.blocks_total += self.num_blocks
        if call.branch == 0 and call.decided:
            self._leader[call.step] = (call.use_cache, stats.residual_diffs.get(call.step))
        if (self.options.do_separate_classifier_free_guidance and self.tracker.step >= 2
                and self.tracker.max_branches == 1):
            self._warn_once(
                "batched",
                f"do_separate_classifier_free_guidance=True, but {self.name} is called once per "
                f"step (CFG is batched or off); one cache stream is used.",
            )

    def _read_timestep(self, args: tuple, kwargs: dict) -> float | None:
        name, position = self._timestep_param
        value = kwargs.get(name) if name in kwargs else (
            args[position] if position is not None and position < len(args) else None
        )
        if value is None:
            return None
        if isinstance(value, torch.Tensor):
            return float(value.detach().float().max()) if value.numel() else None
        return float(value)

    # ------------------------------------------------------------------ per block
    @torch.compiler.disable
    def mode(self, plan: BlockPlan) -> _Mode:
        call = self._call
        if call is None:
            return _Mode.PASS_THROUGH
        if call.use_cache:
            if plan.role is Role.MIDDLE:
                return _Mode.STAND_IN_MIDDLE
            if plan.skippable_back and call.skip_back:
                return _Mode.STAND_IN_BACK
        return _Mode.COMPUTE

    @torch.compiler.disable
    def before_block(self, plan: BlockPlan, args: tuple, kwargs: dict) -> None:
        call = self._call
        io = self.ios[plan.index]
        needs_own = plan.skippable_back or io.slots is None
        if not (plan.segment_start or plan.middle_start or needs_own):
            return
        hidden, encoder = io.read_inputs(args, kwargs)
        if needs_own:
            call.block_inputs[plan.index] = (hidden, encoder)
        if plan.segment_start:
            call.segment_inputs[plan.segment] = hidden
        if plan.middle_start:
            call.middle_inputs[plan.segment] = (hidden, encoder)

    @torch.compiler.disable
    def after_block(self, plan: BlockPlan, output: Any) -> None:
        call = self._call
        call.blocks_run += 1
        io = self.ios[plan.index]
        own_inputs = call.block_inputs.pop(plan.index, (None, None))
        if io.slots is None:
            io.learn_outputs(output, *own_inputs)
        if not (plan.middle_end or plan.decides or plan.skippable_back or io.has_value_slots):
            return
        hidden, encoder, values = io.split_outputs(output)
        stream = call.stream
        if io.has_value_slots:
            stream.block_values[plan.index] = values
        if plan.skippable_back:
            stream.block_residuals[plan.index] = (_sub(hidden, own_inputs[0]),
                                                  _sub(encoder, own_inputs[1]))
        if plan.middle_end:
            self._store_middle(call, plan.segment, hidden, encoder)
        if plan.decides:
            reference = call.segment_inputs.get(plan.segment)
            self._decide(call, _sub(hidden, reference))

    def _store_middle(self, call: _Call, segment: int, hidden, encoder) -> None:
        if segment not in call.middle_inputs:
            return
        hidden_in, encoder_in = call.middle_inputs[segment]
        residual_h, residual_e = _sub(hidden, hidden_in), _sub(encoder, encoder_in)
        as_value = self.options.taylorseer_cache_type == "hidden_states"
        stream = call.stream
        hidden_seer = stream.hidden_forecaster(segment)
        encoder_seer = stream.encoder_forecaster(segment) if residual_e is not None or (
            as_value and encoder is not None) else None
        if hidden_seer is not None:
            hidden_seer.update(call.step, hidden if as_value else residual_h)
            residual_h = None
        if encoder_seer is not None:
            encoder_seer.update(call.step, encoder if as_value else residual_e)
            residual_e = None
        stream.middle[segment] = (residual_h, residual_e)

    @torch.compiler.disable
    def stand_in(self, plan: BlockPlan, mode: _Mode, args: tuple, kwargs: dict) -> Any:
        """The output of a skipped block, in its own output layout."""
        call = self._call
        io = self.ios[plan.index]
        hidden, encoder = io.read_inputs(args, kwargs)
        stream = call.stream
        if mode is _Mode.STAND_IN_BACK:
            residual_h, residual_e = stream.block_residuals[plan.index]
            hidden = hidden + residual_h if residual_h is not None else hidden
            encoder = encoder + residual_e if residual_e is not None else encoder
        elif plan.middle_start:
            hidden, encoder = self._apply_middle(call, plan.segment, hidden, encoder)
        return io.build_output(hidden, encoder, stream.block_values.get(plan.index))

    def _apply_middle(self, call: _Call, segment: int, hidden, encoder):
        residual_h, residual_e = call.stream.middle[segment]
        as_value = self.options.taylorseer_cache_type == "hidden_states"
        seer = call.stream.taylor.get(segment)
        if seer is not None:
            forecast = seer.forecast(call.step)
            hidden = forecast if as_value else hidden + forecast
        elif residual_h is not None:
            hidden = hidden + residual_h
        encoder_seer = call.stream.encoder_taylor.get(segment)
        if encoder is not None:
            if encoder_seer is not None and encoder_seer.ready:
                forecast = encoder_seer.forecast(call.step)
                encoder = forecast if as_value else encoder + forecast
            elif residual_e is not None:
                encoder = encoder + residual_e
        return hidden, encoder

    # ------------------------------------------------------------------ the decision
    def _decide(self, call: _Call, fn_residual: torch.Tensor | None) -> None:
        opts = self.options
        stream = call.stream
        call.decided = True
        diff = None
        follower = call.branch > 0 and not opts.cfg_diff_compute_separate
        if follower and call.step in self._leader:
            leader_cached, diff = self._leader[call.step]
        elif fn_residual is not None and stream.fn_residual is not None and (
            stream.fn_residual.shape == fn_residual.shape
        ):
            parts = l1_parts(fn_residual, stream.fn_residual)
            if self.diff_reducer is not None:  # sharded model: one decision from global sums
                parts = self.diff_reducer(parts)
            diff = parts_ratio(parts)
        if diff is not None:
            stream.stats.residual_diffs[call.step] = diff
        if follower and call.step in self._leader:
            use_cache = leader_cached and self._buffers_ready(stream)
        else:
            use_cache = self._may_cache(call, diff)
        call.use_cache = use_cache
        call.skip_back = use_cache and diff is not None and (
            diff < opts.non_compute_blocks_diff_threshold
        ) and self._back_ready(stream)
        if use_cache:
            stream.continuous_cached += 1
            stream.stats.cached_steps.append(call.step)
        else:
            stream.continuous_cached = 0
            stream.fn_residual = fn_residual

    def _may_cache(self, call: _Call, diff: float | None) -> bool:
        opts = self.options
        stream = call.stream
        if diff is None or not self.has_middle or call.step < opts.warmup_steps:
            return False
        if self._mask is not None and call.step < len(self._mask) and self._mask[call.step]:
            return False
        if 0 <= opts.max_cached_steps <= len(stream.stats.cached_steps):
            return False
        if 0 <= opts.max_continuous_cached_steps <= stream.continuous_cached:
            return False
        return diff < opts.residual_diff_threshold and self._buffers_ready(stream)

    def _buffers_ready(self, stream: StreamState) -> bool:
        segments = {p.segment for p in self.plans if p.middle_start}
        return all(seg in stream.middle for seg in segments)

    def _back_ready(self, stream: StreamState) -> bool:
        return all(p.index in stream.block_residuals for p in self.plans if p.skippable_back)

    # ------------------------------------------------------------------ misc
    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            logger.warning(message)

    def patterns(self) -> dict[str, str]:
        """The detected I/O pattern of the first block of each list."""
        out = {}
        for plan, io in zip(self.plans, self.ios):
            out.setdefault(plan.name.rsplit(".", 1)[0], describe(io))
        return out


# ---------------------------------------------------------------------- hook classes
class _TransformerHook(ModelHook):
    """Marks the start and end of each transformer call (step and branch bookkeeping)."""

    _is_stateful = True

    def __init__(self, controller: DBCacheController) -> None:
        super().__init__()
        self.controller = controller

    def pre_forward(self, module, *args, **kwargs):
        self.controller.begin_call(args, kwargs)
        return args, kwargs

    def post_forward(self, module, output):
        self.controller.end_call()
        return output

    def reset_state(self, module):
        # diffusers calls this at the end of every pipeline call: free the tensors, keep stats.
        self.controller.release_buffers()
        return module


class _BlockHook(ModelHook):
    """Runs one block, or stands in for it on a cached step."""

    def __init__(self, controller: DBCacheController, plan: BlockPlan) -> None:
        super().__init__()
        self.controller = controller
        self.plan = plan

    def new_forward(self, module, *args, **kwargs):
        controller, plan = self.controller, self.plan
        mode = controller.mode(plan)
        if mode is _Mode.PASS_THROUGH:
            return self.fn_ref.original_forward(*args, **kwargs)
        if mode is not _Mode.COMPUTE:
            return controller.stand_in(plan, mode, args, kwargs)
        controller.before_block(plan, args, kwargs)
        output = self.fn_ref.original_forward(*args, **kwargs)
        controller.after_block(plan, output)
        return output


def _register(module: torch.nn.Module, hook: ModelHook, name: str) -> None:
    registry = HookRegistry.check_if_exists_or_initialize(module)
    registry.register_hook(hook, name)


def _unregister(module: torch.nn.Module, name: str) -> None:
    registry = getattr(module, "_diffusers_hook", None)
    if registry is None:
        return
    registry.remove_hook(name, recurse=False)
    if not registry.hooks:
        # Leave the module exactly as we found it when nothing else uses the registry.
        del module._diffusers_hook


def _invalidate_registry_cache(module: torch.nn.Module) -> None:
    """diffusers caches each registry's child registries; ours come and go with the blocks."""
    registry = getattr(module, "_diffusers_hook", None)
    invalidate = getattr(registry, "invalidate_child_registries_cache", None)
    if invalidate is not None:
        invalidate()


def _timestep_parameter(transformer: torch.nn.Module) -> tuple[str, int | None]:
    """Where the transformer's forward takes its timestep (name, positional index)."""
    sig = inspect.signature(type(transformer).forward)
    position = 0
    for param in list(sig.parameters.values())[1:]:
        is_positional = param.kind in (param.POSITIONAL_ONLY, param.POSITIONAL_OR_KEYWORD)
        if param.name in ("timestep", "timesteps", "t"):
            return param.name, position if is_positional else None
        if is_positional:
            position += 1
    return "timestep", None


def controller_of(module: torch.nn.Module) -> DBCacheController | None:
    """The controller cached on a transformer, if any."""
    registry = getattr(module, "_diffusers_hook", None)
    hook = registry.get_hook(TRANSFORMER_HOOK) if registry is not None else None
    return hook.controller if hook is not None else None

