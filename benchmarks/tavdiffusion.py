"""TAVDiffusion speed: training steps/s and sampling clips/s of a configuration.

Prints, for the chosen config (random weights: speed does not depend on their values):

* ``train_steps_per_s``: optimiser steps per second of the model alone (AdamW, one synthetic
  batch of ``batch_size`` clips already in memory: VAE encoding, both UNets, bridge, EAS,
  backward), best of ``--repeat`` timed runs of ``--steps`` steps;
* ``train_clips_per_s``: the same in clips;
* ``sample_clips_per_s``: joint DDIM sampling at the config's step count, decoding and vocoder
  included, one clip per call.

Run from the repository root::

    python -m benchmarks.tavdiffusion                  # tiny config, CPU
    python -m benchmarks.tavdiffusion --device cuda --config paper   # needs the SD/AudioLDM weights
    python -m benchmarks.tavdiffusion --quick
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence

import torch


def main(argv: Sequence[str] | None = None) -> dict[str, float]:
    from tavgbench.baselines.tavdiffusion.config import load_config
    from tavgbench.baselines.tavdiffusion.model import TAVDiffusion
    from tavgbench.baselines.tavdiffusion.pipeline import TAVDiffusionPipeline
    from tavgbench.baselines.tavdiffusion.train import diffusion_loss

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="tiny", help="preset or config JSON")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=10, help="training steps per timed run")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--quick", action="store_true", help="2 steps, 1 run (smoke test)")
    args = parser.parse_args(argv)
    if args.quick:
        args.steps, args.repeat = 2, 1
    torch.set_num_threads(args.threads)
    config = load_config(args.config)
    torch.manual_seed(0)
    model = TAVDiffusion(config).to(args.device)
    optimizer = torch.optim.AdamW(model.denoiser.parameters(), lr=config.learning_rate)
    g = torch.Generator().manual_seed(0)
    b = config.batch_size
    batch = {
        "frames": torch.randint(
            0, 256, (b, config.num_frames, config.height, config.width, 3), dtype=torch.uint8
        ),
        "waveform": 0.1 * torch.randn(b, config.num_samples),
        "caption": ["a dog barks in the rain"] * b,
    }

    def sync() -> None:
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()

    def train_steps(n: int) -> None:
        for _ in range(n):
            loss, _ = diffusion_loss(model, model.denoiser, batch, g)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        sync()

    train_steps(1)
    best = float("inf")
    for _ in range(args.repeat):
        start = time.perf_counter()
        train_steps(args.steps)
        best = min(best, time.perf_counter() - start)
    pipeline = TAVDiffusionPipeline(model)
    pipeline.generate(["warm up"], [0])
    sample = float("inf")
    for i in range(args.repeat):
        start = time.perf_counter()
        pipeline.generate(["a dog barks in the rain"], [i])
        sync()
        sample = min(sample, time.perf_counter() - start)
    results = {
        "train_steps_per_s": args.steps / best,
        "train_clips_per_s": args.steps * b / best,
        "sample_clips_per_s": 1.0 / sample,
        "sample_steps": float(config.num_inference_steps),
    }
    print(json.dumps({"config": config.name, "device": args.device, **results}, indent=2))
    return results


if __name__ == "__main__":
    main()
