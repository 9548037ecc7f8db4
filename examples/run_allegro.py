"""Allegro with cache-dit.

``python examples/run_allegro.py`` (GPU; downloads the checkpoint) or
``python examples/run_allegro.py --tiny`` (offline). See examples/_common.py for the options."""

from _common import Family, main

FAMILY = Family(
    name='allegro',
    pipeline='AllegroPipeline',
    model_id='rhymes-ai/Allegro',
    tiny='allegro',
    call=dict(
        prompt='A cat walks on the grass, realistic', guidance_scale=7.5,
        max_sequence_length=512, num_inference_steps=100,
    ),
)

if __name__ == "__main__":
    raise SystemExit(main(FAMILY))
