#!/usr/bin/env python
"""FID of the reference model: test-set statistics (once) and 1,000 class-balanced samples against them.

(a) Inception statistics of the 10,000 Fashion-MNIST test images (grey fed as RGB, resized the way
    `cache_dit.metrics` resizes) -> `src/cache_dit/reference/weights/fashion_mnist_test_fid_stats.npz`.
    Needs the data set (`apt-get install dataset-fashion-mnist`); features are cached in chunks under
    `outputs/fid_cache/` so an interrupted run resumes.
(b) 100 samples per class (fixed seed, the pipeline's default steps and guidance) -> FID against (a).

    .venv/bin/python scripts/reference_fid.py            # (a) if the stats are missing, then (b)
    .venv/bin/python scripts/reference_fid.py --stats-only
    .venv/bin/python scripts/reference_fid.py --real-baseline   # 1,000 real train images instead of samples
    .venv/bin/python scripts/reference_fid.py --variant deep    # the 16-block model

The real-image baseline shows the floor a perfect generator would reach with 1,000 images against these stats.
"""

from __future__ import annotations

import argparse
import inspect
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "src"))
sys.path.insert(0, str(REPO_ROOT / "scripts"))

from cache_dit.metrics import FrechetInceptionDistance  # noqa: E402
from cache_dit.metrics.fid import feature_stats  # noqa: E402
from cache_dit.reference import FASHION_MNIST_CLASSES, REFERENCE_VARIANTS, FashionFluxPipeline  # noqa: E402
from cache_dit.reference.fid import (  # noqa: E402
    TEST_STATS_PATH,
    fid_against_test_set,
    save_test_set_statistics,
)
from train_reference import DEFAULT_DATA_DIR, read_idx  # noqa: E402


def test_set_features(fid: FrechetInceptionDistance, data_dir: Path, cache_dir: Path, chunk: int) -> np.ndarray:
    """Inception features of all test images, computed chunk by chunk and cached on disk."""
    images = read_idx(data_dir / "t10k-images-idx3-ubyte.gz")
    cache_dir.mkdir(parents=True, exist_ok=True)
    parts = []
    for start in range(0, len(images), chunk):
        part_path = cache_dir / f"test_features_{start:05d}_{min(start + chunk, len(images)):05d}.npy"
        if not part_path.exists():
            print(f"test images {start}..{min(start + chunk, len(images))}", flush=True)
            np.save(part_path, fid.features(list(images[start : start + chunk])))
        parts.append(np.load(part_path))
    return np.concatenate(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", choices=REFERENCE_VARIANTS, default="base", help="which reference model")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    parser.add_argument("--stats", type=Path, default=TEST_STATS_PATH)
    parser.add_argument("--recompute-stats", action="store_true")
    parser.add_argument("--stats-only", action="store_true")
    parser.add_argument("--cache-dir", type=Path, default=REPO_ROOT / "outputs/fid_cache")
    parser.add_argument("--chunk", type=int, default=500)
    parser.add_argument("--per-class", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=None, help="default: the pipeline's default")
    parser.add_argument("--guidance-scale", type=float, default=None, help="default: the pipeline's default")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--real-baseline", action="store_true", help="score real train images instead of samples")
    parser.add_argument(
        "--report", type=Path, default=None, help="default: outputs/reference[_<variant>]_fid[_real].json"
    )
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    fid = FrechetInceptionDistance()
    if args.recompute_stats or not args.stats.exists():
        start = time.perf_counter()
        features = test_set_features(fid, args.data_dir, args.cache_dir, args.chunk)
        mu, sigma = feature_stats(features)
        save_test_set_statistics(mu, sigma, len(features), args.stats)
        size_mb = args.stats.stat().st_size / 1e6
        print(f"wrote {args.stats} ({size_mb:.1f} MB, {len(features)} images, {time.perf_counter() - start:.0f}s)")
    if args.stats_only:
        return

    if args.real_baseline:
        train_images = read_idx(args.data_dir / "train-images-idx3-ubyte.gz")
        chosen = np.random.default_rng(args.seed).choice(len(train_images), 10 * args.per_class, replace=False)
        value = fid_against_test_set(list(train_images[np.sort(chosen)]), fid, args.stats)
        report = {
            "fid": round(value, 3),
            "num_images": len(chosen),
            "images": f"random Fashion-MNIST train images (numpy seed {args.seed})",
            "reference": "Fashion-MNIST test set (10,000 images), Inception pool3 statistics",
        }
        write_report(args.report or REPO_ROOT / "outputs/reference_fid_real.json", report)
        return

    pipe = FashionFluxPipeline.from_reference(args.variant)
    pipe.set_progress_bar_config(disable=True)
    defaults = inspect.signature(FashionFluxPipeline.__call__).parameters
    steps = args.steps if args.steps is not None else defaults["num_inference_steps"].default
    guidance = args.guidance_scale if args.guidance_scale is not None else defaults["guidance_scale"].default
    generator = torch.Generator().manual_seed(args.seed)
    start = time.perf_counter()
    samples = []
    for class_id, name in enumerate(FASHION_MNIST_CLASSES):
        samples.extend(
            pipe(
                class_id,
                num_images_per_prompt=args.per_class,
                num_inference_steps=steps,
                guidance_scale=guidance,
                generator=generator,
                output_type="np",
            ).images
        )
        print(f"sampled {name}", flush=True)
    sampling_s = time.perf_counter() - start
    value = fid_against_test_set(samples, fid, args.stats)
    report = {
        "fid": round(value, 3),
        "variant": args.variant,
        "num_samples": len(samples),
        "per_class": args.per_class,
        "seed": args.seed,
        "num_inference_steps": steps,
        "guidance_scale": guidance,
        "sampling_wall_s": round(sampling_s, 1),
        "reference": "Fashion-MNIST test set (10,000 images), Inception pool3 statistics",
    }
    stem = "reference" if args.variant == "base" else f"reference_{args.variant}"
    write_report(args.report or REPO_ROOT / f"outputs/{stem}_fid.json", report)


def write_report(path: Path, report: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
