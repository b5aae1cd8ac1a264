"""Two-stage baselines' speed: seconds per clip of each stage, for a configuration.

Prints, for each chosen baseline (``animatediff-audioldm``, ``animatediff-difffoley``; for
``audioldm-tempotokens`` the whole clip, whose video depends on its audio), the best
of ``--repeat`` timed calls of one clip: ``video_s`` (AnimateDiff sampling and decoding),
``audio_s`` (AudioLDM from the prompt, or Diff-Foley from the frames: CAVP, sampling, VAE,
Griffin-Lim) and ``clips_per_s`` of the whole pipeline. Random weights do not change speed, so
``tiny`` needs no download; ``default`` needs the published weights.

Run from the repository root::

    python -m benchmarks.baselines                        # tiny, CPU
    python -m benchmarks.baselines --config default --device cuda
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch

NAMES = ("animatediff-audioldm", "animatediff-difffoley", "audioldm-tempotokens")


def main(argv: Sequence[str] | None = None) -> dict[str, dict[str, float]]:
    from tavgbench.baselines import load_baseline

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="tiny", help="preset (tiny, default) or JSON")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--baseline", choices=NAMES, action="append", help="default: both")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    def sync() -> None:
        if args.device.startswith("cuda"):
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
    results: dict[str, dict[str, float]] = {}
    for name in args.baseline or NAMES:
        generator: Any = load_baseline(name, config=args.config, device=args.device)
        generator.generate(["warm up"], [1])
        if name == "audioldm-tempotokens":
            # Audio comes first and conditions the video: time the whole clip.
            total_s, _ = best(lambda g=generator: g.generate([prompt], [seed]))
            results[name] = {"total_s": total_s, "clips_per_s": 1.0 / total_s,
                             "clip_seconds": generator.config.duration}  # fmt: skip
            continue
        video_s, frames = best(lambda g=generator: g._frames([prompt], [seed]))
        cfg = generator.config
        if name == "animatediff-audioldm":
            audio_s, _ = best(
                lambda g=generator: g.audio.generate([prompt], [seed], g.config.duration)
            )
        else:
            audio_s, _ = best(
                lambda g=generator, f=frames: g.audio.generate(
                    f, g.config.fps, [seed], g.config.duration
                )
            )
        results[name] = {
            "video_s": video_s,
            "audio_s": audio_s,
            "clips_per_s": 1.0 / (video_s + audio_s),
            "clip_seconds": cfg.duration,
        }
    print(json.dumps({"config": args.config, "device": args.device, "results": results}, indent=2))
    return results


if __name__ == "__main__":
    main()
