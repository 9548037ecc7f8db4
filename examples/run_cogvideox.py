"""CogVideoX 1.0 with cache-dit.

``python examples/run_cogvideox.py`` (GPU; downloads the checkpoint) or
``python examples/run_cogvideox.py --tiny`` (offline). See examples/_common.py for the options."""

from _common import Family, main

FAMILY = Family(
    name='cogvideox',
    pipeline='CogVideoXPipeline',
    model_id='THUDM/CogVideoX-5b',
    tiny='cogvideox',
    call=dict(
        prompt='A cat walks on the grass, realistic', num_frames=49, guidance_scale=6.0,
        num_inference_steps=50,
    ),
)

if __name__ == "__main__":
    raise SystemExit(main(FAMILY))
