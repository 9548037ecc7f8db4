"""Architecture of the Fashion-MNIST reference model.

The reference model is a deliberately tiny `FluxTransformer2DModel` (double- and single-stream blocks, so it
runs the same code path as FLUX.1) that denoises 28x28 grey images in pixel space. Images are cut into 4x4 patches
and packed into a token sequence the way FLUX packs its latents; the class label plays the role of the prompt.
Everything here is shared by the training script and the pipeline so both agree on the layout.
"""

from __future__ import annotations

from typing import Any

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

FASHION_MNIST_CLASSES: tuple[str, ...] = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
"""Fashion-MNIST class names, indexed by label id."""

IMAGE_SIZE = 28
PATCH_SIZE = 4
IMAGE_CHANNELS = 1
NUM_CLASS_TOKENS = 4
TOKEN_DIM = 64


REFERENCE_VARIANTS: tuple[str, ...] = ("base", "deep")
"""Trained reference models: "base" (2 double + 4 single blocks) and "deep" (4 double + 12 single, narrower)."""


def check_variant(variant: str) -> str:
    """Return `variant` if it names a reference model, else raise naming the allowed ones."""
    if variant not in REFERENCE_VARIANTS:
        allowed = ", ".join(repr(name) for name in REFERENCE_VARIANTS)
        raise ValueError(f"Unknown reference model variant {variant!r}; allowed variants are {allowed}.")
    return variant


def reference_transformer_config(variant: str = "base") -> dict[str, Any]:
    """Keyword arguments of the reference `FluxTransformer2DModel` of `variant`.

    "base" (about 2.3M parameters): two double-stream and four single-stream blocks keep both FLUX block kinds in
    play while a CPU can still train it in minutes. "deep" (about 1.4M): 4 double + 12 single blocks at half the
    width (2 heads x 32), so a one-block probe is 1/16 of the chain instead of 1/6, as on real DiTs, at a training
    step cost the CPU can still afford. `patch_size` stays 1 because the packing into 4x4 pixel patches happens
    outside the model, exactly as FLUX packs 2x2 latent patches outside the transformer.
    """
    config = {
        "patch_size": 1,
        "in_channels": IMAGE_CHANNELS * PATCH_SIZE * PATCH_SIZE,
        "out_channels": None,
        "num_layers": 2,
        "num_single_layers": 4,
        "attention_head_dim": 32,
        "num_attention_heads": 4,
        "joint_attention_dim": TOKEN_DIM,
        "pooled_projection_dim": TOKEN_DIM,
        "guidance_embeds": False,
        "axes_dims_rope": (8, 12, 12),
    }
    if check_variant(variant) == "deep":
        config.update(num_layers=4, num_single_layers=12, num_attention_heads=2)
    return config


def reference_label_embedder_config() -> dict[str, Any]:
    """Keyword arguments of the reference `ClassLabelEmbedder`."""
    return {
        "num_classes": len(FASHION_MNIST_CLASSES),
        "num_tokens": NUM_CLASS_TOKENS,
        "token_dim": TOKEN_DIM,
        "pooled_dim": TOKEN_DIM,
    }


class ClassLabelEmbedder(ModelMixin, ConfigMixin):
    """Turns class ids into FLUX "prompt" inputs: a short token sequence and a pooled vector.

    It stands in for FLUX's text encoders. Id `num_classes` is the learned null class that the model sees when the
    label is dropped in training, so classifier-free guidance has an unconditional branch to call.
    """

    @register_to_config
    def __init__(self, num_classes: int = 10, num_tokens: int = 4, token_dim: int = 64, pooled_dim: int = 64):
        super().__init__()
        self.token_embedding = nn.Embedding(num_classes + 1, num_tokens * token_dim)
        self.pooled_embedding = nn.Embedding(num_classes + 1, pooled_dim)
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        nn.init.normal_(self.pooled_embedding.weight, std=0.02)

    @property
    def null_class_id(self) -> int:
        """Id of the unconditional ("empty prompt") class."""
        return self.config.num_classes

    def forward(self, class_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return `(encoder_hidden_states [B, num_tokens, token_dim], pooled_projections [B, pooled_dim])`."""
        tokens = self.token_embedding(class_ids).view(-1, self.config.num_tokens, self.config.token_dim)
        return tokens, self.pooled_embedding(class_ids)


def build_reference_transformer(variant: str = "base") -> "FluxTransformer2DModel":  # noqa: F821 - lazy import
    """A freshly initialised reference transformer of `variant` with a zero output projection.

    Zeroing `proj_out` makes the untrained model predict zero velocity, which keeps the first training steps stable.
    """
    from diffusers import FluxTransformer2DModel

    transformer = FluxTransformer2DModel(**reference_transformer_config(variant))
    nn.init.zeros_(transformer.proj_out.weight)
    nn.init.zeros_(transformer.proj_out.bias)
    return transformer


def pack_images(images: torch.Tensor, patch_size: int = PATCH_SIZE) -> torch.Tensor:
    """[B, C, H, W] pixels -> [B, (H/p)*(W/p), C*p*p] tokens, row-major over patches like FLUX's `_pack_latents`."""
    batch, channels, height, width = images.shape
    tokens = images.view(batch, channels, height // patch_size, patch_size, width // patch_size, patch_size)
    tokens = tokens.permute(0, 2, 4, 1, 3, 5)
    return tokens.reshape(batch, (height // patch_size) * (width // patch_size), channels * patch_size * patch_size)


def unpack_images(
    tokens: torch.Tensor, height: int = IMAGE_SIZE, width: int = IMAGE_SIZE, patch_size: int = PATCH_SIZE
) -> torch.Tensor:
    """Inverse of `pack_images`."""
    batch, _, packed_channels = tokens.shape
    channels = packed_channels // (patch_size * patch_size)
    images = tokens.view(batch, height // patch_size, width // patch_size, channels, patch_size, patch_size)
    images = images.permute(0, 3, 1, 4, 2, 5)
    return images.reshape(batch, channels, height, width)


def image_position_ids(
    height: int = IMAGE_SIZE, width: int = IMAGE_SIZE, patch_size: int = PATCH_SIZE, device: torch.device | None = None
) -> torch.Tensor:
    """[num_patches, 3] rotary position ids `(0, row, col)` for the packed image tokens, as FLUX builds them."""
    rows, cols = height // patch_size, width // patch_size
    ids = torch.zeros(rows, cols, 3, device=device)
    ids[..., 1] = torch.arange(rows, device=device)[:, None]
    ids[..., 2] = torch.arange(cols, device=device)[None, :]
    return ids.reshape(rows * cols, 3)


def text_position_ids(num_tokens: int = NUM_CLASS_TOKENS, device: torch.device | None = None) -> torch.Tensor:
    """[num_tokens, 3] all-zero position ids for the class tokens, like FLUX's text ids."""
    return torch.zeros(num_tokens, 3, device=device)
