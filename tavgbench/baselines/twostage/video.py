"""Stage one: text to video with AnimateDiff (Stable Diffusion 1.5 + a motion adapter).

Sampling runs diffusers' ``AnimateDiffPipeline``; we encode the prompts ourselves (so the
random-weight byte tokenizer works too) and draw the initial latents on the CPU from each clip's
seed, so a clip does not depend on its batch or device.
"""

from __future__ import annotations

import numpy as np
import torch
from diffusers import (
    AnimateDiffPipeline,
    AutoencoderKL,
    DDIMScheduler,
    MotionAdapter,
    UNet2DConditionModel,
)
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from tavgbench.baselines.tavdiffusion.components import ByteTokenizer
from tavgbench.baselines.twostage.components import (
    build_part,
    freeze,
    seeded_noise,
    tokenize,
)
from tavgbench.baselines.twostage.config import TwoStageConfig


class AnimateDiffVideo:
    """Text to ``uint8 [b, f, h, w, 3]`` frames at ``config.fps``."""

    def __init__(self, config: TwoStageConfig, device: str | torch.device = "cpu") -> None:
        self.config = config
        specs = config.components
        self.tokenizer = build_part(
            specs["tokenizer"],
            "AnimateDiff tokenizer",
            CLIPTokenizer,
            lambda c: ByteTokenizer(c.get("max_length", config.max_text_length)),
        )
        text_encoder = build_part(
            specs["text_encoder"],
            "AnimateDiff text encoder",
            CLIPTextModel,
            lambda c: CLIPTextModel(CLIPTextConfig(**c)),
        )
        vae = build_part(
            specs["vae"], "AnimateDiff VAE", AutoencoderKL, lambda c: AutoencoderKL(**c)
        )
        unet = build_part(
            specs["unet"],
            "AnimateDiff image UNet",
            UNet2DConditionModel,
            lambda c: UNet2DConditionModel(**c),
        )
        adapter = build_part(
            specs["motion_adapter"],
            "AnimateDiff motion adapter",
            MotionAdapter,
            lambda c: MotionAdapter(**c),
        )
        scheduler = DDIMScheduler(
            num_train_timesteps=1000,
            beta_start=config.video_beta_start,
            beta_end=config.video_beta_end,
            beta_schedule=config.video_beta_schedule,
            clip_sample=False,
            timestep_spacing="linspace",
            steps_offset=1,
        )
        self.pipe = AnimateDiffPipeline(
            vae=vae,
            text_encoder=text_encoder,
            tokenizer=self.tokenizer,
            unet=unet,
            motion_adapter=adapter,
            scheduler=scheduler,
        )
        self.pipe.set_progress_bar_config(disable=True)
        freeze(self.pipe.unet, self.pipe.vae, self.pipe.text_encoder)
        self.to(device)

    def to(self, device: str | torch.device, dtype: torch.dtype | None = None) -> AnimateDiffVideo:
        """Move every part (and cast it to ``dtype``, as diffusers runs AnimateDiff in fp16)."""
        self.device = torch.device(device)
        self.pipe.to(device=self.device, dtype=dtype)
        return self

    @property
    def dtype(self) -> torch.dtype:
        return self.pipe.unet.dtype

    @torch.no_grad()
    def encode_text(self, prompts: list[str]) -> torch.Tensor:
        """CLIP text states ``[b, tokens, d]`` (Stable Diffusion 1.5 uses no attention mask)."""
        ids, _ = tokenize(self.tokenizer, prompts, self.config.max_text_length)
        return self.pipe.text_encoder(ids.to(self.device))[0]

    def latent_shape(self) -> tuple[int, ...]:
        c, vae = self.config, self.pipe.vae
        factor = 2 ** (len(vae.config.block_out_channels) - 1)
        return (
            self.pipe.unet.config.in_channels,
            c.num_frames,
            c.height // factor,
            c.width // factor,
        )

    @torch.no_grad()
    def generate(
        self,
        prompts: list[str],
        seeds: list[int],
        *,
        num_inference_steps: int | None = None,
        guidance_scale: float | None = None,
    ) -> np.ndarray:
        c = self.config
        latents = seeded_noise(self.latent_shape(), seeds).to(self.device, self.dtype)
        text = self.encode_text(list(prompts)).to(self.dtype)
        empty = self.encode_text([""] * len(prompts)).to(self.dtype)
        out = self.pipe(
            prompt_embeds=text,
            negative_prompt_embeds=empty,
            latents=latents,
            num_frames=c.num_frames,
            height=c.height,
            width=c.width,
            num_inference_steps=num_inference_steps or c.video_steps,
            guidance_scale=c.video_guidance if guidance_scale is None else guidance_scale,
            output_type="pt",
            decode_chunk_size=c.vae_chunk,
        )
        # [b, f, 3, h, w] in [0, 1]
        video = out.frames.float().clamp(0, 1)
        frames = (video * 255).round().to(torch.uint8).permute(0, 1, 3, 4, 2)
        return frames.cpu().numpy()
