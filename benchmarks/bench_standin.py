"""CPU cost of one stood-in block: ours vs cache-dit 1.5.3, against the floors of a diffusers hook
that only returns its input and of a bare module call.

On a GPU a FLUX.1 block takes ~0.3 ms and under F1B0 a cached step stands in for 56 of 57 blocks,
so the Python cost of each stand-in decides whether caching pays at high cache rates. Method: a
FLUX.1-shaped chain (19 double + 38 single blocks, tiny dims) and a short one (1 + 2) with the same
transformer; bare transformer calls, always caching (F1B0, no warmup); the difference of their
per-call process CPU times over the difference in stood-in blocks (54) is the cost of one
stand-in. Min over interleaved repeats of the mean of many calls, one thread.

    .venv/bin/python benchmarks/bench_standin.py [--compile] [--calls 200 --repeats 7]

cache-dit 1.5.3 runs in its own environment (``bash scripts/setup_peers.sh`` makes .venv-peers;
its package name clashes with ours): this script re-runs itself there with ``--library peer``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import torch

LONG, SHORT = (19, 38), (1, 2)
PEER_PYTHON = os.path.join(os.path.dirname(__file__), "..", ".venv-peers", "bin", "python")


def make_transformer(double: int, single: int) -> torch.nn.Module:
    from diffusers import FluxTransformer2DModel

    torch.manual_seed(0)
    return FluxTransformer2DModel(
        patch_size=1, in_channels=4, num_layers=double, num_single_layers=single,
        attention_head_dim=8, num_attention_heads=1, joint_attention_dim=8,
        pooled_projection_dim=8, axes_dims_rope=[2, 2, 4]).eval()


def _inputs() -> dict:
    gen = torch.Generator().manual_seed(0)
    return dict(hidden_states=torch.randn(1, 4, 4, generator=gen),
                encoder_hidden_states=torch.randn(1, 2, 8, generator=gen),
                pooled_projections=torch.randn(1, 8, generator=gen),
                txt_ids=torch.zeros(2, 3), img_ids=torch.zeros(4, 3))


def _blocks(transformer) -> list[torch.nn.Module]:
    return [*transformer.transformer_blocks, *transformer.single_transformer_blocks]


def setup_ours(transformer) -> None:
    import cache_dit

    cache_dit.enable_cache(transformer, Fn_compute_blocks=1, Bn_compute_blocks=0, warmup_steps=0,
                           residual_diff_threshold=1e9, num_inference_steps=10**6)


def setup_noop_hook(transformer) -> None:
    from diffusers.hooks import HookRegistry, ModelHook

    class ReturnInput(ModelHook):
        def new_forward(self, module, *args, **kwargs):
            return kwargs["encoder_hidden_states"], kwargs["hidden_states"]

    for block in _blocks(transformer):
        HookRegistry.check_if_exists_or_initialize(block).register_hook(ReturnInput(), "noop")


def setup_bare(transformer) -> None:
    class ReturnInput(torch.nn.Module):
        def forward(self, hidden_states, encoder_hidden_states, **kwargs):
            return encoder_hidden_states, hidden_states

    for name in ("transformer_blocks", "single_transformer_blocks"):
        blocks = getattr(transformer, name)
        for i in range(len(blocks)):
            blocks[i] = ReturnInput()


def setup_peer(transformer) -> None:
    import cache_dit
    from cache_dit import BlockAdapter, DBCacheConfig, ForwardPattern
    from cache_dit.caching.patch_functors import FluxPatchFunctor

    adapter = BlockAdapter(
        transformer=transformer,
        blocks=transformer.transformer_blocks + transformer.single_transformer_blocks,
        blocks_name="transformer_blocks", dummy_blocks_names=["single_transformer_blocks"],
        patch_functor=FluxPatchFunctor(), forward_pattern=ForwardPattern.Pattern_1)
    cache_dit.enable_cache(adapter, cache_config=DBCacheConfig(
        Fn_compute_blocks=1, Bn_compute_blocks=0, residual_diff_threshold=1e9, max_warmup_steps=0,
        num_inference_steps=10**6))


SETUPS = {"ours": setup_ours, "diffusers-noop-hook": setup_noop_hook, "bare-module": setup_bare,
          "cache-dit-1.5.3": setup_peer}


class Case:
    """One library on one chain, set up once and timed in turns with the others."""

    def __init__(self, library: str, chain: tuple[int, int], compile_blocks: bool) -> None:
        self.library, self.chain, self.compiled = library, chain, compile_blocks
        self.transformer = make_transformer(*chain)
        SETUPS[library](self.transformer)
        if compile_blocks:
            for block in _blocks(self.transformer):
                block.compile(backend="eager", dynamic=False)
        self.inputs = _inputs()
        self.step = 0
        self.best = float("inf")
        self.inner_runs = [0]  # executions of a middle block on cached steps: must stay 0
        if library in ("ours", "cache-dit-1.5.3") and chain == LONG:
            linear = next(m for m in _blocks(self.transformer)[10].modules()
                          if isinstance(m, torch.nn.Linear))
            linear.register_forward_hook(lambda *_: self.inner_runs.__setitem__(
                0, self.inner_runs[0] + 1))
        with torch.no_grad():
            self.run(5)  # warm-up: the first call computes, compiled graphs get built
        self.inner_runs[0] = 0

    def run(self, calls: int) -> None:
        for _ in range(calls):
            self.step += 1
            self.transformer(timestep=torch.tensor([1.0 - self.step * 1e-6]), **self.inputs)

    def time(self, calls: int) -> None:
        """CPU seconds per call of this process (load from other processes does not count)."""
        with torch.no_grad():
            start = time.process_time()
            self.run(calls)
            self.best = min(self.best, (time.process_time() - start) / calls)


def measure(libraries: list[str], calls: int, repeats: int, compile_blocks: bool) -> list[dict]:
    """Per library: the min over interleaved repeats of the long and the short chain."""
    cases = {(lib, chain): Case(lib, chain, compile_blocks)
             for lib in libraries for chain in (LONG, SHORT)}
    for _ in range(repeats):
        for case in cases.values():
            case.time(calls)
    stood_in = (sum(LONG) - 1) - (sum(SHORT) - 1)
    rows = []
    for lib in libraries:
        long, short = cases[(lib, LONG)], cases[(lib, SHORT)]
        if long.inner_runs[0]:
            raise AssertionError(f"{lib}: a middle block ran {long.inner_runs[0]} times on cached steps")
        rows.append({"library": lib, "compiled": compile_blocks, "long_call_us": long.best * 1e6,
                     "short_call_us": short.best * 1e6,
                     "us_per_stand_in": (long.best - short.best) / stood_in * 1e6})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--compile", action="store_true", help="also with compiled blocks")
    parser.add_argument("--library", choices=["all", "peer", *SETUPS], default="all")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    import logging

    logging.disable(logging.WARNING)
    modes = [False, True] if args.compile else [False]
    if args.library == "peer":  # inside .venv-peers: cache-dit 1.5.3 only, JSON out
        print(json.dumps([row for c in modes
                          for row in measure(["cache-dit-1.5.3"], args.calls, args.repeats, c)]))
        return 0
    libraries = ["bare-module", "diffusers-noop-hook", "ours"] if args.library == "all" else [
        args.library]
    rows = [row for compiled in modes
            for row in measure(libraries, args.calls, args.repeats, compiled)]
    if args.library == "all" and os.path.exists(PEER_PYTHON):
        cmd = [PEER_PYTHON, __file__, "--library", "peer", "--calls", str(args.calls),
               "--repeats", str(args.repeats)] + (["--compile"] if args.compile else [])
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd="/")
        if done.returncode == 0:
            rows.extend(json.loads(done.stdout.strip().splitlines()[-1]))
        else:
            print(f"cache-dit 1.5.3 run failed:\n{done.stderr[-2000:]}", file=sys.stderr)
    elif args.library == "all":
        print("cache-dit 1.5.3: no .venv-peers (bash scripts/setup_peers.sh); skipped",
              file=sys.stderr)
    print(f"{'library':<22} {'blocks':<9} {'57-block call':>14} {'3-block call':>13} "
          f"{'us / stand-in':>14}")
    for row in sorted(rows, key=lambda r: (r["compiled"], r["us_per_stand_in"])):
        print(f"{row['library']:<22} {'compiled' if row['compiled'] else 'eager':<9} "
              f"{row['long_call_us']:>12.0f}us {row['short_call_us']:>11.0f}us "
              f"{row['us_per_stand_in']:>14.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
