"""search_steps: formula layouts scored, then a hill-climb over step masks on the user's calls."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import cache_dit
from cache_dit.calibrate import _psnr, _Replay
from cache_dit.step_search import DAMPINGS, climb, formula_starts

STEPS = 8


@pytest.fixture(scope="module")
def reference(offline_reference):
    return offline_reference()


def _calls(steps: int = STEPS) -> list[dict]:
    return [dict(class_labels=[3], num_inference_steps=steps, guidance_scale=2.5, output_type="pt",
                 generator=torch.Generator().manual_seed(4)),
            dict(class_labels=[7], num_inference_steps=steps, guidance_scale=2.5, output_type="pt",
                 generator=torch.Generator().manual_seed(9))]


def _measured(pipe, options: dict, calls: list[dict]) -> tuple[float, list[set[int]]]:
    """Mean PSNR of ``options`` on ``calls`` and the cached steps of each stream."""
    replay = _Replay(pipe, calls)
    reference = replay.run()
    cache_dit.enable_cache(pipe, **options)
    try:
        outputs = replay.run()
        cached = [set(s.cached_steps) for item in cache_dit.summary(pipe) for s in item.streams.values()]
    finally:
        cache_dit.disable_cache(pipe)
    return sum(_psnr(r, o) for r, o in zip(reference, outputs)) / len(calls), cached


def _bits(steps: set[int], total: int) -> list[int]:
    return [int(s in steps) for s in range(total)]


def test_formula_starts_are_the_layouts_and_their_last_step_variants():
    starts = formula_starts(10, 4)
    # spacing 1: round(8 * i/3) = 0, 3, 5, 8; 1.5: 0, 2, 4, 8 (1.54, 4.35); 2: 0, 1, 4, 8 (0.89, 3.56)
    assert starts == [("spacing 1", _bits({0, 3, 5, 8}, 10)),
                      ("spacing 1, last step", _bits({0, 3, 5, 9}, 10)),
                      ("spacing 1.5", _bits({0, 2, 4, 8}, 10)),
                      ("spacing 1.5, last step", _bits({0, 2, 4, 9}, 10)),
                      ("spacing 2", _bits({0, 1, 4, 8}, 10)),
                      ("spacing 2, last step", _bits({0, 1, 4, 9}, 10))]
    assert formula_starts(3, 1) == [("spacing 1", [1, 0, 0])]  # one compute: step 0, no variants


def test_climb_keeps_the_first_gaining_move_of_each_compute_and_stops_when_none_gains():
    # a toy score: each compute at an odd step is worth 1 dB, and step 0 is never moved
    def score(mask):
        tried.append(list(mask))
        return float(sum(mask[s] for s in range(1, len(mask), 2)))

    tried = []
    mask, psnr, moves = climb([1, 0, 1, 0, 1, 0, 0, 0], 0.0, score, passes=3, min_gain=0.5)
    # step 2: -2 is step 0 (computed), -1 -> step 1 gains; step 4: -2 is step 2 (now free, even:
    # no gain), -1 -> step 3 gains; the second pass finds no move and ends the climb
    assert moves == [(2, 1, 1.0), (4, 3, 2.0)] and mask == [1, 1, 0, 1, 0, 0, 0, 0] and psnr == 2.0
    assert tried[:3] == [[1, 1, 0, 0, 1, 0, 0, 0], [1, 1, 1, 0, 0, 0, 0, 0], [1, 1, 0, 1, 0, 0, 0, 0]]
    # second pass: step 1 tries 2 (0 is never a target); step 3 tries 2, 4 and 5 (one odd compute
    # for another: no gain); nothing gained, so no third pass
    assert tried[3:] == [[1, 0, 1, 1, 0, 0, 0, 0], [1, 1, 1, 0, 0, 0, 0, 0],
                         [1, 1, 0, 0, 1, 0, 0, 0], [1, 1, 0, 0, 0, 1, 0, 0]]
    mask, psnr, moves = climb([1, 0, 1, 0, 0], 0.0, score, passes=0, min_gain=0.5)
    assert moves == [] and mask == [1, 0, 1, 0, 0]


def test_search_steps_climbs_from_the_best_start_and_reproduces_its_psnr(reference, tmp_path):
    path = tmp_path / "steps.yaml"
    found = cache_dit.search_steps(reference, calls=_calls(), target=0.5, save=path)
    assert not hasattr(reference, "_cache_dit_session")  # left uncached
    assert [name for name, _, _ in found.starts] == [name for name, _ in formula_starts(STEPS, 4)]
    best_start = max(found.starts, key=lambda item: item[2])
    # every kept move gained more than min_gain over the state before it
    previous = best_start[2]
    for _, _, after in found.moves:
        assert after > previous + 0.05
        previous = after
    # then each damping of DAMPINGS on the mask found; one is kept only if it gains min_gain
    assert [d for d, _ in found.dampings] == list(DAMPINGS)
    best_damping, best = max(found.dampings, key=lambda item: item[1])
    if best > previous + 0.05:
        assert (found.damping, found.psnr) == (best_damping, best)
        assert found.options["calibrator_damping"] == best_damping
    else:
        assert (found.damping, found.psnr) == (1.0, previous)
        assert "calibrator_damping" not in found.options
    assert sum(found.mask) == 4 and found.mask[0] == 1
    assert found.runs >= len(found.starts) + len(found.moves) + len(DAMPINGS)
    # the options cache exactly the steps left out and reproduce the measured PSNR
    psnr, cached = _measured(reference, found.options, _calls())  # fresh generators: same noise
    left_out = {i for i, v in enumerate(found.mask) if not v}
    assert len(left_out) == 4 and cached == [left_out] * 2  # both CFG streams
    assert psnr == pytest.approx(found.psnr, abs=1e-9)
    assert cache_dit.load_options(path) == found.options


def test_a_given_start_is_measured_and_sets_the_count(reference):
    start = [1, 1, 0, 1, 0, 0, 1, 0]
    found = cache_dit.search_steps(reference, calls=_calls()[:1], target=0.5, start=start, passes=0,
                                   dampings=())
    assert found.starts[0][:2] == ("start", start) and found.mask == start and found.runs == 1
    assert found.dampings == [] and found.damping == 1.0
    psnr, cached = _measured(reference, found.options, _calls()[:1])
    assert cached == [{2, 4, 5, 7}] * 2 and psnr == pytest.approx(found.psnr, abs=1e-9)


def test_a_replay_leaves_the_callers_generators_as_given(reference):
    calls = _calls()[:1]
    given = calls[0]["generator"].get_state()
    replay = _Replay(reference, calls)
    first = replay.run_one(0)
    assert torch.equal(calls[0]["generator"].get_state(), given)
    # a second replay built on the same calls (a later search) sees the same noise
    assert np.array_equal(_Replay(reference, calls).run_one(0), first)


def test_a_given_metric_scores_every_call_and_decides(reference):
    seen = []

    def negative_mse(uncached, cached):  # a score that is not PSNR: higher is better
        seen.append((type(uncached), type(cached), uncached.shape))
        return -float(((uncached - cached) ** 2).mean())

    start = [1, 1, 0, 1, 0, 0, 1, 0]
    calls = _calls()
    given = [call["generator"].get_state() for call in calls]
    found = cache_dit.search_steps(reference, calls=calls, target=0.5, start=start, passes=1,
                                   metric=negative_mse, min_gain=0.0, dampings=[0.5])
    # the calls' generators are left as given, so searching them again sees the same noise
    assert all(torch.equal(call["generator"].get_state(), state) for call, state in zip(calls, given))
    # one run of the start, then every move the climb tried; each run scores both calls
    assert found.runs >= 2 and len(seen) == 2 * found.runs
    assert all(kind is np.ndarray and cached is np.ndarray for kind, cached, _ in seen)
    replay = _Replay(reference, _calls())
    uncached = replay.run()
    cache_dit.enable_cache(reference, **found.options)
    try:
        outputs = replay.run()
    finally:
        cache_dit.disable_cache(reference)
    expected = sum(-float(((u - o) ** 2).mean()) for u, o in zip(uncached, outputs)) / 2
    assert found.psnr == pytest.approx(expected, rel=1e-9) and found.psnr < 0
    gains = [after for _, _, after in found.moves]
    assert gains == sorted(gains) and (not gains or gains[0] > found.starts[0][2])
    [(damping, score)] = found.dampings
    assert damping == 0.5 and (found.damping == 0.5) == (score > (gains or [found.starts[0][2]])[-1])


def test_damping_is_not_tried_when_the_base_sets_it(reference):
    base = {**cache_dit.step_search.DEFAULT_SEARCH_BASE, "calibrator_damping": 0.9}
    found = cache_dit.search_steps(reference, calls=_calls()[:1], target=0.5, base=base,
                                   start=[1, 1, 0, 1, 0, 0, 1, 0], passes=0)
    assert found.runs == 1 and found.dampings == [] and found.options["calibrator_damping"] == 0.9


def test_search_steps_rejects_bad_input(reference):
    with pytest.raises(ValueError, match=r"compute_budget must be in \(0, 1\].*got 0"):
        cache_dit.search_steps(reference, calls=_calls(), target=0)
    with pytest.raises(ValueError, match="non-empty list"):
        cache_dit.search_steps(reference, calls=[], target=0.5)
    with pytest.raises(ValueError, match=r"base must not set \['compute_budget'\]"):
        cache_dit.search_steps(reference, calls=_calls(), target=0.5,
                               base={"Fn_compute_blocks": 0, "compute_budget": 0.5})
    with pytest.raises(TypeError, match=r"passes must be an int >= 0, got 1.5"):
        cache_dit.search_steps(reference, calls=_calls(), target=0.5, passes=1.5)
    with pytest.raises(ValueError, match=r"passes must be >= 0, got -1"):
        cache_dit.search_steps(reference, calls=_calls(), target=0.5, passes=-1)
    with pytest.raises(ValueError, match=r"min_gain must be a finite number >= 0, got -1"):
        cache_dit.search_steps(reference, calls=_calls(), target=0.5, min_gain=-1)
    with pytest.raises(ValueError, match=r"min_gain must be a finite number >= 0, got nan"):
        cache_dit.search_steps(reference, calls=_calls(), target=0.5, min_gain=float("nan"))
    with pytest.raises(ValueError, match=r"dampings entry must be in \(0, 1\].*got 1.5"):
        cache_dit.search_steps(reference, calls=_calls(), target=0.5, dampings=[0.9, 1.5])
    with pytest.raises(TypeError, match=r"dampings must be a sequence .*got 0.9"):
        cache_dit.search_steps(reference, calls=_calls(), target=0.5, dampings=0.9)
    with pytest.raises(TypeError, match=r"metric must be a callable .*got 'psnr'"):
        cache_dit.search_steps(reference, calls=_calls(), target=0.5, metric="psnr")
    with pytest.raises(ValueError, match=r"one step count .*got \[8, 6\]"):
        cache_dit.search_steps(reference, calls=_calls()[:1] + _calls(6)[1:], target=0.5)
    with pytest.raises(ValueError, match=r"start must compute step 0 .*got \[0, 1"):
        cache_dit.search_steps(reference, calls=_calls(), target=0.5, start=[0] + [1] * 7)
    with pytest.raises(ValueError, match="has 3 entries but num_inference_steps is 8"):
        cache_dit.search_steps(reference, calls=_calls(), target=0.5, start=[1, 1, 1])
    cache_dit.enable_cache(reference, Fn_compute_blocks=1)
    with pytest.raises(ValueError, match="needs an uncached pipeline"):
        cache_dit.search_steps(reference, calls=_calls(), target=0.5)
    cache_dit.disable_cache(reference)
