"""Cache options: one validated dataclass, spec-compatible names, YAML loading and the config tag.

Every knob users pass to :func:`cache_dit.enable_cache` lands here first. Validation is complete
before anything touches a model, so a bad option can never leave a pipeline half-patched.
"""

from __future__ import annotations

import dataclasses
import enum
import os
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from .calibrators.damped import check_damping
from .masks import STEPS_MASK_PRESETS, block_range, checked_mask, steps_mask

__all__ = [
    "CacheType",
    "DBCache",
    "CacheOptions",
    "default_options",
    "load_options",
    "block_range",
    "steps_mask",
    "STEPS_MASK_PRESETS",
]


class CacheType(str, enum.Enum):
    """The cache algorithm. DBCache (Dual Block Cache) is the one this release implements."""

    DBCache = "DBCache"

    def __str__(self) -> str:  # "DBCache", not "CacheType.DBCache", in tags and messages
        return self.value


DBCache = CacheType.DBCache

TAYLORSEER_CACHE_TYPES = ("residual", "hidden_states")
# Names in cache_dit.rules.RULES a user may choose (the budget rule comes with compute_budget).
DECISION_RULES = ("residual_diff", "accumulated", "forecast_error")
# Names in cache_dit.calibrators.CALIBRATORS.
CALIBRATOR_NAMES = ("reuse", "taylorseer", "newton", "foca", "hermite")
BUDGET_WARMUP_STEPS = 0  # under compute_budget the rule protects a head proportional to the steps

def _check_int(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int >= {minimum}, got {value!r} ({type(value).__name__})")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")


