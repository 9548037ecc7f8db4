"""DBCache under diffusers' context parallelism: two gloo processes on 127.0.0.1.

tests/parallel_worker.py runs every scenario once single-process (the reference) and once on two
ranks (Ulysses degree 2, or ring for ``flux_ring``; data-parallel for ``data_parallel``). The
workers use a 30 s process-group timeout and this module kills them after WORKER_TIMEOUT_S, so a
deadlock fails the test instead of hanging CI. Thresholds are chosen where the two shards' own
diffs fall on opposite sides (checked below), so unsynced ranks would take different decisions.

The second half checks the hook arrangement in-process, without torch.distributed.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest
import torch

import cache_dit
from cache_dit.hooks import BLOCK_HOOK, TRANSFORMER_HOOK, controller_of
from cache_dit.parallel import ContextParallelSync, arrange_hooks

sys.path.insert(0, os.path.dirname(__file__))
from parallel_worker import (DATA_PARALLEL, PER_SAMPLE_SCENARIOS, PROBE_FREE_SCENARIOS,  # noqa: E402
                             SCENARIOS)

WORKER_TIMEOUT_S = 150
HERE = os.path.dirname(os.path.abspath(__file__))
CP_SCENARIOS = sorted(SCENARIOS)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    """Both ranks' records: ``[rank0, rank1]``, each ``{"single": {...}, "parallel": {...}}``."""
    out = tmp_path_factory.mktemp("cp")
    port = _free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    procs = [
        subprocess.Popen([sys.executable, os.path.join(HERE, "parallel_worker.py"), str(rank), "2",
                          str(port), str(out)], env=env, stdout=subprocess.DEVNULL,
                         stderr=open(out / f"stderr{rank}.txt", "w"))
        for rank in range(2)
    ]
    try:
        codes = [proc.wait(timeout=WORKER_TIMEOUT_S) for proc in procs]
    except subprocess.TimeoutExpired:
        codes = None
    finally:
        for proc in procs:  # only the two workers started here
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    if codes is None or any(codes):
        tails = "\n".join((out / f"stderr{r}.txt").read_text()[-2000:] for r in range(2))
        pytest.fail(f"workers {'timed out (deadlock?)' if codes is None else f'exited {codes}'}:"
                    f"\n{tails}")
    return [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(2)]


pytestmark = pytest.mark.timeout(WORKER_TIMEOUT_S + 30)


def _decisions(name: str, record: dict) -> list[tuple[int, str]]:
    """(step, stream) of each collective-backed decision, in call order: steps ascending, streams
    in branch order; with a shared CFG decision only the first stream decides."""
    streams = list(record["streams"])
    if SCENARIOS[name]["options"].get("cfg_diff_compute_separate") is False:
        streams = streams[:1]
    steps = sorted({s for label in streams for s in record["streams"][label]["diffs"]})
    return [(s, label) for s in steps for label in streams
            if s in record["streams"][label]["diffs"]]


# ------------------------------------------------------------------------------ context parallel
@pytest.mark.parametrize("name", CP_SCENARIOS)
def test_sharded_run_equals_single_process_and_ranks_agree(ranks, name):
    for rank, result in enumerate(ranks):
        single, par = result["single"][name], result["parallel"][name]
        assert par["reducer"] == "ShardedDiffReducer"
        assert single["reducer"] is None
        assert list(par["streams"]) == list(single["streams"])
        for label, ref in single["streams"].items():
            got = par["streams"][label]
            assert ref["cached"], f"{name}: the reference caches nothing; the check would be empty"
            assert got["cached"] == ref["cached"], (rank, label)
            assert got["steps"] == ref["steps"]
            assert sorted(got["diffs"]) == sorted(ref["diffs"])
            for step, diff in ref["diffs"].items():
                assert got["diffs"][step] == pytest.approx(diff, rel=1e-5), (rank, label, step)
        torch.testing.assert_close(par["output"], single["output"], rtol=0, atol=1e-5)
    zero, one = (r["parallel"][name] for r in ranks)
    assert torch.equal(zero["output"], one["output"])
    assert zero["streams"] == one["streams"]  # cached steps and diffs, bit for bit
    assert zero["summary"] == one["summary"]


@pytest.mark.parametrize("name", CP_SCENARIOS)
def test_decision_uses_summed_parts_and_unsynced_ranks_would_disagree(ranks, name):
    zero, one = (r["parallel"][name] for r in ranks)
    decisions = _decisions(name, zero)
    assert len(zero["local_parts"]) == len(one["local_parts"]) == len(decisions)
    threshold = SCENARIOS[name]["options"]["residual_diff_threshold"]
    warmup = SCENARIOS[name]["options"]["warmup_steps"]
    straddles = []
    parts = zip(decisions, zero["local_parts"], one["local_parts"])
    for (step, label), (n0, d0), (n1, d1) in parts:
        diff = zero["streams"][label]["diffs"][step]
        # the ratio of the summed numerators and denominators, not a mean of per-rank ratios
        assert diff == pytest.approx((n0 + n1) / (d0 + d1), rel=1e-12)
        alone = (n0 / d0, n1 / d1)
        if step >= warmup:
            # clear of the threshold: float noise between layouts cannot flip the decision
            assert abs(diff - threshold) > 1e-3 * threshold, (step, label, diff)
            if (alone[0] < threshold) != (alone[1] < threshold):
                straddles.append((step, label, alone, diff))
    # The first eligible decision where the ranks alone disagree: every earlier one agreed, so
    # unsynced ranks would reach it with the same history and split there (deadlock).
    assert straddles, f"{name}: threshold {threshold} never separates the ranks' own diffs"


