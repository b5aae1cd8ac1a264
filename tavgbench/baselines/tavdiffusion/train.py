"""Training TAVDiffusion with accelerate: DDP, mixed precision, accumulation, EMA, resume.

Loss per batch (one timestep per clip, shared by both streams, on the shared DDPM schedule):

    L = MSE(eps_video) + MSE(eps_audio) + lambda * EAS      (EAS off: lambda * EAS dropped)

Captions are replaced by the empty prompt with probability ``prompt_dropout`` so that sampling
can use classifier-free guidance. All randomness of a step (prompt dropout, VAE posterior
samples, timesteps, noise) comes from one CPU generator per rank whose state is checkpointed,
and the data stream is resumable (:class:`ShardBatches`), so a resumed run repeats exactly the
steps an uninterrupted run would have taken.

Launch on one process with ``tavgbench baseline train tavdiffusion --config CONFIG --data DIR
--out DIR``, on many with ``accelerate launch`` or ``torchrun`` around ``python -m tavgbench ...``.
"""

from __future__ import annotations

import csv
import json
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from accelerate import Accelerator
from diffusers.training_utils import EMAModel
from safetensors.torch import load_file
from torch import nn
from torch.utils.data import DataLoader

from tavgbench.baselines.tavdiffusion.checkpoint import (
    latest_checkpoint,
    load_codecs,
    read_state,
    save_weights,
    step_dir,
)
from tavgbench.baselines.tavdiffusion.config import TAVDiffusionConfig
from tavgbench.baselines.tavdiffusion.data import ShardBatches, check_latents, list_shards
from tavgbench.baselines.tavdiffusion.model import TAVDiffusion
from tavgbench.baselines.tavdiffusion.sharding import (
    copy_into,
    full_optimizer_state,
    full_state,
    full_tensor,
    load_full_optimizer_state,
    load_full_state,
    shard_denoiser,
)

LOG_FIELDS = ("step", "loss", "video_mse", "audio_mse", "eas", "lr", "clips_per_s", "seconds")


@dataclass
class StepLog:
    """One optimiser step's losses (mean over ranks and accumulated micro-batches)."""

    step: int
    loss: float
    video_mse: float
    audio_mse: float
    eas: float
    lr: float
    clips_per_s: float
    seconds: float


