"""FLUX.1-dev with cache-dit.

``python examples/run_flux.py`` (GPU; downloads the checkpoint) or
``python examples/run_flux.py --tiny`` (offline). See examples/_common.py for the options."""

from _common import Family, main

FAMILY = Family(
    name='flux',
    pipeline='FluxPipeline',
    model_id='black-forest-labs/FLUX.1-dev',
    tiny='flux',
    call=dict(
        prompt='A cat holding a sign that says hello world', height=1024, width=1024,
        guidance_scale=3.5, num_inference_steps=28,
    ),
)

if __name__ == "__main__":
    raise SystemExit(main(FAMILY))
