"""Mochi 1 with cache-dit.

``python examples/run_mochi.py`` (GPU; downloads the checkpoint) or
``python examples/run_mochi.py --tiny`` (offline). See examples/_common.py for the options."""

from _common import Family, main

FAMILY = Family(
    name='mochi',
    pipeline='MochiPipeline',
    model_id='genmo/mochi-1-preview',
    tiny='mochi',
    call=dict(
        prompt='A cat walks on the grass, realistic', num_frames=49, guidance_scale=4.5,
        num_inference_steps=64,
    ),
)

if __name__ == "__main__":
    raise SystemExit(main(FAMILY))
