"""Cosmos 1.0 Text2World with cache-dit.

``python examples/run_cosmos.py`` (GPU; downloads the checkpoint) or
``python examples/run_cosmos.py --tiny`` (offline). See examples/_common.py for the options."""

from _common import Family, main

FAMILY = Family(
    name='cosmos',
    pipeline='CosmosTextToWorldPipeline',
    model_id='nvidia/Cosmos-1.0-Diffusion-7B-Text2World',
    tiny='cosmos',
    call=dict(prompt='A cat walks on the grass, realistic', num_inference_steps=36),
)

if __name__ == "__main__":
    raise SystemExit(main(FAMILY))
