"""TAVDiffusion: two diffusers UNets denoising video and audio latents in lock-step.

The video stream is SD-1.5's UNet made pseudo-3D with AnimateDiff motion modules
(``UNetMotionModel``), the audio stream SD-1.5's UNet on AudioLDM latents
(``UNet2DConditionModel``, 8 channels). Both run block by block here, instead of through their own
``forward``, so that at the configured decoder levels their features can be exchanged by the
cross-modal bridge and taken for the EAS loss. Level ``0`` is the input of the first decoder
(up) block, i.e. the mid block's output; level ``k`` the input of up block ``k``.

Only the plain text-conditioned UNet configuration (no class, added or image embeddings) is
supported; anything else is refused when the model is built.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler, DDPMScheduler, UNet2DConditionModel, UNetMotionModel
from torch import nn

from tavgbench.baselines.tavdiffusion.bridge import (
    CrossModalBridge,
    audio_to_tokens,
    tokens_to_audio,
    tokens_to_video,
    video_to_tokens,
)
from tavgbench.baselines.tavdiffusion.components import (
    Codecs,
    build_audio_unet,
    build_codecs,
    build_video_unet,
    unet_factor,
    vae_factor,
)
from tavgbench.baselines.tavdiffusion.config import ConfigError, TAVDiffusionConfig
from tavgbench.baselines.tavdiffusion.eas import TokenWeightedSimilarity, eas_loss
from tavgbench.baselines.tavdiffusion.mel import LogMelSpectrogram, normalize_waveform


@dataclass
class DenoiserOutput:
    """Noise predictions of both streams and, when EAS is on, the EAS loss of this batch.

    Attributes:
        video: ``[b, c, f, h, w]`` predicted video noise.
        audio: ``[b, c, h, w]`` predicted audio noise.
        eas: scalar EAS loss (global-batch negatives under DDP), or None when EAS is off or
            the denoiser is in eval mode.
    """

    video: torch.Tensor
    audio: torch.Tensor
    eas: torch.Tensor | None = None


def _check_plain(unet: nn.Module, what: str) -> None:
    config = unet.config
    extras = {
        key: config.get(key)
        for key in (
            "class_embed_type",
            "addition_embed_type",
            "encoder_hid_dim_type",
            "num_class_embeds",
            "time_cond_proj_dim",
        )
        if config.get(key)
    }
    if extras or config.get("center_input_sample"):
        raise ConfigError(f"TAVDiffusion {what}: unsupported UNet options {extras}")


def level_channels(unet: nn.Module, level: int) -> int:
    """Channels of the decoder input at ``level`` (0: mid-block output)."""
    channels = list(unet.config.block_out_channels)
    return channels[-1] if level == 0 else list(reversed(channels))[level - 1]


class TAVDiffusionDenoiser(nn.Module):
    """The trainable part: both UNets, the bridges and the EAS similarity head."""

    def __init__(
        self,
        config: TAVDiffusionConfig,
        video_unet: UNetMotionModel,
        audio_unet: UNet2DConditionModel,
    ) -> None:
        super().__init__()
        _check_plain(video_unet, "video UNet")
        _check_plain(audio_unet, "audio UNet")
        self.video_unet = video_unet
        self.audio_unet = audio_unet
        n_up = len(video_unet.up_blocks)
        if len(audio_unet.up_blocks) != n_up:
            raise ConfigError("TAVDiffusion: the two UNets need the same number of decoder blocks")
        levels = sorted(set(config.bridge_levels))
        if not levels or levels[0] < 0 or levels[-1] >= n_up:
            raise ConfigError(
                f"TAVDiffusion: bridge_levels must be non-empty and within 0..{n_up - 1}, "
                f"got {list(config.bridge_levels)}"
            )
        self.levels = levels if config.cross_attention else []
        self.bridges = nn.ModuleDict(
            {
                str(level): CrossModalBridge(
                    level_channels(video_unet, level),
                    level_channels(audio_unet, level),
                    config.bridge_heads,
                )
                for level in self.levels
            }
        )
        # EAS compares the streams at the lowest-resolution bridge level: fewest tokens.
        self.eas_level = levels[0]
        self.eas_temperature = config.eas_temperature
        self.similarity = (
            TokenWeightedSimilarity(
                level_channels(video_unet, self.eas_level),
                level_channels(audio_unet, self.eas_level),
                config.eas_dim,
            )
            if config.eas
            else None
        )

    def forward(
        self,
        video: torch.Tensor,
        audio: torch.Tensor,
        timesteps: torch.Tensor,
        text: torch.Tensor,
    ) -> DenoiserOutput:
        """Predict both streams' noise.

        Args:
            video: ``[b, c, f, h, w]`` noisy video latents.
            audio: ``[b, c, h, w]`` noisy audio latents.
            timesteps: ``[b]`` diffusion steps, the same for both streams.
            text: ``[b, tokens, d]`` text encoder states.
        """
        num_frames = video.shape[2]
        vu, au = self.video_unet, self.audio_unet
        if hasattr(vu, "temporal_frames"):
            vu.temporal_frames["n"] = num_frames
        v_text = text.repeat_interleave(num_frames, dim=0)
        v_emb = _time_embedding(vu, timesteps, video.dtype).repeat_interleave(num_frames, dim=0)
        a_emb = _time_embedding(au, timesteps, audio.dtype)
        v = vu.conv_in(video.transpose(1, 2).flatten(0, 1))
        a = au.conv_in(audio)
        v, v_res = _encode(vu, v, v_emb, v_text, num_frames)
        a, a_res = _encode(au, a, a_emb, text, None)
        v_upsize = any(s % 2**vu.num_upsamplers for s in video.shape[-2:])
        a_upsize = any(s % 2**au.num_upsamplers for s in audio.shape[-2:])
        eas = None
        for i in range(len(vu.up_blocks)):
            # Training only: sampling needs no loss (and ranks generating different numbers
            # of batches must not meet in EAS's all-gather).
            if i == self.eas_level and self.similarity is not None and self.training:
                eas = eas_loss(
                    *self.similarity(video_to_tokens(v, num_frames), audio_to_tokens(a)),
                    temperature=self.eas_temperature,
                )
            if str(i) in self.bridges:
                v_tokens, a_tokens = self.bridges[str(i)](
                    video_to_tokens(v, num_frames), audio_to_tokens(a)
                )
                v = tokens_to_video(v_tokens, num_frames, *v.shape[-2:])
                a = tokens_to_audio(a_tokens, *a.shape[-2:])
            v, v_res = _decode_block(vu, i, v, v_res, v_emb, v_text, num_frames, v_upsize)
            a, a_res = _decode_block(au, i, a, a_res, a_emb, text, None, a_upsize)
        v = _conv_out(vu, v)
        v = v.reshape(-1, num_frames, *v.shape[1:]).permute(0, 2, 1, 3, 4)
        return DenoiserOutput(video=v, audio=_conv_out(au, a), eas=eas)


def _time_embedding(unet: nn.Module, timesteps: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    t_emb = unet.time_proj(timesteps).to(dtype=unet.dtype)
    emb = unet.time_embedding(t_emb, None)
    act = getattr(unet, "time_embed_act", None)
    return act(emb) if act is not None else emb


def _frames(num_frames: int | None) -> dict[str, Any]:
    return {} if num_frames is None else {"num_frames": num_frames}


def _encode(
    unet: nn.Module,
    sample: torch.Tensor,
    emb: torch.Tensor,
    text: torch.Tensor,
    num_frames: int | None,
) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    """conv_in output through the down blocks and the mid block, as diffusers' forward does."""
    residuals: tuple[torch.Tensor, ...] = (sample,)
    for block in unet.down_blocks:
        if getattr(block, "has_cross_attention", False):
            sample, res = block(
                hidden_states=sample, temb=emb, encoder_hidden_states=text, **_frames(num_frames)
            )
        else:
            sample, res = block(hidden_states=sample, temb=emb, **_frames(num_frames))
        residuals += res
    mid = unet.mid_block
    if mid is not None:
        extra = _frames(num_frames) if hasattr(mid, "motion_modules") else {}
        if getattr(mid, "has_cross_attention", True):
            sample = mid(sample, emb, encoder_hidden_states=text, **extra)
        else:
            sample = mid(sample, emb, **extra)
    return sample, residuals


