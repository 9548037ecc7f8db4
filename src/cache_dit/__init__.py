"""cache-dit: one-line, training-free cache acceleration for Diffusion Transformers.

    import cache_dit
    cache_dit.enable_cache(pipe)          # DBCache F8B0, threshold 0.12, 8 warmup steps
    image = pipe(prompt).images[0]
    cache_dit.summary(pipe, logging=True)
    cache_dit.disable_cache(pipe)
"""

from .api import CacheSummary, enable_cache, reset_cache
from .calibrate import Calibration, calibrate, save_options
from .compat import (BasicCacheConfig, BlockAdapter, DBCacheConfig, ParamsModifier,
                     TaylorSeerCalibratorConfig, disable_cache, refresh_context, steps_mask,
                     summary)
from .compile import set_compile_configs
from .options import (
    STEPS_MASK_PRESETS,
    CacheOptions,
    CacheType,
    DBCache,
    block_range,
    default_options,
    load_options,
)
from .patterns import ForwardPattern
from .presets import PRESETS, preset
from .step_search import StepSearch, search_steps

__version__ = "0.3.0"

__all__ = [
    "enable_cache",
    "disable_cache",
    "reset_cache",
    "summary",
    "CacheSummary",
    "CacheOptions",
    "CacheType",
    "DBCache",
    "ForwardPattern",
    "block_range",
    "default_options",
    "load_options",
    "steps_mask",
    "STEPS_MASK_PRESETS",
    "set_compile_configs",
    "preset",
    "PRESETS",
    "calibrate",
    "Calibration",
    "save_options",
    "search_steps",
    "StepSearch",
    # cache-dit 1.x names (cache_dit.compat)
    "DBCacheConfig",
    "BasicCacheConfig",
    "TaylorSeerCalibratorConfig",
    "BlockAdapter",
    "ParamsModifier",
    "refresh_context",
]
