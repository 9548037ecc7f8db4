"""Qwen-Image with cache-dit.

``python examples/run_qwen_image.py`` (GPU; downloads the checkpoint) or
``python examples/run_qwen_image.py --tiny`` (offline). See examples/_common.py for the options."""

from _common import Family, main

FAMILY = Family(
    name='qwen_image',
    pipeline='QwenImagePipeline',
    model_id='Qwen/Qwen-Image',
    tiny='qwenimage',
    call=dict(
        prompt='A cat holding a sign that says hello world', negative_prompt=' ',
        true_cfg_scale=4.0, height=1024, width=1024, num_inference_steps=50,
    ),
)

if __name__ == "__main__":
    raise SystemExit(main(FAMILY))
