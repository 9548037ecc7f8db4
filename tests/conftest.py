import torch


def pytest_configure(config):
    # Tiny CPU models: one thread is faster than contended intra-op parallelism and keeps timings stable.
    torch.set_num_threads(1)
    for line in (
        "ignore:In CPU autocast, but the target dtype is not supported:UserWarning",  # Mochi RoPE on CPU
        "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning",  # diffusers schedulers
    ):
        config.addinivalue_line("filterwarnings", line)
