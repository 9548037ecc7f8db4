"""CogView3-Plus with cache-dit.

``python examples/run_cogview3plus.py`` (GPU; downloads the checkpoint) or
``python examples/run_cogview3plus.py --tiny`` (offline). See examples/_common.py for the options."""

from _common import Family, main

FAMILY = Family(
    name='cogview3plus',
    pipeline='CogView3PlusPipeline',
    model_id='THUDM/CogView3-Plus-3B',
    tiny='cogview3plus',
    call=dict(
        prompt='A cat holding a sign that says hello world', guidance_scale=7.0,
        num_inference_steps=50, height=1024, width=1024,
    ),
)

if __name__ == "__main__":
    raise SystemExit(main(FAMILY))
