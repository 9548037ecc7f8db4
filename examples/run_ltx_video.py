"""LTX-Video with cache-dit.

``python examples/run_ltx_video.py`` (GPU; downloads the checkpoint) or
``python examples/run_ltx_video.py --tiny`` (offline). See examples/_common.py for the options."""

from _common import Family, main

FAMILY = Family(
    name='ltx_video',
    pipeline='LTXPipeline',
    model_id='Lightricks/LTX-Video',
    tiny='ltx',
    call=dict(
        prompt='A cat walks on the grass, realistic', negative_prompt='worst quality, blurry',
        width=704, height=480, num_frames=161, num_inference_steps=50,
    ),
)

if __name__ == "__main__":
    raise SystemExit(main(FAMILY))
