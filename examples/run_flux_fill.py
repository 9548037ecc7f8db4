"""FLUX.1-Fill-dev (inpainting) with cache-dit.

``python examples/run_flux_fill.py`` (GPU; downloads the checkpoint) or
``python examples/run_flux_fill.py --tiny`` (offline). See examples/_common.py for the options."""

from _common import Family, main

FAMILY = Family(
    name='flux_fill',
    pipeline='FluxFillPipeline',
    model_id='black-forest-labs/FLUX.1-Fill-dev',
    tiny='flux_fill',
    call=dict(
        prompt='a white paper cup', height=1632, width=1232, guidance_scale=30.0,
        num_inference_steps=28,
    ),
    inputs=dict(
        image="https://huggingface.co/datasets/YiYiXu/testing-images/resolve/main/cup.png",
        mask_image=(
            "https://huggingface.co/datasets/YiYiXu/testing-images/resolve/"
            "main/cup_mask.png"
        ),
    ),
)

if __name__ == "__main__":
    raise SystemExit(main(FAMILY))
