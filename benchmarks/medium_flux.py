"""A medium-size random-init FLUX pipeline for CPU cache benchmarks.

Big enough that the transformer dominates the step time (about half a second of one CPU thread per step
at the defaults), small enough to run 28 steps in well under a minute.  A freshly initialised FLUX model
reacts far more strongly to the timestep than a trained one: the first block's residual changes by 20-50%
from step to step, where a trained FLUX.1-dev changes by a few percent - and the caches under test key
on exactly that change.  ``damp_timestep`` scales the timestep embedder's last Linear (weight and bias),
which brings the step-to-step change down into the trained-model range.

    import sys; sys.path.insert(0, "benchmarks")
    from medium_flux import build_medium_flux
    case = build_medium_flux()
    latents = case.run(seed=0)

``python benchmarks/medium_flux.py`` prints the residual-change profile and the CPU time per step.
"""

from __future__ import annotations

import importlib.util
import statistics
import sys
import time
from pathlib import Path

import diffusers
import torch

_TESTS = Path(__file__).resolve().parent.parent / "tests"


def _tiny_pipelines():
    """tests/tiny_pipelines.py, imported once under its plain name (so TinyCase is one class everywhere)."""
    if "tiny_pipelines" in sys.modules:
        return sys.modules["tiny_pipelines"]
    spec = importlib.util.spec_from_file_location("tiny_pipelines", _TESTS / "tiny_pipelines.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["tiny_pipelines"] = module
    spec.loader.exec_module(module)
    return module


tp = _tiny_pipelines()
TinyCase = tp.TinyCase


def build_medium_flux(
    num_double: int = 8,
    num_single: int = 16,
    heads: int = 4,
    head_dim: int = 64,
    in_channels: int = 64,
    height: int = 48,
    width: int = 48,
    steps: int = 28,
    damp_timestep: float = 0.1,
    text_len: int = 64,
    text_dim: int = 256,
    seed: int = 0,
) -> TinyCase:
    """Random-init FluxPipeline (FLUX.1-dev layout: guidance-embedded, one transformer call per step).

    ``height``/``width`` are pixels of a 1-level VAE (scale factor 1), i.e. latent size; 2x2 packing gives
    ``height * width / 4`` image tokens (576 at the defaults) next to ``text_len`` text tokens.
    ``in_channels`` is the packed channel count (4 x the VAE's latent channels).  Output: latents."""
    if in_channels % 4:
        raise ValueError("in_channels is the packed latent width: 4 x VAE latent channels")
    if head_dim % 4:
        raise ValueError("head_dim must split into the three RoPE axes")
    axes = (head_dim // 4, 3 * head_dim // 8, 3 * head_dim // 8)
    axes = (head_dim - 2 * axes[1], axes[1], axes[2])

    def make():
        transformer = diffusers.FluxTransformer2DModel(
            patch_size=1, in_channels=in_channels, num_layers=num_double, num_single_layers=num_single,
            attention_head_dim=head_dim, num_attention_heads=heads, joint_attention_dim=text_dim,
            pooled_projection_dim=text_dim, guidance_embeds=True, axes_dims_rope=axes,
        )
        vae = tp._vae_kl(latent_channels=in_channels // 4, scaling_factor=0.3611, shift_factor=0.1159)
        return dict(transformer=transformer, vae=vae, scheduler=tp._flow(**tp.FLUX_SCHEDULER),
                    text_encoder=None, tokenizer=None, text_encoder_2=None, tokenizer_2=None)

    components = tp._seeded(make, seed)
    with torch.no_grad():
        last = components["transformer"].time_text_embed.timestep_embedder.linear_2
        last.weight.mul_(damp_timestep)
        last.bias.mul_(damp_timestep)
    pipe = tp._make("FluxPipeline", **components)
    kw = dict(height=height, width=width, num_inference_steps=steps, guidance_scale=3.5, output_type="latent",
              prompt_embeds=tp._rand(1, text_len, text_dim, seed=seed + 101),
              pooled_prompt_embeds=tp._rand(1, text_dim, seed=seed + 102))
    return tp._case(
        "medium_flux", pipe, kw, block_lists=("transformer_blocks", "single_transformer_blocks"),
        num_blocks=num_double + num_single, calls_per_step=1, image_tokens=(height // 2) * (width // 2),
        text_len=text_len, damp_timestep=damp_timestep,
    )


def first_block_residual_changes(case: TinyCase, seed: int = 0) -> list[float]:
    """Relative L1 change of the first block's hidden-states residual between consecutive steps:
    mean|r_t - r_{t-1}| / mean|r_{t-1}|, with r = block output - block input (image stream)."""
    residuals: list[torch.Tensor] = []
    block = case.transformers[0].transformer_blocks[0]

    def hook(_mod, args, kwargs, out):
        hidden_in = kwargs.get("hidden_states", args[0] if args else None)
        residuals.append((out[1] - hidden_in).detach().clone())  # FluxTransformerBlock -> (encoder, hidden)

    handle = block.register_forward_hook(hook, with_kwargs=True)
    try:
        case.run(seed)
    finally:
        handle.remove()
    return [((b - a).abs().mean() / a.abs().mean()).item() for a, b in zip(residuals, residuals[1:])]


def cpu_seconds_per_step(case: TinyCase, seed: int = 0) -> tuple[float, float]:
    """(process CPU s, wall s) per denoising step of one full call, on the current thread setting."""
    c0, w0 = time.process_time(), time.perf_counter()
    case.run(seed)
    return (time.process_time() - c0) / case.steps, (time.perf_counter() - w0) / case.steps


def main() -> None:
    torch.set_num_threads(1)
    for damp in (1.0, 0.1):
        case = build_medium_flux(damp_timestep=damp)
        changes = first_block_residual_changes(case)
        print(f"damp_timestep={damp}: first-block residual rel-L1 change over {len(changes)} step pairs: "
              f"mean {statistics.mean(changes):.3f} median {statistics.median(changes):.3f} "
              f"min {min(changes):.3f} max {max(changes):.3f}")
        print("  per step:", " ".join(f"{c:.3f}" for c in changes))
    cpu, wall = cpu_seconds_per_step(case)
    n_params = sum(p.numel() for p in case.transformers[0].parameters())
    print(f"transformer {n_params / 1e6:.1f}M params, {case.image_tokens} image + {case.text_len} text tokens; "
          f"1 thread: {cpu:.3f} CPU s/step, {wall:.3f} wall s/step")


if __name__ == "__main__":
    main()
