"""One rank of the context-parallel cache tests (launched twice by tests/test_parallel.py).

    python tests/parallel_worker.py RANK WORLD_SIZE PORT OUT_DIR [SCENARIO ...]

Each rank first runs every scenario *single-process* (before torch.distributed is initialised: the
reference), then joins a gloo group on 127.0.0.1 with a short timeout and runs the same scenarios
again, sharded with diffusers' context parallelism (or, for the data-parallel scenario, unsharded
with different inputs per rank). Everything it saw goes to OUT_DIR/rank{RANK}.pt; the test compares.
Nothing is shared between the two processes except what torch.distributed sends.
"""

from __future__ import annotations

import logging
import os
import sys
import time
import warnings
from datetime import timedelta

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import cache_dit  # noqa: E402
import flux_fixture  # noqa: E402
from cache_dit.testing import tiny_pipelines  # noqa: E402

PG_TIMEOUT_S = 30  # a rank stuck in a collective the other never joins fails after this


# ------------------------------------------------------------------------------------ scenarios
# Thresholds sit on purpose where the two shards' own diffs straddle them at some step (rank 0
# alone would cache, rank 1 alone would not, or the reverse) while the global diff is clear of them;
# test_parallel.py checks that this is still so from the per-rank parts each run records.
# Flux step 3: rank 0 alone 0.3307, rank 1 alone 0.3273, whole sequence 0.3290 -> threshold 0.33.
# Wan step 1 (cond): rank 0 alone 0.0721, rank 1 alone 0.0843, whole 0.0778 -> threshold 0.08.
FLUX_OPTS = dict(Fn_compute_blocks=1, Bn_compute_blocks=1, warmup_steps=3,
                 residual_diff_threshold=0.33)
WAN_OPTS = dict(Fn_compute_blocks=1, Bn_compute_blocks=0, warmup_steps=1,
                residual_diff_threshold=0.08)

SCENARIOS: dict[str, dict] = {
    # Flux shards at the transformer's entry: every block sees a shard.
    "flux_cache_first": dict(model="flux", order="cache_first", steps=10,
                             options=FLUX_OPTS),
    "flux_cp_first": dict(model="flux", order="cp_first", steps=10,
                          options=FLUX_OPTS),
    "flux_taylorseer": dict(model="flux", order="cp_first", steps=10,
                            options=dict(FLUX_OPTS,
                                         enable_taylorseer=True, enable_encoder_taylorseer=True,
                                         taylorseer_kwargs={"n_derivatives": 1})),
    # Ring attention (see RingFluxProcessorCPU): the same shards between blocks, other collectives.
    "flux_ring": dict(model="flux", order="cache_first", steps=10, ring=True,
                      options=FLUX_OPTS),
    # Wan shards inside a hook on blocks[0] (whole input, sharded output); separate CFG: 2 streams.
    "wan_cache_first": dict(model="wan", order="cache_first", steps=8,
                            options=WAN_OPTS),
    "wan_cp_first": dict(model="wan", order="cp_first", steps=8,
                         options=WAN_OPTS),
    # Wan 2.2 TI2V-style image-to-video: per-token timesteps (0 on the conditioning frame), which
    # diffusers splits along with the tokens. 2 latent frames: rank 0's shard is exactly the
    # conditioning frame, so the timestep it would read alone is 0 on every call.
    "wan_ti2v_cache_first": dict(model="wan_ti2v", order="cache_first", steps=8,
                                 options=dict(WAN_OPTS, residual_diff_threshold=0.05)),
    "wan_shared_cfg": dict(model="wan", order="cp_first", steps=8,
                           options=dict(WAN_OPTS,
                                        cfg_diff_compute_separate=False)),
}
# Per-sample decisions on a sharded model: two prompts in one batch, one collective per step that
# sums every sample's parts. Checked by their own tests (the parts are one row per sample).
PER_SAMPLE_SCENARIOS: dict[str, dict] = {
    "flux_per_sample": dict(model="flux", order="cp_first", steps=10, batch=2,
                            options=dict(FLUX_OPTS, per_sample_decisions=True)),
    "flux_per_sample_budget": dict(model="flux", order="cache_first", steps=10, batch=2,
                                   options=dict(Fn_compute_blocks=1, Bn_compute_blocks=1,
                                                per_sample_decisions=True, compute_budget=0.6)),
}
# No probe (Fn_compute_blocks=0): the schedule decides before any block, so no collective at all.
PROBE_FREE_SCENARIOS: dict[str, dict] = {
    "flux_probe_free": dict(model="flux", order="cp_first", steps=10,
                            options=dict(Fn_compute_blocks=0, Bn_compute_blocks=1,
                                         compute_budget=0.5, calibrator="foca")),
}
# Data-parallel serving: no sharding, each rank its own request (seed, step count).
DATA_PARALLEL = {0: dict(seed=3, steps=9), 1: dict(seed=4, steps=6)}
DP_OPTS = dict(FLUX_OPTS, residual_diff_threshold=0.32)


