"""HunyuanVideo with cache-dit.

``python examples/run_hunyuan_video.py`` (GPU; downloads the checkpoint) or
``python examples/run_hunyuan_video.py --tiny`` (offline). See examples/_common.py for the options."""

from _common import Family, main

FAMILY = Family(
    name='hunyuan_video',
    pipeline='HunyuanVideoPipeline',
    model_id='hunyuanvideo-community/HunyuanVideo',
    tiny='hunyuan_video',
    call=dict(
        prompt='A cat walks on the grass, realistic', height=320, width=512, num_frames=61,
        num_inference_steps=30,
    ),
)

if __name__ == "__main__":
    raise SystemExit(main(FAMILY))
