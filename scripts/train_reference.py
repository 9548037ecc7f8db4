#!/usr/bin/env python
"""Train the Fashion-MNIST reference model that cache-dit measures quality against.

Rectified flow in pixel space: x_t = (1 - t) * x0 + t * noise, the transformer predicts the velocity
`noise - x0`, t is drawn logit-normally. 10% of labels are replaced by the null class so classifier-free guidance
works. Training runs a fixed number of optimizer steps from a fixed seed, so the result does not depend on how
busy the machine is; the wall and CPU time it took are recorded next to the weights.

Needs the dataset only here: `apt-get install dataset-fashion-mnist`.

    .venv/bin/python scripts/train_reference.py --steps 1650 --threads 2
    .venv/bin/python scripts/train_reference.py --variant deep --threads 1   # 16-block model, its own files
"""

from __future__ import annotations

import argparse
import copy
import gzip
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from tqdm import tqdm

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "src"))

from cache_dit.reference.model import (  # noqa: E402
    ClassLabelEmbedder,
    build_reference_transformer,
    image_position_ids,
    pack_images,
    reference_label_embedder_config,
    reference_transformer_config,
    text_position_ids,
)
from cache_dit.reference.model import REFERENCE_VARIANTS  # noqa: E402
from cache_dit.reference.pipeline import reference_scheduler_config, reference_weight_names  # noqa: E402

DEFAULT_DATA_DIR = Path("/usr/share/datasets/fashion-mnist")

# Per-variant defaults of the shipped runs: (steps, batch size). The deep model's step costs ~1.6x the base
# model's per image, so it sees fewer images in its time budget; a smaller batch gives it more optimizer steps.
VARIANT_DEFAULTS: dict[str, tuple[int, int]] = {"base": (1650, 128), "deep": (2200, 64)}

# glibc hands freed tensor memory back to the OS eagerly by default; with many mid-sized activations per step the
# page faults cost more than the maths (3.3 s/step instead of 0.7 on 2 cores). glibc reads these only at start.
# On a CPU shared with other jobs, also export OMP_WAIT_POLICY=PASSIVE: spinning OpenMP threads then burn ~3x the
# CPU time per step. It changes no computed number (a run resumed under either policy is bit-identical), but on an
# idle machine it is ~15% slower, so it is not the default.
PROCESS_ENV = {"MALLOC_MMAP_THRESHOLD_": "33554432", "MALLOC_TRIM_THRESHOLD_": "1000000000"}


def reexec_with_process_env() -> None:
    """Restart this script once with `PROCESS_ENV` set (the caller's own values win)."""
    missing = {k: v for k, v in PROCESS_ENV.items() if k not in os.environ}
    if platform.system() == "Linux" and missing:
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, **missing})


def read_idx(path: Path) -> np.ndarray:
    """Read a (gzipped) IDX file as used by MNIST and Fashion-MNIST."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def load_split(data_dir: Path, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Images as float [N, 1, 28, 28] in [-1, 1] and int64 labels; split is "train" or "t10k"."""
    images = read_idx(data_dir / f"{split}-images-idx3-ubyte.gz")
    labels = read_idx(data_dir / f"{split}-labels-idx1-ubyte.gz")
    pixels = torch.from_numpy(images.copy()).float().div_(127.5).sub_(1.0).unsqueeze(1)
    return pixels, torch.from_numpy(labels.astype(np.int64))


class Denoiser(torch.nn.Module):
    """Label embedder + transformer as one module so optimizer and EMA see a single parameter set."""

    def __init__(self, variant: str = "base") -> None:
        super().__init__()
        self.label_embedder = ClassLabelEmbedder(**reference_label_embedder_config())
        self.transformer = build_reference_transformer(variant)
        self.register_buffer("img_ids", image_position_ids(), persistent=False)
        self.register_buffer("txt_ids", text_position_ids(), persistent=False)

    def forward(self, noisy_tokens: torch.Tensor, sigma: torch.Tensor, class_ids: torch.Tensor) -> torch.Tensor:
        prompt_tokens, pooled = self.label_embedder(class_ids)
        return self.transformer(
            hidden_states=noisy_tokens,
            timestep=sigma,
            encoder_hidden_states=prompt_tokens,
            pooled_projections=pooled,
            txt_ids=self.txt_ids,
            img_ids=self.img_ids,
            return_dict=False,
        )[0]


