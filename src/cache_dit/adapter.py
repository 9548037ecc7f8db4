"""Find what to cache: the transformer(s) of a pipeline and their block lists.

Discovery inspects modules, never pipeline class names, so user subclasses and pipelines we have
never seen work as long as their transformer keeps its blocks in ``nn.ModuleList`` children.
"""

from __future__ import annotations

import ast
import inspect
import textwrap
from dataclasses import dataclass
from typing import Any, Sequence

import torch

__all__ = ["CacheTarget", "find_targets", "find_block_lists"]

# ModuleList children that hold blocks but are not the main chain (UNet stages, refiners).
_EXCLUDED_LIST_WORDS = ("down", "up", "refiner", "embed", "norm", "proj")
# Pipeline components that never hold the denoiser.
_EXCLUDED_COMPONENT_WORDS = ("text_encoder", "vae", "image_encoder", "tokenizer", "safety",
                             "feature_extractor", "controlnet", "guardrail", "processor")


@dataclass
class CacheTarget:
    """One transformer to cache and its block lists, in execution order."""

    name: str
    transformer: torch.nn.Module
    block_lists: list[tuple[str, torch.nn.ModuleList]]

    @property
    def num_blocks(self) -> int:
        return sum(len(blocks) for _, blocks in self.block_lists)


def unwrap(module: Any) -> Any:
    """The module behind ``torch.compile`` (and similar wrappers)."""
    while hasattr(module, "_orig_mod"):
        module = module._orig_mod
    return module


def _takes_hidden_states(block: torch.nn.Module) -> bool:
    try:
        params = list(inspect.signature(type(block).forward).parameters)[1:]
    except (TypeError, ValueError):
        return False
    return bool(params)


# Names a transformer's forward gives the main hidden states it threads through its blocks.
_HIDDEN_NAMES = ("hidden_states", "x", "hidden", "img", "latents")


def side_branch_lists(module: torch.nn.Module, names: Sequence[str]) -> set[str]:
    """Block lists the forward loops over without threading the hidden states through them.

    WanVACE's ``vace_blocks`` return ``(conditioning_states, control_hidden_states)`` hints that
    are added to the main chain later; skipping them as part of the chain would be wrong. Read
    from the forward's source: a ``for`` loop over ``self.<name>`` whose body never assigns a
    hidden-states name. Unreadable source excludes nothing.
    """
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(type(module).forward)))
    except (OSError, TypeError, SyntaxError):
        return set()
    side: set[str] = set()
    main: set[str] = set()
    for loop in ast.walk(tree):
        if not isinstance(loop, ast.For):
            continue
        iterated = {node.attr for node in ast.walk(loop.iter) if isinstance(node, ast.Attribute)
                    and isinstance(node.value, ast.Name) and node.value.id == "self"}
        lists = iterated & set(names)
        if not lists:
            continue
        assigned = {target.id for stmt in loop.body for node in ast.walk(stmt)
                    if isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign))
                    for tgt in (node.targets if isinstance(node, ast.Assign) else [node.target])
                    for target in ast.walk(tgt) if isinstance(target, ast.Name)}
        (main if assigned & set(_HIDDEN_NAMES) else side).update(lists)
    return side - main


def find_block_lists(module: torch.nn.Module) -> list[tuple[str, torch.nn.ModuleList]]:
    """Direct ``nn.ModuleList`` children that look like a chain of transformer blocks.

    A list qualifies when it is non-empty, its name says blocks/layers (and not a UNet stage or a
    refiner), all entries are one class whose forward takes inputs, and the forward threads the
    hidden states through it (not a side branch such as WanVACE's ``vace_blocks``).
    """
    found = []
    for name, child in unwrap(module).named_children():
        if not isinstance(child, torch.nn.ModuleList) or len(child) == 0:
            continue
        lowered = name.lower()
        if not ("block" in lowered or lowered == "layers"):
            continue
        if any(word in lowered for word in _EXCLUDED_LIST_WORDS):
            continue
        classes = {type(block) for block in child}
        if len(classes) != 1 or not _takes_hidden_states(child[0]):
            continue
        found.append((name, child))
    side = side_branch_lists(unwrap(module), [name for name, _ in found]) if len(found) > 1 else set()
    return [(name, child) for name, child in found if name not in side]


def _components(pipe: Any) -> dict[str, Any]:
    components = getattr(pipe, "components", None)
    if isinstance(components, dict):
        return components
    return {name: value for name, value in vars(pipe).items() if isinstance(value, torch.nn.Module)}


def find_targets(
    obj: Any,
    transformer: torch.nn.Module | None = None,
    blocks: torch.nn.ModuleList | Sequence[torch.nn.ModuleList] | None = None,
) -> list[CacheTarget]:
    """Everything :func:`cache_dit.enable_cache` should cache in ``obj`` (pipeline or module)."""
    if transformer is not None:
        if not isinstance(unwrap(transformer), torch.nn.Module):
            raise TypeError(f"transformer= must be a torch.nn.Module, got {type(transformer).__name__}")
        name = _component_name(obj, transformer) or "transformer"
        return [CacheTarget(name, unwrap(transformer), _block_lists_for(unwrap(transformer), blocks, name))]
    if isinstance(obj, torch.nn.Module):
        module = unwrap(obj)
        return [CacheTarget(type(module).__name__, module, _block_lists_for(module, blocks, type(module).__name__))]
    if blocks is not None:
        raise ValueError("blocks= needs transformer= as well when a pipeline is given")
    candidates = []
    for name, component in _components(obj).items():
        component = unwrap(component)
        if not isinstance(component, torch.nn.Module):
            continue
        if any(word in name for word in _EXCLUDED_COMPONENT_WORDS):
            continue
        lists = find_block_lists(component)
        if lists:
            candidates.append(CacheTarget(name, component, lists))
    named = [c for c in candidates if c.name.startswith("transformer")]
    targets = named or candidates
    if not targets:
        components = sorted(_components(obj))
        raise ValueError(
            f"{type(obj).__name__} has no component with recognisable transformer blocks (looked "
            f"for nn.ModuleList children named like '*blocks'/'layers' in {components}); pass "
            f"transformer= and blocks= explicitly"
        )
    return targets


def _component_name(pipe: Any, module: torch.nn.Module) -> str | None:
    if isinstance(pipe, torch.nn.Module):
        return None
    for name, component in _components(pipe).items():
        if unwrap(component) is unwrap(module):
            return name
    return None


def _block_lists_for(module, blocks, where: str) -> list[tuple[str, torch.nn.ModuleList]]:
    if blocks is None:
        lists = find_block_lists(module)
        if not lists:
            children = [n for n, c in module.named_children() if isinstance(c, torch.nn.ModuleList)]
            raise ValueError(
                f"{where} ({type(module).__name__}) has no recognisable transformer block list "
                f"(its ModuleList children: {children}); pass blocks= explicitly"
            )
        return lists
    given = [blocks] if isinstance(blocks, torch.nn.ModuleList) else list(blocks) if (
        isinstance(blocks, Sequence) and not isinstance(blocks, (str, bytes))) else None
    if not given or not all(isinstance(b, torch.nn.ModuleList) and len(b) > 0 for b in given):
        raise TypeError(
            f"blocks= must be a non-empty torch.nn.ModuleList or a list of them, got {blocks!r:.200}"
        )
    names = {id(child): name for name, child in module.named_modules()}
    result = []
    for i, block_list in enumerate(given):
        if id(block_list) not in names:
            raise ValueError(f"blocks= entry {i} is not a submodule of {where} ({type(module).__name__})")
        result.append((names[id(block_list)], block_list))
    return result
