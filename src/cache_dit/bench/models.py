"""Models the benchmark can run: the trained reference and a medium random-weight FLUX.

Each :class:`BenchModel` owns its pipeline and knows how to make one batch of images for a seed,
so the runner can treat them alike.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch

__all__ = ["BenchModel", "build_model", "MODELS", "build_medium_flux_pipeline"]


@dataclass
class BenchModel:
    name: str
    pipe: Any
    transformer: torch.nn.Module
    block_lists: tuple[str, ...]
    steps: int
    call_kwargs: dict[str, Any]
    default_configs: list[str]
    notes: list[str] = field(default_factory=list)
    output_kind: str = "images"  # "images": NHWC in [0, 1]; "latents": NHWC latent displacement
    latent_shape: tuple[int, ...] = ()  # packed initial latents, for output_kind "latents"

    def generate(self, seed: int, **overrides) -> np.ndarray:
        """Images (NHWC float in [0, 1]) or spatial latents (NHWC) for this seed."""
        kwargs = {**self.call_kwargs, "num_inference_steps": self.steps, **overrides}
        if self.output_kind == "images":
            with torch.no_grad():
                out = self.pipe(generator=torch.Generator("cpu").manual_seed(seed),
                                output_type="np", **kwargs)
            return np.clip(np.asarray(out.images, dtype=np.float32), 0.0, 1.0)
        # Latents: what the transformer moved them by (final - initial noise), as (N, h, w, C).
        # The initial noise dominates the final latents of a random model, so comparing final
        # latents would hide the cache's error.
        noise = torch.randn(self.latent_shape, generator=torch.Generator("cpu").manual_seed(seed))
        with torch.no_grad():
            out = self.pipe(latents=noise, output_type="latent", **kwargs)
        moved = (out.images.float() - noise)
        side = int(round(moved.shape[1] ** 0.5))
        return moved.reshape(moved.shape[0], side, side, -1).numpy()

    @property
    def num_blocks(self) -> int:
        return sum(len(getattr(self.transformer, name)) for name in self.block_lists)


def _reference_model(variant: str, share: int, steps: int | None, samples: int) -> BenchModel:
    from ..reference import FASHION_MNIST_CLASSES, FashionFluxPipeline

    pipe = FashionFluxPipeline.from_reference(variant)
    pipe.set_progress_bar_config(disable=True)
    labels = [i % len(FASHION_MNIST_CLASSES) for i in range(samples)]
    transformer = pipe.transformer
    num_double, num_single = len(transformer.transformer_blocks), len(transformer.single_transformer_blocks)
    # The defaults (F1B0 R0.08; F8B0 R0.12; F1B0 R0.12 + TaylorSeer; F8B8 R0.15) are for
    # FLUX-sized chains; F8/B8 become F<share>/B<share> (F2/B2 on the 6-block model, F3/B3 on the
    # 16-block one: 8/57 of 16 blocks, rounded up).
    return BenchModel(
        name="reference" if variant == "base" else f"{variant}-reference",
        pipe=pipe,
        transformer=transformer,
        block_lists=("transformer_blocks", "single_transformer_blocks"),
        steps=steps or 28,
        call_kwargs={"class_labels": labels},
        default_configs=["F1B0_R0.08", f"F{share}B0_R0.12", "F1B0_R0.12_T1O2", f"F{share}B{share}_R0.15"],
        notes=[f"{'' if variant == 'base' else variant + ' '}reference model: {num_double} double + {num_single} single blocks; "
               f"F8->F{share}, B8->B{share} in default configs"],
    )


def _reference(steps: int | None, samples: int) -> BenchModel:
    return _reference_model("base", 2, steps, samples)


def _deep_reference(steps: int | None, samples: int) -> BenchModel:
    return _reference_model("deep", 3, steps, samples)


def build_medium_flux_pipeline(
    num_double: int = 8, num_single: int = 16, heads: int = 4, head_dim: int = 64,
    in_channels: int = 64, text_len: int = 64, text_dim: int = 256, damp_timestep: float = 0.1,
    seed: int = 0,
):
    """Random-init FluxPipeline (FLUX.1-dev layout) sized so blocks dominate CPU time.

    Random weights react to the timestep far more than trained ones (first-block residual changes
    of 20-50% per step, vs. a few % on FLUX.1-dev); scaling the timestep embedder's last Linear by
    ``damp_timestep`` brings the change to 1-7%, where real thresholds behave as on real models.
    Returns ``(pipe, prompt kwargs)``.
    """
    from diffusers import (AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxPipeline,
                           FluxTransformer2DModel)

    torch.manual_seed(seed)
    third = 3 * head_dim // 8
    transformer = FluxTransformer2DModel(
        patch_size=1, in_channels=in_channels, num_layers=num_double, num_single_layers=num_single,
        attention_head_dim=head_dim, num_attention_heads=heads, joint_attention_dim=text_dim,
        pooled_projection_dim=text_dim, guidance_embeds=True,
        axes_dims_rope=(head_dim - 2 * third, third, third),
    ).eval()
    with torch.no_grad():
        last = transformer.time_text_embed.timestep_embedder.linear_2
        last.weight.mul_(damp_timestep)
        last.bias.mul_(damp_timestep)
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, down_block_types=["DownEncoderBlock2D"],
        up_block_types=["UpDecoderBlock2D"], block_out_channels=[8], layers_per_block=1,
        latent_channels=in_channels // 4, norm_num_groups=4, scaling_factor=0.3611,
        shift_factor=0.1159,
    ).eval()
    pipe = FluxPipeline(scheduler=FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=True),
                        vae=vae, text_encoder=None, tokenizer=None, text_encoder_2=None,
                        tokenizer_2=None, transformer=transformer)
    pipe.set_progress_bar_config(disable=True)
    gen = torch.Generator().manual_seed(seed + 101)
    prompt = {"prompt_embeds": torch.randn(1, text_len, text_dim, generator=gen),
              "pooled_prompt_embeds": torch.randn(1, text_dim, generator=gen)}
    return pipe, prompt


def _medium_flux(steps: int | None, samples: int) -> BenchModel:
    pipe, prompt = build_medium_flux_pipeline()
    return BenchModel(
        name="medium-flux",
        pipe=pipe,
        transformer=pipe.transformer,
        block_lists=("transformer_blocks", "single_transformer_blocks"),
        steps=steps or 28,
        call_kwargs={**prompt, "height": 48, "width": 48, "guidance_scale": 3.5,
                     "num_images_per_prompt": samples},  # latents for all samples: latent_shape
        default_configs=["F1B0_R0.08", "F8B0_R0.12", "F1B0_R0.12_T1O2", "F8B8_R0.15"],
        notes=["medium-flux: random weights (timestep embedding damped x0.1), 8 double + 16 "
               "single blocks, inner dim 256, 48x48 latents. Its random VAE would hide "
               "differences, so PSNR/SSIM compare how far the transformer moved the latents "
               "(final - initial noise; range = the uncached move's peak-to-peak); no LPIPS"],
        output_kind="latents",
        latent_shape=(samples, 24 * 24, 64),
    )


MODELS: dict[str, Callable[[int | None, int], BenchModel]] = {
    "reference": _reference,
    "deep-reference": _deep_reference,
    "medium-flux": _medium_flux,
}


def build_model(name: str, steps: int | None = None, samples: int = 10) -> BenchModel:
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose from {sorted(MODELS)}")
    return MODELS[name](steps, samples)
