"""Full-size extractors on a GPU: throughput, end to end against the bare network, peak GPU
memory, and the time to score a 3,000-clip split.

I3D, CLIP ViT-B/32, VGGish and ImageBind huge (vision on every frame at 24 fps, audio) run with
random weights (speed does not depend on their values; the real checkpoints are used when the
weights cache holds them) on synthetic 10 s 256x320 clips: ``--clips`` of them (default 256) for
every extractor except ImageBind vision, which embeds 240 frames per clip and so gets
``--imagebind-clips`` (default 16). Per extractor it prints clips/s end to end and of the bare
network on preprocessed input, their ratio (target <= 1.25), ``torch.cuda.max_memory_allocated``
while embedding, for I3D the speed against a plain reference forward (target >= 1), and at the
end the estimated time to embed ``--score-clips`` clips (default 3,000) with all of them.
Decoding is not included (``benchmarks.decode`` measures it; scoring overlaps it with the
network in DataLoader workers).

The defaults are sized from FLOP counts to finish within 5 minutes on one H100 or H200 in
float32 (ImageBind vision dominates: about 4 passes over 3,840 frames through ViT-H/14);
``--bf16`` runs every call under bfloat16 autocast (ImageBind through its ``dtype`` option),
which changes the features: the protocols are float32.

Run from the repository root::

    python -m benchmarks.gpu_extractors                 # cuda, 256 clips
    python -m benchmarks.gpu_extractors --bf16
    python -m benchmarks.gpu_extractors --device cpu --clips 2 --quick   # smoke test
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from typing import Any

import torch

from benchmarks.extractors import FPS, NAMES, Settings, print_result, run_extractor, run_inputs


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.gpu_extractors",
        description="Full-size extractors on a GPU: clips/s end to end and bare, peak GPU "
        "memory, and the time to score a split.",
    )
    parser.add_argument("--device", default="cuda", help="torch device. Default: cuda.")
    parser.add_argument(
        "--clips", type=int, default=256, help="10 s clips per extractor. Default: 256."
    )
    parser.add_argument(
        "--imagebind-clips",
        type=int,
        default=16,
        help=f"clips for ImageBind vision ({FPS} frames per second each). Default: 16.",
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="clip duration. Default: 10.")
    parser.add_argument(
        "--repeat", type=int, default=1, help="timed rounds after a warm-up, best kept. Default: 1."
    )
    parser.add_argument(
        "--bf16", action="store_true", help="bfloat16 autocast (CUDA; changes the features)."
    )
    parser.add_argument(
        "--only", nargs="+", choices=NAMES, default=list(NAMES), help="extractors to run."
    )
    parser.add_argument(
        "--score-clips",
        type=int,
        default=3000,
        help="split size for the time estimate. Default: 3000.",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="tiny models, 1 s clips, no warm-up (smoke test; the numbers mean nothing).",
    )
    args = parser.parse_args(argv)
    if min(args.clips, args.imagebind_clips, args.repeat, args.score_clips) < 1:
        parser.error("--clips, --imagebind-clips, --repeat and --score-clips must be at least 1")
    if args.seconds < 1:
        parser.error("--seconds must be at least 1")
    try:
        args.device = torch.device(args.device)
    except RuntimeError as error:
        parser.error(f"--device {args.device!r}: {error}")
    if args.device.type == "cuda" and not torch.cuda.is_available():
        parser.error(
            "no CUDA device here; run on a GPU machine, or `--device cpu --quick` to check the "
            "script itself"
        )
    if args.bf16 and args.device.type != "cuda":
        parser.error("--bf16 needs a CUDA device (ImageBind's bfloat16 option is CUDA only)")
    return args


def _describe(device: torch.device) -> str:
    if device.type == "cuda":
        # Whether float32 runs on TF32 tensor cores changes the speed several times over.
        return (
            f"{torch.cuda.get_device_name(device)}, torch {torch.__version__}, CUDA "
            f"{torch.version.cuda}, float32 matmul precision "
            f"{torch.get_float32_matmul_precision()!r}, "
            f"cuDNN TF32 {torch.backends.cudnn.allow_tf32}"
        )
    return f"{device}, {os.cpu_count()} cores, torch {torch.__version__}"


def estimate(results: dict[str, dict[str, Any]], score_clips: int) -> dict[str, float]:
    """Seconds each row takes for ``score_clips`` clips at its end-to-end rate, and the total."""
    seconds = {label: score_clips / row["end_to_end_clips_per_s"] for label, row in results.items()}
    seconds["total"] = sum(seconds.values())
    return seconds


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the benchmark, print a report, and return the numbers."""
    args = parse_args(argv)
    settings = Settings(device=args.device, scale="quick" if args.quick else "full", bf16=args.bf16)
    inputs = run_inputs(
        args.clips,
        quick=args.quick,
        seconds=args.seconds,
        every_clips=min(args.clips, args.imagebind_clips),
    )
    repeat = 1 if args.quick else args.repeat
    print(f"extractor benchmark on {_describe(args.device)}")
    print(
        f"  {'bfloat16 autocast' if args.bf16 else 'float32'}, "
        + (
            "QUICK: tiny models, no warm-up (numbers mean nothing)"
            if args.quick
            else f"warm-up then best of {repeat}"
        )
    )
    memory_label = (
        "GPU memory (max_memory_allocated)" if args.device.type == "cuda" else "resident memory"
    )
    results: dict[str, dict[str, Any]] = {}
    for name in args.only:
        weights, model_mib, rows = run_extractor(
            name, inputs, settings, repeat=repeat, warmup=not args.quick
        )
        print(f"== {name}: weights {weights}; model {model_mib:.0f} MiB")
        for row in rows:
            print_result(row, memory_label)
            results[row["label"]] = row | {"weights": weights, "model_mib": model_mib}

    times = estimate(results, args.score_clips)
    print(
        f"estimated time to embed {args.score_clips} clips of {inputs.seconds:g} s "
        "(end-to-end rates above, decoding not included):"
    )
    for label, value in times.items():
        share = f"  ({100 * value / times['total']:.0f}%)" if label != "total" else ""
        print(f"  {label:<18} {value / 60:8.1f} min{share}")
    return {"rows": results, "estimate_seconds": times}


if __name__ == "__main__":
    main()
