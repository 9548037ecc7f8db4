"""Wan 2.1 T2V with cache-dit.

``python examples/run_wan.py`` (GPU; downloads the checkpoint) or
``python examples/run_wan.py --tiny`` (offline). See examples/_common.py for the options."""

from _common import Family, main

FAMILY = Family(
    name='wan',
    pipeline='WanPipeline',
    model_id='Wan-AI/Wan2.1-T2V-1.3B-Diffusers',
    tiny='wan',
    call=dict(
        prompt='A cat walks on the grass, realistic', negative_prompt='blurry, low quality',
        height=480, width=832, num_frames=81, guidance_scale=5.0, num_inference_steps=50,
    ),
)

if __name__ == "__main__":
    raise SystemExit(main(FAMILY))
