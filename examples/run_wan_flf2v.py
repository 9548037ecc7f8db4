"""Wan 2.1 FLF2V (first/last frame to video) with cache-dit.

``python examples/run_wan_flf2v.py`` (GPU; downloads the checkpoint) or
``python examples/run_wan_flf2v.py --tiny`` (offline). See examples/_common.py for the options."""

from _common import Family, main

FAMILY = Family(
    name='wan_flf2v',
    pipeline='WanImageToVideoPipeline',
    model_id='Wan-AI/Wan2.1-FLF2V-14B-720P-diffusers',
    tiny='wan_flf2v',
    call=dict(
        prompt='A bird takes off from a branch', height=720, width=1280, num_frames=81,
        guidance_scale=5.5, num_inference_steps=50,
    ),
    inputs=dict(
        image=(
            "https://huggingface.co/datasets/huggingface/documentation-images/resolve/"
            "main/diffusers/flf2v_input_first_frame.png"
        ),
        last_image=(
            "https://huggingface.co/datasets/huggingface/documentation-images/resolve/"
            "main/diffusers/flf2v_input_last_frame.png"
        ),
    ),
)

if __name__ == "__main__":
    raise SystemExit(main(FAMILY))
