"""Every example script runs as a user would run it (``python examples/run_x.py --tiny``).

In-process (runpy) rather than one subprocess per script: importing torch and diffusers again for
each of 18 scripts would take minutes on a shared CPU.
"""

from __future__ import annotations

import math
import re
import runpy
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
SCRIPTS = sorted(p for p in EXAMPLES.glob("run_*.py"))
# the seed model families of the spec, one script each
SEED_FAMILIES = {"qwen_image", "flux", "flux_fill", "flux_kontext", "mochi", "cogvideox",
                 "cogvideox15", "wan", "wan_flf2v", "hunyuan_video", "ltx_video", "allegro",
                 "cogview3plus", "cogview4", "cosmos", "easyanimate", "skyreels_v2", "sd3"}


@pytest.fixture(autouse=True)
def examples_importable(monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLES))  # as `python examples/run_x.py` would


def _run(script: Path, *args: str) -> int:
    saved = sys.argv
    sys.argv = [str(script), *args]
    try:
        runpy.run_path(str(script), run_name="__main__")
    except SystemExit as stop:
        return int(stop.code or 0)
    finally:
        sys.argv = saved
    return 0


def test_one_script_per_seed_family():
    assert {p.stem.removeprefix("run_") for p in SCRIPTS} == SEED_FAMILIES


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.stem)
def test_example_runs_tiny_and_caches(script, tmp_path, capsys):
    from cache_dit.testing.tiny_pipelines import build

    family = runpy.run_path(str(script))["FAMILY"]
    # the offline run uses the same pipeline class as the real checkpoint
    assert type(build(family.tiny).pipe).__name__ == family.pipeline
    assert _run(script, "--tiny", "--out", str(tmp_path)) == 0
    printed = capsys.readouterr().out
    line = re.search(r"PSNR (\S+) dB, cached steps (\d+)", printed)
    assert line, printed
    assert int(line[2]) > 0  # the example really cached steps
    assert not math.isnan(float(line[1]))
    saved = sorted(p.name for p in tmp_path.iterdir())
    assert len(saved) == 2 and any("uncached" in name for name in saved), saved
    assert all((tmp_path / name).stat().st_size > 0 for name in saved)


def test_tiny_rejects_inputs_it_would_ignore(tmp_path, capsys):
    assert _run(EXAMPLES / "run_flux.py", "--tiny", "--prompt", "a dog", "--out", str(tmp_path)) == 2
    assert "--prompt" in capsys.readouterr().err