def _cpu_flash_forward_op(ctx, query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False,
                          scale=None, enable_gqa=False, return_lse=False, _save_ctx=True,
                          _parallel_config=None):
    """A forward op for diffusers' templated ring attention that runs on CPU: torch's CPU flash
    kernel returns the log-sum-exp the ring needs to merge partial results (the stock native op
    refuses ``return_lse=True``). Inference only (no backward state saved)."""
    if attn_mask is not None or enable_gqa:
        raise ValueError("test kernel: no mask / GQA")
    out, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
        query.transpose(1, 2), key.transpose(1, 2), value.transpose(1, 2), dropout_p, is_causal,
        scale=scale)
    out, lse = out.transpose(1, 2), lse.transpose(1, 2)  # (B, S, H, D), (B, S, H)
    return (out, lse) if return_lse else out


class RingFluxProcessorCPU:
    """Flux attention for ring CP on CPU, set per attention *instance* (``set_processor``).

    Projections, QK norms, joint text+image sequence and RoPE as diffusers' FluxAttnProcessor; the
    attention itself is diffusers' ``TemplatedRingAttention`` (K/V all-gathered over the ring mesh,
    partial outputs merged by their LSE) with :func:`_cpu_flash_forward_op` as its kernel. Only the
    kernel is ours; the single-process reference uses the stock processor."""

    _attention_backend = None
    _parallel_config = None  # set by enable_parallelism

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None,
                 image_rotary_emb=None):
        from diffusers.models.attention_dispatch import TemplatedRingAttention
        from diffusers.models.transformers.transformer_flux import (_get_qkv_projections,
                                                                    apply_rotary_emb)

        q, k, v, eq, ek, ev = _get_qkv_projections(attn, hidden_states, encoder_hidden_states)
        q, k, v = (t.unflatten(-1, (-1, attn.head_dim)) for t in (q, k, v))
        q, k = attn.norm_q(q), attn.norm_k(k)
        if attn.added_kv_proj_dim is not None:
            eq, ek, ev = (t.unflatten(-1, (-1, attn.head_dim)) for t in (eq, ek, ev))
            eq, ek = attn.norm_added_q(eq), attn.norm_added_k(ek)
            q, k, v = torch.cat([eq, q], 1), torch.cat([ek, k], 1), torch.cat([ev, v], 1)
        if image_rotary_emb is not None:
            q = apply_rotary_emb(q, image_rotary_emb, sequence_dim=1)
            k = apply_rotary_emb(k, image_rotary_emb, sequence_dim=1)
        out = TemplatedRingAttention.apply(q, k, v, attention_mask, 0.0, False, None, False, False,
                                           _cpu_flash_forward_op, None, self._parallel_config)
        out = out.flatten(2, 3).to(q.dtype)
        if encoder_hidden_states is None:
            return out
        text, image = out.split_with_sizes(
            [encoder_hidden_states.shape[1], out.shape[1] - encoder_hidden_states.shape[1]], dim=1)
        image = attn.to_out[1](attn.to_out[0](image.contiguous()))
        return image, attn.to_add_out(text.contiguous())


def _flux_embeds(batch: int = 1):
    return flux_fixture.embeds(batch, text_len=8)  # even: Ulysses/ring split the text tokens too


def build(model: str):
    if model == "flux":
        return flux_fixture.make_flux()
    if model == "wan":
        return tiny_pipelines.build("wan").pipe
    if model == "wan_ti2v":
        tp = tiny_pipelines

        def components():
            return dict(transformer=tp._wan_transformer(), vae=tp._vae_wan(tp._WAN_Z),
                        scheduler=tp._flow(shift=3.0), text_encoder=None, tokenizer=None,
                        image_encoder=None, image_processor=None)

        return tp._make("WanImageToVideoPipeline", **tp._seeded(components), expand_timesteps=True)
    raise ValueError(model)


