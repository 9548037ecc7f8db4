"""SkyReels-V2 T2V with cache-dit.

``python examples/run_skyreels_v2.py`` (GPU; downloads the checkpoint) or
``python examples/run_skyreels_v2.py --tiny`` (offline). See examples/_common.py for the options."""

from _common import Family, main

FAMILY = Family(
    name='skyreels_v2',
    pipeline='SkyReelsV2Pipeline',
    model_id='Skywork/SkyReels-V2-T2V-14B-540P-Diffusers',
    tiny='skyreels_v2',
    call=dict(
        prompt='A cat walks on the grass, realistic', height=544, width=960, num_frames=97,
        guidance_scale=6.0, num_inference_steps=50,
    ),
)

if __name__ == "__main__":
    raise SystemExit(main(FAMILY))
