"""Diagnostics of the medium random-weight FLUX used by the benchmarks.

A freshly initialised FLUX reacts far more strongly to the timestep than a trained one: its first
block's residual changes by 20-50% from step to step, where FLUX.1-dev changes by a few percent,
and the caches under test key on exactly that change. ``damp_timestep`` (see
``cache_dit.bench.models.build_medium_flux_pipeline``) scales the timestep embedder's last Linear,
bringing the change into the trained-model range. This script prints that profile and the CPU
time per step:

    .venv/bin/python benchmarks/medium_flux.py
"""

from __future__ import annotations

import statistics
import time

import torch

from cache_dit.bench.models import build_medium_flux_pipeline

STEPS = 28


def _call(pipe, prompt, seed: int = 0):
    with torch.no_grad():
        return pipe(height=48, width=48, num_inference_steps=STEPS, guidance_scale=3.5,
                    output_type="latent", generator=torch.Generator().manual_seed(seed), **prompt)


def first_block_residual_changes(damp_timestep: float) -> list[float]:
    """mean|r_t - r_{t-1}| / mean|r_{t-1}| of the first block's image-stream residual."""
    pipe, prompt = build_medium_flux_pipeline(damp_timestep=damp_timestep)
    residuals: list[torch.Tensor] = []

    def hook(_module, _args, kwargs, out):  # FluxTransformerBlock returns (encoder, hidden)
        residuals.append(out[1] - kwargs["hidden_states"])

    handle = pipe.transformer.transformer_blocks[0].register_forward_hook(hook, with_kwargs=True)
    _call(pipe, prompt)
    handle.remove()
    return [((b - a).abs().mean() / a.abs().mean()).item() for a, b in zip(residuals, residuals[1:])]


def main() -> None:
    torch.set_num_threads(1)
    for damp in (1.0, 0.1):
        changes = first_block_residual_changes(damp)
        print(f"damp_timestep={damp}: first-block residual change over {len(changes)} step pairs: "
              f"mean {statistics.mean(changes):.3f}, min {min(changes):.3f}, max {max(changes):.3f}")
    pipe, prompt = build_medium_flux_pipeline()
    start = time.process_time()
    _call(pipe, prompt)
    params = sum(p.numel() for p in pipe.transformer.parameters()) / 1e6
    print(f"transformer {params:.1f}M params, 576 image + 64 text tokens: "
          f"{(time.process_time() - start) / STEPS:.3f} CPU s/step on 1 thread")


if __name__ == "__main__":
    main()