@pytest.mark.parametrize("name", CP_SCENARIOS)
def test_one_small_collective_per_decision(ranks, name):
    for result in ranks:
        par = result["parallel"][name]
        # The pipeline's scheduler places the steps, so no rank reads (or agrees on) the
        # timestep, even when enable_cache came first and that call's timestep arrived split.
        assert par["collectives"] == len(_decisions(name, par))


def test_taylorseer_changes_the_output_and_stays_consistent(ranks):
    for result in ranks:
        plain, seer = result["parallel"]["flux_cp_first"], result["parallel"]["flux_taylorseer"]
        assert seer["streams"]["main"]["cached"] == plain["streams"]["main"]["cached"]
        assert not torch.allclose(seer["output"], plain["output"], atol=1e-4)


# ------------------------------------------------------------------- per-sample decisions, sharded
@pytest.mark.parametrize("name", sorted(PER_SAMPLE_SCENARIOS))
def test_per_sample_sharded_run_equals_single_process_and_ranks_agree(ranks, name):
    batch = PER_SAMPLE_SCENARIOS[name]["batch"]
    labels = [f"main[{i}]" for i in range(batch)]
    for result in ranks:
        single, par = result["single"][name], result["parallel"][name]
        assert par["reducer"] == "ShardedDiffReducer"
        for label in labels:
            ref, got = single["streams"][label], par["streams"][label]
            assert ref["cached"], f"{name}: {label} caches nothing; the check would be empty"
            assert got["cached"] == ref["cached"], label
            assert sorted(got["diffs"]) == sorted(ref["diffs"])
            for step, diff in ref["diffs"].items():
                assert got["diffs"][step] == pytest.approx(diff, rel=1e-5), (label, step)
        torch.testing.assert_close(par["output"], single["output"], rtol=0, atol=1e-5)
        # one collective per step carries every sample's parts (rows), not one per sample
        decided = sorted(par["streams"][labels[0]]["diffs"])
        assert par["collectives"] == len(decided)
        assert all(len(parts) == batch for parts in par["local_parts"])
    zero, one = (r["parallel"][name] for r in ranks)
    assert torch.equal(zero["output"], one["output"])
    assert zero["streams"] == one["streams"]


def test_per_sample_sharded_decisions_differ_per_sample_and_use_summed_parts(ranks):
    name = "flux_per_sample"
    options = PER_SAMPLE_SCENARIOS[name]["options"]
    threshold, warmup = options["residual_diff_threshold"], options["warmup_steps"]
    zero, one = (r["parallel"][name] for r in ranks)
    cached = [zero["streams"][f"main[{i}]"]["cached"] for i in range(2)]
    assert cached[0] != cached[1], "the two samples must decide differently for the test to bite"
    steps = sorted(zero["streams"]["main[0]"]["diffs"])
    straddles = []
    for step, rows0, rows1 in zip(steps, zero["local_parts"], one["local_parts"]):
        for i, ((n0, d0), (n1, d1)) in enumerate(zip(rows0, rows1)):
            diff = zero["streams"][f"main[{i}]"]["diffs"][step]
            assert diff == pytest.approx((n0 + n1) / (d0 + d1), rel=1e-12), (step, i)
            if step >= warmup and (n0 / d0 < threshold) != (n1 / d1 < threshold):
                assert abs(diff - threshold) > 1e-3 * threshold, (step, i, diff)
                straddles.append((step, i))
    assert straddles, "no step where the ranks alone would have decided a sample differently"


@pytest.mark.parametrize("name", sorted(PROBE_FREE_SCENARIOS))
def test_probe_free_sharded_run_equals_single_process_without_collectives(ranks, name):
    for result in ranks:
        single, par = result["single"][name], result["parallel"][name]
        assert single["streams"]["main"]["cached"], "caches something"
        assert par["streams"] == single["streams"]
        assert par["collectives"] == 0 and par["local_parts"] == []
        torch.testing.assert_close(par["output"], single["output"], rtol=0, atol=1e-5)
    zero, one = (r["parallel"][name] for r in ranks)
    assert torch.equal(zero["output"], one["output"])


def test_data_parallel_ranks_issue_no_collective(ranks):
    assert DATA_PARALLEL[0]["steps"] != DATA_PARALLEL[1]["steps"]
    outputs = []
    for rank, result in enumerate(ranks):
        single, par = result["single"]["data_parallel"], result["parallel"]["data_parallel"]
        assert par["reducer"] is None and par["collectives"] is None
        assert par["streams"]["main"]["steps"] == DATA_PARALLEL[rank]["steps"]
        assert par["streams"] == single["streams"]
        assert par["streams"]["main"]["cached"], "caches something"
        assert torch.equal(par["output"], single["output"])
        outputs.append(par["output"])
    assert not torch.equal(outputs[0], outputs[1])  # really different requests