def call(pipe, model: str, steps: int, seed: int = 0, batch: int = 1) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        if model == "flux":
            return pipe(height=16, width=16, num_inference_steps=steps, generator=gen,
                        output_type="latent", **_flux_embeds(batch)).images
        kw = dict(tiny_pipelines._WAN_VIDEO)
        if model == "wan_ti2v":  # 5 frames -> 2 latent frames of 2x2 tokens
            kw.update(num_frames=5, image=tiny_pipelines._pil_image(32, 0))
        return pipe(**kw, num_inference_steps=steps, guidance_scale=5.0, output_type="latent",
                    generator=gen, **tiny_pipelines._wan_embeds()).frames


def record(pipe, out: torch.Tensor, seconds: float) -> dict:
    [stats] = cache_dit.summary(pipe)
    controller = cache_dit.api._session_of(pipe).controllers[0]
    reducer = controller.diff_reducer
    return dict(
        output=out.detach().clone(),
        streams={label: dict(cached=list(s.cached_steps), diffs=dict(s.residual_diffs),
                             steps=s.steps)
                 for label, s in stats.streams.items()},
        summary=str(stats),
        reducer=None if reducer is None else type(reducer).__name__,
        collectives=None if reducer is None else reducer.calls,
        local_parts=None if reducer is None else [p.tolist() for p in reducer.local_parts],
        seconds=seconds,
    )


def run_scenario(spec: dict, parallel: dict | None) -> dict:
    from diffusers import ContextParallelConfig

    options = dict(spec["options"])
    pipe = build(spec["model"])
    if parallel is not None and spec.get("ring"):
        parallel = dict(ring_degree=parallel["ulysses_degree"])
        for module in pipe.transformer.modules():
            if hasattr(module, "set_processor") and hasattr(module, "processor"):
                module.set_processor(RingFluxProcessorCPU())
    if parallel is not None and spec["order"] == "cp_first":
        pipe.transformer.enable_parallelism(config=ContextParallelConfig(**parallel))
    cache_dit.enable_cache(pipe, **options)
    if parallel is not None and spec["order"] == "cache_first":
        pipe.transformer.enable_parallelism(config=ContextParallelConfig(**parallel))
    start = time.perf_counter()
    out = call(pipe, spec["model"], spec["steps"], batch=spec.get("batch", 1))
    return record(pipe, out, time.perf_counter() - start)


def _spec(name: str) -> dict:
    return {**SCENARIOS, **PER_SAMPLE_SCENARIOS, **PROBE_FREE_SCENARIOS}[name]


def main() -> None:
    rank, world, port, out_dir = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    warnings.filterwarnings("ignore")  # (this process only; the test module imports SCENARIOS)
    logging.getLogger("diffusers").setLevel(logging.ERROR)
    names = sys.argv[5:] or (list(SCENARIOS) + list(PER_SAMPLE_SCENARIOS)
                             + list(PROBE_FREE_SCENARIOS) + ["data_parallel"])
    parallel = dict(ulysses_degree=world)
    torch.set_num_threads(1)
    results: dict = {"single": {}, "parallel": {}}

    # 1. single process: the reference (torch.distributed not initialised yet)
    for name in names:
        if name == "data_parallel":
            dp = DATA_PARALLEL[rank]
            pipe = build("flux")
            cache_dit.enable_cache(pipe, **DP_OPTS)
            results["single"][name] = record(pipe, call(pipe, "flux", dp["steps"], dp["seed"]), 0)
        else:
            results["single"][name] = run_scenario(_spec(name), None)

    # 2. the same work on two ranks
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=world, timeout=timedelta(seconds=PG_TIMEOUT_S))
    # diffusers 0.42.1 `_resolve_parallel_config` computes
    # `rank % torch.accelerator.device_count()`, which divides by zero on CPU-only torch. Only this worker process sees the
    # patch; the device it picks is unused on CPU.
    torch.accelerator.device_count = lambda: 1
    try:
        for name in names:
            if name == "data_parallel":
                dp = DATA_PARALLEL[rank]
                pipe = build("flux")
                cache_dit.enable_cache(pipe, **DP_OPTS)
                start = time.perf_counter()
                out = call(pipe, "flux", dp["steps"], dp["seed"])
                results["parallel"][name] = record(pipe, out, time.perf_counter() - start)
            else:
                results["parallel"][name] = run_scenario(_spec(name), parallel)
        dist.barrier()
    finally:
        torch.save(results, os.path.join(out_dir, f"rank{rank}.pt"))
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
