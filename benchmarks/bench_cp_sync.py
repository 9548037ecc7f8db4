"""What the context-parallel decision sync costs: 2 processes, gloo, 127.0.0.1.

    .venv/bin/python benchmarks/bench_cp_sync.py [--steps 12] [--repeats 2] [--iters 2000]

Printed (rank 0):
1. micro: wall time of the sync alone, the all_reduce(SUM) of the 2 float64 [numerator,
   denominator] over the 2-rank group, back to back (median and p90 of --iters calls);
2. in situ: the medium random-weight FLUX (cache_dit.bench.models, 8 double + 16 single blocks,
   24x24 latents + 64 text tokens) under Ulysses degree 2 with DBCache F1B0: wall time per
   denoising step, time spent inside the cache's reducer per step (one call per decision, each
   timed around the real reducer on rank 0) and its share of the step. That time includes any
   wait for the slower rank, which without the sync would move to the next attention all-to-all
   instead; one more call splits the two with a barrier before each reduce.

CPU only: torch.accelerator.device_count is patched to 1 in the workers because diffusers 0.42.1
divides by it when it builds the mesh (0 on CPU-only torch).
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import sys
import time
import warnings
from datetime import timedelta

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


class _Timed:
    """Wraps the controller's reducer (an instance attribute) to time each decision's sync.

    With ``split_wait`` a barrier runs first (benchmark only), so the time a rank waits for the
    slower one (which without the sync it would wait at the next attention all-to-all) is
    measured apart from the all-reduce itself."""

    def __init__(self, inner, split_wait: bool) -> None:
        self.inner = inner
        self.split_wait = split_wait
        self.seconds: list[float] = []
        self.waits: list[float] = []

    def __call__(self, parts):
        if self.split_wait:
            start = time.perf_counter()
            dist.barrier(group=self.inner.group)
            self.waits.append(time.perf_counter() - start)
        start = time.perf_counter()
        out = self.inner(parts)
        self.seconds.append(time.perf_counter() - start)
        return out

    def __getattr__(self, name):
        return getattr(self.inner, name)


def _micro(iters: int) -> list[float]:
    parts = torch.tensor([1.0, 2.0], dtype=torch.float64)
    for _ in range(50):
        dist.all_reduce(parts.clone())
    times = []
    for _ in range(iters):
        tensor = parts.clone()
        start = time.perf_counter()
        dist.all_reduce(tensor)
        times.append(time.perf_counter() - start)
    return times


def _in_situ(steps: int, repeats: int, split_wait: bool):
    import cache_dit
    from cache_dit.api import _session_of
    from cache_dit.bench.models import build_medium_flux_pipeline
    from diffusers import ContextParallelConfig

    pipe, prompt = build_medium_flux_pipeline()
    pipe.transformer.enable_parallelism(config=ContextParallelConfig(ulysses_degree=2))
    cache_dit.enable_cache(pipe, Fn_compute_blocks=1, Bn_compute_blocks=0, warmup_steps=2,
                           residual_diff_threshold=0.08)

    def call():
        with torch.no_grad():
            pipe(height=48, width=48, num_inference_steps=steps, guidance_scale=3.5,
                 output_type="latent", generator=torch.Generator().manual_seed(0), **prompt)

    call()  # warm-up; installs the reducer
    controller = _session_of(pipe).controllers[0]
    timed = _Timed(controller.diff_reducer, split_wait)
    controller.diff_reducer = timed
    walls = []
    for _ in range(repeats):
        dist.barrier()
        start = time.perf_counter()
        call()
        walls.append(time.perf_counter() - start)
    stats = cache_dit.summary(pipe)[0]
    return walls, timed, stats


def _worker(rank: int, port: int, args, queue) -> None:
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=2, timeout=timedelta(seconds=60))
    torch.accelerator.device_count = lambda: 1  # see the module docstring
    try:
        micro = _micro(args.iters)
        walls, timed, stats = _in_situ(args.steps, args.repeats, False)
        _, split, _ = _in_situ(args.steps, 1, True)
        if rank == 0:
            queue.put(dict(micro=micro, walls=walls, syncs=timed.seconds, cached=stats.cached_steps,
                           saved=stats.blocks_saved_fraction, after_wait=split.seconds,
                           waits=split.waits))
        dist.barrier()
    finally:
        dist.destroy_process_group()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--iters", type=int, default=2000)
    args = parser.parse_args()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(rank, port, args, queue)) for rank in range(2)]
    for proc in procs:
        proc.start()
    result = queue.get(timeout=1800)
    for proc in procs:
        proc.join()

    micro = sorted(result["micro"])
    p50, p90 = micro[len(micro) // 2] * 1e6, micro[int(len(micro) * 0.9)] * 1e6
    steps, repeats = args.steps, args.repeats
    step_ms = statistics.median(result["walls"]) / steps * 1e3
    syncs = result["syncs"]
    decisions_per_step = len(syncs) / (steps * repeats)
    sync_per_step_ms = sum(syncs) / (steps * repeats) * 1e3
    print(f"host: {os.cpu_count()} cores, torch {torch.__version__}, gloo over 127.0.0.1, 2 ranks")
    print(f"micro  all_reduce of 2 float64: median {p50:.0f} us, p90 {p90:.0f} us "
          f"({len(micro)} calls)")
    print(f"in situ medium FLUX, Ulysses 2, F1B0 R0.08, {steps} steps x {repeats}: "
          f"cached steps {result['cached']}, blocks saved {result['saved']:.0%}")
    print(f"  step wall time (median call / steps): {step_ms:.1f} ms")
    print(f"  decisions per step: {decisions_per_step:.2f}; sync per decision: median "
          f"{statistics.median(syncs) * 1e6:.0f} us, max {max(syncs) * 1e6:.0f} us")
    print(f"  sync time per step: {sync_per_step_ms:.3f} ms = "
          f"{sync_per_step_ms / step_ms:.2%} of a step")
    after, waits = result["after_wait"], result["waits"]
    print(f"  split (one more call, barrier first): waiting for the other rank median "
          f"{statistics.median(waits) * 1e6:.0f} us, the all_reduce itself median "
          f"{statistics.median(after) * 1e6:.0f} us, p90 "
          f"{sorted(after)[int(len(after) * 0.9)] * 1e6:.0f} us")


if __name__ == "__main__":
    sys.exit(main())
