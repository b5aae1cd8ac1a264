"""Text to audio with AudioLDM 2 (``text_to_audio="audioldm2"``), on diffusers' AudioLDM 2 parts.

AudioLDM 2 encodes the prompt twice, with CLAP's text branch (one projected embedding) and with
Flan-T5's encoder (one state per token); a projection model joins the two, a GPT-2 language model
continues that sequence by 8 "language of audio" states, and the UNet cross-attends to those
states and to the T5 states. The VAE decodes a 64-bin log-mel spectrogram and the HiFi-GAN
vocoder turns it into 16 kHz audio.

This reuses diffusers' ``AudioLDM2Pipeline`` (0.42): its ``encode_prompt`` for the conditioning
and its ``__call__`` for DDIM with classifier-free guidance, decoding and cutting the waveform to
the requested length. What we change or choose:

* The language model's continuation is our own loop (no key-value cache): diffusers' loop calls
  ``GenerationMixin`` methods that transformers 5's ``GPT2Model`` lacks (diffusers issue #12630).
  Each step appends the last hidden state and extends the attention mask, as diffusers does.
* Each prompt is encoded alone. diffusers pads the T5 tokens to the longest prompt of the batch
  and the language model sees that padding in its positions, so a clip would depend on its
  batch; alone, every clip gets what diffusers gives a single prompt (the unconditional prompt
  padded to the prompt's T5 length, as diffusers pads it). The T5 states of a batch are then
  zero-padded to a common length with a zero attention mask, which the UNet ignores.
* The initial noise is drawn per clip from its seed (``components.seeded_noise``, offset from the
  video stage's by ``AUDIO_SALT``) and passed to the pipeline as ``latents``.
* The scheduler is DDIM on the config's audio schedule (AudioLDM 2's released betas); steps,
  guidance and the unconditional prompt come from the config (``audioldm2`` presets: 200, 3.5,
  empty prompt, the defaults of the authors' CLI and of diffusers).
* Random-weight configs build their tokenizers in memory: RoBERTa's byte-level BPE with no merges
  (one token per UTF-8 byte, 261 tokens) and a character-level T5 unigram vocabulary (98 pieces:
  printable ASCII and the word-start marker; other characters map to ``<unk>``).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import (
    AudioLDM2Pipeline,
    AudioLDM2ProjectionModel,
    AudioLDM2UNet2DConditionModel,
    AutoencoderKL,
    DDIMScheduler,
)
from tokenizers.pre_tokenizers import ByteLevel
from transformers import (
    ClapConfig,
    ClapModel,
    GPT2Config,
    GPT2Model,
    RobertaTokenizer,
    SpeechT5HifiGan,
    SpeechT5HifiGanConfig,
    T5Config,
    T5EncoderModel,
    T5Tokenizer,
)

from tavgbench.baselines.twostage.audioldm import AUDIO_SALT
from tavgbench.baselines.twostage.components import build_part, freeze, seeded_noise
from tavgbench.baselines.twostage.config import TwoStageConfig


def byte_roberta_tokenizer(max_length: int) -> RobertaTokenizer:
    """RoBERTa's byte-level BPE without merges: ``<s>``, one token per UTF-8 byte, ``</s>``."""
    vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3}
    for symbol in sorted(ByteLevel.alphabet()):
        vocab[symbol] = len(vocab)
    vocab["<mask>"] = len(vocab)
    return RobertaTokenizer(vocab=vocab, merges=[], model_max_length=max_length)


def char_t5_tokenizer(max_length: int) -> T5Tokenizer:
    """A T5 unigram tokenizer over single characters: printable ASCII and the word marker."""
    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -1.0)]
    pieces += [(chr(code), -2.0) for code in range(33, 127)]
    return T5Tokenizer(vocab=pieces, extra_ids=0, model_max_length=max_length)


class _Pipeline(AudioLDM2Pipeline):
    """diffusers' AudioLDM 2 pipeline with a language-model loop that runs on ``GPT2Model``."""

    def generate_language_model(
        self,
        inputs_embeds: torch.Tensor,
        max_new_tokens: int = 8,
        **model_kwargs: Any,
    ) -> torch.Tensor:
        mask = model_kwargs.get("attention_mask")
        for _ in range(max_new_tokens):
            hidden = self.language_model(
                inputs_embeds=inputs_embeds, attention_mask=mask
            ).last_hidden_state
            inputs_embeds = torch.cat([inputs_embeds, hidden[:, -1:]], dim=1)
            if mask is not None:
                mask = torch.cat([mask, mask.new_ones(mask.shape[0], 1)], dim=1)
        return inputs_embeds[:, -max_new_tokens:]


