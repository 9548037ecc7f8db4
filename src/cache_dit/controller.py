"""The cache controller of one transformer: ties plan, clock, decision rule, calibrators, runtime
and hooks together, and gates the rule with the options that bound caching (warmup, masks, max
cached steps, CFG leader/follower).

One controller per cached transformer; all its state lives here, so two pipelines in one process
never share anything. One :class:`~cache_dit.stream.StreamState` per CFG branch.
"""

from __future__ import annotations

import inspect
import logging
from typing import Any, Sequence

import torch

from .calibrators import damped, make_calibrator
from .clock import GenerationClock
from .hooks import (BLOCK_HOOK, TRANSFORMER_HOOK, BlockHook, TransformerHook,
                    invalidate_registry_cache, rebuild_registry, register, unregister)
from .options import CacheOptions
from .parallel import ContextParallelSync
from .patterns import BlockIO, ForwardPattern, describe
from .per_sample import SubBatch
from .plan import ChainPlan, Mode, Role
from .rules import StepSchedule, make_rule
from .runtime import CallState, Runtime
from .stream import StreamState

logger = logging.getLogger(__name__)

__all__ = ["CacheController"]


class CacheController:
    """Owns the cache state of one transformer and the hooks that apply it."""

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
        self.plan = ChainPlan([(block_name, seg) for block_name, seg, _ in blocks], options)
        self.rule = make_rule(options, self.plan)
        as_value = options.taylorseer_cache_type == "hidden_states"
        self.runtime = Runtime(
            self.plan, self.ios,
            hidden_as_value=as_value and options.hidden_calibrator != "reuse",
            encoder_as_value=as_value and options.enable_encoder_taylorseer,
            on_probe=self._decide,
        )
        self.runtime.check_batch_inputs = options.per_sample_decisions
        self._timestep_param = _timestep_parameter(transformer)
        self.clock = GenerationClock(options.num_inference_steps)
        self.streams: dict[int, StreamState] = {}
        self._leader: dict[int, tuple[bool, float | None]] = {}
        self._mask: list[int] | None = options.compute_mask(options.num_inference_steps)
        self._schedule = StepSchedule(options.num_inference_steps, frozenset())
        self._warned: set[str] = set()
        # What enable_cache was called on: its scheduler (read at every call) places the steps.
        self.owner: Any = transformer
        # Sums the rule's parts across the shards of a context-parallel group, so every rank takes
        # the same decision; None when the model is not sharded.
        self.diff_reducer = None
        # Notices diffusers' enable_parallelism (before or after us) at call time: sets
        # diff_reducer and keeps our hooks on the right side of diffusers' split/gather hooks.
        self._parallel = ContextParallelSync(transformer, self.blocks, TRANSFORMER_HOOK, BLOCK_HOOK)

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

    # ------------------------------------------------------------------ hooks
    def attach(self) -> None:
        """Register the transformer hook and one hook per block (undone by :meth:`detach`)."""
        attached: list[tuple[torch.nn.Module, str]] = []
        try:
            for index, block in enumerate(self.blocks):
                register(block, BlockHook(self.runtime, index), BLOCK_HOOK)
                attached.append((block, BLOCK_HOOK))
            register(self.transformer, TransformerHook(self), TRANSFORMER_HOOK)
            attached.append((self.transformer, TRANSFORMER_HOOK))
            self._parallel.reset()  # fresh hooks: re-arrange around any CP hooks on the next call
        except BaseException:
            for module, hook_name in reversed(attached):
                unregister(module, hook_name)
            raise
        finally:
            invalidate_registry_cache(self.transformer)

    def detach(self) -> None:
        for block in self.blocks:
            unregister(block, BLOCK_HOOK)
        unregister(self.transformer, TRANSFORMER_HOOK)
        invalidate_registry_cache(self.transformer)
        self.release_buffers()

    def repair_after_copy(self) -> None:
        """This controller was deep-copied with its modules: rebuild their hook wrappers."""
        for module in [*self.blocks, self.transformer]:
            rebuild_registry(module)
        invalidate_registry_cache(self.transformer)

    # ------------------------------------------------------------------ generations
    def request_new_generation(self, num_steps: int | None = None) -> None:
        """The next call starts afresh (``reset_cache``; ``num_steps`` for custom loops)."""
        if num_steps is not None:
            self.clock.bare_steps = num_steps
        self.clock.request_restart()

    def end_of_pipeline_call(self) -> None:
        self.release_buffers()
        self.clock.request_restart(end_of_call=True)

    def _new_generation(self, num_steps: int | None, scheduled: bool) -> None:
        bare = self.clock.bare_steps
        if scheduled and bare is not None and num_steps is not None and bare != num_steps:
            self._warn_once("steps", f"num_inference_steps={bare} is ignored on {self.name}: its "
                                     f"pipeline's scheduler runs {num_steps} steps")
        self._mask = self._mask_for(num_steps)
        forced = set(range(self.options.warmup_steps))
        forced.update(step for step, must in enumerate(self._mask or ()) if must)
        self._schedule = StepSchedule(num_steps, frozenset(forced))
        self.streams = {}
        self._leader = {}
        reset_reducer = getattr(self.diff_reducer, "new_generation", None)
        if reset_reducer is not None:
            reset_reducer()

    def _mask_for(self, num_steps: int | None) -> list[int] | None:
        opts = self.options
        mask = opts.compute_mask(num_steps)
        if mask is not None and num_steps is not None and len(mask) != num_steps:
            raise ValueError(
                f"steps_computation_mask has {len(mask)} entries but this generation of "
                f"{self.name} has {num_steps} steps; give one 0/1 entry per step or a preset name"
            )
        return mask

    def release_buffers(self) -> None:
        """Drop tensors at the end of a pipeline call (statistics stay for summary())."""
        for stream in self.streams.values():
            stream.reset()
        self.runtime.end()

    def _new_stream(self) -> StreamState:
        opts = self.options
        order = opts.taylorseer_order
        hidden, encoder = opts.hidden_calibrator, opts.encoder_calibrator
        share = opts.calibrator_damping
        return StreamState(self.rule.new_state(self._schedule),
                           lambda: damped(make_calibrator(hidden, order), share),
                           lambda: damped(make_calibrator(encoder, order), share))

    # ------------------------------------------------------------------ per call
    @torch.compiler.disable
    def begin_call(self, args: tuple, kwargs: dict, context: str | None) -> None:
        parallel_changed = self._parallel.refresh()
        if parallel_changed:  # enable_parallelism happened (or changed) since the last call
            self.diff_reducer = self._parallel.reducer
        opts = self.options
        calls_per_step = 2 if opts.do_separate_classifier_free_guidance else 1

        def read_timestep() -> float | None:
            timestep = self._read_timestep(args, kwargs)
            if parallel_changed and self._parallel.split_seen and timestep is not None and (
                    self.diff_reducer is not None):
                # Only on the call where our hook was moved outside diffusers' split hook: a
                # per-token timestep arrived sharded, so agree on the whole tensor's max.
                timestep = self.diff_reducer.max(timestep)
            return timestep

        scheduler = getattr(self.owner, "scheduler", None)
        tick = self.clock.tick(scheduler, context, read_timestep, calls_per_step)
        if tick.restart:
            self._new_generation(tick.num_steps, tick.scheduled)
        branch = tick.branch
        if opts.do_separate_classifier_free_guidance is False:
            if branch > 0:
                self._warn_once(
                    "shared",
                    f"{self.name} is called {branch + 1}x per step (separate CFG) but "
                    f"do_separate_classifier_free_guidance=False: cond and uncond share one cache, "
                    f"so their diffs compare unlike tensors. Leave the option unset to detect it.",
                )
            branch = 0
        stream = self.streams.get(branch)
        if stream is None:
            stream = self.streams[branch] = self._new_stream()
        stream.stats.steps += 1
        call = CallState(stream, tick.step, branch)
        self.runtime.begin(call)
        if self.plan.probe_free:  # decided from the schedule alone, before any block runs
            self.runtime.set_mode(self._decide(call, None))

    @torch.compiler.disable
    def end_call(self) -> None:
        call = self.runtime.end()
        if call is None:
            return
        stats = call.stream.stats
        if call.samples is not None:  # per-sample decisions: each sample counts its own blocks
            computing = set(call.sub.compute) if call.sub is not None else None
            for i, sample in enumerate(call.samples):
                computed = call.mode is Mode.COMPUTE or (computing is not None and i in computing)
                sample.stats.blocks_run += self.num_blocks if computed else self.plan.kept[
                    Mode.CACHE]
                sample.stats.blocks_total += self.num_blocks
        stats.blocks_run += self.plan.kept[call.mode] if call.mode is not Mode.MIXED else 0
        stats.blocks_total += self.num_blocks
        if call.branch == 0 and call.decided:
            self._leader[call.step] = (call.mode is not Mode.COMPUTE,
                                       stats.residual_diffs.get(call.step))
        if (self.options.do_separate_classifier_free_guidance and self.clock.step >= 2
                and self.clock.max_branches == 1):
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

    # ------------------------------------------------------------------ the decision
    def _decide(self, call: CallState, probe: torch.Tensor | None) -> Mode:
        """Called by the runtime with the last Fn block's output residual (with
        Fn_compute_blocks=0: None, before the first block); returns the mode of the rest of the
        call. One device-to-host read: the rule's parts."""
        opts = self.options
        stream = call.stream
        call.decided = True
        if opts.per_sample_decisions and probe is not None and self._per_sample_ok(call, probe):
            return self._decide_samples(call, probe)
        diff = None
        may_cache = False
        leader = None
        if call.branch > 0 and not opts.cfg_diff_compute_separate:
            leader = self._leader.get(call.step)
        if leader is not None:
            leader_cached, diff = leader
            may_cache = leader_cached and self._buffers_ready(stream)
        elif self.plan.probe_free:
            may_cache = (self.rule.decide_without_probe(stream.rule, call.step)
                         and self._gates_open(call.step, stream))
        elif probe is not None:
            parts = self.rule.parts(stream.rule, call.step, probe)
            if parts is not None:
                if self.diff_reducer is not None:  # sharded model: one decision from global sums
                    parts = self.diff_reducer(parts)
                rule_says, diff = self.rule.decide(stream.rule, call.step, parts.tolist())
                may_cache = rule_says and self._gates_open(call.step, stream)
        self._record(stream, call.step, probe, may_cache, diff)
        if may_cache:
            skip_back = diff is not None and diff < opts.non_compute_blocks_diff_threshold and all(
                i in stream.block_residuals for i in self.plan.skippable_back)
            return Mode.CACHE_BACK if skip_back and self.plan.skippable_back else Mode.CACHE
        return Mode.COMPUTE

    def _record(self, stream: StreamState, step: int, probe: torch.Tensor | None,
                cached: bool, diff: float | None) -> None:
        """A stream's decision for this step: statistics, the run of cached steps, the rule."""
        if diff is not None:
            stream.stats.residual_diffs[step] = diff
        if cached:
            stream.continuous_cached += 1
            stream.stats.cached_steps.append(step)
            self.rule.on_cache(stream.rule, step, probe)
        else:
            stream.continuous_cached = 0
            self.rule.on_compute(stream.rule, step, probe)

    def _gates_open(self, step: int, stream: StreamState) -> bool:
        """The options that bound caching, whatever the rule says."""
        opts = self.options
        if not self.plan.has_middle or step < opts.warmup_steps:
            return False
        if self._mask is not None and step < len(self._mask) and self._mask[step]:
            return False
        if 0 <= opts.max_cached_steps <= len(stream.stats.cached_steps):
            return False
        if 0 <= opts.max_continuous_cached_steps <= stream.continuous_cached:
            return False
        return self._buffers_ready(stream)

    def _per_sample_ok(self, call: CallState, probe: torch.Tensor) -> bool:
        """Per-sample decisions apply unless a middle block returns extra outputs or takes an
        input whose batch dimension cannot be told (then: one decision per batch, warned once)."""
        if any(self.ios[p.index].has_value_slots for p in self.plan.blocks if p.role is Role.MIDDLE):
            self._warn_once("per_sample_values", f"per_sample_decisions: a middle block of "
                                                 f"{self.name} returns extra outputs; deciding per batch")
            return False
        name = call.ambiguous_input
        if name is not None:
            self._warn_once("per_sample_input", f"per_sample_decisions: the batch dimension of "
                                                f"{self.name}'s block input {name!r} cannot be told; "
                                                f"deciding per batch")
            return False
        return True

    def _decide_samples(self, call: CallState, probe: torch.Tensor) -> Mode:
        """One decision per sample of the batch, from one device-to-host read of all parts."""
        batch = probe.shape[0]
        samples = call.stream.samples
        if len(samples) != batch:
            samples[:] = [self._new_stream() for _ in range(batch)]
        call.samples = samples
        rows = [probe[i:i + 1] for i in range(batch)]
        parts = [self.rule.parts(s.rule, call.step, row) for s, row in zip(samples, rows)]
        values = [None] * batch
        if all(p is not None for p in parts):
            stacked = torch.stack(parts)
            if self.diff_reducer is not None:  # sharded model: every rank gets the same sums
                stacked = self.diff_reducer(stacked)
            values = stacked.tolist()
        compute = []
        for i, (sample, row, value) in enumerate(zip(samples, rows, values)):
            sample.stats.steps += 1
            may_cache, diff = False, None
            if value is not None:
                rule_says, diff = self.rule.decide(sample.rule, call.step, value)
                may_cache = rule_says and self._gates_open(call.step, sample)
            self._record(sample, call.step, row, may_cache, diff)
            if not may_cache:
                compute.append(i)
        if len(compute) == batch:
            return Mode.COMPUTE
        if not compute:
            return Mode.CACHE
        call.sub = SubBatch(compute, batch, probe.device)
        return Mode.MIXED

    def _buffers_ready(self, stream: StreamState) -> bool:
        return all(seg in stream.middle for seg in self.plan.middle_segments)

    # ------------------------------------------------------------------ misc
    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            logger.warning(message)

    def patterns(self) -> dict[str, str]:
        """The detected I/O pattern of the first block of each list."""
        out = {}
        for plan, io in zip(self.plan.blocks, self.ios):
            out.setdefault(plan.name.rsplit(".", 1)[0], describe(io))
        return out


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