def _decode_block(
    unet: nn.Module,
    index: int,
    sample: torch.Tensor,
    residuals: tuple[torch.Tensor, ...],
    emb: torch.Tensor,
    text: torch.Tensor,
    num_frames: int | None,
    forward_upsample_size: bool,
) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    block = unet.up_blocks[index]
    n = len(block.resnets)
    res, residuals = residuals[-n:], residuals[:-n]
    upsample_size = None
    if index < len(unet.up_blocks) - 1 and forward_upsample_size:
        upsample_size = residuals[-1].shape[2:]
    kwargs: dict[str, Any] = {
        "hidden_states": sample,
        "temb": emb,
        "res_hidden_states_tuple": res,
        "upsample_size": upsample_size,
        **_frames(num_frames),
    }
    if getattr(block, "has_cross_attention", False):
        kwargs["encoder_hidden_states"] = text
    return block(**kwargs), residuals


def _conv_out(unet: nn.Module, sample: torch.Tensor) -> torch.Tensor:
    if unet.conv_norm_out is not None:
        sample = unet.conv_act(unet.conv_norm_out(sample))
    return unet.conv_out(sample)


class TAVDiffusion:
    """The whole model: frozen codecs, the trainable denoiser, the mel front end, the schedules.

    Media conventions: frames are ``uint8 [b, f, H, W, 3]``, waveforms ``float [b, samples]``
    at ``config.sample_rate``; video latents ``[b, 4, f, H/8, W/8]``; audio latents
    ``[b, 8, T/4, 64/4]`` for AudioLDM's VAE (the paper writes /8; AudioLDM's VAE halves twice).
    """

    def __init__(
        self,
        config: TAVDiffusionConfig,
        codecs: Codecs | None = None,
        denoiser: TAVDiffusionDenoiser | None = None,
    ) -> None:
        self.config = config
        self.codecs = codecs if codecs is not None else build_codecs(config)
        self.denoiser = (
            denoiser
            if denoiser is not None
            else TAVDiffusionDenoiser(config, build_video_unet(config), build_audio_unet(config))
        )
        self.mel = LogMelSpectrogram(
            config.sample_rate,
            config.n_fft,
            config.hop_length,
            config.n_mels,
            config.fmin,
            config.fmax,
        )
        self.device = torch.device("cpu")
        factor = vae_factor(self.codecs.audio_vae) * unet_factor(self.denoiser.audio_unet)
        self.mel_frames = config.mel_frames(factor)
        if config.n_mels % factor:
            raise ConfigError(
                f"config {config.name!r}: n_mels {config.n_mels} must be a multiple of {factor}"
            )

    def to(self, device: str | torch.device) -> TAVDiffusion:
        self.device = torch.device(device)
        for module in (*self.codecs.modules().values(), self.denoiser, self.mel):
            module.to(self.device)
        return self

    # --- schedules -------------------------------------------------------------------------

    def _schedule(self) -> dict[str, Any]:
        c = self.config
        return {
            "num_train_timesteps": c.num_train_timesteps,
            "beta_start": c.beta_start,
            "beta_end": c.beta_end,
            "beta_schedule": c.beta_schedule,
        }

    def training_scheduler(self) -> DDPMScheduler:
        """The DDPM schedule shared by both streams."""
        return DDPMScheduler(**self._schedule(), clip_sample=False)

    def sampling_scheduler(self) -> DDIMScheduler:
        """DDIM on the same betas, as the released inference builds it (``steps_offset`` 1, no
        clipping, diffusers' defaults otherwise: the last step lands on alpha 1)."""
        return DDIMScheduler(**self._schedule(), clip_sample=False, steps_offset=1)

    # --- codecs ---------------------------------------------------------------------------

    @torch.no_grad()
    def encode_text(self, prompts: list[str]) -> torch.Tensor:
        """CLIP text encoder states ``[b, tokens, d]``."""
        tok = self.codecs.tokenizer
        ids = tok(
            prompts,
            padding="max_length",
            max_length=min(tok.model_max_length, self.config.max_text_length),
            truncation=True,
            return_tensors="pt",
        )["input_ids"]
        return self.codecs.text_encoder(ids.to(self.device))[0]

    def latent_shapes(self) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """Per-clip shapes of the video and audio latents."""
        c, vae_v, vae_a = self.config, self.codecs.video_vae, self.codecs.audio_vae
        fv, fa = vae_factor(vae_v), vae_factor(vae_a)
        return (
            (vae_v.config.latent_channels, c.num_frames, c.height // fv, c.width // fv),
            (vae_a.config.latent_channels, self.mel_frames // fa, c.n_mels // fa),
        )

    @torch.no_grad()
    def video_posterior(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``uint8 [b, f, H, W, 3]`` to the VAE posterior's mean and std ``[b, f, c, h, w]``.

        Unscaled, frames encoded ``vae_chunk`` at a time; :meth:`video_latents` samples them.
        """
        b, f = frames.shape[:2]
        x = frames.to(self.device).flatten(0, 1).permute(0, 3, 1, 2).float() / 127.5 - 1.0
        vae = self.codecs.video_vae
        dists = [
            vae.encode(x[i : i + self.config.vae_chunk].to(vae.dtype)).latent_dist
            for i in range(0, len(x), self.config.vae_chunk)
        ]
        mean = torch.cat([d.mean for d in dists])
        std = torch.cat([d.std for d in dists])
        return mean.reshape(b, f, *mean.shape[1:]), std.reshape(b, f, *std.shape[1:])

    def video_latents(
        self, mean: torch.Tensor, std: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """A posterior sample ``[b, 4, f, h, w]``, scaled (the mean when ``generator`` is None).

        The noise is drawn ``vae_chunk`` frames at a time, in clip-major frame order, so that
        latents precomputed into shards give the same draws as encoding on the fly.
        """
        b, f = mean.shape[:2]
        flat_mean, flat_std = mean.flatten(0, 1), std.flatten(0, 1)
        chunk = self.config.vae_chunk
        latents = torch.cat(
            [
                _sample(flat_mean[i : i + chunk], flat_std[i : i + chunk], generator)
                for i in range(0, len(flat_mean), chunk)
            ]
        )
        latents = latents * self.codecs.video_vae.config.scaling_factor
        return latents.reshape(b, f, *latents.shape[1:]).permute(0, 2, 1, 3, 4)

    def encode_video(
        self, frames: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """``uint8 [b, f, H, W, 3]`` to scaled latents ``[b, 4, f, h, w]`` (VAE in chunks)."""
        return self.video_latents(*self.video_posterior(frames), generator)

    @torch.no_grad()
    def audio_posterior(self, waveform: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``[b, samples]`` to the audio VAE posterior's mean and std ``[b, 8, t, m]``.

        As AudioLDM prepares its training audio: levels normalised (mean removed, peak 0.5), the
        waveform padded with silence to the latent grid's length (``mel_frames`` hops: 10.24 s
        for a 10 s clip), its log-mel cut to ``mel_frames`` frames.
        """
        wave = normalize_waveform(waveform.to(self.device).float())
        wave = F.pad(wave, (0, max(0, self.mel_frames * self.config.hop_length - wave.shape[1])))
        mel = self.mel(wave)[:, : self.mel_frames, None].transpose(1, 2)
        vae = self.codecs.audio_vae
        dist = vae.encode(mel.to(vae.dtype)).latent_dist
        return dist.mean, dist.std

    def audio_latents(
        self, mean: torch.Tensor, std: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """A posterior sample of the audio latents, scaled (the mean without ``generator``)."""
        return _sample(mean, std, generator) * self.codecs.audio_vae.config.scaling_factor

    def encode_audio(
        self, waveform: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """``[b, samples]`` to scaled AudioLDM latents (log-mel padded to the latent grid)."""
        return self.audio_latents(*self.audio_posterior(waveform), generator)

    @torch.no_grad()
    def decode_video(self, latents: torch.Tensor) -> torch.Tensor:
        """Scaled latents ``[b, 4, f, h, w]`` to ``uint8 [b, f, H, W, 3]``."""
        b, _, f = latents.shape[:3]
        vae = self.codecs.video_vae
        flat = latents.permute(0, 2, 1, 3, 4).flatten(0, 1) / vae.config.scaling_factor
        images = torch.cat(
            [
                vae.decode(flat[i : i + self.config.vae_chunk]).sample
                for i in range(0, len(flat), self.config.vae_chunk)
            ]
        )
        images = ((images.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
        return images.permute(0, 2, 3, 1).reshape(b, f, *images.shape[2:], 3)

    @torch.no_grad()
    def decode_audio(self, latents: torch.Tensor) -> torch.Tensor:
        """Scaled audio latents to waveforms ``[b, num_samples]`` (VAE, then the vocoder)."""
        vae = self.codecs.audio_vae
        mel = vae.decode(latents / vae.config.scaling_factor).sample[:, 0]
        waveform = self.codecs.vocoder(mel.float())
        return waveform[:, : self.config.num_samples]


def _sample(
    mean: torch.Tensor, std: torch.Tensor, generator: torch.Generator | None
) -> torch.Tensor:
    if generator is None:
        return mean
    noise = torch.randn(mean.shape, generator=generator, device=generator.device)
    return mean + std * noise.to(mean.device, mean.dtype)
