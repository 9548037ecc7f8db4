"""A small random-init FluxPipeline with more blocks than the zoo's (2 double + 4 single), so
Fn/middle/Bn roles can all be exercised. Built offline from configs."""

from __future__ import annotations

import torch
from diffusers import (AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxPipeline,
                       FluxTransformer2DModel)

TEXT_DIM = 32
BLOCK_LISTS = ("transformer_blocks", "single_transformer_blocks")


def make_flux(double: int = 2, single: int = 4, seed: int = 0) -> FluxPipeline:
    torch.manual_seed(seed)
    transformer = FluxTransformer2DModel(
        patch_size=1, in_channels=16, num_layers=double, num_single_layers=single,
        attention_head_dim=16, num_attention_heads=2, joint_attention_dim=TEXT_DIM,
        pooled_projection_dim=TEXT_DIM, axes_dims_rope=[4, 6, 6],
    ).eval()
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, down_block_types=["DownEncoderBlock2D"],
        up_block_types=["UpDecoderBlock2D"], block_out_channels=[8], layers_per_block=1,
        latent_channels=4, norm_num_groups=4, use_quant_conv=False, use_post_quant_conv=False,
        shift_factor=0.0, scaling_factor=1.0,
    ).eval()
    pipe = FluxPipeline(scheduler=FlowMatchEulerDiscreteScheduler(), vae=vae, text_encoder=None,
                        tokenizer=None, text_encoder_2=None, tokenizer_2=None,
                        transformer=transformer)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def embeds(batch: int = 1, text_len: int = 7, seed: int = 1) -> dict:
    gen = torch.Generator().manual_seed(seed)
    return dict(prompt_embeds=torch.randn(batch, text_len, TEXT_DIM, generator=gen),
                pooled_prompt_embeds=torch.randn(batch, TEXT_DIM, generator=gen))


def run(pipe: FluxPipeline, seed: int = 0, steps: int = 12, size: int = 32, batch: int = 1,
        **kwargs) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        return pipe(height=size, width=size, num_inference_steps=steps, generator=gen,
                    output_type="latent", **embeds(batch), **kwargs).images
