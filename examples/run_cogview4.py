"""CogView4 with cache-dit.

``python examples/run_cogview4.py`` (GPU; downloads the checkpoint) or
``python examples/run_cogview4.py --tiny`` (offline). See examples/_common.py for the options."""

from _common import Family, main

FAMILY = Family(
    name='cogview4',
    pipeline='CogView4Pipeline',
    model_id='THUDM/CogView4-6B',
    tiny='cogview4',
    call=dict(
        prompt='A cat holding a sign that says hello world', guidance_scale=3.5,
        num_inference_steps=50, height=1024, width=1024,
    ),
)

if __name__ == "__main__":
    raise SystemExit(main(FAMILY))
