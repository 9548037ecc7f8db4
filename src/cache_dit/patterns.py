"""Forward patterns: how a transformer block takes and returns hidden states.

diffusers' DiT families disagree on block I/O: Flux returns ``(encoder, hidden)``, CogVideoX
``(hidden, encoder)``, Wan a single tensor, SD3's last block ``(None, hidden)``; some are called
positionally, some by keyword. A :class:`BlockIO` binds the inputs by the block's signature and
learns the output layout from the first real call, so skipped blocks can return exactly what the
transformer's loop unpacks, without copying any model's forward code.
"""

from __future__ import annotations

import ast
import enum
import inspect
import textwrap
from dataclasses import dataclass
from typing import Any, Callable

import torch

__all__ = ["ForwardPattern", "BlockIO", "Slot"]


class Slot(enum.Enum):
    """What one element of a block's output is."""

    HIDDEN = "hidden"
    ENCODER = "encoder"
    NONE = "none"  # e.g. SD3's last block returns (None, hidden)
    VALUE = "value"  # another output; reused as last computed when the block is skipped


class ForwardPattern(enum.Enum):
    """Block I/O contracts. Auto-detected; pass ``forward_pattern=`` to force one."""

    HE_TO_HE = ("(hidden, encoder) -> (hidden, encoder)", True, (Slot.HIDDEN, Slot.ENCODER))
    HE_TO_EH = ("(hidden, encoder) -> (encoder, hidden)", True, (Slot.ENCODER, Slot.HIDDEN))
    HE_TO_H = ("(hidden, encoder) -> hidden", True, (Slot.HIDDEN,))
    H_TO_H = ("hidden -> hidden", False, (Slot.HIDDEN,))
    H_TO_HE = ("hidden -> (hidden, encoder)", False, (Slot.HIDDEN, Slot.VALUE))
    H_TO_EH = ("hidden -> (encoder, hidden)", False, (Slot.VALUE, Slot.HIDDEN))

    # Aliases with cache-dit's historical names.
    Pattern_0 = HE_TO_HE
    Pattern_1 = HE_TO_EH
    Pattern_2 = HE_TO_H
    Pattern_3 = H_TO_H
    Pattern_4 = H_TO_HE
    Pattern_5 = H_TO_EH

    @property
    def description(self) -> str:
        return self.value[0]

    @property
    def takes_encoder(self) -> bool:
        return self.value[1]

    @property
    def slots(self) -> tuple[Slot, ...]:
        return self.value[2]


_HIDDEN_NAMES = ("hidden_states", "x", "hidden", "img", "latents")
_ENCODER_NAMES = ("encoder_hidden_states", "context", "txt", "encoder_hidden", "text_hidden_states")


def _forward_signature(block: torch.nn.Module) -> inspect.Signature:
    """The class-level forward signature without ``self`` (unaffected by instance hooks)."""
    sig = inspect.signature(type(block).forward)
    params = list(sig.parameters.values())[1:]
    return sig.replace(parameters=params)


def returned_names(block: torch.nn.Module) -> list[tuple[str | None, ...]] | None:
    """Names in the tuples the block's ``forward`` returns, read from its source (None if unreadable).

    Used only to break a tie when the hidden and encoder outputs have the same shape.
    """
    try:
        source = textwrap.dedent(inspect.getsource(type(block).forward))
        tree = ast.parse(source)
    except (OSError, TypeError, SyntaxError):
        return None
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Return) and isinstance(node.value, ast.Tuple):
            found.append(
                tuple(elt.id if isinstance(elt, ast.Name) else None for elt in node.value.elts)
            )
    return found or None


@dataclass
class _Param:
    name: str
    position: int | None  # index among positional args, None if keyword-only


