"""Stable Diffusion 3 with cache-dit.

``python examples/run_sd3.py`` (GPU; downloads the checkpoint) or
``python examples/run_sd3.py --tiny`` (offline). See examples/_common.py for the options."""

from _common import Family, main

FAMILY = Family(
    name='sd3',
    pipeline='StableDiffusion3Pipeline',
    model_id='stabilityai/stable-diffusion-3-medium-diffusers',
    tiny='sd3',
    call=dict(
        prompt='A cat holding a sign that says hello world', negative_prompt='',
        guidance_scale=7.0, num_inference_steps=28,
    ),
)

if __name__ == "__main__":
    raise SystemExit(main(FAMILY))
