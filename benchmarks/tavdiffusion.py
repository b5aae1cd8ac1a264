"""TAVDiffusion speed and memory: training steps/s, peak memory and sampling latency.

Prints, for the chosen config (``--random-weights`` builds every pretrained part at its published
size with random weights: speed and memory do not depend on their values):

* ``train_step_s`` / ``train_clips_per_s``: one optimiser step of the model alone (AdamW, one
  synthetic batch of ``--batch-size`` clips already in memory: VAE encoding, both UNets, bridge,
  EAS, backward) with the config's mixed precision (bf16 autocast on the denoiser, as the
  trainer runs it) and gradient checkpointing; best of ``--repeat`` timed runs of ``--steps``;
* ``train_peak_gib``: peak memory while training (allocated GPU memory; the sampled resident
  memory of the process on a CPU), EMA copy included as the trainer keeps one;
* ``sample_s``: seconds to sample one audible video with ``--sample-steps`` joint DDIM steps
  (classifier-free guidance on both streams), video VAE decoding and vocoder included, the
  denoiser in ``--sample-dtype``; ``sample_peak_gib`` its peak memory;
* ``trainable_parameters`` and ``train_state_gib``: the memory training needs before any
  activation (fp32 weights, gradients, AdamW's two moments and the EMA copy of the trainable
  parameters, plus the frozen codecs), known without running: on a CPU it says whether a GPU
  could hold the model at all.

Targets (issue 6): the ``paper`` config trains at batch >= 2 per 80 GB GPU, and 50-step sampling
of one clip takes under 30 s on one H100.

Run from the repository root::

    python -m benchmarks.tavdiffusion                                    # tiny config, CPU
    python -m benchmarks.tavdiffusion --device cuda --config paper --random-weights --batch-size 2
    python -m benchmarks.tavdiffusion --quick
"""

from __future__ import annotations

import argparse
import contextlib
import json
import time
from collections.abc import Sequence
from typing import Any

import torch

from benchmarks.extractors import MemoryProbe


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    from diffusers.training_utils import EMAModel

    from tavgbench.baselines.architectures import random_weights
    from tavgbench.baselines.interface import DTYPES, torch_dtype
    from tavgbench.baselines.tavdiffusion.components import count_parameters
    from tavgbench.baselines.tavdiffusion.config import load_config
    from tavgbench.baselines.tavdiffusion.model import TAVDiffusion
    from tavgbench.baselines.tavdiffusion.pipeline import TAVDiffusionPipeline
    from tavgbench.baselines.tavdiffusion.train import diffusion_loss

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="tiny", help="preset or config JSON")
    parser.add_argument("--random-weights", action="store_true", help="no download needed")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, help="clips per step (default: the config's)")
    parser.add_argument("--steps", type=int, default=10, help="training steps per timed run")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--sample-steps", type=int, help="DDIM steps (default: the config's)")
    parser.add_argument("--sample-dtype", choices=DTYPES, default="float32")
    parser.add_argument("--no-train", action="store_true", help="sampling only")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--quick", action="store_true", help="2 steps, 1 run (smoke test)")
    args = parser.parse_args(argv)
    if args.quick:
        args.steps, args.repeat = 2, 1
    torch.set_num_threads(args.threads)
    config = load_config(args.config)
    if args.random_weights:
        config = config.with_options(components=random_weights(config.components))
    b = args.batch_size or config.batch_size
    cuda = args.device.startswith("cuda")

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    torch.manual_seed(0)
    model = TAVDiffusion(config).to(args.device)
    denoiser = model.denoiser
    trainable = count_parameters(denoiser)
    frozen = sum(count_parameters(m) for m in model.codecs.modules().values())
    results: dict[str, Any] = {
        "trainable_parameters": trainable,
        # 4 bytes each: weight, gradient, AdamW exp_avg and exp_avg_sq, EMA shadow.
        "train_state_gib": (20 * trainable + 4 * frozen) / 2**30,
    }
    if not args.no_train:
        if config.gradient_checkpointing:
            denoiser.video_unet.enable_gradient_checkpointing()
            denoiser.audio_unet.enable_gradient_checkpointing()
        denoiser.train()
        optimizer = torch.optim.AdamW(denoiser.parameters(), lr=config.learning_rate)
        ema = EMAModel(denoiser.parameters(), decay=config.ema_decay)
        autocast = (
            torch.autocast(args.device.split(":")[0], dtype=torch.bfloat16)
            if config.mixed_precision == "bf16"
            else contextlib.nullcontext()
        )
        g = torch.Generator().manual_seed(0)
        batch = {
            "frames": torch.randint(
                0, 256, (b, config.num_frames, config.height, config.width, 3), dtype=torch.uint8
            ),
            "waveform": 0.1 * torch.randn(b, config.num_samples),
            "caption": ["a dog barks in the rain"] * b,
        }

        def train_steps(n: int) -> None:
            for _ in range(n):
                with autocast:
                    loss, _ = diffusion_loss(model, denoiser, batch, g)
                loss.backward()
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                ema.step(denoiser.parameters())
            sync()

        best = float("inf")
        with MemoryProbe(torch.device(args.device)) as train_memory:
            train_steps(1)
            for _ in range(args.repeat):
                start = time.perf_counter()
                train_steps(args.steps)
                best = min(best, time.perf_counter() - start)
        results.update(
            train_batch_size=b,
            train_step_s=best / args.steps,
            train_clips_per_s=args.steps * b / best,
            train_peak_gib=train_memory.peak / 2**30,
        )
        del optimizer, ema, batch
        denoiser.zero_grad(set_to_none=True)
        if cuda:
            torch.cuda.empty_cache()
    denoiser.to(torch_dtype(args.sample_dtype))
    pipeline = TAVDiffusionPipeline(model, num_inference_steps=args.sample_steps)
    pipeline.generate(["warm up"], [0])
    sample = float("inf")
    with MemoryProbe(torch.device(args.device)) as sample_memory:
        for i in range(args.repeat):
            start = time.perf_counter()
            pipeline.generate(["a dog barks in the rain"], [i])
            sync()
            sample = min(sample, time.perf_counter() - start)
    results.update(
        sample_steps=pipeline.num_inference_steps,
        sample_s=sample,
        sample_peak_gib=sample_memory.peak / 2**30,
    )
    report = {
        "config": config.name,
        "random_weights": args.random_weights,
        "device": torch.cuda.get_device_name() if cuda else args.device,
        **results,
    }
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