class AudioLDM2:
    """Prompts to ``float32 [b, samples]`` waveforms in [-1, 1] at the vocoder's rate."""

    def __init__(self, config: TwoStageConfig, device: str | torch.device = "cpu") -> None:
        self.config = config
        specs = config.components
        tokenizer = build_part(
            specs["audioldm2_tokenizer"],
            "AudioLDM 2 CLAP tokenizer",
            RobertaTokenizer,
            lambda c: byte_roberta_tokenizer(c.get("model_max_length", config.max_clap_length)),
        )
        tokenizer_2 = build_part(
            specs["audioldm2_tokenizer_2"],
            "AudioLDM 2 T5 tokenizer",
            T5Tokenizer,
            lambda c: char_t5_tokenizer(c.get("model_max_length", config.max_clap_length)),
        )
        text_encoder = build_part(
            specs["audioldm2_text_encoder"],
            "AudioLDM 2 CLAP text encoder",
            ClapModel,
            lambda c: ClapModel(ClapConfig(**c)),
        )
        text_encoder_2 = build_part(
            specs["audioldm2_text_encoder_2"],
            "AudioLDM 2 T5 text encoder",
            T5EncoderModel,
            lambda c: T5EncoderModel(T5Config(**c)),
        )
        projection_model = build_part(
            specs["audioldm2_projection_model"],
            "AudioLDM 2 projection model",
            AudioLDM2ProjectionModel,
            lambda c: AudioLDM2ProjectionModel(**c),
        )
        language_model = build_part(
            specs["audioldm2_language_model"],
            "AudioLDM 2 language model",
            GPT2Model,
            lambda c: GPT2Model(GPT2Config(**c)),
        )
        unet = build_part(
            specs["audioldm2_unet"],
            "AudioLDM 2 UNet",
            AudioLDM2UNet2DConditionModel,
            lambda c: AudioLDM2UNet2DConditionModel(**c),
        )
        vae = build_part(
            specs["audioldm2_vae"], "AudioLDM 2 VAE", AutoencoderKL, lambda c: AutoencoderKL(**c)
        )
        vocoder = build_part(
            specs["audioldm2_vocoder"],
            "AudioLDM 2 vocoder",
            SpeechT5HifiGan,
            lambda c: SpeechT5HifiGan(SpeechT5HifiGanConfig(**c)),
        )
        freeze(text_encoder, text_encoder_2, projection_model, language_model, unet, vae, vocoder)
        self.pipe = _Pipeline(
            vae=vae,
            text_encoder=text_encoder,
            text_encoder_2=text_encoder_2,
            projection_model=projection_model,
            language_model=language_model,
            tokenizer=tokenizer,
            tokenizer_2=tokenizer_2,
            # Only used to rank several waveforms per prompt, which we never ask for.
            feature_extractor=None,
            unet=unet,
            scheduler=DDIMScheduler(
                num_train_timesteps=1000,
                beta_start=config.audio_beta_start,
                beta_end=config.audio_beta_end,
                beta_schedule=config.audio_beta_schedule,
                clip_sample=False,
                set_alpha_to_one=False,
                steps_offset=1,
            ),
            vocoder=vocoder,
        )
        self.pipe.set_progress_bar_config(disable=True)
        self.to(device)

    def to(self, device: str | torch.device, dtype: torch.dtype | None = None) -> AudioLDM2:
        self.device = torch.device(device)
        self.pipe.to(device=self.device, dtype=dtype)
        return self

    @property
    def sample_rate(self) -> int:
        return int(self.pipe.vocoder.config.sampling_rate)

    def latent_shape(self, duration: float) -> tuple[int, ...]:
        """Latent ``[channels, frames, mels]`` of ``duration`` seconds, as the pipeline sizes it."""
        pipe = self.pipe
        factor = pipe.vae_scale_factor
        hop_seconds = math.prod(pipe.vocoder.config.upsample_rates) / self.sample_rate
        height = math.ceil(int(duration / hop_seconds) / factor) * factor
        return (
            pipe.unet.config.in_channels,
            height // factor,
            pipe.vocoder.config.model_in_dim // factor,
        )

    @torch.no_grad()
    def encode(
        self, prompt: str, guidance: bool
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One prompt's T5 states ``[k, L, d]``, their mask ``[k, L]`` and the language model's
        states ``[k, n, d']``; ``k`` is 2 (unconditional first) with guidance, else 1."""
        return self.pipe.encode_prompt(
            [prompt],
            self.device,
            1,
            guidance,
            negative_prompt=[self.config.audioldm2_negative_prompt] if guidance else None,
            max_new_tokens=self.config.audioldm2_new_tokens,
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
        guidance = scale > 1.0  # as the pipeline decides
        encoded = [self.encode(p, guidance) for p in prompts]
        length = max(states.shape[1] for states, _, _ in encoded)
        states = torch.stack([F.pad(s, (0, 0, 0, length - s.shape[1])) for s, _, _ in encoded], 1)
        masks = torch.stack([F.pad(m, (0, length - m.shape[1])) for _, m, _ in encoded], 1)
        generated = torch.stack([g for _, _, g in encoded], 1)
        # [k, b, ...]: row 0 is the unconditional half where there is guidance.
        conditioning: dict[str, torch.Tensor] = {
            "prompt_embeds": states[-1],
            "attention_mask": masks[-1],
            "generated_prompt_embeds": generated[-1],
        }
        if guidance:
            conditioning |= {
                "negative_prompt_embeds": states[0],
                "negative_attention_mask": masks[0],
                "negative_generated_prompt_embeds": generated[0],
            }
        dtype = self.pipe.unet.dtype
        latents = seeded_noise(self.latent_shape(duration), list(seeds), AUDIO_SALT)
        audio = self.pipe(
            **conditioning,
            latents=latents.to(self.device, dtype),
            audio_length_in_s=duration,
            num_inference_steps=steps,
            guidance_scale=scale,
            output_type="pt",
        ).audios
        return audio.clamp(-1, 1).float().cpu().numpy()