def flow_matching_loss(
    model: Denoiser, images: torch.Tensor, class_ids: torch.Tensor, generator: torch.Generator
) -> torch.Tensor:
    """Rectified-flow velocity loss with logit-normal t."""
    x0 = pack_images(images)
    noise = torch.randn(x0.shape, generator=generator)
    t = torch.sigmoid(torch.randn(x0.shape[0], generator=generator))
    x_t = (1 - t[:, None, None]) * x0 + t[:, None, None] * noise
    return F.mse_loss(model(x_t, t, class_ids), noise - x0)


def learning_rate(step: int, total_steps: int, peak: float, warmup_steps: int) -> float:
    """Linear warm-up, then cosine decay to 10% of the peak: a fixed budget ends on a settled model."""
    if step < warmup_steps:
        return peak * (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


@torch.no_grad()
def update_ema(ema: Denoiser, model: Denoiser, step: int, max_decay: float) -> float:
    """EMA with the usual (1 + n) / (10 + n) warm-up so the random initial weights do not linger in a short run."""
    decay = min(max_decay, (1 + step) / (10 + step))
    for ema_param, param in zip(ema.parameters(), model.parameters()):
        ema_param.lerp_(param, 1 - decay)
    return decay


@torch.no_grad()
def held_out_loss(model: Denoiser, images: torch.Tensor, labels: torch.Tensor, seed: int, batch_size: int) -> float:
    """Flow-matching loss on test images with fixed noise and t, comparable across runs."""
    generator = torch.Generator().manual_seed(seed)
    model.eval()
    total = 0.0
    for start in range(0, len(images), batch_size):
        batch, batch_labels = images[start : start + batch_size], labels[start : start + batch_size]
        total += flow_matching_loss(model, batch, batch_labels, generator).item() * len(batch)
    model.train()
    return total / len(images)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", choices=REFERENCE_VARIANTS, default="base", help="which reference model")
    parser.add_argument("--steps", type=int, default=None, help="optimizer steps (default: the variant's shipped run)")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "src/cache_dit/reference/weights")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=None, help="default: the variant's shipped run")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--warmup-steps", type=int, default=100)
    parser.add_argument("--ema-decay", type=float, default=0.999)
    parser.add_argument("--label-dropout", type=float, default=0.1, help="probability of training on the null class")
    parser.add_argument("--log-every", type=int, default=50)
    parser.add_argument("--checkpoint", type=Path, default=None, help="resumable state, saved every --log-every*5")
    args = parser.parse_args()
    default_steps, default_batch = VARIANT_DEFAULTS[args.variant]
    args.steps = default_steps if args.steps is None else args.steps
    args.batch_size = default_batch if args.batch_size is None else args.batch_size
    reexec_with_process_env()

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    generator = torch.Generator().manual_seed(args.seed)

    train_images, train_labels = load_split(args.data_dir, "train")
    test_images, test_labels = load_split(args.data_dir, "t10k")
    held_out_images, held_out_labels = test_images[:1000], test_labels[:1000]

    model = Denoiser(args.variant)
    ema = copy.deepcopy(model).requires_grad_(False)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.0)
    null_class = model.label_embedder.null_class_id
    num_params = sum(p.numel() for p in model.parameters())
    print(
        f"variant: {args.variant}  parameters: {num_params:,}  steps: {args.steps}  batch: {args.batch_size}  "
        f"threads: {args.threads}"
    )

    start_step, elapsed_wall, elapsed_cpu, loss_history = 0, 0.0, 0.0, []
    if args.checkpoint is not None and args.checkpoint.exists():
        state = torch.load(args.checkpoint, weights_only=False)
        model.load_state_dict(state["model"])
        ema.load_state_dict(state["ema"])
        optimizer.load_state_dict(state["optimizer"])
        generator.set_state(state["generator"])
        start_step, elapsed_wall, elapsed_cpu = state["step"], state["wall_s"], state["cpu_s"]
        loss_history = state["loss_history"]
        print(f"resumed from {args.checkpoint} at step {start_step}")

    steps_per_epoch = len(train_images) // args.batch_size
    order = None
    wall_start, cpu_start = time.perf_counter() - elapsed_wall, time.process_time() - elapsed_cpu
    model.train()
    progress = tqdm(range(start_step, args.steps), initial=start_step, total=args.steps, desc="train", smoothing=0.05)
    running_loss = None
    for step in progress:
        epoch, index_in_epoch = divmod(step, steps_per_epoch)
        if order is None or index_in_epoch == 0:
            # Each epoch's permutation depends only on (seed, epoch), so resuming mid-epoch gives the same batches.
            order = torch.randperm(len(train_images), generator=torch.Generator().manual_seed(args.seed * 1000 + epoch))
        batch_index = order[index_in_epoch * args.batch_size : (index_in_epoch + 1) * args.batch_size]
        images, labels = train_images[batch_index], train_labels[batch_index]
        drop = torch.rand(len(labels), generator=generator) < args.label_dropout
        labels = torch.where(drop, torch.full_like(labels, null_class), labels)

        lr = learning_rate(step, args.steps, args.lr, args.warmup_steps)
        for group in optimizer.param_groups:
            group["lr"] = lr
        loss = flow_matching_loss(model, images, labels, generator)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        update_ema(ema, model, step, args.ema_decay)

        loss_value = loss.item()
        loss_history.append(loss_value)
        running_loss = loss_value if running_loss is None else 0.98 * running_loss + 0.02 * loss_value
        progress.set_postfix(loss=f"{running_loss:.4f}", lr=f"{lr:.2e}", epoch=epoch)
        done = step + 1
        if done % args.log_every == 0 or done == args.steps:
            wall = time.perf_counter() - wall_start
            tqdm.write(
                f"step {done:5d}  loss {np.mean(loss_history[-args.log_every:]):.4f}  lr {lr:.2e}  "
                f"wall {wall:7.1f}s  cpu {time.process_time() - cpu_start:7.1f}s"
            )
        if args.checkpoint is not None and (done % (args.log_every * 5) == 0) and done < args.steps:
            args.checkpoint.parent.mkdir(parents=True, exist_ok=True)
            torch.save(
                {
                    "model": model.state_dict(),
                    "ema": ema.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "generator": generator.get_state(),
                    "step": done,
                    "wall_s": time.perf_counter() - wall_start,
                    "cpu_s": time.process_time() - cpu_start,
                    "loss_history": loss_history,
                },
                args.checkpoint,
            )
    progress.close()
    wall_s, cpu_s = time.perf_counter() - wall_start, time.process_time() - cpu_start

    final_train_loss = float(np.mean(loss_history[-100:]))
    raw_held_out = held_out_loss(model, held_out_images, held_out_labels, args.seed, 250)
    ema_held_out = held_out_loss(ema, held_out_images, held_out_labels, args.seed, 250)
    print(f"final train loss (mean of last 100 steps): {final_train_loss:.4f}")
    print(f"held-out loss on 1000 test images: raw {raw_held_out:.4f}  EMA {ema_held_out:.4f}")
    print(f"wall {wall_s:.0f}s  cpu {cpu_s:.0f}s")

    args.out.mkdir(parents=True, exist_ok=True)
    weights_name, config_name = reference_weight_names(args.variant)
    tensors = {f"transformer.{k}": v.contiguous() for k, v in ema.transformer.state_dict().items()}
    tensors.update({f"label_embedder.{k}": v.contiguous() for k, v in ema.label_embedder.state_dict().items()})
    save_file(tensors, args.out / weights_name, metadata={"format": "pt", "weights": "ema"})
    config = {
        "variant": args.variant,
        "transformer": json.loads(json.dumps(reference_transformer_config(args.variant))),
        "label_embedder": reference_label_embedder_config(),
        "scheduler": reference_scheduler_config(),
        "training": {
            "dataset": "Fashion-MNIST train (60,000 images, 28x28 grey, scaled to [-1, 1])",
            "objective": "rectified flow, velocity target noise - x0, logit-normal t",
            "steps": args.steps,
            "batch_size": args.batch_size,
            "epochs": round(args.steps * args.batch_size / len(train_images), 2),
            "seed": args.seed,
            "optimizer": f"AdamW lr {args.lr} (warm-up {args.warmup_steps} steps, cosine to 10%), grad clip 1.0",
            "ema_decay": args.ema_decay,
            "label_dropout": args.label_dropout,
            "threads": args.threads,
            "parameters": num_params,
            "final_train_loss_last100": round(final_train_loss, 4),
            "held_out_loss_raw": round(raw_held_out, 4),
            "held_out_loss_ema": round(ema_held_out, 4),
            "wall_time_s": round(wall_s, 1),
            "cpu_time_s": round(cpu_s, 1),
            "torch": torch.__version__,
        },
    }
    (args.out / config_name).write_text(json.dumps(config, indent=2) + "\n")
    print(f"wrote {args.out / weights_name} and {args.out / config_name}")


if __name__ == "__main__":
    main()