class BlockIO:
    """Reads hidden/encoder inputs of one block call and builds outputs in that block's layout."""

    def __init__(
        self,
        block: torch.nn.Module,
        pattern: ForwardPattern | None = None,
        hidden_first: bool | None = None,
        where: str = "block",
    ) -> None:
        self.where = where
        self.pattern = pattern
        self.hidden_first = hidden_first
        self._block_type = type(block)
        self._returned = None  # lazily parsed source names
        self._block_ref_for_source = block
        sig = _forward_signature(block)
        self.positional_names = [p.name for p in sig.parameters.values()
                                 if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        self.hidden = self._find_param(sig, _HIDDEN_NAMES, first_fallback=True)
        if self.hidden is None:
            raise ValueError(
                f"{where} ({type(block).__name__}) has no hidden-states input: its forward takes "
                f"{list(sig.parameters)}; expected a first positional parameter or one named "
                f"{_HIDDEN_NAMES}"
            )
        self.encoder = self._find_param(sig, _ENCODER_NAMES, first_fallback=False)
        if pattern is not None and pattern.takes_encoder and self.encoder is None:
            raise ValueError(
                f"forward_pattern {pattern.name} needs an encoder input, but {where} "
                f"({type(block).__name__}) forward takes {list(sig.parameters)}"
            )
        if pattern is not None and not pattern.takes_encoder:
            self.encoder = None
        self.slots: tuple[Slot, ...] | None = None  # learned from the first computed call
        self.saw_encoder = False  # an encoder input was passed (not just accepted)
        self.returns_tuple: bool | None = None

    @staticmethod
    def _find_param(sig: inspect.Signature, names: tuple[str, ...], first_fallback: bool):
        positional = 0
        candidates: dict[str, _Param] = {}
        first: _Param | None = None
        for param in sig.parameters.values():
            if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                continue
            pos = None
            if param.kind in (param.POSITIONAL_ONLY, param.POSITIONAL_OR_KEYWORD):
                pos = positional
                positional += 1
            entry = _Param(param.name, pos)
            candidates[param.name] = entry
            if first is None and pos is not None:
                first = entry
        for name in names:
            if name in candidates:
                return candidates[name]
        return first if first_fallback else None

    # ------------------------------------------------------------------ inputs
    @staticmethod
    def _read(param: _Param | None, args: tuple, kwargs: dict) -> Any:
        if param is None:
            return None
        if param.name in kwargs:
            return kwargs[param.name]
        if param.position is not None and param.position < len(args):
            return args[param.position]
        return None

    def read_inputs(self, args: tuple, kwargs: dict) -> tuple[torch.Tensor, torch.Tensor | None]:
        return self._read(self.hidden, args, kwargs), self._read(self.encoder, args, kwargs)

    # ------------------------------------------------------------------ outputs
    def learn_outputs(self, output: Any, hidden_in: torch.Tensor, encoder_in: torch.Tensor | None):
        """Work out which output element is which, once, from a real call."""
        if self.slots is not None:
            return
        self.saw_encoder = encoder_in is not None
        if isinstance(output, torch.Tensor):
            self.returns_tuple, self.slots = False, (Slot.HIDDEN,)
            return
        if not isinstance(output, (tuple, list)):
            raise TypeError(
                f"{self.where} ({self._block_type.__name__}) returned {type(output).__name__}; "
                f"cache-dit supports blocks returning a tensor or a tuple of tensors. Pass "
                f"blocks= with blocks that fit a ForwardPattern ({[p.name for p in ForwardPattern]})"
            )
        self.returns_tuple = True
        if self.pattern is not None and len(self.pattern.slots) == len(output):
            self.slots = tuple(
                Slot.NONE if value is None else slot for slot, value in zip(self.pattern.slots, output)
            )
            return
        self.slots = self._infer_slots(tuple(output), hidden_in, encoder_in)

    def _infer_slots(self, output: tuple, hidden_in, encoder_in) -> tuple[Slot, ...]:
        def same_shape(value, ref):
            return isinstance(value, torch.Tensor) and isinstance(ref, torch.Tensor) and (
                value.shape == ref.shape
            )

        hidden_idx = [i for i, v in enumerate(output) if same_shape(v, hidden_in)]
        encoder_idx = [i for i, v in enumerate(output) if same_shape(v, encoder_in)]
        slots = [Slot.NONE if v is None else Slot.VALUE for v in output]
        ambiguous = len(hidden_idx) != 1 or (encoder_in is not None and len(encoder_idx) > 1)
        if ambiguous and len(output) == 2 and len(hidden_idx) == 2:
            hidden_pos = self._resolve_tie()
            other = Slot.ENCODER if encoder_in is not None else Slot.VALUE
            slots[hidden_pos], slots[1 - hidden_pos] = Slot.HIDDEN, other
            return tuple(slots)
        if len(hidden_idx) != 1:
            raise ValueError(
                f"{self.where} ({self._block_type.__name__}) returned "
                f"{[tuple(v.shape) if isinstance(v, torch.Tensor) else v for v in output]}; no "
                f"single output has the hidden-states input shape {tuple(hidden_in.shape)}. "
                f"Pass forward_pattern= to say which output is which"
            )
        slots[hidden_idx[0]] = Slot.HIDDEN
        for i in encoder_idx:
            if i != hidden_idx[0]:
                slots[i] = Slot.ENCODER
        return tuple(slots)

    def _resolve_tie(self) -> int:
        """Hidden and encoder outputs have the same shape: decide which comes first."""
        if self.hidden_first is not None:
            return 0 if self.hidden_first else 1
        for names in returned_names(self._block_ref_for_source) or []:
            if len(names) == 2 and all(names):
                enc = [i for i, n in enumerate(names) if "encoder" in n or n in _ENCODER_NAMES]
                hid = [i for i, n in enumerate(names) if i not in enc]
                if len(enc) == 1 and len(hid) == 1:
                    return hid[0]
        raise ValueError(
            f"{self.where} ({self._block_type.__name__}) returns two tensors of the same shape and "
            f"its source does not say which is the hidden states; pass "
            f"return_hidden_states_first=True/False to enable_cache"
        )

    def make_passthrough(self) -> Callable[[tuple, dict], Any]:
        """A function returning a call's inputs in this block's output layout: what a skipped
        block returns on the hot path. Specialised once (after :meth:`learn_outputs`) so a stand-in
        costs a few dict/tuple lookups, not a generic walk over slots."""
        if self.slots is None or self.has_value_slots:
            raise RuntimeError(f"{self.where}: no pass-through for this output layout")
        read_hidden, read_encoder = _reader(self.hidden), _reader(self.encoder)
        hidden = self.hidden.name
        encoder = self.encoder.name if self.encoder is not None else None
        if not self.returns_tuple:
            def single(args: tuple, kwargs: dict) -> Any:
                try:  # the common call: by keyword
                    return kwargs[hidden]
                except KeyError:
                    return read_hidden(args, kwargs)
            return single
        pair = {(Slot.ENCODER, Slot.HIDDEN): (encoder, hidden),
                (Slot.HIDDEN, Slot.ENCODER): (hidden, encoder)}.get(self.slots)
        if pair is None or encoder is None:
            return lambda args, kwargs: self.build_output(*self.read_inputs(args, kwargs))
        first, second = pair
        read_first, read_second = (read_encoder, read_hidden) if first == encoder else (
            read_hidden, read_encoder)

        def two(args: tuple, kwargs: dict) -> tuple:
            try:  # the common call: both by keyword
                return kwargs[first], kwargs[second]
            except KeyError:
                return read_first(args, kwargs), read_second(args, kwargs)
        return two

    def split_outputs(self, output: Any) -> tuple[torch.Tensor, torch.Tensor | None, tuple]:
        """(hidden, encoder or None, all outputs as a tuple)."""
        if not self.returns_tuple:
            return output, None, (output,)
        hidden = encoder = None
        for slot, value in zip(self.slots, output):
            if slot is Slot.HIDDEN:
                hidden = value
            elif slot is Slot.ENCODER:
                encoder = value
        return hidden, encoder, tuple(output)

    def build_output(
        self,
        hidden: torch.Tensor,
        encoder: torch.Tensor | None,
        values: tuple | None = None,
    ) -> Any:
        """An output in this block's layout; VALUE slots come from ``values`` (last computed)."""
        if not self.returns_tuple:
            return hidden
        out = []
        for i, slot in enumerate(self.slots):
            if slot is Slot.HIDDEN:
                out.append(hidden)
            elif slot is Slot.ENCODER:
                out.append(encoder)
            elif slot is Slot.NONE:
                out.append(None)
            else:
                out.append(values[i] if values is not None else None)
        return tuple(out)

    @property
    def has_value_slots(self) -> bool:
        return bool(self.slots) and Slot.VALUE in self.slots


def _reader(param: _Param | None) -> Callable[[tuple, dict], Any]:
    """A reader of one input, by keyword or by position (None when absent)."""
    if param is None:
        return lambda args, kwargs: None
    name, position = param.name, param.position
    if position is None:
        return lambda args, kwargs: kwargs.get(name)

    def read(args: tuple, kwargs: dict) -> Any:
        if name in kwargs:
            return kwargs[name]
        return args[position] if position < len(args) else None

    return read


def describe(io: BlockIO) -> str:
    """Human-readable pattern of a block, for summaries and errors."""
    if io.slots is None:
        return "unknown (block not run yet)"
    ins = "(hidden, encoder)" if io.saw_encoder else "hidden"
    if not io.returns_tuple:
        return f"{ins} -> hidden"
    names = {Slot.HIDDEN: "hidden", Slot.ENCODER: "encoder", Slot.NONE: "None", Slot.VALUE: "value"}
    return f"{ins} -> ({', '.join(names[s] for s in io.slots)})"

