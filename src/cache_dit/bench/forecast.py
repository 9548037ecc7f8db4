"""Replay calibrators over fixed cached-step patterns on the reference model (FLUX-shaped, F_nB0).

Why: with DBCache's decisions held fixed, the only thing a calibrator changes is what stands in
for the skipped middle blocks, so differences in output quality are the calibrator's alone.

:func:`replay` runs the reference pipeline's sampling loop itself, with many rows in one batch:
one row per (seed, calibrator, CFG branch), plus an uncached row per seed. Every row computes
every block (the true middle residual is needed to score the forecast); on a row's cached step
its middle output is then replaced by ``Fn output + forecast``, exactly as DBCache with
``Bn_compute_blocks=0`` and ``taylorseer_cache_type="residual"`` does, so errors compound over
the run (closed loop). The whole middle (all block lists) is one feature here; for the linear
calibrators (reuse, Taylor, Newton, FoCa) that is the same as forecasting each block list's
residual separately, as the controller does.
:func:`open_loop_error` replays a calibrator over a recorded uncached trajectory instead.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch

from ..calibrators.base import Calibrator
from ..reference.model import image_position_ids, text_position_ids, unpack_images

__all__ = ["Pattern", "ReplayResult", "replay", "dbcache_patterns", "interval_pattern",
           "open_loop_error", "relative_l1", "kept_fraction"]

Pattern = tuple[frozenset[int], frozenset[int]]
"""Cached steps of one seed: (cond branch, uncond branch)."""


def relative_l1(estimate: torch.Tensor, truth: torch.Tensor) -> float:
    """mean|estimate - truth| / mean|truth| (DBCache's own distance), as a float."""
    return float((estimate - truth).abs().mean() / truth.abs().mean().clamp_min(1e-12))


def kept_fraction(pattern: Pattern, steps: int, num_blocks: int, fn: int) -> float:
    """Fraction of block executions kept, both branches: cached steps still run the Fn blocks."""
    kept = sum((steps - len(c)) * num_blocks + len(c) * fn for c in pattern)
    return kept / (len(pattern) * steps * num_blocks)


def interval_pattern(steps: int, warmup: int, interval: int) -> frozenset[int]:
    """Steps cached by a fixed schedule: after ``warmup`` computed steps, compute every ``interval``-th."""
    if interval < 1 or warmup < 1:
        raise ValueError(f"interval and warmup must be >= 1, got {interval} and {warmup}")
    return frozenset(s for s in range(warmup, steps) if (s - warmup) % interval)


@dataclass
class ReplayResult:
    """Per seed: uncached image and trajectories; per (seed, variant): image and forecast errors."""

    uncached_images: list[np.ndarray]
    # uncached_residuals[seed][branch][step]: the true middle residual of the uncached run.
    uncached_residuals: list[list[list[torch.Tensor]]]
    images: dict[tuple[int, str], np.ndarray] = field(default_factory=dict)
    # errors[(seed, variant)]: relative L1 of every cached step's forecast (both branches).
    errors: dict[tuple[int, str], list[float]] = field(default_factory=dict)

    def psnr(self, seed: int, variant: str) -> float:
        """PSNR (dB, 8-bit images as saved) of a variant's image against the uncached one."""
        ref = np.round(self.uncached_images[seed] * 255).astype(np.float64)
        out = np.round(self.images[(seed, variant)] * 255).astype(np.float64)
        mse = float(np.mean((ref - out) ** 2))
        return 10 * math.log10(255.0**2 / mse) if mse > 0 else float("inf")


def _blocks(transformer) -> list[torch.nn.Module]:
    return list(transformer.transformer_blocks) + list(transformer.single_transformer_blocks)


@torch.no_grad()
def replay(pipe, labels: Sequence[int], seeds: Sequence[int], patterns: Sequence[Pattern],
           variants: dict[str, Callable[[], Calibrator]], fn: int = 1, steps: int = 28,
           guidance: float = 2.5) -> ReplayResult:
    """Closed-loop replay: image ``i`` is class ``labels[i]`` from noise seed ``seeds[i]``,
    cached at ``patterns[i]``; every variant runs on every image (see the module docstring)."""
    if not (len(labels) == len(seeds) == len(patterns)):
        raise ValueError(f"labels, seeds and patterns differ in length: "
                         f"{len(labels)}, {len(seeds)}, {len(patterns)}")
    tr, device = pipe.transformer, pipe._execution_device
    blocks = _blocks(tr)
    if not 1 <= fn < len(blocks):
        raise ValueError(f"fn must be in [1, {len(blocks) - 1}], got {fn}")
    names = ["uncached"] + list(variants)
    rows = [(i, name) for i in range(len(seeds)) for name in names]  # one batch half per branch
    half = len(rows)
    prompt, pooled, neg, neg_pooled = pipe.encode_class_labels([labels[i] for i, _ in rows], 1, device)
    enc_in, pooled_in = torch.cat([prompt, neg]), torch.cat([pooled, neg_pooled])
    noise = [pipe.prepare_latents(1, tr.dtype, device, torch.Generator().manual_seed(seeds[i]))
             for i in range(len(seeds))]
    latents = torch.cat([noise[i] for i, _ in rows])
    calibrators = [[None if n == "uncached" else variants[n]() for (_, n) in rows] for _ in range(2)]
    cached = [[frozenset() if n == "uncached" else patterns[i][b] for (i, n) in rows] for b in range(2)]
    result = ReplayResult([], [[[], []] for _ in seeds])
    for key in rows:
        if key[1] != "uncached":
            result.errors[key] = []
    img_ids = image_position_ids(device=device).to(latents.dtype)
    txt_ids = text_position_ids(enc_in.shape[1], device=device).to(latents.dtype)
    rotary = tr.pos_embed(torch.cat((txt_ids, img_ids), dim=0))
    sigmas = np.linspace(1.0, 1.0 / steps, steps)
    pipe.scheduler.set_timesteps(sigmas=sigmas, device=device)
    pipe.scheduler.set_begin_index(0)
    for step, t in enumerate(pipe.scheduler.timesteps):
        timestep = (t.expand(2 * half).to(latents.dtype) / 1000) * 1000
        hidden = tr.x_embedder(torch.cat([latents, latents]))
        temb = tr.time_text_embed(timestep, pooled_in)
        encoder = tr.context_embedder(enc_in)
        fn_out = None
        for index, block in enumerate(blocks):
            if index == fn:
                fn_out = hidden
            encoder, hidden = block(hidden_states=hidden, encoder_hidden_states=encoder, temb=temb,
                                    image_rotary_emb=rotary, joint_attention_kwargs=None)
        hidden = _stand_in(step, fn_out, hidden, rows, calibrators, cached, result)
        out = tr.proj_out(tr.norm_out(hidden, temb))
        noise_pred = out[half:] + guidance * (out[:half] - out[half:])
        latents = pipe.scheduler.step(noise_pred, t, latents, return_dict=False)[0]
    images = (unpack_images(latents.float()) / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1).numpy()
    for r, (i, name) in enumerate(rows):
        if name == "uncached":
            result.uncached_images.append(images[r])
        else:
            result.images[(i, name)] = images[r]
    return result


def _stand_in(step, fn_out, hidden, rows, calibrators, cached, result) -> torch.Tensor:
    """Feed computed rows' residuals to their calibrators; replace cached rows' middle output."""
    half = len(rows)
    residual = hidden - fn_out
    out = list(hidden.unbind(0))
    for branch in range(2):
        for r, key in enumerate(rows):
            row = branch * half + r
            truth = residual[row:row + 1]
            calibrator = calibrators[branch][r]
            if calibrator is None:
                result.uncached_residuals[key[0]][branch].append(truth.clone())
            elif step in cached[branch][r]:
                forecast = calibrator.approximate(step)
                result.errors[key].append(relative_l1(forecast, truth))
                out[row] = (fn_out[row:row + 1] + forecast)[0]
            else:
                calibrator.update(step, truth.clone())
    return torch.stack(out)


def open_loop_error(trajectory: Sequence[torch.Tensor], cached: frozenset[int],
                    make: Callable[[], Calibrator]) -> list[float]:
    """Relative L1 of a calibrator's forecast at each cached step of one recorded trajectory,
    fed the true features at the computed steps (no error compounding)."""
    calibrator = make()
    errors = []
    for step, truth in enumerate(trajectory):
        if step in cached:
            errors.append(relative_l1(calibrator.approximate(step), truth))
        else:
            calibrator.update(step, truth)
    return errors


@torch.no_grad()
def dbcache_patterns(pipe, labels: Sequence[int], seeds: Sequence[int], steps: int = 28,
                     guidance: float = 2.5, **options) -> list[Pattern]:
    """The cached steps plain DBCache (no calibrator) takes for each image, per CFG branch
    (one entry per branch: two with CFG, one without).

    Plain DBCache takes exactly cache-dit 1.5.3's decisions, so these are the peer's patterns too.
    """
    import cache_dit

    patterns = []
    cache_dit.enable_cache(pipe, **options)
    try:
        for label, seed in zip(labels, seeds):
            pipe([label], num_inference_steps=steps, guidance_scale=guidance, output_type="latent",
                 generator=torch.Generator().manual_seed(seed))
            streams = pipe._cache_dit_session.controllers[0].streams
            patterns.append(tuple(frozenset(streams[b].stats.cached_steps) for b in sorted(streams)))
    finally:
        cache_dit.disable_cache(pipe)
    return patterns


@torch.no_grad()
def replay_hooked(blocks: Sequence[torch.nn.Module], run: Callable[[int, int], torch.Tensor],
                  patterns: Sequence[frozenset[int]], variants: dict[str, Callable[[], Calibrator]],
                  fn: int = 1) -> tuple[list[torch.Tensor], dict[tuple[int, str], torch.Tensor]]:
    """Closed-loop replay on any pipeline with one transformer call per step (no separate CFG).

    ``run(seed, rows)`` must run the pipeline once on ``rows`` copies of seed's initial latents
    and return the final latents. Every block still computes; forward hooks (torch's own API,
    removed afterwards) take the middle's input at ``blocks[fn]`` and replace the hidden output
    of the last block by ``input + forecast`` on each row's cached steps, row 0 staying uncached.
    Returns (uncached latents per seed, {(seed, variant): latents}).
    """
    names = list(variants)
    uncached, outputs = [], {}
    for seed, cached in enumerate(patterns):
        calibrators = [variants[n]() for n in names]
        state = {"step": -1, "inputs": None}

        def take_input(_module, _args, kwargs):
            state["step"] += 1
            state["inputs"] = kwargs["hidden_states"]

        def stand_in(_module, _args, _kwargs, output):
            encoder, hidden = output
            middle_in, step = state["inputs"], state["step"]
            rows = list(hidden.unbind(0))
            for r, calibrator in enumerate(calibrators, start=1):
                if step in cached:
                    rows[r] = (middle_in[r:r + 1] + calibrator.approximate(step))[0]
                else:
                    calibrator.update(step, (hidden[r:r + 1] - middle_in[r:r + 1]).clone())
            return encoder, torch.stack(rows)

        handles = [blocks[fn].register_forward_pre_hook(take_input, with_kwargs=True),
                   blocks[-1].register_forward_hook(stand_in, with_kwargs=True)]
        try:
            final = run(seed, len(names) + 1)
        finally:
            for handle in handles:
                handle.remove()
        uncached.append(final[0:1])
        for r, name in enumerate(names, start=1):
            outputs[(seed, name)] = final[r:r + 1]
    return uncached, outputs
