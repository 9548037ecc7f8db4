"""The generation clock: which denoising step and CFG branch a transformer call belongs to, and
when a new generation starts — read from what the pipeline exposes at call time, patching nothing.

Signals, strongest first:

1. An explicit restart: :func:`cache_dit.reset_cache`, or diffusers' end-of-call ``reset_state``
   (every diffusers pipeline resets stateful hooks when its ``__call__`` ends).
2. The pipeline's scheduler, read at every call: a different scheduler object (swapped), or a
   different ``timesteps`` tensor (``set_timesteps`` ran: a new call, also after an aborted one)
   starts a generation; ``step_index`` (advanced by ``scheduler.step``) separates steps, so the
   calls of one step are its CFG branches. No device-to-host read is needed.
3. For custom loops on a bare transformer: the timestep value (same value = same step, a move
   against the schedule's direction = restart) and ``num_inference_steps``.

The branch is the diffusers ``cache_context`` name when the pipeline sets one (``"cond"``,
``"uncond"``: stable even when a step skips a branch), else the call's position within its step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

__all__ = ["GenerationClock", "Tick"]

_NO_KEY = object()


@dataclass(frozen=True)
class Tick:
    """Where one transformer call sits."""

    restart: bool  # this call starts a new generation
    step: int  # the stream's step index within the generation (0, 1, 2, ...)
    branch: int  # 0 for the first branch of a step (cond, or the only one), 1 for the next ...
    num_steps: int | None  # steps of this generation, when known
    scheduled: bool  # placed from the scheduler's state (else from the timestep or call count)


class GenerationClock:
    """Turns transformer calls into (restart, step, branch); one per cached transformer."""

    def __init__(self, bare_steps: int | None = None) -> None:
        self.bare_steps = bare_steps  # steps per generation for custom loops (no scheduler)
        self._pending = True
        self._scheduler: Any = None
        self._timesteps: Any = None
        self._finished: Any = None  # the timesteps of the pipeline call that ended last
        self.reset()

    def reset(self) -> None:
        """Forget the current generation's position (called on every restart)."""
        self.step = -1
        self.branch = 0
        self.calls = 0
        self.max_branches = 0
        self._key: Any = _NO_KEY
        self._names: list[str] = []
        self.last_timestep: float | None = None
        self._direction = 0.0

    def request_restart(self, end_of_call: bool = False) -> None:
        """The next call starts a new generation. ``end_of_call``: a pipeline call ended, so its
        scheduler state says nothing about later calls until ``set_timesteps`` runs again (a
        custom loop calling the transformer directly is placed by its timesteps)."""
        self._pending = True
        if end_of_call:
            self._finished = self._timesteps

    def tick(
        self,
        scheduler: Any,
        context: str | None,
        read_timestep: Callable[[], float | None],
        calls_per_step: int,
    ) -> Tick:
        """Place one call. ``read_timestep`` is only called without a usable scheduler (it may
        read a device tensor)."""
        restart, self._pending = self._pending, False
        key: Any = _NO_KEY
        timestep = None
        num_steps = None
        timesteps = getattr(scheduler, "timesteps", None) if scheduler is not None else None
        scheduled = (timesteps is not None and timesteps is not self._finished
                     and hasattr(scheduler, "step_index"))
        if scheduled:
            if scheduler is not self._scheduler or timesteps is not self._timesteps:
                restart = True
                self._scheduler, self._timesteps = scheduler, timesteps
            key = scheduler.step_index
            num_steps = len(timesteps)
            if isinstance(key, int) and isinstance(self._key, int) and key < self._key:
                restart = True  # a custom loop rewound the scheduler
        else:
            timestep = read_timestep()
            if self._looks_like_restart(timestep) or self._bare_steps_done(timestep,
                                                                            calls_per_step):
                restart = True
            num_steps = self.bare_steps
        if restart:
            self.reset()
        if key is not _NO_KEY:
            self._advance_key(key)
        else:
            self._advance_timestep(timestep, calls_per_step)
        if context is not None:
            if context not in self._names:
                self._names.append(context)
            self.branch = self._names.index(context)
        self.calls += 1
        self.max_branches = max(self.max_branches, self.branch + 1)
        return Tick(restart, self.step, self.branch, num_steps, scheduled)

    # ------------------------------------------------------------------ scheduler path
    def _advance_key(self, key: Any) -> None:
        if self._key is _NO_KEY or key != self._key:
            self.step += 1
            self.branch = 0
        else:
            self.branch += 1
        self._key = key

    # ------------------------------------------------------------------ custom loops
    def _advance_timestep(self, timestep: float | None, calls_per_step: int) -> None:
        if timestep is None:
            self.step, self.branch = divmod(self.calls, calls_per_step)
        elif self.last_timestep is None or timestep != self.last_timestep:
            if self.last_timestep is not None and not self._direction:
                self._direction = timestep - self.last_timestep
            self.step += 1
            self.branch = 0
        else:
            self.branch += 1
        self.last_timestep = timestep

    def _looks_like_restart(self, timestep: float | None) -> bool:
        """A timestep that moves against the schedule's direction starts a new generation."""
        if timestep is None or self.last_timestep is None or not self._direction:
            return False
        return (timestep - self.last_timestep) * self._direction < 0

    def _bare_steps_done(self, timestep: float | None, calls_per_step: int) -> bool:
        steps = self.bare_steps
        if not steps or self.step < 0:
            return False
        if timestep is None:
            return self.calls // calls_per_step >= steps
        return timestep != self.last_timestep and self.step + 1 >= steps
