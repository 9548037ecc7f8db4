"""Per-call data flow: what a block hook records when its block runs, and what it returns when
the block is stood in for. Decisions are not made here (see :mod:`cache_dit.controller`).

Skipped blocks are still called by the model's own loop. Most return their input in their own
output layout (:attr:`Action.PASS`, the hot path: no bookkeeping at all); the first skipped block
of each list adds the calibrator's stand-in for the whole skipped span.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import torch

from .patterns import BlockIO
from .per_sample import SubBatch, ambiguous_input
from .plan import ChainPlan, Mode
from .stream import StreamState

__all__ = ["CallState", "Runtime"]


def _sub(a: torch.Tensor | None, b: torch.Tensor | None) -> torch.Tensor | None:
    if a is None or b is None or a.shape != b.shape:
        return None
    return a - b


class CallState:
    """Scratch state of one transformer call."""

    __slots__ = ("stream", "step", "branch", "mode", "decided", "segment_inputs",
                 "middle_inputs", "block_inputs", "samples", "sub", "ambiguous_input")

    def __init__(self, stream: StreamState, step: int, branch: int) -> None:
        self.stream = stream
        self.step = step
        self.branch = branch
        self.mode = Mode.COMPUTE
        self.decided = False
        self.segment_inputs: dict[int, torch.Tensor] = {}
        self.middle_inputs: dict[int, tuple[torch.Tensor, torch.Tensor | None]] = {}
        self.block_inputs: dict[int, tuple[torch.Tensor, torch.Tensor | None]] = {}
        self.samples: list[StreamState] | None = None  # per-sample decisions: one state each
        self.sub: SubBatch | None = None  # which samples compute (Mode.MIXED)
        self.ambiguous_input: str | None = None  # an input whose batch dimension is unclear


class Runtime:
    """Records and stand-ins for one chain. ``actions`` is the table the block hooks read."""

    def __init__(self, plan: ChainPlan, ios: Sequence[BlockIO], hidden_as_value: bool,
                 encoder_as_value: bool,
                 on_probe: Callable[[CallState, torch.Tensor | None], Mode]) -> None:
        self.plan = plan
        self.ios = list(ios)
        self.hidden_as_value = hidden_as_value  # the calibrators see outputs, not residuals
        self.encoder_as_value = encoder_as_value
        self.on_probe = on_probe
        self.check_batch_inputs = False  # per-sample decisions: look at the decider's inputs
        self.call: CallState | None = None
        self.actions = plan.actions[Mode.OFF]

    # ------------------------------------------------------------------ call boundaries
    def begin(self, call: CallState) -> None:
        self.call = call
        self.actions = self.plan.actions[Mode.COMPUTE]

    def set_mode(self, mode: Mode) -> None:
        """The decision for the rest of the current call."""
        self.call.mode = mode
        self.actions = self.plan.actions[mode]

    def end(self) -> CallState | None:
        call, self.call = self.call, None
        self.actions = self.plan.actions[Mode.OFF]
        if self.plan.learning and call is not None and all(io.slots is not None for io in self.ios):
            self.plan.learned({i for i, io in enumerate(self.ios) if io.has_value_slots})
        return call

    # ------------------------------------------------------------------ computed blocks
    @torch.compiler.disable
    def before(self, index: int, args: tuple, kwargs: dict) -> None:
        plan = self.plan.blocks[index]
        call = self.call
        io = self.ios[index]
        needs_own = plan.skippable_back or io.slots is None
        check = plan.decides and self.check_batch_inputs
        if not (plan.segment_start or plan.middle_start or needs_own or check):
            return
        hidden, encoder = io.read_inputs(args, kwargs)
        if check:
            call.ambiguous_input = ambiguous_input(args, kwargs, hidden, encoder,
                                                   io.positional_names)
        if needs_own:
            call.block_inputs[index] = (hidden, encoder)
        if plan.segment_start:
            call.segment_inputs[plan.segment] = hidden
        if plan.middle_start:
            call.middle_inputs[plan.segment] = (hidden, encoder)

    @torch.compiler.disable
    def after(self, index: int, output: Any) -> None:
        plan = self.plan.blocks[index]
        call = self.call
        io = self.ios[index]
        own_inputs = call.block_inputs.pop(index, (None, None))
        if io.slots is None:
            io.learn_outputs(output, *own_inputs)
        if not (plan.middle_end or plan.decides or plan.skippable_back or io.has_value_slots):
            return
        hidden, encoder, values = io.split_outputs(output)
        stream = call.stream
        if io.has_value_slots:
            stream.block_values[index] = values
        if plan.skippable_back:
            stream.block_residuals[index] = (_sub(hidden, own_inputs[0]),
                                             _sub(encoder, own_inputs[1]))
        if plan.middle_end:
            self._store_middle(call, plan.segment, hidden, encoder)
        if plan.decides:
            probe = _sub(hidden, call.segment_inputs.get(plan.segment))
            self.set_mode(self.on_probe(call, probe))

    def _store_middle(self, call: CallState, segment: int, hidden, encoder) -> None:
        if segment not in call.middle_inputs:
            return
        hidden_in, encoder_in = call.middle_inputs[segment]
        features = [(out if as_value else _sub(out, inp)) if out is not None else None
                    for out, inp, as_value in ((hidden, hidden_in, self.hidden_as_value),
                                               (encoder, encoder_in, self.encoder_as_value))]
        if call.samples is None:
            owners = [(call.stream, None)]
        else:  # each computed sample keeps its own row
            rows = call.sub.compute if call.sub is not None else range(len(call.samples))
            owners = [(call.samples[i], i) for i in rows]
        for owner, row in owners:
            for calibrator, feature in zip(owner.calibrators(segment), features):
                if feature is not None and row is not None:
                    feature = feature[row:row + 1] if feature.shape[0] == len(call.samples) else None
                if feature is None:
                    calibrator.reset()
                else:
                    calibrator.update(call.step, feature)

    # ------------------------------------------------------------------ stood-in blocks
    @torch.compiler.disable
    def stand_in(self, index: int, args: tuple, kwargs: dict) -> Any:
        """The output of a skipped block that needs more than its input: the first skipped
        block of a list, a skippable Bn block, or a block with extra outputs."""
        plan = self.plan.blocks[index]
        call = self.call
        io = self.ios[index]
        hidden, encoder = io.read_inputs(args, kwargs)
        stream = call.stream
        if plan.skippable_back and call.mode is Mode.CACHE_BACK:
            residual_h, residual_e = stream.block_residuals[index]
            hidden = hidden + residual_h if residual_h is not None else hidden
            encoder = encoder + residual_e if residual_e is not None else encoder
        elif plan.middle_start and call.samples is not None:
            hidden, encoder = self._apply_rows(call, plan.segment, hidden, encoder,
                                               range(len(call.samples)))
        elif plan.middle_start:
            hidden_cal, encoder_cal = stream.middle[plan.segment]
            hidden = self._apply(hidden_cal, call.step, hidden, self.hidden_as_value)
            encoder = self._apply(encoder_cal, call.step, encoder, self.encoder_as_value)
        return io.build_output(hidden, encoder, stream.block_values.get(index))

    @torch.compiler.disable
    def sub_batch(self, index: int, forward: Callable[..., Any], args: tuple, kwargs: dict) -> Any:
        """A middle block under per-sample decisions: run on the computing samples; the first
        middle block of a list also stands in for the cached samples' whole skipped span."""
        plan = self.plan.blocks[index]
        call = self.call
        io = self.ios[index]
        sub = call.sub
        hidden, encoder = io.read_inputs(args, kwargs)
        if plan.middle_start:
            call.middle_inputs[plan.segment] = (hidden, encoder)
        computed_hidden, computed_encoder, _ = io.split_outputs(
            sub.run(forward, args, kwargs, io.positional_names))
        cached_hidden = cached_encoder = None
        if plan.middle_start:
            cached_hidden, cached_encoder = self._apply_rows(
                call, plan.segment, hidden.index_select(0, sub.cache_index),
                encoder.index_select(0, sub.cache_index) if encoder is not None else None,
                sub.cache)
        hidden = sub.merge(hidden, computed_hidden, cached_hidden)
        encoder = sub.merge(encoder, computed_encoder, cached_encoder)
        if plan.middle_end:
            self._store_middle(call, plan.segment, hidden, encoder)
        return io.build_output(hidden, encoder, None)

    def _apply_rows(self, call: CallState, segment: int, hidden, encoder, rows):
        """Each listed sample's own stand-in; ``hidden``/``encoder`` hold exactly those rows."""
        out_hidden, out_encoder = [], []
        for position, sample in enumerate(rows):
            hidden_cal, encoder_cal = call.samples[sample].middle[segment]
            out_hidden.append(self._apply(hidden_cal, call.step, hidden[position:position + 1],
                                          self.hidden_as_value))
            if encoder is not None:
                out_encoder.append(self._apply(encoder_cal, call.step,
                                               encoder[position:position + 1],
                                               self.encoder_as_value))
        return torch.cat(out_hidden), (torch.cat(out_encoder) if encoder is not None else None)

    @staticmethod
    def _apply(calibrator, step: int, value, as_value: bool):
        if value is None or not calibrator.ready:
            return value
        stand_in = calibrator.approximate(step)
        return stand_in if as_value else value + stand_in
