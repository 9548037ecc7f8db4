"""Block I/O detection on hand-made blocks: every pattern, ties, and clear errors."""

from __future__ import annotations

import pytest
import torch

import cache_dit
from cache_dit import ForwardPattern
from cache_dit.patterns import BlockIO, describe


class EncoderFirst(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(4, 4)

    def forward(self, hidden_states, encoder_hidden_states, temb=None):
        hidden_states = hidden_states + self.lin(hidden_states)
        encoder_hidden_states = encoder_hidden_states + 1
        return encoder_hidden_states, hidden_states


class Anonymous(torch.nn.Module):
    """Two same-shaped outputs whose names say nothing."""

    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(4, 4)

    def forward(self, x, y):
        a, b = self.lin(x), y * 2
        return b, a


class HiddenToPair(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(4, 4)

    def forward(self, hidden_states):
        return hidden_states + self.lin(hidden_states), hidden_states.mean(dim=1)


def _learn(block, *args, **kwargs):
    io = BlockIO(block, **kwargs)
    hidden, encoder = io.read_inputs(args, {})
    io.learn_outputs(block(*args), hidden, encoder)
    return io


def test_same_shape_outputs_resolved_from_the_source_names():
    x = torch.randn(1, 5, 4)
    io = _learn(EncoderFirst(), x, torch.randn(1, 5, 4))
    assert describe(io) == "(hidden, encoder) -> (encoder, hidden)"


def test_anonymous_same_shape_outputs_need_the_user_to_say():
    x, y = torch.randn(1, 5, 4), torch.randn(1, 5, 4)
    with pytest.raises(ValueError, match="return_hidden_states_first=True/False"):
        _learn(Anonymous(), x, y)
    io = _learn(Anonymous(), x, y, hidden_first=False)
    hidden, _, _ = io.split_outputs(Anonymous()(x, y))
    assert io.slots[1].value == "hidden" and hidden.shape == x.shape
    io = _learn(Anonymous(), x, y, pattern=ForwardPattern.H_TO_EH)  # forced by the user
    assert describe(io) == "hidden -> (value, hidden)"  # y is then just another argument


def test_hidden_to_pair_keeps_the_extra_output_as_a_value():
    io = _learn(HiddenToPair(), torch.randn(1, 5, 4))
    assert describe(io) == "hidden -> (hidden, value)"
    rebuilt = io.build_output(torch.zeros(1, 5, 4), None, values=("h", "kept"))
    assert rebuilt[1] == "kept"


def test_blocks_returning_something_else_fail_clearly():
    class DictBlock(torch.nn.Module):
        def forward(self, hidden_states):
            return {"out": hidden_states}

    with pytest.raises(TypeError, match="returned dict"):
        _learn(DictBlock(), torch.randn(1, 2, 4))


def test_custom_transformer_with_hand_made_blocks_caches():
    class Tiny(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.blocks = torch.nn.ModuleList(EncoderFirst() for _ in range(4))

        def forward(self, hidden_states, encoder_hidden_states, timestep):
            for block in self.blocks:
                encoder_hidden_states, hidden_states = block(hidden_states, encoder_hidden_states)
            return hidden_states

    torch.manual_seed(0)
    model = Tiny()
    x, e = torch.randn(1, 5, 4), torch.randn(1, 3, 4)
    cache_dit.enable_cache(model, Fn_compute_blocks=1, warmup_steps=1,
                           residual_diff_threshold=1e9, num_inference_steps=3)
    with torch.no_grad():
        outs = [model(x, e, torch.tensor([t])) for t in (3.0, 2.0, 1.0)]
    stats = cache_dit.summary(model)[0]
    assert stats.cached_steps == [1, 2]
    assert stats.patterns == {"blocks": "(hidden, encoder) -> (encoder, hidden)"}
    # same inputs at every step: the cached residual reproduces the computed output
    torch.testing.assert_close(outs[1], outs[0])
