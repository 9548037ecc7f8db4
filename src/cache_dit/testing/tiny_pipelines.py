"""Tiny, offline, random-init diffusers pipelines for cache-dit tests.

Every factory in :data:`CASES` builds a *real* diffusers pipeline (real transformer, VAE and
scheduler classes) from configs with 2-4 transformer blocks and tiny widths, seeded so the weights
are deterministic, with text encoders skipped: the call kwargs carry ``prompt_embeds`` (and pooled
embeds / masks / negative embeds as the pipeline requires).  Nothing is downloaded.

    case = build("flux_true_cfg")
    out = case.run(seed=0)                      # float tensor (images / frames / latents)
    out2 = case.run(seed=0, num_inference_steps=4)

Metadata on each :class:`TinyCase` (block lists, block count, transformer calls per step, CFG
style, callback support) is checked against forward hooks by the project's ``tests/test_tiny_pipelines.py``;
:func:`observe` does the hooking.  ``python -m cache_dit.testing.tiny_pipelines`` prints the table.
"""

from __future__ import annotations

import copy
import logging
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import diffusers
    from diffusers import DiffusionPipeline

for _name in ("diffusers", "transformers"):
    logging.getLogger(_name).setLevel(logging.ERROR)
diffusers.utils.logging.set_verbosity_error()


# --------------------------------------------------------------------------------------------
# the case object
# --------------------------------------------------------------------------------------------
@dataclass
class TinyCase:
    name: str
    pipe: DiffusionPipeline
    call_kwargs: dict  # everything except generator; num_inference_steps included
    transformer_attrs: tuple[str, ...]  # e.g. ("transformer",) or ("transformer", "transformer_2")
    block_lists: tuple[str, ...]  # attribute names of the ModuleLists on each transformer
    num_blocks: int  # total blocks of ONE transformer (sum over block_lists)
    calls_per_step: int  # transformer forward calls per denoising step (all transformers)
    separate_cfg: bool  # CFG as a second transformer call per step (batch 1 each)
    supports_callback: bool  # __call__ accepts callback_on_step_end
    output_kind: str = "np"  # "np" (decoded pixels) or "latent"
    batch: int = 1  # batch size the transformer sees per call (2 for batched CFG)
    image_tokens: int = 0  # image/video tokens a block sees (hidden_states.shape[1])
    text_len: int = 0  # text tokens a block sees (encoder_hidden_states.shape[1]; 0: none, e.g. DiT)
    extra: dict = field(default_factory=dict)

    @property
    def steps(self) -> int:
        return int(self.call_kwargs["num_inference_steps"])

    @property
    def transformers(self) -> list[torch.nn.Module]:
        return [getattr(self.pipe, a) for a in self.transformer_attrs]

    def expected_calls(self, **overrides) -> dict[str, int]:
        """Forward calls of each transformer in one run with ``call_kwargs`` (+ ``overrides``).

        Wan 2.2 A14B (two experts) does NOT split evenly: ``transformer`` runs while
        t >= boundary_ratio * num_train_timesteps, ``transformer_2`` afterwards (6 + 10 calls at 8 steps)."""
        steps = int({**self.call_kwargs, **overrides}["num_inference_steps"])
        if len(self.transformer_attrs) == 1:
            return {self.transformer_attrs[0]: steps * self.calls_per_step}
        sched = copy.deepcopy(self.pipe.scheduler)
        sched.set_timesteps(steps)
        high = int((sched.timesteps >= self.pipe.config.boundary_ratio * sched.config.num_train_timesteps).sum())
        first, second = self.transformer_attrs
        return {first: high * self.calls_per_step, second: (steps - high) * self.calls_per_step}

    def blocks(self, transformer: torch.nn.Module | None = None) -> list[tuple[str, torch.nn.Module]]:
        """``(qualified_name, block)`` for every block of ``transformer`` (default: the first)."""
        tr = self.transformers[0] if transformer is None else transformer
        return [(f"{bl}.{i}", b) for bl in self.block_lists for i, b in enumerate(getattr(tr, bl))]

    def run(self, seed: int = 0, **overrides) -> torch.Tensor:
        kwargs = {**self.call_kwargs, **overrides}
        with torch.no_grad():
            out = self.pipe(generator=torch.Generator("cpu").manual_seed(seed), return_dict=False, **kwargs)
        return _to_tensor(out[0] if isinstance(out, (tuple, list)) else out)


def _to_tensor(x: Any) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x.detach().float().cpu()
    if isinstance(x, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(x)).float()
    if isinstance(x, (list, tuple)):
        return torch.stack([_to_tensor(v) for v in x])
    raise TypeError(f"cannot turn pipeline output of type {type(x)} into a tensor")


# --------------------------------------------------------------------------------------------
# hooks: what the pipeline really does
# --------------------------------------------------------------------------------------------
def _arg(args: tuple, kwargs: dict, name: str, pos: int):
    x = kwargs.get(name, args[pos] if len(args) > pos else None)
    return x if isinstance(x, torch.Tensor) else None


def observe(case: TinyCase, seed: int = 0, **overrides) -> dict:
    """Run ``case`` once with forward pre-hooks on every transformer and every block.

    Returns a dict with ``output``; ``transformer_calls`` (total) and ``calls_per_attr``; ``batches``
    (hidden_states batch of every transformer call); ``block_calls`` (``"<attr>.<list>.<i>"`` -> calls);
    ``block_seq`` (``"<attr>.<list>"`` -> (hidden_states.shape[1], encoder_hidden_states.shape[1] or None)
    at the first call of the list's first block)."""
    counts: dict[str, int] = {}
    batches: list[int | None] = []
    block_seq: dict[str, tuple] = {}
    handles = []

    def transformer_hook(key: str):
        def hook(_mod, args, kwargs):
            counts[key] += 1
            x = _arg(args, kwargs, "hidden_states", 0)
            batches.append(None if x is None else int(x.shape[0]))

        return hook

    def block_hook(key: str, list_key: str | None):
        def hook(_mod, args, kwargs):
            counts[key] += 1
            if list_key is not None and list_key not in block_seq:
                h, e = _arg(args, kwargs, "hidden_states", 0), _arg(args, kwargs, "encoder_hidden_states", 1)
                block_seq[list_key] = (None if h is None else int(h.shape[1]),
                                       None if e is None or e.dim() != 3 else int(e.shape[1]))

        return hook

    try:
        for attr, tr in zip(case.transformer_attrs, case.transformers):
            counts[attr] = 0
            handles.append(tr.register_forward_pre_hook(transformer_hook(attr), with_kwargs=True))
            for bname, block in case.blocks(tr):
                key = f"{attr}.{bname}"
                counts[key] = 0
                first = f"{attr}.{bname.rsplit('.', 1)[0]}" if bname.endswith(".0") else None
                handles.append(block.register_forward_pre_hook(block_hook(key, first), with_kwargs=True))
        out = case.run(seed, **overrides)
    finally:
        for h in handles:
            h.remove()
    calls_per_attr = {a: counts[a] for a in case.transformer_attrs}
    return {
        "output": out,
        "transformer_calls": sum(calls_per_attr.values()),
        "calls_per_attr": calls_per_attr,
        "batches": batches,
        "block_calls": {k: v for k, v in counts.items() if k not in calls_per_attr},
        "block_seq": block_seq,
    }


