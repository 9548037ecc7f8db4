"""cache-dit 1.x names on top of our options, so code written for cache-dit 1.x runs unchanged.

    cache_dit.enable_cache(pipe, cache_config=DBCacheConfig(Fn_compute_blocks=1),
                           calibrator_config=TaylorSeerCalibratorConfig(taylorseer_order=1))
    cache_dit.enable_cache(BlockAdapter(pipe=pipe, transformer=pipe.transformer,
                                        blocks=pipe.transformer.transformer_blocks,
                                        forward_pattern=ForwardPattern.Pattern_1))

Every 1.x field maps onto a :class:`~cache_dit.CacheOptions` name and goes through the same
validation. A 1.x field we do not implement raises as soon as it is set to anything but its 1.x
default, naming it: nothing is silently ignored. The 1.x defaults are kept (e.g. a bare
``DBCacheConfig()`` means threshold 0.08, as in 1.x, not our native 0.12).
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from types import MappingProxyType

from .compat_masks import steps_mask
from .options import CacheOptions, CacheType

logger = logging.getLogger(__name__)

__all__ = ["DBCacheConfig", "BasicCacheConfig", "TaylorSeerCalibratorConfig", "BlockAdapter",
           "ParamsModifier", "refresh_context", "steps_mask", "summary", "disable_cache",
           "is_1x_call", "translate"]

# enable_cache keywords that only exist in cache-dit 1.x
_1X_KWARGS = ("cache_config", "calibrator_config", "params_modifiers", "parallelism_config",
              "attention_backend", "quantize_config")
# loose 1.x (deprecated) keywords with another native name
_1X_RENAMES = {"max_warmup_steps": "warmup_steps",
               "enable_separate_cfg": "do_separate_classifier_free_guidance"}


class Unsupported1xOption(ValueError):
    """A cache-dit 1.x option this library does not implement (raised, never ignored)."""

    def __init__(self, name: str, value: Any, allowed: str):
        super().__init__(f"cache-dit 1.x option {name}={value!r} is not supported here; {allowed}")


def _reject_non_default(obj: Any, unsupported: Mapping[str, str]) -> None:
    defaults = {f.name: f.default_factory() if f.default is dataclasses.MISSING else f.default
                for f in dataclasses.fields(obj)}
    for name, allowed in unsupported.items():
        value = getattr(obj, name)
        if value is not None and value != defaults[name]:
            raise Unsupported1xOption(f"{type(obj).__name__}.{name}", value, allowed)


class _Config:
    """The 1.x config helpers: update (non-None fields), empty/reset (all None, then update)."""

    def update(self, **kwargs: Any):
        names = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(kwargs) - names)
        if unknown:  # 1.x skips unknown names; a typo here would change nothing, so say so
            raise ValueError(f"{type(self).__name__} has no field(s) {unknown}; fields: {sorted(names)}")
        for key, value in kwargs.items():
            if value is not None:
                setattr(self, key, value)
        return self

    def empty(self, **kwargs: Any):
        for f in dataclasses.fields(self):
            setattr(self, f.name, None)
        return self.update(**kwargs)

    reset = empty

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class DBCacheConfig(_Config):
    """cache-dit 1.x ``DBCacheConfig`` / ``BasicCacheConfig`` (1.x field names and defaults)."""

    cache_type: Any = CacheType.DBCache
    Fn_compute_blocks: int = 8
    Bn_compute_blocks: int = 0
    residual_diff_threshold: float = 0.08
    max_accumulated_residual_diff_threshold: float | None = None
    max_warmup_steps: int = 8
    warmup_interval: int = 1
    max_cached_steps: int = -1
    max_continuous_cached_steps: int = -1
    enable_separate_cfg: bool | None = None
    cfg_compute_first: bool = False
    cfg_diff_compute_separate: bool = True
    num_inference_steps: int | None = None
    steps_computation_mask: list[int] | None = None
    steps_computation_policy: str = "dynamic"
    force_refresh_step_hint: int | None = None
    force_refresh_step_policy: str = "once"

    _UNSUPPORTED = MappingProxyType({
        "max_accumulated_residual_diff_threshold": "leave it None",
        "warmup_interval": "only 1 (every warm-up step computes)",
        "steps_computation_policy": "only 'dynamic' (masked-out steps follow the threshold)",
        "force_refresh_step_hint": "leave it None; call refresh_context between requests",
        "force_refresh_step_policy": "only 'once'",
    })
    _SAME = ("Fn_compute_blocks", "Bn_compute_blocks", "residual_diff_threshold", "max_cached_steps",
             "max_continuous_cached_steps", "cfg_compute_first", "cfg_diff_compute_separate",
             "num_inference_steps")

    def to_options(self, keep_defaults: bool = False) -> dict[str, Any]:
        """Our option names; unset (None) fields are left to our defaults. Unless
        ``keep_defaults`` (overrides, as in a ParamsModifier), values equal to both 1.x's and our
        default are dropped, so a small model's Fn/Bn still fit themselves (CacheOptions.fitted_to)
        as for the native one-liner."""
        _reject_non_default(self, self._UNSUPPORTED)
        cache_type = str(getattr(self.cache_type, "name", self.cache_type))
        if self.cache_type is not None and cache_type.lower() != "dbcache":
            raise Unsupported1xOption("DBCacheConfig.cache_type", self.cache_type, "only DBCache")
        out = {name: getattr(self, name) for name in self._SAME if getattr(self, name) is not None}
        if self.enable_separate_cfg is not None:
            out["do_separate_classifier_free_guidance"] = self.enable_separate_cfg
        mask = self.steps_computation_mask
        warmup = self.max_warmup_steps
        if mask is not None:
            out["steps_computation_mask"] = mask
            if warmup is not None and isinstance(mask, Sequence) and not isinstance(mask, str):
                # 1.x: warm-up ends with the mask's leading run of compute steps
                leading = next((i for i, m in enumerate(mask) if m != 1), len(mask))
                warmup = min(warmup, leading)
        if warmup is not None:
            out["warmup_steps"] = warmup
        if keep_defaults:
            return out
        native, theirs = CacheOptions(), DBCacheConfig()
        same = {k for k in self._SAME if getattr(native, k) == getattr(theirs, k)}
        same |= {"warmup_steps"} if native.warmup_steps == theirs.max_warmup_steps else set()
        return {k: v for k, v in out.items() if k not in same or getattr(native, k) != v}

    def strify(self) -> str:
        """Our tag for this configuration (1.x ``strify`` names differ)."""
        return CacheOptions.from_kwargs(self.to_options()).tag()


BasicCacheConfig = DBCacheConfig


@dataclass
class TaylorSeerCalibratorConfig(_Config):
    """cache-dit 1.x ``TaylorSeerCalibratorConfig`` (forecast the skipped blocks' residual)."""

    enable_calibrator: bool = True
    enable_encoder_calibrator: bool = True
    calibrator_type: str = "taylorseer"
    calibrator_cache_type: str = "residual"
    calibrator_kwargs: dict[str, Any] = field(default_factory=dict)
    taylorseer_order: int = 1

    def to_options(self) -> dict[str, Any]:
        if self.calibrator_type not in (None, "taylorseer"):
            raise Unsupported1xOption("calibrator_type", self.calibrator_type, "only 'taylorseer'")
        extra = sorted(set(self.calibrator_kwargs or {}) - {"n_derivatives"})
        if extra:
            raise Unsupported1xOption("calibrator_kwargs", {k: self.calibrator_kwargs[k] for k in extra},
                                      "only n_derivatives (set taylorseer_order instead)")
        out: dict[str, Any] = {}
        for ours, theirs in (("enable_taylorseer", "enable_calibrator"),
                             ("enable_encoder_taylorseer", "enable_encoder_calibrator"),
                             ("taylorseer_cache_type", "calibrator_cache_type")):
            if getattr(self, theirs) is not None:
                out[ours] = getattr(self, theirs)
        if self.taylorseer_order is not None:  # 1.x: the order wins over calibrator_kwargs
            out["taylorseer_kwargs"] = {"n_derivatives": self.taylorseer_order}
        return out


class ParamsModifier:
    """cache-dit 1.x per-block-list overrides. Our core keeps one option set per transformer, so
    a modifier maps only where one block list / one transformer is cached (see :func:`translate`)."""

    def __init__(self, cache_config: DBCacheConfig | None = None,
                 calibrator_config: TaylorSeerCalibratorConfig | None = None, **kwargs: Any):
        self.cache_config = cache_config
        self.calibrator_config = calibrator_config
        self.kwargs = kwargs  # loose 1.x option names; validated when applied

    def to_options(self) -> dict[str, Any]:
        out = _config_options(None, self.calibrator_config)
        if self.cache_config is not None:
            out.update(_config_options(self.cache_config, None, keep_defaults=True))
        out.update(_loose_options(self.kwargs))
        return out


@dataclass
class BlockAdapter:
    """cache-dit 1.x ``BlockAdapter``: which pipeline / transformer / block lists to cache."""

    pipe: Any = None
    transformer: Any = None
    blocks: Any = None
    blocks_name: Any = None
    unique_blocks_name: Any = field(default_factory=list)
    dummy_blocks_names: Any = field(default_factory=list)
    forward_pattern: Any = None
    params_modifiers: Any = None
    check_forward_pattern: bool | None = None  # we always check the pattern against the block
    check_num_outputs: bool = False
    patch_functor: Any = None
    has_separate_cfg: bool = False
    auto: bool = False  # blocks=None already means "find them"
    allow_prefixes: Any = None
    check_prefixes: bool = True
    allow_suffixes: Any = None
    check_suffixes: bool = False
    blocks_policy: str = "max"
    skip_post_init: bool = False

    _UNSUPPORTED = MappingProxyType({
        "unique_blocks_name": "leave it empty", "dummy_blocks_names": "leave it empty",
        "check_num_outputs": "only False", "patch_functor": "leave it None (no patch functors here)",
        "allow_prefixes": "leave it unset (block lists are found by shape)",
        "check_prefixes": "only True", "allow_suffixes": "leave it unset",
        "check_suffixes": "only False", "blocks_policy": "only 'max'",
    })

    def __post_init__(self) -> None:
        _reject_non_default(self, self._UNSUPPORTED)
        if self.pipe is None and self.transformer is None:
            raise ValueError("BlockAdapter needs pipe= or transformer=")

    def targets(self) -> tuple[Any, dict[str, Any]]:
        """(object to cache, enable_cache keywords) for this adapter."""
        transformer = self.transformer
        if isinstance(transformer, (list, tuple)):
            if len(transformer) != 1:
                raise Unsupported1xOption(
                    "BlockAdapter.transformer", f"[{len(transformer)} transformers]",
                    "one transformer per adapter; to cache all of a pipeline's transformers "
                    "pass the pipeline alone (they are found and cached one by one)")
            transformer = transformer[0]
        blocks = self.blocks
        if blocks is None and self.blocks_name is not None:
            names = [self.blocks_name] if isinstance(self.blocks_name, str) else list(self.blocks_name)
            owner = transformer if transformer is not None else self.pipe.transformer
            blocks = [getattr(owner, name) for name in names]
        if isinstance(blocks, (list, tuple)) and any(isinstance(b, (list, tuple)) for b in blocks):
            raise Unsupported1xOption("BlockAdapter.blocks", "[[...], ...] (nested lists)",
                                      "a ModuleList or a list of ModuleLists of one transformer")
        kwargs: dict[str, Any] = {}
        if transformer is not None and self.pipe is not None:
            kwargs["transformer"] = transformer
        if blocks is not None:
            kwargs["blocks"] = blocks
            if self.pipe is not None and transformer is None:
                kwargs["transformer"] = self.pipe.transformer
        if self.forward_pattern is not None:
            kwargs["forward_pattern"] = self.forward_pattern
        if self.has_separate_cfg:
            kwargs["do_separate_classifier_free_guidance"] = True
        return (self.pipe if self.pipe is not None else transformer), kwargs


def _config_options(cache_config: Any, calibrator_config: Any,
                    keep_defaults: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for value, kind in ((cache_config, DBCacheConfig),
                        (calibrator_config, TaylorSeerCalibratorConfig)):
        if value is None:
            continue
        if not isinstance(value, kind):
            raise TypeError(f"expected a cache_dit.{kind.__name__}, got {type(value).__name__}: "
                            f"{value!r}")
        out.update(value.to_options(keep_defaults) if kind is DBCacheConfig else value.to_options())
    return out


def _loose_options(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(kwargs)
    for old, new in _1X_RENAMES.items():
        if old in out:
            if new in out:
                raise ValueError(f"pass either {old} (cache-dit 1.x) or {new}, not both")
            out[new] = out.pop(old)
    return out


def is_1x_call(pipe_or_module: Any, options: Mapping[str, Any]) -> bool:
    """Whether an enable_cache call uses cache-dit 1.x names (a BlockAdapter or 1.x keywords)."""
    return isinstance(pipe_or_module, BlockAdapter) or any(
        key in options for key in (*_1X_KWARGS, *_1X_RENAMES))


def translate(pipe_or_module: Any, options: Mapping[str, Any], **targets: Any) -> tuple[Any, dict]:
    """A cache-dit 1.x ``enable_cache`` call as ``(object, native enable_cache keywords)``.

    ``targets`` are the native keywords already given (transformer=, blocks=, ...); an adapter
    may not contradict them. Precedence as in 1.x: config objects, then loose keywords, then
    params modifiers (which override the shared config).
    """
    options = dict(options)
    for name in ("parallelism_config", "attention_backend", "quantize_config"):
        value = options.pop(name, None)
        if value is not None:
            raise Unsupported1xOption(name, value, "enable_cache here caches only; see the "
                                      "README's 'Scaling out' section for context parallelism")
    modifiers = options.pop("params_modifiers", None)
    cache_config = options.pop("cache_config", None)  # as in 1.x: none given = 1.x's defaults
    out = _config_options(DBCacheConfig() if cache_config is None else cache_config,
                          options.pop("calibrator_config", None))
    out.update(_loose_options(options))
    native = {k: v for k, v in targets.items() if v is not None}
    obj = pipe_or_module
    if isinstance(obj, BlockAdapter):
        modifiers = obj.params_modifiers if modifiers is None else modifiers
        obj, adapter_kwargs = obj.targets()
        for key, value in adapter_kwargs.items():
            if key in native and native[key] is not value:
                raise ValueError(f"enable_cache got {key}= and a BlockAdapter with another {key}")
            (native if key in targets else out).setdefault(key, value)
    if modifiers is not None:
        modifiers = [modifiers] if isinstance(modifiers, ParamsModifier) else list(modifiers)
        if len(modifiers) != 1 or not isinstance(modifiers[0], ParamsModifier):
            raise Unsupported1xOption(
                "params_modifiers", f"[{len(modifiers)} modifiers]",
                "one ParamsModifier (one option set per cached transformer); per-block-list "
                "options are not implemented")
        out.update(modifiers[0].to_options())
    return obj, {**native, **out}


def _cached_object(obj: Any) -> Any:
    return obj.pipe if isinstance(obj, BlockAdapter) and obj.pipe is not None else (
        obj.targets()[0] if isinstance(obj, BlockAdapter) else obj)


def refresh_context(transformer: Any, num_inference_steps: int | None = None,
                    cache_config: DBCacheConfig | None = None,
                    calibrator_config: TaylorSeerCalibratorConfig | None = None,
                    verbose: bool = False) -> Any:
    """cache-dit 1.x ``refresh_context``: start a new generation of ``num_inference_steps`` on the
    next call, or switch to a new ``cache_config`` (which, as in 1.x, replaces the old one whole).

    With a config, the cache is enabled again on the same object with automatically found blocks;
    if those differ from the cached ones (an explicit BlockAdapter), this raises instead.
    """
    from . import api
    from .adapter import find_targets
    from .hooks import controller_of

    obj = _cached_object(transformer)
    if calibrator_config is not None and cache_config is None:
        raise ValueError("refresh_context: a new calibrator_config replaces the whole config; "
                         "pass cache_config= with it")
    if cache_config is not None:
        before = [(s.name, s.block_lists) for s in api.summary(obj)]
        found = [(t.name, {n: len(b) for n, b in t.block_lists}) for t in find_targets(obj)]
        if before != found:
            raise ValueError(f"refresh_context(cache_config=...) would cache {found}, but the cache "
                             f"covers {before}; call enable_cache again with your BlockAdapter")
        options = _config_options(cache_config, calibrator_config)
        if num_inference_steps is not None:
            options["num_inference_steps"] = num_inference_steps
        api.enable_cache(obj, **options)
    elif api._session_of(obj) is None and controller_of(obj) is not None:
        # cached through its pipeline (enable_cache(pipe)): the pipeline's scheduler already
        # starts each call afresh; the request still takes effect on the next call
        controller_of(obj).request_new_generation(num_inference_steps)
    else:
        api.reset_cache(obj, num_inference_steps=num_inference_steps)
    if verbose:
        logger.warning("cache-dit: refreshed the cache of %s (num_inference_steps=%s)",
                       type(obj).__name__, num_inference_steps)
    return transformer


def disable_cache(pipe_or_module: Any) -> Any:
    """:func:`cache_dit.api.disable_cache` that also takes a 1.x :class:`BlockAdapter`."""
    from . import api

    api.disable_cache(_cached_object(pipe_or_module))
    return pipe_or_module


def summary(pipe_or_module: Any, details: bool = False, **kwargs: Any) -> list:
    """:func:`cache_dit.api.summary` that also takes a 1.x :class:`BlockAdapter`
    (``logging=True`` is passed on)."""
    from . import api

    return api.summary(_cached_object(pipe_or_module), details=details, **kwargs)