# ------------------------------------------------------------------------------ hook arrangement
def _split_hook(calls: list | None = None):
    """A real diffusers ContextParallelSplitHook with an empty plan: it is recognised as a CP hook
    but splits nothing, so forwards work without torch.distributed. ``calls`` counts its runs."""
    from diffusers.hooks.context_parallel import ContextParallelSplitHook

    hook = ContextParallelSplitHook({}, parallel_config=None)
    if calls is not None:
        inner = hook.pre_forward

        def counted(module, *args, **kwargs):
            calls.append(1)
            return inner(module, *args, **kwargs)

        hook.pre_forward = counted  # this instance only
    return hook


def _register(module, hook, name):
    from diffusers.hooks import HookRegistry

    HookRegistry.check_if_exists_or_initialize(module).register_hook(hook, name)


def _wan():
    from cache_dit.testing.tiny_pipelines import build

    return build("wan")


@pytest.mark.timeout(60)
def test_arrangement_puts_block_hooks_inside_and_transformer_hook_outside_cp_hooks():
    case = _wan()
    transformer = case.pipe.transformer
    ref = case.run(seed=0, output_type="latent")
    options = dict(residual_diff_threshold=0.08, Fn_compute_blocks=1, warmup_steps=1)
    cache_dit.enable_cache(case.pipe, **options)
    expected = case.run(seed=0, output_type="latent")
    expected_steps = cache_dit.summary(case.pipe)[0].cached_steps
    assert expected_steps
    cache_dit.disable_cache(case.pipe)
    assert torch.equal(case.run(seed=0, output_type="latent"), ref)

    # "enable_parallelism first": CP hooks are already there, ours come on top of them
    split_calls = []
    _register(transformer.blocks[0], _split_hook(split_calls), "cp_input---blocks.0")
    _register(transformer, _split_hook(), "cp_input---")
    cache_dit.enable_cache(case.pipe, **options)
    blocks_order = transformer.blocks[0]._diffusers_hook._hook_order
    assert blocks_order == ["cp_input---blocks.0", BLOCK_HOOK]
    moved = arrange_hooks(transformer, list(transformer.blocks), TRANSFORMER_HOOK, BLOCK_HOOK)
    assert not moved  # our transformer hook was registered after the CP one: already outside
    assert transformer.blocks[0]._diffusers_hook._hook_order == [BLOCK_HOOK, "cp_input---blocks.0"]
    assert transformer._diffusers_hook._hook_order[-1] == TRANSFORMER_HOOK
    # the chain still runs each hook once per block call (hooks removed outermost first, so our
    # new_forward does not keep calling the moved split hook): same output and decisions
    split_calls.clear()
    assert torch.equal(case.run(seed=0, output_type="latent"), expected)
    assert len(split_calls) == case.expected_calls()["transformer"]
    assert cache_dit.summary(case.pipe)[0].cached_steps == expected_steps
    assert arrange_hooks(transformer, list(transformer.blocks), TRANSFORMER_HOOK,
                         BLOCK_HOOK) is False  # idempotent
    cache_dit.disable_cache(case.pipe)
    assert transformer.blocks[0]._diffusers_hook._hook_order == ["cp_input---blocks.0"]
    assert torch.equal(case.run(seed=0, output_type="latent"), ref)


@pytest.mark.timeout(60)
def test_arrangement_moves_the_transformer_hook_outside_a_later_cp_hook():
    case = _wan()
    transformer = case.pipe.transformer
    ref = case.run(seed=0, output_type="latent")
    cache_dit.enable_cache(case.pipe, residual_diff_threshold=0.0, Fn_compute_blocks=1)
    # "enable_cache first": the CP hook on the transformer lands outside ours, so ours would read
    # split arguments (Wan splits a per-token timestep there)
    _register(transformer, _split_hook(), "cp_input---")
    assert transformer._diffusers_hook._hook_order == [TRANSFORMER_HOOK, "cp_input---"]
    moved = arrange_hooks(transformer, list(transformer.blocks), TRANSFORMER_HOOK, BLOCK_HOOK)
    assert moved
    assert transformer._diffusers_hook._hook_order == ["cp_input---", TRANSFORMER_HOOK]
    assert torch.equal(case.run(seed=0, output_type="latent"), ref)  # never caches: exact
    controller = controller_of(transformer)
    assert controller.diff_reducer is None  # no parallel config: no collective


def test_sync_without_parallel_config_has_no_reducer():
    case = _wan()
    sync = ContextParallelSync(case.pipe.transformer, list(case.pipe.transformer.blocks),
                               TRANSFORMER_HOOK, BLOCK_HOOK)
    assert sync.refresh() is True and sync.reducer is None and sync.split_seen is False
    assert sync.refresh() is False  # unchanged config: one identity check per call
