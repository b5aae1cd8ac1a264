"""Two-stage baselines' speed and memory: seconds per clip of each stage, for a configuration.

Prints, for each chosen baseline (``animatediff-audioldm``, ``animatediff-difffoley``; for
``audioldm-tempotokens`` the whole clip, whose video depends on its audio), the best
of ``--repeat`` timed calls of one clip: ``video_s`` (AnimateDiff sampling and decoding),
``audio_s`` (AudioLDM from the prompt, or Diff-Foley from the frames: CAVP, sampling, VAE,
Griffin-Lim), ``clips_per_s`` of the whole pipeline and ``peak_gib`` (peak memory during the
timed calls: allocated GPU memory; the sampled resident memory on a CPU). Each runs at its
configuration's published settings (steps, resolution, frames).

Random weights do not change speed, so ``tiny`` and ``--random-weights`` need no download:
``--config default --random-weights`` builds every part at its published size.

Run from the repository root::

    python -m benchmarks.baselines                        # tiny, CPU
    python -m benchmarks.baselines --config default --random-weights --device cuda --dtype float16
    python -m benchmarks.baselines --config audioldm2 --random-weights --device cuda \\
        --baseline animatediff-audioldm --baseline audioldm-tempotokens
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch

from benchmarks.extractors import MemoryProbe

NAMES = ("animatediff-audioldm", "animatediff-difffoley", "audioldm-tempotokens")
AUDIO_MODELS = {
    "animatediff-audioldm": "audioldm",
    "animatediff-difffoley": "difffoley",
    "audioldm-tempotokens": "tempotokens",
}


def main(argv: Sequence[str] | None = None) -> dict[str, dict[str, float]]:
    from tavgbench.baselines import load_baseline
    from tavgbench.baselines.architectures import random_weights
    from tavgbench.baselines.twostage.config import load_config

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="tiny", help="preset (tiny, default, ...) or JSON")
    parser.add_argument("--random-weights", action="store_true", help="no download needed")
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--dtype", choices=("float32", "float16", "bfloat16"), help="as `baseline run --dtype`"
    )
    parser.add_argument("--baseline", choices=NAMES, action="append", help="default: all three")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    cuda = args.device.startswith("cuda")

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    def best(fn: Callable[[], Any]) -> tuple[float, Any]:
        times, out = [], None
        for _ in range(args.repeat):
            start = time.perf_counter()
            out = fn()
            sync()
            times.append(time.perf_counter() - start)
        return min(times), out

    prompt, seed = "a dog barks in the rain", 0

    def time_stages(name: str, generator: Any) -> dict[str, float]:
        if name == "audioldm-tempotokens":
            # Audio comes first and conditions the video: time the whole clip.
            total_s, _ = best(lambda: generator.generate([prompt], [seed]))
            return {"total_s": total_s, "clips_per_s": 1.0 / total_s}
        video_s, frames = best(lambda: generator._frames([prompt], [seed]))
        duration = generator.config.duration
        if name == "animatediff-audioldm":
            audio_s, _ = best(lambda: generator.audio.generate([prompt], [seed], duration))
        else:
            fps = generator.config.fps
            audio_s, _ = best(lambda: generator.audio.generate(frames, fps, [seed], duration))
        return {"video_s": video_s, "audio_s": audio_s, "clips_per_s": 1.0 / (video_s + audio_s)}

    results: dict[str, dict[str, float]] = {}
    for name in args.baseline or NAMES:
        config = load_config(args.config, AUDIO_MODELS[name])
        if args.random_weights:
            config = config.with_options(components=random_weights(config.components))
        generator: Any = load_baseline(name, config=config, device=args.device, dtype=args.dtype)
        generator.generate(["warm up"], [1])
        with MemoryProbe(torch.device(args.device)) as memory:
            row = time_stages(name, generator)
        results[name] = {**row, "clip_seconds": config.duration, "peak_gib": memory.peak / 2**30}
        del generator
        if cuda:
            torch.cuda.empty_cache()
    report = {
        "config": args.config,
        "random_weights": args.random_weights,
        "dtype": args.dtype or "float32",
        "device": torch.cuda.get_device_name() if cuda else args.device,
        "results": results,
    }
    print(json.dumps(report, indent=2))
    return results


if __name__ == "__main__":
    main()
