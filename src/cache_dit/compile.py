"""torch.compile settings for cached transformers with changing input shapes."""

from __future__ import annotations

import torch

__all__ = ["set_compile_configs"]


def set_compile_configs(recompile_limit: int = 96, accumulated_recompile_limit: int = 2048) -> None:
    """Raise dynamo's recompile limits.

    A cached transformer has a few more guarded variants than a plain one (computed vs. cached
    steps, per block), and each new resolution or batch size adds more. With the default limit
    (8) dynamo can give up and run a frame eagerly; call this once before compiling when the
    pipeline will see several shapes.
    """
    for name, value in (("recompile_limit", recompile_limit),
                        ("accumulated_recompile_limit", accumulated_recompile_limit)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    config = torch._dynamo.config
    config.recompile_limit = recompile_limit
    config.accumulated_recompile_limit = accumulated_recompile_limit
