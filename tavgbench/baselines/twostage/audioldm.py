"""Stage two of ``animatediff-audioldm``: text to audio with AudioLDM, on plain diffusers parts.

diffusers deprecates its AudioLDM pipeline, so this is the same sampler written against the
components it uses: the CLAP text encoder's projected, L2-normalised text embedding conditions
the UNet as a class embedding (concatenated to the time embedding; no cross-attention to text),
the empty prompt gives the unconditional embedding for classifier-free guidance, DDIM runs on
AudioLDM's schedule, the VAE decodes a 64-bin log-mel spectrogram and the HiFi-GAN vocoder
turns it into 16 kHz audio. The spectrogram has ``duration / hop`` frames rounded up to the
VAE's downsampling, and the waveform is cut to the requested duration.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
from transformers import (
    AutoTokenizer,
    ClapTextConfig,
    ClapTextModelWithProjection,
    SpeechT5HifiGan,
    SpeechT5HifiGanConfig,
)

from tavgbench.baselines.tavdiffusion.components import ByteTokenizer
from tavgbench.baselines.twostage.components import (
    build_part,
    freeze,
    seeded_noise,
    tokenize,
)
from tavgbench.baselines.twostage.config import TwoStageConfig

# Stage two's noise is drawn from the clip seed plus this, so it differs from stage one's.
AUDIO_SALT = 1


class AudioLDM:
    """Prompts to ``float32 [b, samples]`` waveforms in [-1, 1] at the vocoder's rate."""

    def __init__(self, config: TwoStageConfig, device: str | torch.device = "cpu") -> None:
        self.config = config
        specs = config.components
        self.tokenizer = build_part(
            specs["clap_tokenizer"],
            "AudioLDM CLAP tokenizer",
            AutoTokenizer,
            lambda c: ByteTokenizer(c.get("max_length", config.max_clap_length)),
        )
        self.text_encoder = build_part(
            specs["clap_text_encoder"],
            "AudioLDM CLAP text encoder",
            ClapTextModelWithProjection,
            lambda c: ClapTextModelWithProjection(ClapTextConfig(**c)),
        )
        self.unet = build_part(
            specs["audio_unet"],
            "AudioLDM UNet",
            UNet2DConditionModel,
            lambda c: UNet2DConditionModel(**c),
        )
        self.vae = build_part(
            specs["audio_vae"], "AudioLDM VAE", AutoencoderKL, lambda c: AutoencoderKL(**c)
        )
        self.vocoder = build_part(
            specs["vocoder"],
            "AudioLDM vocoder",
            SpeechT5HifiGan,
            lambda c: SpeechT5HifiGan(SpeechT5HifiGanConfig(**c)),
        )
        freeze(self.text_encoder, self.unet, self.vae, self.vocoder)
        self.to(device)

    def to(self, device: str | torch.device, dtype: torch.dtype | None = None) -> AudioLDM:
        self.device = torch.device(device)
        for module in (self.text_encoder, self.unet, self.vae, self.vocoder):
            module.to(self.device, dtype)
        return self

    @property
    def sample_rate(self) -> int:
        return int(self.vocoder.config.sampling_rate)

    def scheduler(self) -> DDIMScheduler:
        c = self.config
        return DDIMScheduler(
            num_train_timesteps=1000,
            beta_start=c.audio_beta_start,
            beta_end=c.audio_beta_end,
            beta_schedule=c.audio_beta_schedule,
            clip_sample=False,
            set_alpha_to_one=False,
            steps_offset=1,
        )

    @torch.no_grad()
    def encode_text(self, prompts: list[str]) -> torch.Tensor:
        """L2-normalised CLAP text embeddings ``[b, d]``."""
        ids, mask = tokenize(self.tokenizer, prompts, self.config.max_clap_length)
        out = self.text_encoder(
            ids.to(self.device), attention_mask=None if mask is None else mask.to(self.device)
        )
        return F.normalize(out.text_embeds, dim=-1)

    def latent_shape(self, duration: float) -> tuple[int, ...]:
        """Latent ``[channels, frames, mels]`` of a ``duration``-second soundtrack."""
        vae_factor = 2 ** (len(self.vae.config.block_out_channels) - 1)
        hop = math.prod(self.vocoder.config.upsample_rates)
        mel_frames = int(duration * self.sample_rate / hop)
        mel_frames = math.ceil(mel_frames / vae_factor) * vae_factor
        return (
            self.vae.config.latent_channels,
            mel_frames // vae_factor,
            self.vocoder.config.model_in_dim // vae_factor,
        )

    @torch.no_grad()
    def generate(
        self,
        prompts: list[str],
        seeds: list[int],
        duration: float,
        *,
        num_inference_steps: int | None = None,
        guidance_scale: float | None = None,
    ) -> np.ndarray:
        c = self.config
        steps = num_inference_steps or c.audio_steps
        scale = c.audio_guidance if guidance_scale is None else guidance_scale
        dtype = self.unet.dtype
        b = len(prompts)
        text = self.encode_text([""] * b + list(prompts)).to(dtype)
        sched = self.scheduler()
        sched.set_timesteps(steps, device=self.device)
        shape = self.latent_shape(duration)
        latents = seeded_noise(shape, list(seeds), AUDIO_SALT).to(self.device, dtype)
        latents = latents * sched.init_noise_sigma
        for t in sched.timesteps:
            model_in = sched.scale_model_input(torch.cat([latents, latents]), t)
            eps = self.unet(model_in, t, encoder_hidden_states=None, class_labels=text).sample
            uncond, cond = eps.chunk(2)
            latents = sched.step(uncond + scale * (cond - uncond), t, latents).prev_sample
        mel = self.vae.decode(latents / self.vae.config.scaling_factor).sample[:, 0]
        waveform = self.vocoder(mel.to(self.vocoder.dtype))
        waveform = waveform[:, : int(duration * self.sample_rate)]
        return waveform.clamp(-1, 1).float().cpu().numpy()
