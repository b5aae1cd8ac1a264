"""Joint DDIM sampling of TAVDiffusion: both streams at the same timestep, guided by the text.

Each step predicts both streams' noise for the prompt and for the empty prompt in one batched
call, applies classifier-free guidance to each, and takes one DDIM step per stream. Initial noise
is drawn on the CPU from each clip's own seed, so a clip does not depend on its batch, its
device or the clips generated before it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tavgbench.baselines.interface import AudibleClip, TextToAudibleVideo, torch_dtype
from tavgbench.baselines.tavdiffusion.checkpoint import load_model, resolve_checkpoint
from tavgbench.baselines.tavdiffusion.config import TAVDiffusionConfig
from tavgbench.baselines.tavdiffusion.model import TAVDiffusion


class TAVDiffusionPipeline(TextToAudibleVideo):
    """TAVDiffusion behind the shared generation interface.

    Args:
        model: the model (see :func:`load_model`).
        num_inference_steps: DDIM steps (default: the config's, 50 for ``paper``).
        guidance_scale: classifier-free guidance scale on both streams.
        checkpoint: where the weights came from, recorded in ``generation.json``.
    """

    name = "tavdiffusion"

    def __init__(
        self,
        model: TAVDiffusion,
        *,
        num_inference_steps: int | None = None,
        guidance_scale: float | None = None,
        checkpoint: str = "",
    ) -> None:
        self.model = model
        self.num_inference_steps = num_inference_steps or model.config.num_inference_steps
        self.guidance_scale = (
            model.config.guidance_scale if guidance_scale is None else guidance_scale
        )
        self.checkpoint = checkpoint
        self.model.denoiser.eval()

    @classmethod
    def load(
        cls,
        checkpoint: str | Path | None = None,
        *,
        config: str | Path | TAVDiffusionConfig | None = None,
        device: str = "cpu",
        num_inference_steps: int | None = None,
        guidance_scale: float | None = None,
        dtype: str | None = None,
    ) -> TAVDiffusionPipeline:
        """From a checkpoint (its config and EMA weights) or, with ``config`` only, untrained.

        ``dtype`` casts the denoiser (the codecs stay float32: decoding and the vocoder run on
        float32 latents)."""
        cast = torch_dtype(dtype)  # a wrong name is refused before anything is built
        model = load_model(checkpoint, config, device=device)
        if cast is not None:
            model.denoiser.to(cast)
        where = str(resolve_checkpoint(checkpoint)) if checkpoint is not None else ""
        return cls(
            model,
            num_inference_steps=num_inference_steps,
            guidance_scale=guidance_scale,
            checkpoint=where,
        )

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "config": self.model.config.name,
            "checkpoint": self.checkpoint,
            "num_inference_steps": self.num_inference_steps,
            "guidance_scale": self.guidance_scale,
            "dtype": str(next(self.model.denoiser.parameters()).dtype).removeprefix("torch."),
        }

    @torch.no_grad()
    def generate(self, prompts: Sequence[str], seeds: Sequence[int]) -> list[AudibleClip]:
        model, cfg = self.model, self.model.config
        if len(prompts) != len(seeds):
            raise ValueError("generate: one seed per prompt")
        device = model.device
        dtype = next(model.denoiser.parameters()).dtype
        video_shape, audio_shape = model.latent_shapes()
        video, audio = [], []
        for seed in seeds:
            g = torch.Generator().manual_seed(int(seed))
            video.append(torch.randn(video_shape, generator=g))
            audio.append(torch.randn(audio_shape, generator=g))
        v = torch.stack(video).to(device, dtype)
        a = torch.stack(audio).to(device, dtype)
        b = len(prompts)
        text = model.encode_text(["" for _ in prompts] + list(prompts)).to(dtype)
        video_steps, audio_steps = model.sampling_scheduler(), model.sampling_scheduler()
        video_steps.set_timesteps(self.num_inference_steps, device=device)
        audio_steps.set_timesteps(self.num_inference_steps, device=device)
        v = v * video_steps.init_noise_sigma
        a = a * audio_steps.init_noise_sigma
        for t in video_steps.timesteps:
            out = model.denoiser(
                torch.cat([v, v]), torch.cat([a, a]), t.expand(2 * b).to(device), text
            )
            eps_v = _guide(out.video, self.guidance_scale)
            eps_a = _guide(out.audio, self.guidance_scale)
            v = video_steps.step(eps_v, t, v).prev_sample
            a = audio_steps.step(eps_a, t, a).prev_sample
        frames = model.decode_video(v.float()).cpu().numpy()
        waveforms = model.decode_audio(a.float()).float().clamp(-1, 1).cpu().numpy()
        return [
            AudibleClip(frames[i], cfg.fps, waveforms[i].astype(np.float32), cfg.sample_rate)
            for i in range(b)
        ]


def _guide(eps: torch.Tensor, scale: float) -> torch.Tensor:
    uncond, cond = eps.chunk(2)
    return uncond + scale * (cond - uncond)