# --------------------------------------------------------------------------------------------
# shared helpers
# --------------------------------------------------------------------------------------------
def _rand(*shape: int, seed: int) -> torch.Tensor:
    """Deterministic N(0,1) tensor, independent of the global RNG."""
    return torch.randn(*shape, generator=torch.Generator("cpu").manual_seed(seed))


def _finish(pipe: DiffusionPipeline) -> DiffusionPipeline:
    for comp in pipe.components.values():
        if isinstance(comp, torch.nn.Module):
            comp.eval()
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _make(cls_name: str, **components) -> DiffusionPipeline:
    return _finish(getattr(diffusers, cls_name)(**components))


def _seeded(fn: Callable[[], Any], seed: int = 0) -> Any:
    """``fn()`` under ``torch.manual_seed(seed)``, leaving the caller's global RNG state untouched."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return fn()


def _vae_kl(latent_channels: int = 4, blocks: int = 1, channels: int = 8, **cfg) -> diffusers.AutoencoderKL:
    """Tiny 2D AutoencoderKL; ``blocks`` levels -> vae_scale_factor ``2**(blocks-1)``."""
    return diffusers.AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * blocks,
        up_block_types=("UpDecoderBlock2D",) * blocks,
        block_out_channels=(channels,) * blocks,
        layers_per_block=1,
        latent_channels=latent_channels,
        norm_num_groups=channels // 2,
        sample_size=32,
        mid_block_add_attention=False,
        **cfg,
    )


def _vae_wan(z_dim: int = 4, base_dim: int = 4) -> diffusers.AutoencoderKLWan:
    """Tiny Wan-2.1-style causal video VAE: 8x spatial, 4x temporal compression."""
    return diffusers.AutoencoderKLWan(
        base_dim=base_dim,
        z_dim=z_dim,
        dim_mult=[1, 1, 1, 1],
        num_res_blocks=1,
        temperal_downsample=[False, True, True],
        latents_mean=[0.0] * z_dim,
        latents_std=[1.0] * z_dim,
    )


def _flow(**cfg) -> diffusers.FlowMatchEulerDiscreteScheduler:
    return diffusers.FlowMatchEulerDiscreteScheduler(**cfg)


def _case(name: str, pipe, kwargs, *, block_lists, num_blocks, attrs=("transformer",), calls_per_step=1,
          separate_cfg=False, batch=1, image_tokens, text_len, supports_callback=True, **extra) -> TinyCase:
    return TinyCase(
        name=name, pipe=pipe, call_kwargs=kwargs, transformer_attrs=tuple(attrs), block_lists=tuple(block_lists),
        num_blocks=num_blocks, calls_per_step=calls_per_step, separate_cfg=separate_cfg,
        supports_callback=supports_callback, output_kind=kwargs.get("output_type", "np"), batch=batch,
        image_tokens=image_tokens, text_len=text_len, extra=extra,
    )


# --------------------------------------------------------------------------------------------
# FLUX family: FluxPipeline / FluxFillPipeline / FluxKontextPipeline
# 8x8 latents (1-level VAE, 4 channels) -> 2x2 packing -> 16 image tokens; text: 7 tokens.
# --------------------------------------------------------------------------------------------
_FLUX_TXT_DIM = 32
# FLUX.1's scheduler config (resolution-dependent shift mu, computed by the pipeline)
FLUX_SCHEDULER = dict(shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15, base_image_seq_len=256,
                      max_image_seq_len=4096)
_FLUX_BLOCKS = dict(block_lists=("transformer_blocks", "single_transformer_blocks"), num_blocks=4)


def _flux_components(in_channels: int = 16, out_channels: int | None = None, guidance: bool = True) -> dict:
    def build():
        transformer = diffusers.FluxTransformer2DModel(
            patch_size=1, in_channels=in_channels, out_channels=out_channels, num_layers=2, num_single_layers=2,
            attention_head_dim=16, num_attention_heads=2, joint_attention_dim=_FLUX_TXT_DIM,
            pooled_projection_dim=_FLUX_TXT_DIM, guidance_embeds=guidance, axes_dims_rope=(4, 6, 6),
        )
        vae = _vae_kl(latent_channels=4, scaling_factor=0.3611, shift_factor=0.1159)
        return dict(transformer=transformer, vae=vae, scheduler=_flow(**FLUX_SCHEDULER),
                    text_encoder=None, tokenizer=None, text_encoder_2=None, tokenizer_2=None)

    return _seeded(build)


def _flux_embeds(text_len: int, negative: bool = False) -> dict:
    kw = dict(prompt_embeds=_rand(1, text_len, _FLUX_TXT_DIM, seed=101),
              pooled_prompt_embeds=_rand(1, _FLUX_TXT_DIM, seed=102))
    if negative:
        kw.update(negative_prompt_embeds=_rand(1, text_len, _FLUX_TXT_DIM, seed=103),
                  negative_pooled_prompt_embeds=_rand(1, _FLUX_TXT_DIM, seed=104))
    return kw


def _flux(name="flux", text_len=7, true_cfg=False, size=8) -> TinyCase:
    # default: FLUX.1-dev style (guidance embedding, no CFG); true_cfg: a de-distilled model (no guidance
    # embedding) run with true_cfg_scale > 1 and negative embeds -> two transformer calls per step
    pipe = _make("FluxPipeline", **_flux_components(guidance=not true_cfg))
    kw = dict(height=size, width=size, num_inference_steps=8, output_type="np", guidance_scale=3.5,
              **_flux_embeds(text_len, negative=true_cfg))
    if true_cfg:
        kw["true_cfg_scale"] = 4.0
    return _case(name, pipe, kw, **_FLUX_BLOCKS, calls_per_step=2 if true_cfg else 1, separate_cfg=true_cfg,
                 text_len=text_len, image_tokens=(size // 2) ** 2)


def _flux_fill() -> TinyCase:
    # transformer input = noisy latents (4C) + masked-image latents (4C) + packed mask (4 * vae_scale_factor**2)
    pipe = _make("FluxFillPipeline", **_flux_components(in_channels=16 + 16 + 4, out_channels=16))
    image = torch.linspace(0, 1, 3 * 8 * 8).reshape(1, 3, 8, 8)
    mask = torch.zeros(1, 1, 8, 8)
    mask[..., 2:6, 2:6] = 1.0
    kw = dict(image=image, mask_image=mask, height=8, width=8, num_inference_steps=8, output_type="np",
              guidance_scale=30.0, **_flux_embeds(7))
    return _case("flux_fill", pipe, kw, **_FLUX_BLOCKS, text_len=7, image_tokens=16)


def _flux_kontext(true_cfg: bool = False) -> TinyCase:
    pipe = _make("FluxKontextPipeline", **_flux_components())
    image = torch.linspace(0, 1, 3 * 8 * 8).reshape(1, 3, 8, 8)
    kw = dict(image=image, height=8, width=8, max_area=64, _auto_resize=False, num_inference_steps=8,
              output_type="np", guidance_scale=2.5, **_flux_embeds(7, negative=true_cfg))
    if true_cfg:
        kw["true_cfg_scale"] = 2.0
    # the reference-image latents are appended to the noisy tokens: 16 + 16 image tokens
    return _case("flux_kontext" + ("_true_cfg" if true_cfg else ""), pipe, kw, **_FLUX_BLOCKS,
                 calls_per_step=2 if true_cfg else 1, separate_cfg=true_cfg, text_len=7, image_tokens=32)


# --------------------------------------------------------------------------------------------
# StableDiffusion3Pipeline: batched CFG; the last joint block is context_pre_only
# 16x16 latents (1-level VAE), patch 2 -> 64 image tokens; text: 12 tokens (CLIP 77 + T5 in real life)
# --------------------------------------------------------------------------------------------
def _sd3() -> TinyCase:
    def build():
        transformer = diffusers.SD3Transformer2DModel(
            sample_size=16, patch_size=2, in_channels=4, num_layers=3, attention_head_dim=8, num_attention_heads=4,
            joint_attention_dim=32, caption_projection_dim=32, pooled_projection_dim=32, out_channels=4,
            pos_embed_max_size=16,
        )
        return dict(transformer=transformer, vae=_vae_kl(4, scaling_factor=1.5305, shift_factor=0.0609),
                    scheduler=_flow(shift=3.0), text_encoder=None, tokenizer=None, text_encoder_2=None,
                    tokenizer_2=None, text_encoder_3=None, tokenizer_3=None)

    pipe = _make("StableDiffusion3Pipeline", **_seeded(build))
    kw = dict(height=16, width=16, num_inference_steps=8, guidance_scale=5.0, output_type="np",
              prompt_embeds=_rand(1, 12, 32, seed=201), pooled_prompt_embeds=_rand(1, 32, seed=202),
              negative_prompt_embeds=_rand(1, 12, 32, seed=203), negative_pooled_prompt_embeds=_rand(1, 32, seed=204))
    return _case("sd3", pipe, kw, block_lists=("transformer_blocks",), num_blocks=3, batch=2, text_len=12,
                 image_tokens=64)


# --------------------------------------------------------------------------------------------
# Wan 2.1 / 2.2 (WanPipeline, WanImageToVideoPipeline) and SkyReels-V2: separate CFG (2 calls/step)
# 9 frames of 32x32 -> Wan VAE (8x spatial, 4x temporal) -> 3 x 4x4 latents -> patch (1,2,2) -> 12 tokens;
# text: 10 tokens.
# --------------------------------------------------------------------------------------------
_WAN_TXT_DIM = 32
_WAN_Z = 4
_WAN_BLOCKS = dict(block_lists=("blocks",), num_blocks=2)
_WAN_VIDEO = dict(height=32, width=32, num_frames=9)


def _wan_transformer(cls: str = "WanTransformer3DModel", in_channels: int = _WAN_Z, **cfg):
    return getattr(diffusers, cls)(
        patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12, in_channels=in_channels,
        out_channels=_WAN_Z, text_dim=_WAN_TXT_DIM, freq_dim=32, ffn_dim=32, num_layers=2, rope_max_seq_len=32, **cfg,
    )


def _wan_embeds(text_len: int = 10) -> dict:
    return dict(prompt_embeds=_rand(1, text_len, _WAN_TXT_DIM, seed=301),
                negative_prompt_embeds=_rand(1, text_len, _WAN_TXT_DIM, seed=302))


def _wan(name: str = "wan", text_len: int = 10, two_experts: bool = False) -> TinyCase:
    def build():
        comps = dict(transformer=_wan_transformer(), vae=_vae_wan(_WAN_Z), scheduler=_flow(shift=3.0),
                     text_encoder=None, tokenizer=None)
        if two_experts:  # Wan 2.2 A14B: high-noise expert `transformer`, low-noise expert `transformer_2`
            comps.update(transformer_2=_wan_transformer(), boundary_ratio=0.875)
        return comps

    pipe = _make("WanPipeline", **_seeded(build))
    kw = dict(**_WAN_VIDEO, num_inference_steps=8, guidance_scale=5.0, output_type="np", **_wan_embeds(text_len))
    attrs = ("transformer", "transformer_2") if two_experts else ("transformer",)
    return _case(name, pipe, kw, **_WAN_BLOCKS, attrs=attrs, calls_per_step=2, separate_cfg=True, text_len=text_len,
                 image_tokens=12)


def _pil_image(size: int = 32, seed: int = 0):
    from PIL import Image

    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8))


def _wan_i2v(last_image: bool = False) -> TinyCase:
    """Wan 2.1 I2V / FLF2V: CLIP-vision image tokens through add_k/v in every block; the first (and last)
    frame go through the VAE and are concatenated channel-wise (+4 mask channels)."""
    import transformers

    n_img = 2 if last_image else 1
    clip_tokens = (32 // 8) ** 2 + 1

    def build():
        enc = transformers.CLIPVisionModel(transformers.CLIPVisionConfig(
            hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2, image_size=32,
            patch_size=8, projection_dim=16))
        inner = 2 * 12
        transformer = _wan_transformer(in_channels=2 * _WAN_Z + 4, image_dim=16, added_kv_proj_dim=inner,
                                       pos_embed_seq_len=n_img * clip_tokens if last_image else None)
        return dict(transformer=transformer, vae=_vae_wan(_WAN_Z), scheduler=_flow(shift=3.0), image_encoder=enc,
                    text_encoder=None, tokenizer=None)

    comps = _seeded(build)
    comps["image_processor"] = transformers.CLIPImageProcessor(  # (the PIL backend: no torchvision here)
        size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    pipe = _make("WanImageToVideoPipeline", **comps)
    kw = dict(image=_pil_image(32, 0), **_WAN_VIDEO, num_inference_steps=8, guidance_scale=5.0, output_type="np",
              **_wan_embeds())
    if last_image:
        kw["last_image"] = _pil_image(32, 1)
    return _case("wan_flf2v" if last_image else "wan_i2v", pipe, kw, **_WAN_BLOCKS, calls_per_step=2,
                 separate_cfg=True, text_len=10, image_tokens=12, image_context_tokens=n_img * clip_tokens)


def _skyreels_v2() -> TinyCase:
    def build():
        return dict(transformer=_wan_transformer("SkyReelsV2Transformer3DModel"), vae=_vae_wan(_WAN_Z),
                    scheduler=diffusers.UniPCMultistepScheduler(prediction_type="flow_prediction",
                                                                use_flow_sigmas=True, flow_shift=8.0),
                    text_encoder=None, tokenizer=None)

    pipe = _make("SkyReelsV2Pipeline", **_seeded(build))
    kw = dict(**_WAN_VIDEO, num_inference_steps=8, guidance_scale=6.0, output_type="np", **_wan_embeds())
    return _case("skyreels_v2", pipe, kw, **_WAN_BLOCKS, calls_per_step=2, separate_cfg=True, text_len=10,
                 image_tokens=12)


# --------------------------------------------------------------------------------------------
# CogVideoX 1.0 (sincos pos-embed, DDIM) and 1.5-style (patch_size_t=2 + RoPE, DPM): batched CFG
# 32x32 frames, VAE 8x spatial / 4x temporal -> 4x4 latents, patch 2 -> 4 tokens/latent frame;
# 1.0: 9 frames -> 3 latent frames -> 12 tokens; 1.5: 13 frames -> 4 latent frames / 2 -> 8 tokens. Text 10.
# --------------------------------------------------------------------------------------------
def _vae_cogvideox(latent_channels: int = 4) -> diffusers.AutoencoderKLCogVideoX:
    return diffusers.AutoencoderKLCogVideoX(
        down_block_types=("CogVideoXDownBlock3D",) * 4, up_block_types=("CogVideoXUpBlock3D",) * 4,
        block_out_channels=(8,) * 4, latent_channels=latent_channels, layers_per_block=1, norm_num_groups=2,
        temporal_compression_ratio=4,
    )


def _cogvideox(v15: bool = False) -> TinyCase:
    text_len, frames = 10, (13 if v15 else 9)

    def build():
        transformer = diffusers.CogVideoXTransformer3DModel(
            num_attention_heads=2, attention_head_dim=16, in_channels=4, out_channels=4, time_embed_dim=8,
            text_embed_dim=32, num_layers=2, sample_width=4, sample_height=4, sample_frames=frames, patch_size=2,
            patch_size_t=2 if v15 else None, temporal_compression_ratio=4, max_text_seq_length=text_len,
            use_rotary_positional_embeddings=v15,
        )
        sched = (diffusers.CogVideoXDPMScheduler if v15 else diffusers.CogVideoXDDIMScheduler)(
            timestep_spacing="trailing", prediction_type="v_prediction", rescale_betas_zero_snr=True,
            beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, clip_sample=False,
            set_alpha_to_one=True, snr_shift_scale=1.0 if v15 else 3.0)
        return dict(transformer=transformer, vae=_vae_cogvideox(), scheduler=sched, text_encoder=None, tokenizer=None)

    pipe = _make("CogVideoXPipeline", **_seeded(build))
    kw = dict(height=32, width=32, num_frames=frames, num_inference_steps=8, guidance_scale=6.0, output_type="np",
              prompt_embeds=_rand(1, text_len, 32, seed=401), negative_prompt_embeds=_rand(1, text_len, 32, seed=402))
    return _case("cogvideox15" if v15 else "cogvideox", pipe, kw, block_lists=("transformer_blocks",), num_blocks=2,
                 batch=2, text_len=text_len, image_tokens=8 if v15 else 12)


# --------------------------------------------------------------------------------------------
# QwenImagePipeline: true CFG as a second call; the negative prompt is SHORTER than the positive one
# (as real Qwen-Image embeddings are trimmed per prompt). 64x64 -> Qwen VAE 8x -> 8x8 -> 2x2 packing -> 16
# image tokens; text: 12 (cond) / 5 (uncond) tokens. Output: latents - the tiny random Qwen VAE decodes
# any latents to almost the same image (two seeds differ by 0.4%), which would hide what the transformer does.
# --------------------------------------------------------------------------------------------
def _qwenimage(name: str = "qwenimage", text_len: int = 12, neg_len: int | None = 5, size: int = 64) -> TinyCase:
    def build():
        transformer = diffusers.QwenImageTransformer2DModel(
            patch_size=2, in_channels=16, out_channels=4, num_layers=2, attention_head_dim=16, num_attention_heads=2,
            joint_attention_dim=32, axes_dims_rope=(4, 6, 6))
        vae = diffusers.AutoencoderKLQwenImage(base_dim=4, z_dim=4, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                                               temperal_downsample=[False, True, True], latents_mean=[0.0] * 4,
                                               latents_std=[1.0] * 4)
        sched = _flow(use_dynamic_shifting=True, base_shift=0.5, max_shift=0.9, base_image_seq_len=256,
                      max_image_seq_len=8192, shift_terminal=0.02, time_shift_type="exponential")
        return dict(transformer=transformer, vae=vae, scheduler=sched, text_encoder=None, tokenizer=None)

    pipe = _make("QwenImagePipeline", **_seeded(build))
    kw = dict(height=size, width=size, num_inference_steps=8, output_type="latent",
              prompt_embeds=_rand(1, text_len, 32, seed=501),
              prompt_embeds_mask=torch.ones(1, text_len, dtype=torch.long))
    if neg_len:
        kw.update(true_cfg_scale=4.0, negative_prompt_embeds=_rand(1, neg_len, 32, seed=502),
                  negative_prompt_embeds_mask=torch.ones(1, neg_len, dtype=torch.long))
    return _case(name, pipe, kw, block_lists=("transformer_blocks",), num_blocks=2,
                 calls_per_step=2 if neg_len else 1, separate_cfg=bool(neg_len), text_len=text_len,
                 image_tokens=(size // 16) ** 2, neg_text_len=neg_len)


# --------------------------------------------------------------------------------------------
# HunyuanVideoPipeline: dual-stream + single-stream blocks, guidance-distilled; true CFG = 2nd call.
# 9 frames of 32x32 -> VAE 8x / 4x -> 3 x 4x4 latents, patch 1 -> 48 tokens; text: 12 tokens, 9 valid (mask).
# --------------------------------------------------------------------------------------------
def _hunyuan_video(true_cfg: bool = True) -> TinyCase:
    def build():
        transformer = diffusers.HunyuanVideoTransformer3DModel(
            in_channels=4, out_channels=4, num_attention_heads=2, attention_head_dim=16, num_layers=2,
            num_single_layers=2, num_refiner_layers=1, patch_size=1, patch_size_t=1, text_embed_dim=32,
            pooled_projection_dim=16, rope_axes_dim=(4, 6, 6))
        vae = diffusers.AutoencoderKLHunyuanVideo(
            latent_channels=4, down_block_types=("HunyuanVideoDownBlock3D",) * 4,
            up_block_types=("HunyuanVideoUpBlock3D",) * 4, block_out_channels=(8,) * 4, layers_per_block=1,
            norm_num_groups=4, spatial_compression_ratio=8, temporal_compression_ratio=4, mid_block_add_attention=False)
        return dict(transformer=transformer, vae=vae, scheduler=_flow(shift=7.0), text_encoder=None, tokenizer=None,
                    text_encoder_2=None, tokenizer_2=None)

    pipe = _make("HunyuanVideoPipeline", **_seeded(build))
    mask = torch.ones(1, 12, dtype=torch.long)
    mask[:, 9:] = 0
    kw = dict(height=32, width=32, num_frames=9, num_inference_steps=8, guidance_scale=6.0, output_type="np",
              prompt_embeds=_rand(1, 12, 32, seed=601), pooled_prompt_embeds=_rand(1, 16, seed=602),
              prompt_attention_mask=mask)
    if true_cfg:
        kw.update(true_cfg_scale=3.0, negative_prompt_embeds=_rand(1, 12, 32, seed=603),
                  negative_pooled_prompt_embeds=_rand(1, 16, seed=604), negative_prompt_attention_mask=mask.clone())
    return _case("hunyuan_video" + ("_true_cfg" if true_cfg else ""), pipe, kw,
                 block_lists=("transformer_blocks", "single_transformer_blocks"), num_blocks=4,
                 calls_per_step=2 if true_cfg else 1, separate_cfg=true_cfg, text_len=12, image_tokens=48)


# --------------------------------------------------------------------------------------------
# LTXPipeline: batched CFG, a block returns one tensor. 9 frames of 32x32 -> LTX VAE 8x / 4x -> 3 x 4x4,
# patch 1 -> 48 tokens; text: 12 tokens, 8 valid (mask).
# --------------------------------------------------------------------------------------------
def _ltx() -> TinyCase:
    def build():
        transformer = diffusers.LTXVideoTransformer3DModel(
            in_channels=8, out_channels=8, patch_size=1, patch_size_t=1, num_attention_heads=2, attention_head_dim=8,
            cross_attention_dim=16, num_layers=2, caption_channels=32)
        vae = diffusers.AutoencoderKLLTXVideo(
            latent_channels=8, block_out_channels=(8,) * 4, decoder_block_out_channels=(8,) * 4,
            layers_per_block=(1,) * 5, decoder_layers_per_block=(1,) * 5,
            spatio_temporal_scaling=(True, True, False, False),
            decoder_spatio_temporal_scaling=(True, True, False, False),
            decoder_inject_noise=(False,) * 5, upsample_residual=(False,) * 4, upsample_factor=(1,) * 4,
            timestep_conditioning=False, patch_size=2, patch_size_t=1, encoder_causal=True, decoder_causal=False)
        return dict(transformer=transformer, vae=vae, scheduler=_flow(), text_encoder=None, tokenizer=None)

    pipe = _make("LTXPipeline", **_seeded(build))
    mask = torch.ones(1, 12, dtype=torch.long)
    mask[:, 8:] = 0
    kw = dict(height=32, width=32, num_frames=9, num_inference_steps=8, guidance_scale=3.0, output_type="np",
              prompt_embeds=_rand(1, 12, 32, seed=701), prompt_attention_mask=mask,
              negative_prompt_embeds=_rand(1, 12, 32, seed=702), negative_prompt_attention_mask=mask.clone())
    return _case("ltx", pipe, kw, block_lists=("transformer_blocks",), num_blocks=2, batch=2, text_len=12,
                 image_tokens=48)


# --------------------------------------------------------------------------------------------
# MochiPipeline: batched CFG; blocks return (hidden, encoder); the LAST block is context_pre_only.
# Output: latents (the Mochi VAE needs >= 32 channels per GroupNorm and its decode would triple the call time).
# 7 frames of 32x32 -> Mochi VAE 8x / 6x -> 2 x 4x4 latents, patch 2 -> 8 tokens; text: 12, 10 valid.
# --------------------------------------------------------------------------------------------
def _mochi() -> TinyCase:
    def build():
        transformer = diffusers.MochiTransformer3DModel(
            patch_size=2, num_attention_heads=2, attention_head_dim=8, num_layers=2, pooled_projection_dim=16,
            in_channels=12, text_embed_dim=32, time_embed_dim=4, max_sequence_length=16)
        vae = diffusers.AutoencoderKLMochi(
            latent_channels=12, out_channels=3, encoder_block_out_channels=(32,) * 4,
            decoder_block_out_channels=(32,) * 4, layers_per_block=(1,) * 5)
        return dict(transformer=transformer, vae=vae, scheduler=_flow(invert_sigmas=True), text_encoder=None,
                    tokenizer=None)

    pipe = _make("MochiPipeline", **_seeded(build))
    mask = torch.ones(1, 12, dtype=torch.long)
    mask[:, 10:] = 0
    kw = dict(height=32, width=32, num_frames=7, num_inference_steps=8, guidance_scale=4.5, output_type="latent",
              prompt_embeds=_rand(1, 12, 32, seed=801), prompt_attention_mask=mask,
              negative_prompt_embeds=_rand(1, 12, 32, seed=802), negative_prompt_attention_mask=mask.clone())
    return _case("mochi", pipe, kw, block_lists=("transformer_blocks",), num_blocks=2, batch=2, text_len=12,
                 image_tokens=8)


# --------------------------------------------------------------------------------------------
# CogView3Plus (batched CFG, DDIM) and CogView4 (CFG as a second call, flow matching).
# 16x16 latents (1-level VAE), patch 2 -> 64 image tokens; text: 10 (CogView3) / 16 (CogView4 pads to x16).
# --------------------------------------------------------------------------------------------
def _cogview(v4: bool) -> TinyCase:
    text_len = 16 if v4 else 10

    def build():
        cls = diffusers.CogView4Transformer2DModel if v4 else diffusers.CogView3PlusTransformer2DModel
        extra = dict(rope_axes_dim=(4, 4)) if v4 else {}
        transformer = cls(patch_size=2, in_channels=4, out_channels=4, num_layers=2, attention_head_dim=8,
                          num_attention_heads=2, text_embed_dim=32, time_embed_dim=8, condition_dim=2,
                          pos_embed_max_size=16, sample_size=16, **extra)
        if v4:
            sched = _flow(base_shift=0.25, max_shift=0.75, base_image_seq_len=256, use_dynamic_shifting=True,
                          time_shift_type="linear")
        else:
            sched = diffusers.CogVideoXDDIMScheduler(
                timestep_spacing="trailing", prediction_type="v_prediction", rescale_betas_zero_snr=True,
                beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, clip_sample=False,
                set_alpha_to_one=True, snr_shift_scale=1.0)
        return dict(transformer=transformer, vae=_vae_kl(4), scheduler=sched, text_encoder=None, tokenizer=None)

    pipe = _make("CogView4Pipeline" if v4 else "CogView3PlusPipeline", **_seeded(build))
    kw = dict(height=16, width=16, num_inference_steps=8, guidance_scale=5.0, output_type="np",
              prompt_embeds=_rand(1, text_len, 32, seed=901), negative_prompt_embeds=_rand(1, text_len, 32, seed=902))
    return _case("cogview4" if v4 else "cogview3plus", pipe, kw, block_lists=("transformer_blocks",), num_blocks=2,
                 calls_per_step=2 if v4 else 1, separate_cfg=v4, batch=1 if v4 else 2, text_len=text_len,
                 image_tokens=64)


# --------------------------------------------------------------------------------------------
# Cosmos (1.0 CosmosTextToWorldPipeline, 2.0 Cosmos2TextToImagePipeline): CFG as a second call.
# The pipelines refuse to run without a safety checker (NVIDIA licence; the real one is the
# `cosmos_guardrail` package with its own model downloads). A pass-through stand-in, as in diffusers'
# own tests, keeps the pipeline code path intact. Cosmos-1.0 returns latents: its "np" output round-trips
# through uint8 for the checker, which would hide small differences (and doubles the call time).
# concat_padding_mask=False: the real configs set it True, but that path needs torchvision (not a dependency)
# to resize the padding mask, which these pipelines always pass as zeros; True would only add an
# always-zero input channel to the patch embedding, so False computes the same function.
# --------------------------------------------------------------------------------------------
class PassThroughSafetyChecker(diffusers.ModelMixin, diffusers.ConfigMixin):
    def __init__(self):
        super().__init__()
        self.register_buffer("_device_tracker", torch.zeros(1), persistent=False)  # gives it a device/dtype

    def check_text_safety(self, prompt: str) -> bool:
        return True

    def check_video_safety(self, frames: np.ndarray) -> np.ndarray:
        return frames


def _cosmos_transformer(**cfg):
    return diffusers.CosmosTransformer3DModel(
        in_channels=4, out_channels=4, num_attention_heads=2, attention_head_dim=16, num_layers=2, mlp_ratio=2,
        text_embed_dim=32, adaln_lora_dim=4, max_size=(4, 16, 16), patch_size=(1, 2, 2), **cfg)


def _cosmos() -> TinyCase:
    """Cosmos-1.0 text-to-world: 9 frames of 32x32 -> Cosmos VAE (haar, 4x / 4x) -> 3 x 8x8 -> patch 2 ->
    48 tokens; text 12 tokens."""
    def build():
        vae = diffusers.AutoencoderKLCosmos(
            latent_channels=4, encoder_block_out_channels=(8,) * 4, decode_block_out_channels=(8,) * 4,
            attention_resolutions=(8,), resolution=64, num_layers=1, patch_size=4, patch_type="haar",
            spatial_compression_ratio=4, temporal_compression_ratio=4, latents_mean=None, latents_std=None)
        sched = diffusers.EDMEulerScheduler(sigma_min=0.002, sigma_max=80, sigma_data=0.5, sigma_schedule="karras",
                                            prediction_type="epsilon", rho=7.0, final_sigmas_type="sigma_min")
        return dict(transformer=_cosmos_transformer(rope_scale=(2.0, 1.0, 1.0), concat_padding_mask=False,
                                                    extra_pos_embed_type="learnable"),
                    vae=vae, scheduler=sched, text_encoder=None, tokenizer=None,
                    safety_checker=PassThroughSafetyChecker())

    pipe = _make("CosmosTextToWorldPipeline", **_seeded(build))
    kw = dict(height=32, width=32, num_frames=9, num_inference_steps=8, guidance_scale=7.0, output_type="latent",
              prompt_embeds=_rand(1, 12, 32, seed=1001), negative_prompt_embeds=_rand(1, 12, 32, seed=1002))
    return _case("cosmos", pipe, kw, block_lists=("transformer_blocks",), num_blocks=2, calls_per_step=2,
                 separate_cfg=True, text_len=12, image_tokens=48)


def _cosmos2_t2i() -> TinyCase:
    """Cosmos-2 text-to-image (Wan VAE): 64x64 -> 8x8 -> patch 2 -> 16 tokens; text 12 tokens."""
    def build():
        sched = _flow(use_karras_sigmas=True)
        return dict(transformer=_cosmos_transformer(rope_scale=(1.0, 4.0, 4.0), concat_padding_mask=False,
                                                    extra_pos_embed_type=None),
                    vae=_vae_wan(4), scheduler=sched, text_encoder=None, tokenizer=None,
                    safety_checker=PassThroughSafetyChecker())

    pipe = _make("Cosmos2TextToImagePipeline", **_seeded(build))
    kw = dict(height=64, width=64, num_inference_steps=8, guidance_scale=7.0, output_type="np",
              prompt_embeds=_rand(1, 12, 32, seed=1003), negative_prompt_embeds=_rand(1, 12, 32, seed=1004))
    return _case("cosmos2_t2i", pipe, kw, block_lists=("transformer_blocks",), num_blocks=2, calls_per_step=2,
                 separate_cfg=True, text_len=12, image_tokens=16)


# --------------------------------------------------------------------------------------------
# EasyAnimate (V5.1-style: all blocks MMDiT): batched CFG. 9 frames of 32x32 -> Magvit VAE 8x / 4x ->
# 3 x 4x4 latents, patch 2 -> 12 tokens; text 16 tokens, 14 valid.
# --------------------------------------------------------------------------------------------
def _easyanimate() -> TinyCase:
    def build():
        transformer = diffusers.EasyAnimateTransformer3DModel(
            num_attention_heads=2, attention_head_dim=16, in_channels=4, out_channels=4, time_embed_dim=8,
            text_embed_dim=32, num_layers=2, mmdit_layers=2, sample_width=4, sample_height=4, patch_size=2)
        vae = diffusers.AutoencoderKLMagvit(
            in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(8,) * 4,
            down_block_types=("SpatialDownBlock3D",) + ("SpatialTemporalDownBlock3D",) * 3,
            up_block_types=("SpatialUpBlock3D",) + ("SpatialTemporalUpBlock3D",) * 3,
            layers_per_block=1, norm_num_groups=2, spatial_group_norm=False)
        return dict(transformer=transformer, vae=vae, scheduler=_flow(), text_encoder=None, tokenizer=None)

    pipe = _make("EasyAnimatePipeline", **_seeded(build))
    mask = torch.ones(1, 16, dtype=torch.long)
    mask[:, 14:] = 0
    kw = dict(height=32, width=32, num_frames=9, num_inference_steps=8, guidance_scale=5.0, output_type="np",
              prompt_embeds=_rand(1, 16, 32, seed=1101), prompt_attention_mask=mask,
              negative_prompt_embeds=_rand(1, 16, 32, seed=1102), negative_prompt_attention_mask=mask.clone())
    return _case("easyanimate", pipe, kw, block_lists=("transformer_blocks",), num_blocks=2, batch=2, text_len=16,
                 image_tokens=12)


# --------------------------------------------------------------------------------------------
# AllegroPipeline: batched CFG. Its VAE decodes only through fixed 24-frame tiles with 120/80-pixel
# overlaps ("Decoding without tiling has not been implemented yet"), so this case stops at the latents.
# 9 frames of 32x32 -> 8x / 4x -> 3 x 4x4 latents, patch 2 -> 12 tokens; text 16 tokens, 14 valid.
# --------------------------------------------------------------------------------------------
def _allegro() -> TinyCase:
    def build():
        transformer = diffusers.AllegroTransformer3DModel(
            patch_size=2, patch_size_t=1, num_attention_heads=2, attention_head_dim=12, in_channels=4,
            out_channels=4, num_layers=2, cross_attention_dim=24, sample_height=4, sample_width=4, sample_frames=9,
            caption_channels=32)
        vae = diffusers.AutoencoderKLAllegro(
            down_block_types=("AllegroDownBlock3D",) * 4, up_block_types=("AllegroUpBlock3D",) * 4,
            block_out_channels=(8,) * 4, latent_channels=4, layers_per_block=1, norm_num_groups=2,
            temporal_compression_ratio=4, sample_size=32)
        return dict(transformer=transformer, vae=vae, scheduler=diffusers.EulerAncestralDiscreteScheduler(
            beta_schedule="linear", beta_start=0.0001, beta_end=0.02, timestep_spacing="linspace"),
            text_encoder=None, tokenizer=None)

    pipe = _make("AllegroPipeline", **_seeded(build))
    mask = torch.ones(1, 16, dtype=torch.long)
    mask[:, 14:] = 0
    kw = dict(height=32, width=32, num_frames=9, num_inference_steps=8, guidance_scale=7.5, output_type="latent",
              negative_prompt=None,  # its default "" clashes with negative_prompt_embeds
              prompt_embeds=_rand(1, 16, 32, seed=1201), prompt_attention_mask=mask,
              negative_prompt_embeds=_rand(1, 16, 32, seed=1202), negative_prompt_attention_mask=mask.clone())
    return _case("allegro", pipe, kw, block_lists=("transformer_blocks",), num_blocks=2, batch=2, text_len=16,
                 image_tokens=12)


# --------------------------------------------------------------------------------------------
# PixArt-alpha / PixArt-sigma (batched CFG; old-style `callback`, no callback_on_step_end; learned sigma)
# 16x16 latents (1-level VAE), patch 2 -> 64 tokens; text 12 / 20 tokens (T5: 120 / 300 in real life), 2 padded.
# --------------------------------------------------------------------------------------------
def _pixart(sigma: bool) -> TinyCase:
    text_len = 20 if sigma else 12

    def build():
        transformer = diffusers.PixArtTransformer2DModel(
            sample_size=16, num_layers=2, patch_size=2, attention_head_dim=8, num_attention_heads=3,
            caption_channels=32, in_channels=4, cross_attention_dim=24, out_channels=8, norm_type="ada_norm_single",
            norm_elementwise_affine=False, norm_eps=1e-6, use_additional_conditions=False,  # as PixArt-512
            interpolation_scale=1 if sigma else None)
        sched = diffusers.DPMSolverMultistepScheduler(beta_schedule="linear", beta_start=0.0001, beta_end=0.02)
        return dict(transformer=transformer, vae=_vae_kl(4), scheduler=sched, text_encoder=None, tokenizer=None)

    pipe = _make("PixArtSigmaPipeline" if sigma else "PixArtAlphaPipeline", **_seeded(build, seed=int(sigma)))
    mask = torch.ones(1, text_len, dtype=torch.long)
    mask[:, text_len - 2:] = 0
    kw = dict(height=16, width=16, num_inference_steps=8, guidance_scale=4.5, output_type="np",
              use_resolution_binning=False, negative_prompt=None,  # its default "" clashes with the embeds
              prompt_embeds=_rand(1, text_len, 32, seed=1301), prompt_attention_mask=mask,
              negative_prompt_embeds=_rand(1, text_len, 32, seed=1302), negative_prompt_attention_mask=mask.clone())
    return _case("pixart_sigma" if sigma else "pixart_alpha", pipe, kw, block_lists=("transformer_blocks",),
                 num_blocks=2, batch=2, text_len=text_len, supports_callback=False, image_tokens=64)


# --------------------------------------------------------------------------------------------
# DiTPipeline: class-conditional (no text), batched CFG with the null class; no callback_on_step_end.
# 16x16 latents (1-level VAE), patch 4 -> 16 tokens.
# --------------------------------------------------------------------------------------------
def _dit() -> TinyCase:
    def build():
        transformer = diffusers.DiTTransformer2DModel(
            sample_size=16, num_layers=2, patch_size=4, attention_head_dim=8, num_attention_heads=2, in_channels=4,
            out_channels=8, norm_type="ada_norm_zero", norm_elementwise_affine=False, num_embeds_ada_norm=1000)
        sched = diffusers.DPMSolverMultistepScheduler(beta_schedule="linear", beta_start=0.0001, beta_end=0.02)
        return dict(transformer=transformer, vae=_vae_kl(4), scheduler=sched, id2label={0: "tench", 1: "goldfish"})

    pipe = _make("DiTPipeline", **_seeded(build))
    kw = dict(class_labels=[1], guidance_scale=4.0, num_inference_steps=8, output_type="np")
    return _case("dit", pipe, kw, block_lists=("transformer_blocks",), num_blocks=2, batch=2, text_len=0,
                 supports_callback=False, image_tokens=16)


# --------------------------------------------------------------------------------------------
# registry
# --------------------------------------------------------------------------------------------
CASES: dict[str, Callable[[], TinyCase]] = {
    "flux": lambda: _flux("flux"),  # guidance-distilled (FLUX.1-dev style), 1 call/step
    "flux_true_cfg": lambda: _flux("flux_true_cfg", true_cfg=True),  # true_cfg_scale>1 + negative embeds
    "flux_same_len": lambda: _flux("flux_same_len", text_len=16),  # 16 text tokens == 16 image tokens
    "flux_fill": _flux_fill,
    "flux_kontext": _flux_kontext,
    "flux_kontext_true_cfg": lambda: _flux_kontext(true_cfg=True),
    "sd3": _sd3,
    "wan": _wan,  # Wan 2.1 T2V
    "wan22": lambda: _wan("wan22", two_experts=True),  # Wan 2.2 A14B: transformer + transformer_2
    "wan_i2v": _wan_i2v,
    "wan_flf2v": lambda: _wan_i2v(last_image=True),
    "skyreels_v2": _skyreels_v2,
    "cogvideox": _cogvideox,  # 1.0
    "cogvideox15": lambda: _cogvideox(v15=True),  # 1.5: patch_size_t=2, RoPE
    "qwenimage": _qwenimage,  # true CFG, 12-token prompt vs 5-token negative
    "qwenimage_no_cfg": lambda: _qwenimage("qwenimage_no_cfg", neg_len=None),
    "hunyuan_video_true_cfg": _hunyuan_video,
    "hunyuan_video": lambda: _hunyuan_video(true_cfg=False),
    "ltx": _ltx,
    "mochi": _mochi,
    "cogview3plus": lambda: _cogview(v4=False),
    "cogview4": lambda: _cogview(v4=True),
    "cosmos": _cosmos,  # CosmosTextToWorldPipeline
    "cosmos2_t2i": _cosmos2_t2i,  # Cosmos2TextToImagePipeline
    "easyanimate": _easyanimate,
    "allegro": _allegro,
    "pixart_alpha": lambda: _pixart(sigma=False),
    "pixart_sigma": lambda: _pixart(sigma=True),
    "dit": _dit,
}


def build(name: str) -> TinyCase:
    """Build a fresh case (new pipeline, same deterministic weights every time)."""
    try:
        factory = CASES[name]
    except KeyError:
        raise KeyError(f"unknown tiny case {name!r}; known: {sorted(CASES)}") from None
    return factory()


def _report(names: list[str]) -> None:  # python -m cache_dit.testing.tiny_pipelines [names...]
    torch.set_num_threads(1)
    print(f"{'case':24s} {'lists':45s} {'blk':>3s} {'c/st':>4s} {'cfg':>8s} {'cb':>2s} {'out':>6s} "
          f"{'img/txt':>7s} {'build':>6s} {'call':>6s} {'latent':>6s}  observed")
    for name in names:
        t0 = time.perf_counter()
        case = build(name)
        t1 = time.perf_counter()
        obs = observe(case)
        t2 = time.perf_counter()
        case.run(0, output_type="latent") if name != "dit" else None
        t3 = time.perf_counter()
        cfg = "separate" if case.separate_cfg else ("batched" if case.batch == 2 else "off")
        per_step = obs["transformer_calls"] / case.steps
        print(f"{name:24s} {'+'.join(case.block_lists):45s} {case.num_blocks:3d} {case.calls_per_step:4d} {cfg:>8s} "
              f"{'y' if case.supports_callback else 'n':>2s} {case.output_kind:>6s} "
              f"{f'{case.image_tokens}/{case.text_len}':>7s} {t1 - t0:6.2f} {t2 - t1:6.3f} {t3 - t2:6.3f}  "
              f"calls/step={per_step:g} batch={sorted(set(obs['batches']))} seq={obs['block_seq']}")


if __name__ == "__main__":
    import sys

    _report(sys.argv[1:] or list(CASES))