def _check_float(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number >= 0, got {value!r} ({type(value).__name__})")
    if not value >= 0 or value == float("inf"):  # also rejects NaN
        raise ValueError(f"{name} must be a finite number >= 0, got {value}")


def _check_bool_or_none(name: str, value: Any) -> None:
    if value is not None and not isinstance(value, bool):
        raise TypeError(f"{name} must be True, False or None, got {value!r}")


def _check_bool(name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {value!r}")


@dataclass
class CacheOptions:
    """DBCache configuration (names as in cache-dit's README, so existing user code runs unchanged).

    Attributes:
        cache_type: the algorithm; only ``DBCache``.
        Fn_compute_blocks: the first n blocks run on every step; their output residual decides
            whether the middle blocks can be skipped.
        Bn_compute_blocks: the last n blocks run on every step and refine the approximated hidden
            states (a learned "calibrator" for the cached residual).
        Bn_compute_blocks_ids: ids in ``[0, Bn)`` of the Bn blocks that always run; the others are
            skipped (from their own cached residual) while the diff stays below
            ``non_compute_blocks_diff_threshold``. ``None`` = all Bn blocks always run.
        non_compute_blocks_diff_threshold: see ``Bn_compute_blocks_ids``.
        residual_diff_threshold: cache a step when the relative L1 distance between this step's
            Fn output residual and the last computed step's is below this. 0 never caches.
        warmup_steps: the first steps always compute (the picture's layout forms there).
        max_cached_steps: at most this many cached steps per generation (-1: no limit).
        max_continuous_cached_steps: force a compute after this many consecutive cached steps
            (-1: no limit).
        steps_computation_mask: steps that must compute: a 0/1 list per step (1 = compute), or a
            preset name (``slow``/``medium``/``fast``/``ultra``, see :func:`steps_mask`).
        enable_taylorseer: forecast the hidden-states value that stands in for the skipped blocks
            with a Taylor expansion over the last computed steps (TaylorSeer), instead of reusing
            the last residual as is.
        enable_encoder_taylorseer: the same for the encoder (text) stream.
        taylorseer_cache_type: forecast the ``"residual"`` of the skipped blocks or their output
            ``"hidden_states"``.
        taylorseer_kwargs: ``{"n_derivatives": m}``; order m keeps m+1 buffers per stream.
        do_separate_classifier_free_guidance: the transformer is called separately for the cond
            and uncond branches; keep one cache per branch. ``None`` (default): detect it from the
            calls (two calls at the same timestep are two branches).
        cfg_compute_first: the uncond (CFG) call comes first in each step (labels branches).
        cfg_diff_compute_separate: each branch decides from its own diff; False makes the
            second branch of a step reuse the first branch's decision.
        num_inference_steps: for a bare transformer in a custom loop: steps per generation, so
            the cache resets by itself (pipelines report it through their scheduler).
        decision_rule: when the middle blocks may be skipped, compared with
            ``residual_diff_threshold``: ``"residual_diff"`` (DBCache: the probe's relative L1
            change since the last computed step), ``"accumulated"`` (the sum of its step-to-step
            changes since then, TeaCache/EasyCache style), ``"forecast_error"`` (the relative L1
            error of the calibrator's forecast of the probe: with TaylorSeer, cache while the
            forecast holds; with plain reuse it equals ``"residual_diff"``).
        calibrator: what stands in for the skipped blocks of the hidden stream (and of the
            encoder stream when ``enable_encoder_taylorseer``): ``"reuse"``, ``"taylorseer"``,
            ``"newton"``, ``"foca"``, ``"hermite"`` (see :mod:`cache_dit.calibrators`). ``None``:
            ``"taylorseer"`` where TaylorSeer is enabled, else ``"reuse"`` (the spec's behaviour).
        calibrator_damping: in (0, 1]; what stands in on a cached step is the last computed
            feature plus this share of the calibrator's forecast change (1: the forecast as is;
            long runs of cached steps overshoot, see :mod:`cache_dit.calibrators.damped`).
        per_sample_decisions: each sample of a batch decides from its own probe and keeps its
            own buffers; the middle blocks run on the sub-batch of samples that compute
            (Bn blocks of ``Bn_compute_blocks_ids`` then always run).
        compute_budget: keep this fraction of the block executions of every generation, in
            (0, 1]; replaces ``residual_diff_threshold`` (steps compute where the measured change
            is largest, see :mod:`cache_dit.rules.budget`). Unless given, ``warmup_steps`` is 0: the
            budget protects the first 25% of the steps itself.
        budget_spacing: with ``Fn_compute_blocks=0`` and a budget computing at most 60% of the
            steps, how the computes are laid out: the i-th of C at ``(i/(C-1))**budget_spacing``
            of the way to the second-last step (above 60%: a head, then even shares).
            1 spaces them evenly; larger crowds them into the first steps. ``None``: 1.5 (best
            on the trained reference models; ``cache_dit.calibrate`` tries others).
    """

    cache_type: CacheType = DBCache
    Fn_compute_blocks: int = 8
    Bn_compute_blocks: int = 0
    Bn_compute_blocks_ids: list[int] | None = None
    non_compute_blocks_diff_threshold: float = 0.08
    residual_diff_threshold: float = 0.12
    warmup_steps: int = 8
    max_cached_steps: int = -1
    max_continuous_cached_steps: int = -1
    steps_computation_mask: list[int] | str | None = None
    enable_taylorseer: bool = False
    enable_encoder_taylorseer: bool = False
    taylorseer_cache_type: str = "residual"
    taylorseer_kwargs: dict[str, Any] = field(default_factory=lambda: {"n_derivatives": 2})
    do_separate_classifier_free_guidance: bool | None = None
    cfg_compute_first: bool = False
    cfg_diff_compute_separate: bool = True
    num_inference_steps: int | None = None
    decision_rule: str = "residual_diff"
    calibrator: str | None = None
    calibrator_damping: float = 1.0
    compute_budget: float | None = None
    budget_spacing: float | None = None
    per_sample_decisions: bool = False

    def __post_init__(self) -> None:
        self.validate()

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_kwargs(cls, options: Mapping[str, Any]) -> "CacheOptions":
        """Build from user keyword options, rejecting unknown names with the allowed list."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise ValueError(
                f"Unknown cache option(s) {unknown}; allowed options: {sorted(known)}"
            )
        opts = dict(options)
        if "cache_type" in opts:
            opts["cache_type"] = _parse_cache_type(opts["cache_type"])
        if "taylorseer_kwargs" in opts and opts["taylorseer_kwargs"] is not None:
            if not isinstance(opts["taylorseer_kwargs"], Mapping):
                raise TypeError(
                    f"taylorseer_kwargs must be a dict like {{'n_derivatives': 2}}, "
                    f"got {opts['taylorseer_kwargs']!r}"
                )
            opts["taylorseer_kwargs"] = {"n_derivatives": 2, **opts["taylorseer_kwargs"]}
        elif "taylorseer_kwargs" in opts:
            opts["taylorseer_kwargs"] = {"n_derivatives": 2}
        if opts.get("compute_budget") is not None:
            for name in ("residual_diff_threshold", "max_cached_steps"):
                if name in opts:
                    raise ValueError(
                        f"compute_budget={opts['compute_budget']!r} sets how many steps are cached; "
                        f"it cannot be combined with {name}={opts[name]!r}")
            opts.setdefault("warmup_steps", BUDGET_WARMUP_STEPS)
        if opts.get("Bn_compute_blocks_ids") is not None:
            ids = opts["Bn_compute_blocks_ids"]
            if isinstance(ids, (str, bytes)) or not isinstance(ids, Sequence):
                raise TypeError(f"Bn_compute_blocks_ids must be a list of ints, got {ids!r}")
            opts["Bn_compute_blocks_ids"] = list(ids)
        return cls(**opts)

    # ------------------------------------------------------------------ validation
    def validate(self) -> None:
        """Check types and ranges that do not depend on the model (block counts come later)."""
        self.cache_type = _parse_cache_type(self.cache_type)
        _check_int("Fn_compute_blocks", self.Fn_compute_blocks, 0)
        _check_int("Bn_compute_blocks", self.Bn_compute_blocks, 0)
        _check_int("warmup_steps", self.warmup_steps, 0)
        _check_int("max_cached_steps", self.max_cached_steps, -1)
        _check_int("max_continuous_cached_steps", self.max_continuous_cached_steps, -1)
        _check_float("residual_diff_threshold", self.residual_diff_threshold)
        _check_float("non_compute_blocks_diff_threshold", self.non_compute_blocks_diff_threshold)
        for name in ("enable_taylorseer", "enable_encoder_taylorseer", "cfg_compute_first",
                     "cfg_diff_compute_separate", "per_sample_decisions"):
            _check_bool(name, getattr(self, name))
        _check_bool_or_none(
            "do_separate_classifier_free_guidance", self.do_separate_classifier_free_guidance
        )
        if self.num_inference_steps is not None:
            _check_int("num_inference_steps", self.num_inference_steps, 1)
        if self.per_sample_decisions and not self.cfg_diff_compute_separate:
            raise ValueError(
                "per_sample_decisions=True needs cfg_diff_compute_separate=True: each sample "
                "decides from its own diff")
        if self.calibrator is not None and self.calibrator not in CALIBRATOR_NAMES:
            raise ValueError(
                f"calibrator must be one of {CALIBRATOR_NAMES} or None, got {self.calibrator!r}")
        check_damping("calibrator_damping", self.calibrator_damping)
        if self.decision_rule not in DECISION_RULES:
            raise ValueError(
                f"decision_rule must be one of {DECISION_RULES}, got {self.decision_rule!r}")
        if self.compute_budget is not None:
            budget = self.compute_budget
            if isinstance(budget, bool) or not isinstance(budget, (int, float)):
                raise TypeError(f"compute_budget must be a number in (0, 1], got {budget!r}")
            if not 0 < budget <= 1:
                raise ValueError(
                    f"compute_budget must be in (0, 1] (the fraction of block executions kept), "
                    f"got {budget}")
            defaults = CacheOptions.__dataclass_fields__
            for name in ("residual_diff_threshold", "max_cached_steps", "decision_rule"):
                if getattr(self, name) != defaults[name].default:
                    raise ValueError(
                        f"compute_budget={budget} sets how many steps are cached; it cannot be "
                        f"combined with {name}={getattr(self, name)!r}")
        if self.Fn_compute_blocks == 0:
            self._check_probe_free()
        if self.budget_spacing is not None:
            from .rules.budget import check_spacing  # here: the rules package imports this module

            if self.compute_budget is None or self.Fn_compute_blocks != 0:
                raise ValueError(f"budget_spacing={self.budget_spacing!r} lays out a probe-free "
                                 f"budget: it needs compute_budget= and Fn_compute_blocks=0")
            check_spacing(self.budget_spacing)
        if self.Bn_compute_blocks_ids is not None:
            for block_id in self.Bn_compute_blocks_ids:
                _check_int("each Bn_compute_blocks_ids entry", block_id, 0)
                if block_id >= self.Bn_compute_blocks:
                    raise ValueError(
                        f"Bn_compute_blocks_ids entry {block_id} is outside [0, "
                        f"Bn_compute_blocks={self.Bn_compute_blocks}); ids count from the first of "
                        f"the last Bn blocks"
                    )
        if self.taylorseer_cache_type not in TAYLORSEER_CACHE_TYPES:
            raise ValueError(
                f"taylorseer_cache_type must be one of {TAYLORSEER_CACHE_TYPES}, "
                f"got {self.taylorseer_cache_type!r}"
            )
        if not isinstance(self.taylorseer_kwargs, dict):
            raise TypeError(f"taylorseer_kwargs must be a dict, got {self.taylorseer_kwargs!r}")
        extra = sorted(set(self.taylorseer_kwargs) - {"n_derivatives"})
        if extra:
            raise ValueError(f"Unknown taylorseer_kwargs {extra}; allowed: ['n_derivatives']")
        _check_int("taylorseer_kwargs['n_derivatives']", self.taylorseer_kwargs["n_derivatives"], 1)
        self.steps_computation_mask = checked_mask(self.steps_computation_mask,
                                                   self.num_inference_steps)

    def _check_probe_free(self) -> None:
        """Fn_compute_blocks=0: no block runs on a cached step, so nothing measures the change;
        the steps must come from a schedule."""
        if self.compute_budget is None and self.steps_computation_mask is None:
            raise ValueError(
                "Fn_compute_blocks=0 leaves no probe to decide from: give steps_computation_mask= "
                "(the steps it leaves free are cached) or compute_budget= (computes laid out "
                "by budget_spacing), or use Fn_compute_blocks >= 1")
        if self.per_sample_decisions:
            raise ValueError("per_sample_decisions=True needs Fn_compute_blocks >= 1 (a probe per "
                             "sample), got Fn_compute_blocks=0")
        if self.decision_rule != "residual_diff":
            raise ValueError(f"decision_rule={self.decision_rule!r} needs Fn_compute_blocks >= 1 "
                             f"(a probe to measure), got Fn_compute_blocks=0")

    def fitted_to(self, num_blocks: int, explicit: set[str]) -> "CacheOptions":
        """Options for a chain of ``num_blocks``: defaults (not user-given) Fn/Bn shrink to leave
        at least one block to skip, so the one-line ``enable_cache(pipe)`` works on small models.
        User-given values are never changed (validate_for_blocks reports them)."""
        fn, bn = self.Fn_compute_blocks, self.Bn_compute_blocks
        if fn + bn <= num_blocks:
            return self
        if "Fn_compute_blocks" not in explicit:
            fn = max(1, num_blocks - bn - 1)
        if fn + bn > num_blocks and "Bn_compute_blocks" not in explicit:
            bn = max(0, num_blocks - fn - 1)
        return dataclasses.replace(self, Fn_compute_blocks=fn, Bn_compute_blocks=bn)

    def validate_for_blocks(self, num_blocks: int, where: str) -> None:
        """Checks that need the number of blocks of the chain being cached."""
        if self.Fn_compute_blocks + self.Bn_compute_blocks > num_blocks:
            raise ValueError(
                f"Fn_compute_blocks ({self.Fn_compute_blocks}) + Bn_compute_blocks "
                f"({self.Bn_compute_blocks}) exceeds the {num_blocks} transformer blocks of {where}; "
                f"allowed: Fn >= 0 (0 with a mask or a budget), Bn >= 0, Fn + Bn <= {num_blocks}"
            )

    # ------------------------------------------------------------------ derived values
    @property
    def taylorseer_order(self) -> int:
        return int(self.taylorseer_kwargs["n_derivatives"])

    @property
    def hidden_calibrator(self) -> str:
        """The calibrator (``cache_dit.calibrators.CALIBRATORS`` name) of the hidden stream."""
        if self.calibrator is not None:
            return self.calibrator
        return "taylorseer" if self.enable_taylorseer else "reuse"

    @property
    def encoder_calibrator(self) -> str:
        if not self.enable_encoder_taylorseer:
            return "reuse"
        return self.calibrator or "taylorseer"

    def compute_mask(self, num_steps: int | None) -> list[int] | None:
        """The 0/1 must-compute mask for a generation of ``num_steps`` (None if unknown)."""
        mask = self.steps_computation_mask
        if mask is None:
            return None
        if isinstance(mask, str):
            return steps_mask(mask, num_steps) if num_steps else None
        return list(mask)

    def tag(self) -> str:
        """A short string naming this configuration, e.g. ``DBCache_F8B0_W8_MC-1_R0.12``; it
        parses back with :func:`cache_dit.tags.parse_tag`."""
        from .tags import format_tag

        return format_tag(self)

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["cache_type"] = str(self.cache_type)
        return out


def _parse_cache_type(value: Any) -> CacheType:
    if isinstance(value, CacheType):
        return value
    if isinstance(value, str):
        for member in CacheType:
            if value.lower() == member.value.lower():
                return member
    raise ValueError(
        f"cache_type {value!r} is not supported; allowed: {[m.value for m in CacheType]}"
    )


def default_options(cache_type: CacheType | str = DBCache) -> dict[str, Any]:
    """The default DBCache options (F8B0, 8 warmup steps, threshold 0.12, unlimited cached steps)
    as a plain dict, ready to edit and pass as ``enable_cache(pipe, **options)``."""
    options = CacheOptions(cache_type=_parse_cache_type(cache_type))
    out = {f.name: getattr(options, f.name) for f in dataclasses.fields(options)}
    out["taylorseer_kwargs"] = dict(out["taylorseer_kwargs"])
    return out


def load_options(path: str | os.PathLike) -> dict[str, Any]:
    """Read cache options from a YAML file (keys as in :func:`default_options`), validated."""
    import yaml

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"cache options file {path!r} does not exist")
    with open(path, "rb") as handle:
        raw = handle.read()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"cache options file {path!r} is not UTF-8 text (byte 0x{raw[exc.start]:02x} "
                         f"at offset {exc.start}); save it as UTF-8") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValueError(f"cache options file {path!r} is not valid YAML: {exc}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ValueError(f"cache options file {path!r} must hold a mapping of option: value")
    options = CacheOptions.from_kwargs(data)  # validates
    return {name: getattr(options, name) for name in data}