def diffusion_loss(
    model: TAVDiffusion,
    denoiser: nn.Module,
    batch: dict[str, Any],
    generator: torch.Generator,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The training loss of one batch and its parts (``video_mse``, ``audio_mse``, ``eas``).

    Args:
        model: codecs, schedule and config.
        denoiser: ``model.denoiser`` or its DDP wrapper.
        batch: ``caption`` and either ``frames uint8 [b, f, H, W, 3]`` and
            ``waveform [b, samples]``, or the stored VAE posteriors (``video_mean``,
            ``video_std``, ``audio_mean``, ``audio_std``; see ``data.write_shards``). Both give
            the same draws from ``generator``.
        generator: CPU generator for every random draw of the step.
    """
    config = model.config
    captions = list(batch["caption"])
    drop = torch.rand(len(captions), generator=generator) < config.prompt_dropout
    captions = ["" if d else c for c, d in zip(captions, drop.tolist(), strict=True)]
    text = model.encode_text(captions)
    device = model.device
    if "video_mean" in batch:
        video = model.video_latents(
            batch["video_mean"].to(device), batch["video_std"].to(device), generator
        )
        audio = model.audio_latents(
            batch["audio_mean"].to(device), batch["audio_std"].to(device), generator
        )
    else:
        video = model.encode_video(batch["frames"], generator)
        audio = model.encode_audio(batch["waveform"], generator)
    scheduler = model.training_scheduler()
    b = video.shape[0]
    timesteps = torch.randint(0, config.num_train_timesteps, (b,), generator=generator)
    video_noise = torch.randn(video.shape, generator=generator)
    audio_noise = torch.randn(audio.shape, generator=generator)
    timesteps = timesteps.to(device)
    video_noise, audio_noise = video_noise.to(device), audio_noise.to(device)
    out = denoiser(
        scheduler.add_noise(video, video_noise, timesteps),
        scheduler.add_noise(audio, audio_noise, timesteps),
        timesteps,
        text,
    )
    parts = {
        "video_mse": F.mse_loss(out.video.float(), video_noise),
        "audio_mse": F.mse_loss(out.audio.float(), audio_noise),
    }
    total = parts["video_mse"] + parts["audio_mse"]
    if out.eas is not None:
        parts["eas"] = out.eas
        total = total + config.eas_weight * out.eas
    return total, parts


class Trainer:
    """Trains a TAVDiffusion model on webdataset shards into ``out_dir``.

    ``out_dir`` receives ``config.json``, ``log.csv`` (one row per logged step) and
    ``checkpoints/step-*`` every ``checkpoint_every`` steps; a trainer started on a folder with
    checkpoints resumes from the latest one.

    Args:
        config: model, data and optimisation settings.
        data: folder of shards (``tavgbench data shard``).
        out_dir: training folder.
        resume: continue from the latest checkpoint in ``out_dir`` when there is one.
    """

    def __init__(
        self,
        config: TAVDiffusionConfig,
        data: str | Path,
        out_dir: str | Path,
        *,
        resume: bool = True,
    ) -> None:
        self.config = config
        self.data = Path(data)
        self.shards = list_shards(data)
        self.out_dir = Path(out_dir)
        # Without `cpu=True` accelerate treats a multi-process launch without GPUs as a single
        # process (every rank trains alone); with it, ranks join a gloo process group.
        multi_cpu = not torch.cuda.is_available() and int(os.environ.get("WORLD_SIZE", "1")) > 1
        self.accelerator = Accelerator(
            cpu=multi_cpu,
            mixed_precision=config.mixed_precision,
            gradient_accumulation_steps=config.gradient_accumulation_steps,
        )
        acc = self.accelerator
        with torch.random.fork_rng():
            torch.manual_seed(config.seed)
            self.model = TAVDiffusion(config)
        denoiser = self.model.denoiser
        if config.gradient_checkpointing:
            denoiser.video_unet.enable_gradient_checkpointing()
            denoiser.audio_unet.enable_gradient_checkpointing()
        self.model.to(acc.device)
        self.latents = check_latents(self.data, self.model)
        denoiser.train()
        # FSDP shards in place (accelerate's FSDP needs accelerators; torch's runs on gloo too);
        # the optimizer then steps only at accumulation boundaries, as accelerate's would.
        self.sharded = config.parallelism == "fsdp" and acc.num_processes > 1
        if self.sharded:
            self.denoiser = shard_denoiser(denoiser)
            # Mixed precision as accelerate's prepare gives DDP: autocast around the forward.
            forward = denoiser.forward

            def autocast_forward(*args: Any, **kwargs: Any) -> Any:
                with acc.autocast():
                    return forward(*args, **kwargs)

            denoiser.forward = autocast_forward  # type: ignore[method-assign]
            self.optimizer = torch.optim.AdamW(denoiser.parameters(), lr=config.learning_rate)
            self.torch_optimizer = self.optimizer
        else:
            optimizer = torch.optim.AdamW(denoiser.parameters(), lr=config.learning_rate)
            self.denoiser, self.optimizer = acc.prepare(denoiser, optimizer)
            self.torch_optimizer = optimizer
        self.ema = EMAModel(denoiser.parameters(), decay=config.ema_decay)
        self.generator = torch.Generator().manual_seed(config.seed * 100_003 + acc.process_index)
        self.step = 0
        self.batches = 0
        if resume and (latest := latest_checkpoint(self.out_dir)) is not None:
            self.load(latest)
        if acc.is_main_process:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            config.save(self.out_dir / "config.json")

    # --- checkpoints ----------------------------------------------------------------------

    def save(self) -> Path:
        """Write the current step's checkpoint (every rank takes part and writes its generator)."""
        acc = self.accelerator
        folder = step_dir(self.out_dir, self.step)
        denoiser = acc.unwrap_model(self.denoiser)
        # Under FSDP gathering is collective (every rank takes part, rank 0 keeps the full
        # tensors); under DDP the main process has everything and the others skip the copies.
        if self.sharded or acc.is_main_process:
            weights = full_state(denoiser)
            names = [n for n, _ in denoiser.named_parameters()]
            shadows = zip(names, self.ema.shadow_params, strict=True)
            ema = {n: full_tensor(p).cpu() for n, p in shadows}
            optimizer = full_optimizer_state(denoiser, self.torch_optimizer)
        if acc.is_main_process:
            save_weights(folder, self.model, weights, {**weights, **ema})
            torch.save(optimizer, folder / "optimizer.pt")
            if acc.scaler is not None:
                # fp16: the dynamic loss scale and its growth counters, so a resumed run
                # neither restarts at 65536 nor skips the steps a fresh scale would overflow.
                torch.save(acc.scaler.state_dict(), folder / "scaler.pt")
        acc.wait_for_everyone()
        torch.save(self.generator.get_state(), folder / f"rng-rank{acc.process_index}.pt")
        acc.wait_for_everyone()
        if acc.is_main_process:
            state = {
                "step": self.step,
                "batches": self.batches,
                "world_size": acc.num_processes,
                "parallelism": self.config.parallelism,
                "ema_optimization_step": self.ema.optimization_step,
            }
            (folder / "state.json").write_text(json.dumps(state, indent=2) + "\n")
        acc.wait_for_everyone()
        return folder

    def load(self, folder: Path) -> None:
        """Restore weights, EMA, optimizer, step counters and this rank's generator."""
        acc = self.accelerator
        state = read_state(folder)
        if state["world_size"] != acc.num_processes:
            warnings.warn(
                f"{folder}: saved with {state['world_size']} processes, resumed with "
                f"{acc.num_processes}; the data order changes from here",
                stacklevel=2,
            )
        load_codecs(self.model, folder)
        denoiser = acc.unwrap_model(self.denoiser)
        load_full_state(denoiser, load_file(folder / "denoiser.safetensors"))
        ema = load_file(folder / "ema.safetensors")
        for (name, _), shadow in zip(
            denoiser.named_parameters(), self.ema.shadow_params, strict=True
        ):
            copy_into(shadow, ema[name])
        self.ema.optimization_step = state["ema_optimization_step"]
        optimizer = torch.load(folder / "optimizer.pt", map_location="cpu", weights_only=True)
        load_full_optimizer_state(denoiser, self.torch_optimizer, optimizer)
        scaler = folder / "scaler.pt"
        if acc.scaler is not None and scaler.is_file():
            acc.scaler.load_state_dict(torch.load(scaler, weights_only=True))
        rng = folder / f"rng-rank{acc.process_index}.pt"
        if rng.is_file():
            self.generator.set_state(torch.load(rng, weights_only=True))
        self.step, self.batches = state["step"], state["batches"]

    # --- the loop -------------------------------------------------------------------------

    def train(
        self, max_steps: int | None = None, *, on_step: Callable[[StepLog], None] | None = None
    ) -> list[StepLog]:
        """Train until ``max_steps`` (default: the config's) optimiser steps have been taken."""
        acc, config = self.accelerator, self.config
        target = config.max_steps if max_steps is None else max_steps
        logs: list[StepLog] = []
        if self.step >= target:
            return logs
        dataset = ShardBatches(
            self.shards,
            config,
            rank=acc.process_index,
            world=acc.num_processes,
            start_batch=self.batches,
            latents=self.latents,
        )
        loader = DataLoader(dataset, batch_size=None, num_workers=config.num_workers)
        sums: dict[str, float] = {}
        micro = 0
        tick = time.perf_counter()
        for batch in loader:
            with acc.accumulate(self.denoiser):
                if self.sharded:
                    self.denoiser.set_requires_gradient_sync(acc.sync_gradients)
                loss, parts = diffusion_loss(self.model, self.denoiser, batch, self.generator)
                acc.backward(loss)
                # accelerate's prepared optimizer skips non-boundary steps itself.
                if acc.sync_gradients or not self.sharded:
                    self.optimizer.step()
                    self.optimizer.zero_grad(set_to_none=True)
            self.batches += 1
            micro += 1
            for key, value in {"loss": loss, **parts}.items():
                sums[key] = sums.get(key, 0.0) + float(acc.reduce(value.detach(), "mean"))
            if not acc.sync_gradients:
                continue
            self.step += 1
            self.ema.step(acc.unwrap_model(self.denoiser).parameters())
            seconds = time.perf_counter() - tick
            clips = micro * config.batch_size * acc.num_processes
            log = StepLog(
                step=self.step,
                loss=sums["loss"] / micro,
                video_mse=sums["video_mse"] / micro,
                audio_mse=sums["audio_mse"] / micro,
                eas=sums.get("eas", 0.0) / micro,
                lr=self.optimizer.param_groups[0]["lr"],
                clips_per_s=clips / seconds,
                seconds=seconds,
            )
            logs.append(log)
            if self.step % config.log_every == 0 or self.step == target:
                self._write_log(log)
            if on_step is not None:
                on_step(log)
            if self.step % config.checkpoint_every == 0 or self.step == target:
                self.save()
            sums, micro = {}, 0
            tick = time.perf_counter()
            if self.step >= target:
                break
        return logs

    def _write_log(self, log: StepLog) -> None:
        if not self.accelerator.is_main_process:
            return
        path = self.out_dir / "log.csv"
        new = not path.is_file()
        with path.open("a", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=LOG_FIELDS)
            if new:
                writer.writeheader()
            writer.writerow({k: getattr(log, k) for k in LOG_FIELDS})
