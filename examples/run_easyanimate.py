"""EasyAnimate V5.1 with cache-dit.

``python examples/run_easyanimate.py`` (GPU; downloads the checkpoint) or
``python examples/run_easyanimate.py --tiny`` (offline). See examples/_common.py for the options."""

from _common import Family, main

FAMILY = Family(
    name='easyanimate',
    pipeline='EasyAnimatePipeline',
    model_id='alibaba-pai/EasyAnimateV5.1-7b-zh-diffusers',
    tiny='easyanimate',
    call=dict(
        prompt='A cat walks on the grass, realistic', num_frames=49, height=512, width=512,
        guidance_scale=6.0, num_inference_steps=50,
    ),
)

if __name__ == "__main__":
    raise SystemExit(main(FAMILY))
