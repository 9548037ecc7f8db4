"""The static plan of a cached chain: which block plays which role, and what each mode does.

All block lists of a transformer form ONE chain for Fn/Bn counting (Flux: 19 double-stream then
38 single-stream blocks). Everything that depends only on the options and the chain is worked out
here once, so the per-block hot path is a table lookup.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Sequence

from .options import CacheOptions

__all__ = ["Role", "Mode", "Action", "BlockPlan", "ChainPlan"]


class Role(enum.Enum):
    FRONT = "Fn"
    MIDDLE = "middle"
    BACK = "Bn"


class Mode(enum.IntEnum):
    """What the blocks of the current transformer call do."""

    OFF = 0  # called outside a transformer call: not ours to touch
    COMPUTE = 1  # every block runs (also before the decision on every call)
    CACHE = 2  # middle blocks are stood in for
    CACHE_BACK = 3  # middle blocks and the skippable Bn blocks are stood in for
    MIXED = 4  # per-sample decisions: middle blocks run on the samples that compute only


class Action(enum.IntEnum):
    """What one block's hook does in one mode."""

    RUN = 0  # run the block, nothing to record
    RUN_RECORD = 1  # run the block and record inputs/outputs the cache needs
    PASS = 2  # stand in: return the input in the block's output layout
    STAND_IN = 3  # stand in with a cached residual / forecast / stored values
    SUB_BATCH = 4  # run on the computing samples, stand in for the others


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

    @property
    def records(self) -> bool:
        """A computed run of this block feeds the cache (inputs or outputs are kept)."""
        return (self.segment_start or self.middle_start or self.middle_end or self.decides
                or self.skippable_back)


class ChainPlan:
    """Roles of every block, the segments with a middle part, and per-mode action tables."""

    def __init__(self, block_names: Sequence[tuple[str, int]], options: CacheOptions) -> None:
        """``block_names``: (name, segment) for each block of the chain, in execution order."""
        fn, bn = options.Fn_compute_blocks, options.Bn_compute_blocks
        total = len(block_names)
        ids = options.Bn_compute_blocks_ids
        roles = [Role.FRONT if i < fn else Role.BACK if i >= total - bn else Role.MIDDLE
                 for i in range(total)]
        first_of: dict[int, int] = {}
        first_middle: dict[int, int] = {}
        last_middle: dict[int, int] = {}
        for i, (_, seg) in enumerate(block_names):
            first_of.setdefault(seg, i)
            if roles[i] is Role.MIDDLE:
                first_middle.setdefault(seg, i)
                last_middle[seg] = i
        self.blocks = [
            BlockPlan(
                index=i,
                segment=seg,
                name=name,
                role=roles[i],
                segment_start=first_of[seg] == i,
                middle_start=first_middle.get(seg) == i,
                middle_end=last_middle.get(seg) == i,
                skippable_back=roles[i] is Role.BACK and ids is not None
                and (i - (total - bn)) not in ids,
                decides=i == fn - 1,
            )
            for i, (name, seg) in enumerate(block_names)
        ]
        self.num_blocks = total
        # Fn_compute_blocks=0: no probe; the mode is decided before the first block runs.
        self.probe_free = fn == 0
        self.middle_segments = tuple(sorted(first_middle))
        self.skippable_back = tuple(p.index for p in self.blocks if p.skippable_back)
        self.has_middle = bool(self.middle_segments)
        num_middle = sum(r is Role.MIDDLE for r in roles)
        # Blocks executed per call in each mode (machine-independent cost accounting).
        self.kept = {
            Mode.COMPUTE: total,
            Mode.CACHE: total - num_middle,
            Mode.CACHE_BACK: total - num_middle - len(self.skippable_back),
        }
        self._value_blocks: frozenset[int] = frozenset()
        self.learning = True  # until every block's output layout is known, every block records
        self.actions = self._actions()

    def learned(self, value_blocks: set[int]) -> None:
        """Every block's output layout is known; ``value_blocks`` return extra outputs (not
        hidden/encoder) that are recorded and replayed when they are stood in for."""
        self.learning = False
        self._value_blocks = frozenset(value_blocks)
        self.actions = self._actions()

    def _actions(self) -> dict[Mode, tuple[Action, ...]]:
        def compute(p: BlockPlan) -> Action:
            if self.learning or p.records or p.index in self._value_blocks:
                return Action.RUN_RECORD
            return Action.RUN

        def stood_in(p: BlockPlan) -> Action:
            special = p.middle_start or p.skippable_back or p.index in self._value_blocks
            return Action.STAND_IN if special else Action.PASS

        tables = {Mode.OFF: (Action.RUN,) * self.num_blocks,
                  Mode.COMPUTE: tuple(compute(p) for p in self.blocks)}
        tables[Mode.CACHE] = tuple(
            stood_in(p) if p.role is Role.MIDDLE else compute(p) for p in self.blocks)
        tables[Mode.MIXED] = tuple(
            Action.SUB_BATCH if p.role is Role.MIDDLE else compute(p) for p in self.blocks)
        tables[Mode.CACHE_BACK] = tuple(
            stood_in(p) if p.role is Role.MIDDLE or p.skippable_back else compute(p)
            for p in self.blocks)
        return tables
