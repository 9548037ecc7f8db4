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
                 "middle_inputs", "block_inputs")

    def __init__(self, stream: StreamState, step: int, branch: int) -> None:
        self.stream = stream
        self.step = step
        self.branch = branch
        self.mode = Mode.COMPUTE
        self.decided = False
        self.segment_inputs: dict[int, torch.Tensor] = {}
        self.middle_inputs: dict[int, tuple[torch.Tensor, torch.Tensor | None]] = {}
        self.block_inputs: dict[int, tuple[torch.Tensor, torch.Tensor | None]] = {}


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
        self.call: CallState | None = None
        self.actions = plan.actions[Mode.OFF]

    # ------------------------------------------------------------------ call boundaries
    def begin(self, call: CallState) -> None:
        self.call = call
        self.actions = self.plan.actions[Mode.COMPUTE]

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
        if not (plan.segment_start or plan.middle_start or needs_own):
            return
        hidden, encoder = io.read_inputs(args, kwargs)
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
            call.mode = self.on_probe(call, probe)
            self.actions = self.plan.actions[call.mode]

    def _store_middle(self, call: CallState, segment: int, hidden, encoder) -> None:
        if segment not in call.middle_inputs:
            return
        hidden_in, encoder_in = call.middle_inputs[segment]
        hidden_cal, encoder_cal = call.stream.calibrators(segment)
        for calibrator, out, inp, as_value in (
            (hidden_cal, hidden, hidden_in, self.hidden_as_value),
            (encoder_cal, encoder, encoder_in, self.encoder_as_value),
        ):
            feature = (out if as_value else _sub(out, inp)) if out is not None else None
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
        elif plan.middle_start:
            hidden_cal, encoder_cal = stream.middle[plan.segment]
            hidden = self._apply(hidden_cal, call.step, hidden, self.hidden_as_value)
            encoder = self._apply(encoder_cal, call.step, encoder, self.encoder_as_value)
        return io.build_output(hidden, encoder, stream.block_values.get(index))

    @staticmethod
    def _apply(calibrator, step: int, value, as_value: bool):
        if value is None or not calibrator.ready:
            return value
        stand_in = calibrator.approximate(step)
        return stand_in if as_value else value + stand_in
