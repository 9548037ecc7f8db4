"""FLUX.1-Kontext-dev (image editing) with cache-dit.

``python examples/run_flux_kontext.py`` (GPU; downloads the checkpoint) or
``python examples/run_flux_kontext.py --tiny`` (offline). See examples/_common.py for the options."""

from _common import Family, main

FAMILY = Family(
    name='flux_kontext',
    pipeline='FluxKontextPipeline',
    model_id='black-forest-labs/FLUX.1-Kontext-dev',
    tiny='flux_kontext',
    call=dict(
        prompt="Make Pikachu hold a sign that says 'cache-dit'", guidance_scale=2.5,
        num_inference_steps=28,
    ),
    inputs=dict(
        image=(
            "https://huggingface.co/datasets/huggingface/documentation-images/resolve/"
            "main/diffusers/yarn-art-pikachu.png"
        ),
    ),
)

if __name__ == "__main__":
    raise SystemExit(main(FAMILY))
