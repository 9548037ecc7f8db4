"""CogVideoX 1.5 with cache-dit.

``python examples/run_cogvideox15.py`` (GPU; downloads the checkpoint) or
``python examples/run_cogvideox15.py --tiny`` (offline). See examples/_common.py for the options."""

from _common import Family, main

FAMILY = Family(
    name='cogvideox15',
    pipeline='CogVideoXPipeline',
    model_id='THUDM/CogVideoX1.5-5B',
    tiny='cogvideox15',
    call=dict(
        prompt='A cat walks on the grass, realistic', num_frames=81, height=768, width=1360,
        guidance_scale=6.0, num_inference_steps=50,
    ),
)

if __name__ == "__main__":
    raise SystemExit(main(FAMILY))
