"""Configurations of the two-stage baselines: ``default`` (published weights) and ``tiny`` (CPU).

A configuration is plain data (JSON on disk). Each component comes from a pretrained source (a
Hugging Face repository id or a local folder, plus a subfolder) or, where ``source`` is empty, is
built at random from ``config``; ``tiny`` builds every component that way, so a whole run takes
seconds on a CPU and needs no download.

Weights of ``default`` and their licences (several forbid commercial use):

* Stable Diffusion 1.5 (``stable-diffusion-v1-5/stable-diffusion-v1-5``): CreativeML OpenRAIL-M.
* AnimateDiff motion adapter v1-5-2 (``guoyww/animatediff-motion-adapter-v1-5-2``): Apache-2.0.
* AudioLDM-S-full (``cvssp/audioldm``, the checkpoint the TAVGBench release uses):
  CC BY-NC-SA 4.0 (research only).
* AudioLDM 2 (``cvssp/audioldm2``, the ``audioldm2`` presets): CC BY-NC-SA 4.0 (its model
  card; research only). Its CLAP and Flan-T5 text encoders ship inside that repository.
* Diff-Foley (``cavp_epoch66.ckpt``, ``ldm_epoch240.ckpt`` and, for double guidance,
  ``double_guidance_classifier.ckpt``, in ``diff_foley_ckpt/`` of Hugging Face
  ``SimianLuo/Diff-Foley``): code Apache-2.0; the checkpoints are released for research.
* ZeroScope v2 576w (``cerspense/zeroscope_v2_576w``): CC BY-NC 4.0 (its model card; built on
  ModelScope text-to-video, itself CC BY-NC 4.0).
* BEATs iter3+ AS2M fine-tuned (``BEATs_iter3_plus_AS2M_finetuned_on_AS2M_cpt2.pt``, Microsoft's
  unilm release): MIT.
* TempoTokens mapper (``vggsound/learned_embeds.pth`` from the authors' Google Drive): the
  repository is MIT; the weights carry no separate licence.

What the references leave open and we chose is named where it is set.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from tavgbench.baselines.presets import (
    ANIMATEDIFF,
    AUDIOLDM,
    AUDIOLDM2,
    SD15,
    ZEROSCOPE,
    JsonConfig,
    tiny_motion_adapter,
    tiny_text_encoder,
    tiny_tokenizer,
    tiny_unet,
    tiny_vae,
    tiny_vocoder,
)
from tavgbench.baselines.tavdiffusion.config import ComponentSpec
from tavgbench.errors import TavgbenchError

DIFF_FOLEY = "SimianLuo/Diff-Foley"
# TempoTokens' README layout (`models/BEATs/`, `models/vggsound/`), relative to the working folder.
TEMPOTOKENS_DIR = "models"

VIDEO_COMPONENTS = ("tokenizer", "text_encoder", "vae", "unet", "motion_adapter")
AUDIOLDM_COMPONENTS = (
    "clap_tokenizer",
    "clap_text_encoder",
    "audio_unet",
    "audio_vae",
    "vocoder",
)
AUDIOLDM2_COMPONENTS = (
    "audioldm2_tokenizer",
    "audioldm2_tokenizer_2",
    "audioldm2_text_encoder",
    "audioldm2_text_encoder_2",
    "audioldm2_projection_model",
    "audioldm2_language_model",
    "audioldm2_unet",
    "audioldm2_vae",
    "audioldm2_vocoder",
)
DIFF_FOLEY_COMPONENTS = ("cavp", "foley_unet", "foley_vae", "foley_condition", "foley_classifier")
TEMPOTOKENS_COMPONENTS = (
    "zeroscope_tokenizer",
    "zeroscope_text_encoder",
    "zeroscope_vae",
    "zeroscope_unet",
    "beats",
    "mapper",
)
# The parts of each text-to-audio model (``TwoStageConfig.text_to_audio``).
TEXT_TO_AUDIO_COMPONENTS = {
    "audioldm": AUDIOLDM_COMPONENTS,
    "audioldm2": AUDIOLDM2_COMPONENTS,
}
# The audio models whose soundtrack comes from the prompt, so they need a text-to-audio model's
# parts too: ``audioldm`` beside the video, ``tempotokens`` before it (the video follows the sound).
TEXT_TO_AUDIO_MODELS = ("audioldm", "tempotokens")
# The parts each audio model needs besides its text-to-audio model's.
NEEDED_COMPONENTS = {
    "audioldm": VIDEO_COMPONENTS,
    "difffoley": VIDEO_COMPONENTS + DIFF_FOLEY_COMPONENTS,
    "tempotokens": TEMPOTOKENS_COMPONENTS,
}


class ConfigError(TavgbenchError):
    """A two-stage configuration is unknown or malformed."""


@dataclass(frozen=True)
class TwoStageConfig(JsonConfig):
    """One two-stage baseline: a text-to-video model, then an audio model (or the reverse).

    ``audio_model`` is ``audioldm`` (text to audio from the same prompt), ``difffoley`` (video
    to audio from the generated frames) or ``tempotokens`` (AudioLDM audio from the prompt, then
    TempoTokens video from that audio; the ``video_*`` settings are then ZeroScope's). The
    soundtrack lasts ``num_frames / fps`` seconds. ``text_to_audio`` picks AudioLDM
    (``audioldm``) or AudioLDM 2 (``audioldm2``) for ``audioldm`` and ``tempotokens``.
    """

    _error = ConfigError
    _kind = "two-stage"
    _component_spec = ComponentSpec

    name: str
    audio_model: str
    components: dict[str, ComponentSpec]
    # video: AnimateDiff's defaults (16 frames at 8 fps, 512x512, DDIM 25 steps, CFG 7.5)
    height: int = 512
    width: int = 512
    num_frames: int = 16
    fps: float = 8.0
    max_text_length: int = 77
    video_steps: int = 25
    video_guidance: float = 7.5
    # AnimateDiff's sampling schedule (its inference config: linear betas, DDIM, linspace).
    video_beta_start: float = 0.00085
    video_beta_end: float = 0.012
    video_beta_schedule: str = "linear"
    vae_chunk: int = 16
    # audio: AudioLDM's schedule (DDIM on scaled-linear betas 0.0015-0.0195) and CFG 2.5.
    # Steps: the diffusers AudioLDM default is 10; we take 50 (AudioLDM's paper used 200).
    audio_steps: int = 50
    audio_guidance: float = 2.5
    audio_beta_start: float = 0.0015
    audio_beta_end: float = 0.0195
    audio_beta_schedule: str = "scaled_linear"
    max_clap_length: int = 512
    # The text-to-audio model of ``audioldm`` and ``tempotokens``. AudioLDM 2 samples on the
    # same audio_* schedule: its released configs train on betas 0.0015-0.0195 over 1000 steps
    # (haoheliu/AudioLDM2 audioldm2/utils.py), which diffusers names scaled_linear.
    text_to_audio: str = "audioldm"
    # AudioLDM 2's unconditional prompt: empty, the default of diffusers' AudioLDM2Pipeline and of
    # the authors' CLI (diffusers' docs suggest "Low quality." as a tip). Its language model
    # generates 8 "language of audio" tokens (the authors' sequence_gen_length).
    audioldm2_negative_prompt: str = ""
    audioldm2_new_tokens: int = 8
    # Diff-Foley: CAVP at 4 fps on 224x224 frames, 40 frames per CAVP call, latents 2 columns
    # per CAVP frame (64 per 32-frame window), CFG 4.5 with zero unconditional context; 25
    # DPM-Solver steps (its inference notebook and demo_util.py).
    cavp_fps: float = 4.0
    cavp_size: int = 224
    foley_cavp_chunk: int = 40
    foley_window: int = 32
    foley_latent_per_frame: int = 2
    foley_steps: int = 25
    foley_guidance: float = 4.5
    foley_beta_start: float = 0.00085
    foley_beta_end: float = 0.012
    foley_scale_factor: float = 0.18215
    # Double guidance: the alignment classifier's gradient at scale 50 on top of CFG. Off unless
    # a config asks for it (then the classifier checkpoint is needed too); the `default` preset
    # turns it on, as the authors' notebook does.
    # The reference's sampler gives the classifier the raw CAVP features, skipping the
    # condition encoder it was trained with; foley_classifier_encode_context applies it.
    foley_double_guidance: bool = False
    foley_classifier_scale: float = 50.0
    foley_classifier_encode_context: bool = False
    # Diff-Foley's spectrogram: 128 mels, n_fft 1024, hop 256 at 16 kHz, values
    # (20 log10(max(mel, 1e-5)) - 20 + 100) / 100 clipped to [0, 1]. Its inverse builds the mel
    # filters at 22,050 Hz (fmin 125, fmax 7600) though the audio is 16 kHz; we keep that.
    foley_sample_rate: int = 16000
    foley_n_fft: int = 1024
    foley_hop: int = 256
    foley_fmin: float = 125.0
    foley_fmax: float = 7600.0
    foley_inverse_filter_rate: int = 22050
    griffin_lim_iters: int = 32
    griffin_lim_momentum: float = 0.99

    def __post_init__(self) -> None:
        if self.audio_model not in NEEDED_COMPONENTS:
            raise ConfigError(
                f"config {self.name!r}: audio_model must be one of "
                f"{', '.join(NEEDED_COMPONENTS)}, got {self.audio_model!r}"
            )
        if self.text_to_audio not in TEXT_TO_AUDIO_COMPONENTS:
            raise ConfigError(
                f"config {self.name!r}: text_to_audio must be one of "
                f"{', '.join(TEXT_TO_AUDIO_COMPONENTS)}, got {self.text_to_audio!r}"
            )
        if self.audio_model not in TEXT_TO_AUDIO_MODELS and self.text_to_audio != "audioldm":
            raise ConfigError(
                f"config {self.name!r}: text_to_audio applies to audio models "
                f"{', '.join(TEXT_TO_AUDIO_MODELS)} only, not {self.audio_model!r}"
            )
        if self.audioldm2_new_tokens < 1:
            raise ConfigError(f"config {self.name!r}: audioldm2_new_tokens must be positive")
        self._check_media(self.needed_components)
        if self.foley_cavp_chunk < 1 or self.foley_window < 1:
            raise ConfigError(
                f"config {self.name!r}: foley_cavp_chunk and foley_window must be positive"
            )

    @property
    def needed_components(self) -> tuple[str, ...]:
        """The components this audio model and, where it has one, its text-to-audio model use."""
        needed = NEEDED_COMPONENTS[self.audio_model]
        if self.audio_model in TEXT_TO_AUDIO_MODELS:
            needed = TEXT_TO_AUDIO_COMPONENTS[self.text_to_audio] + needed
        return needed


def _video_default() -> dict[str, ComponentSpec]:
    return {
        "tokenizer": ComponentSpec(SD15, "tokenizer"),
        "text_encoder": ComponentSpec(SD15, "text_encoder"),
        "vae": ComponentSpec(SD15, "vae"),
        "unet": ComponentSpec(SD15, "unet"),
        "motion_adapter": ComponentSpec(ANIMATEDIFF),
    }


def _video_tiny() -> dict[str, ComponentSpec]:
    text_dim = 16
    return {
        "tokenizer": ComponentSpec(config=tiny_tokenizer()),
        "text_encoder": ComponentSpec(config=tiny_text_encoder(text_dim)),
        "vae": ComponentSpec(config=tiny_vae(latent_channels=4, in_channels=3, levels=4)),
        "unet": ComponentSpec(config=tiny_unet(4, text_dim)),
        "motion_adapter": ComponentSpec(config=tiny_motion_adapter()),
    }


def _audioldm_default() -> dict[str, ComponentSpec]:
    return {
        "clap_tokenizer": ComponentSpec(AUDIOLDM, "tokenizer"),
        "clap_text_encoder": ComponentSpec(AUDIOLDM, "text_encoder"),
        "audio_unet": ComponentSpec(AUDIOLDM, "unet"),
        "audio_vae": ComponentSpec(AUDIOLDM, "vae"),
        "vocoder": ComponentSpec(AUDIOLDM, "vocoder"),
    }


def _audioldm_tiny() -> dict[str, ComponentSpec]:
    clap_dim = 16
    return {
        "clap_tokenizer": ComponentSpec(config=tiny_tokenizer()),
        "clap_text_encoder": ComponentSpec(
            config={
                "vocab_size": 258,
                "hidden_size": 16,
                "intermediate_size": 32,
                "num_hidden_layers": 1,
                "num_attention_heads": 2,
                # Roberta-style positions start after the padding index: 16 tokens + 2.
                "max_position_embeddings": 20,
                "projection_dim": clap_dim,
                "pad_token_id": 1,
            }
        ),
        "audio_unet": ComponentSpec(
            config={
                **tiny_unet(8, [8, 16], sample_size=8, attention_level=1),
                # AudioLDM: no text cross-attention (the attention attends to itself); the
                # CLAP embedding enters as a class embedding concatenated to the time embedding.
                "class_embed_type": "simple_projection",
                "projection_class_embeddings_input_dim": clap_dim,
                "class_embeddings_concat": True,
            }
        ),
        "audio_vae": ComponentSpec(config=tiny_vae(latent_channels=8, in_channels=1, levels=3)),
        "vocoder": ComponentSpec(config=tiny_vocoder()),
    }


def _audioldm2_default() -> dict[str, ComponentSpec]:
    # The subfolders of diffusers' AudioLDM2Pipeline layout on the hub.
    return {
        "audioldm2_tokenizer": ComponentSpec(AUDIOLDM2, "tokenizer"),
        "audioldm2_tokenizer_2": ComponentSpec(AUDIOLDM2, "tokenizer_2"),
        "audioldm2_text_encoder": ComponentSpec(AUDIOLDM2, "text_encoder"),
        "audioldm2_text_encoder_2": ComponentSpec(AUDIOLDM2, "text_encoder_2"),
        "audioldm2_projection_model": ComponentSpec(AUDIOLDM2, "projection_model"),
        "audioldm2_language_model": ComponentSpec(AUDIOLDM2, "language_model"),
        "audioldm2_unet": ComponentSpec(AUDIOLDM2, "unet"),
        "audioldm2_vae": ComponentSpec(AUDIOLDM2, "vae"),
        "audioldm2_vocoder": ComponentSpec(AUDIOLDM2, "vocoder"),
    }


def _audioldm2_tiny() -> dict[str, ComponentSpec]:
    # Sizes after diffusers' own AudioLDM 2 fast tests, smaller still; the tokenizers are built
    # in memory (byte-level RoBERTa: 261 tokens; character-level T5: 98 pieces).
    clap_dim, t5_dim, lm_dim, max_length = 16, 16, 16, 16
    return {
        "audioldm2_tokenizer": ComponentSpec(config={"model_max_length": max_length}),
        "audioldm2_tokenizer_2": ComponentSpec(config={"model_max_length": max_length}),
        "audioldm2_text_encoder": ComponentSpec(
            config={
                "text_config": {
                    "vocab_size": 261,
                    "hidden_size": 16,
                    "intermediate_size": 32,
                    "num_hidden_layers": 1,
                    "num_attention_heads": 2,
                    # Roberta-style positions start after the padding index.
                    "max_position_embeddings": max_length + 2,
                    "pad_token_id": 1,
                },
                # CLAP's audio branch is loaded with the model but unused for text.
                "audio_config": {
                    "spec_size": 64,
                    "window_size": 4,
                    "num_mel_bins": 64,
                    "intermediate_size": 32,
                    "depths": [1, 1],
                    "num_attention_heads": [2, 2],
                    "num_hidden_layers": 2,
                    "hidden_size": 8,
                    "patch_size": 2,
                    "patch_stride": 2,
                    "patch_embed_input_channels": 4,
                },
                "projection_dim": clap_dim,
            }
        ),
        "audioldm2_text_encoder_2": ComponentSpec(
            config={
                "vocab_size": 98,
                "d_model": t5_dim,
                "d_ff": 32,
                "d_kv": 8,
                "num_heads": 2,
                "num_layers": 1,
            }
        ),
        "audioldm2_projection_model": ComponentSpec(
            config={
                "text_encoder_dim": clap_dim,
                "text_encoder_1_dim": t5_dim,
                "langauge_model_dim": lm_dim,  # sic: diffusers' argument name
            }
        ),
        "audioldm2_language_model": ComponentSpec(
            config={
                "n_embd": lm_dim,
                "n_head": 2,
                "n_layer": 1,
                "n_positions": 64,
                # Only embeddings go in and hidden states come out: the vocabulary is unused.
                "vocab_size": 16,
                "bos_token_id": 0,
                "eos_token_id": 0,
            }
        ),
        "audioldm2_unet": ComponentSpec(
            config=tiny_unet(
                8,
                # Per block: self-attention, then cross-attention to the language model's
                # tokens, then to the T5 states.
                [[None, lm_dim, t5_dim], [None, lm_dim, t5_dim]],
                sample_size=8,
                attention_level=1,
            )
        ),
        "audioldm2_vae": ComponentSpec(config=tiny_vae(latent_channels=8, in_channels=1, levels=3)),
        "audioldm2_vocoder": ComponentSpec(config=tiny_vocoder()),
    }


def _difffoley_default() -> dict[str, ComponentSpec]:
    # The files come from the Diff-Foley release; `source` names the folder holding them. The
    # classifier is loaded only with foley_double_guidance.
    return {
        "cavp": ComponentSpec(DIFF_FOLEY, "diff_foley_ckpt/cavp_epoch66.ckpt"),
        "foley_unet": ComponentSpec(DIFF_FOLEY, "diff_foley_ckpt/ldm_epoch240.ckpt"),
        "foley_vae": ComponentSpec(DIFF_FOLEY, "diff_foley_ckpt/ldm_epoch240.ckpt"),
        "foley_condition": ComponentSpec(DIFF_FOLEY, "diff_foley_ckpt/ldm_epoch240.ckpt"),
        "foley_classifier": ComponentSpec(
            DIFF_FOLEY, "diff_foley_ckpt/double_guidance_classifier.ckpt"
        ),
    }


def _difffoley_tiny() -> dict[str, ComponentSpec]:
    context = 16
    return {
        "cavp": ComponentSpec(
            config={"stage_blocks": [1, 1, 1, 1], "base_channels": 4, "embed_dim": 8}
        ),
        "foley_condition": ComponentSpec(
            config={"origin_dim": 8, "embed_dim": context, "seq_len": 40}
        ),
        "foley_unet": ComponentSpec(config=tiny_unet(4, context, sample_size=8)),
        "foley_vae": ComponentSpec(config=tiny_vae(latent_channels=4, in_channels=3, levels=4)),
        # Its context is the raw CAVP features (8-d here), as the reference's sampler gives it.
        "foley_classifier": ComponentSpec(
            config={
                "backbone": {
                    "in_channels": 4,
                    "out_channels": 1,
                    "block_out_channels": [8, 8],
                    "layers_per_block": 1,
                    "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D"],
                    "cross_attention_dim": 8,
                    "attention_head_dim": 2,
                    "norm_num_groups": 4,
                },
                "condition": {"origin_dim": 8, "embed_dim": 8, "seq_len": 40},
            }
        ),
    }


def _tempotokens_default() -> dict[str, ComponentSpec]:
    return {
        "zeroscope_tokenizer": ComponentSpec(ZEROSCOPE, "tokenizer"),
        "zeroscope_text_encoder": ComponentSpec(ZEROSCOPE, "text_encoder"),
        "zeroscope_vae": ComponentSpec(ZEROSCOPE, "vae"),
        "zeroscope_unet": ComponentSpec(ZEROSCOPE, "unet"),
        # Files: `source` is their folder, `subfolder` the file. Of the three released mappers,
        # the VGGSound one is what the README runs on your own audio, and covers the most sounds.
        "beats": ComponentSpec(
            f"{TEMPOTOKENS_DIR}/BEATs", "BEATs_iter3_plus_AS2M_finetuned_on_AS2M_cpt2.pt"
        ),
        "mapper": ComponentSpec(f"{TEMPOTOKENS_DIR}/vggsound", "learned_embeds.pth"),
    }


def _tempotokens_tiny() -> dict[str, ComponentSpec]:
    video = _video_tiny()
    text_dim = 16
    beats = {
        "input_patch_size": 16,
        "embed_dim": 8,
        "encoder_layers": 2,
        "encoder_embed_dim": 16,
        "encoder_ffn_embed_dim": 32,
        "encoder_attention_heads": 2,
        "conv_pos": 4,
        "conv_pos_groups": 2,
        "num_buckets": 16,
        "max_distance": 32,
        # The released checkpoints' switches, spelled out: the reference defaults them to off.
        "deep_norm": True,
        "relative_position_embedding": True,
        "gru_rel_pos": True,
    }
    return {
        "zeroscope_tokenizer": video["tokenizer"],
        "zeroscope_text_encoder": video["text_encoder"],
        "zeroscope_vae": video["vae"],
        "zeroscope_unet": ComponentSpec(config=tiny_unet(4, text_dim, blocks="3D")),
        "beats": ComponentSpec(config=beats),
        "mapper": ComponentSpec(
            config={
                "input_size": beats["encoder_layers"] * beats["encoder_embed_dim"],
                "hidden_size": 24,
                "output_size": text_dim,
                "seq_target_length": 12,
            }
        ),
    }


_TINY_MEDIA: dict[str, Any] = {
    "height": 32,
    "width": 32,
    "num_frames": 10,
    "fps": 5.0,
    "max_text_length": 16,
    "max_clap_length": 16,
    "vae_chunk": 8,
    "video_steps": 2,
    "video_guidance": 2.0,
    "audio_steps": 2,
    "foley_steps": 2,
    "cavp_size": 32,
    "griffin_lim_iters": 4,
}


def audioldm_default() -> TwoStageConfig:
    return TwoStageConfig("default", "audioldm", {**_video_default(), **_audioldm_default()})


def audioldm_tiny() -> TwoStageConfig:
    return TwoStageConfig("tiny", "audioldm", {**_video_tiny(), **_audioldm_tiny()}, **_TINY_MEDIA)


def difffoley_default() -> TwoStageConfig:
    # Double guidance on, as the authors' inference notebook runs it (use_double_guidance = True).
    return TwoStageConfig(
        "default",
        "difffoley",
        {**_video_default(), **_difffoley_default()},
        foley_double_guidance=True,
    )


def difffoley_tiny() -> TwoStageConfig:
    return TwoStageConfig(
        "tiny", "difffoley", {**_video_tiny(), **_difffoley_tiny()}, **_TINY_MEDIA
    )


def tempotokens_default() -> TwoStageConfig:
    # TempoTokens' inference.py defaults: 2 s of audio, 24 frames at 12 fps, 384x384, 25 steps,
    # guidance 25, VAE batch 8; DPM-Solver++ (2nd order) built from ZeroScope's scheduler config
    # (a DDIM config: scaled-linear betas 0.00085-0.012, epsilon, steps_offset 1, no
    # timestep_spacing, so DPM-Solver's default linspace spacing).
    return TwoStageConfig(
        "default",
        "tempotokens",
        {**_audioldm_default(), **_tempotokens_default()},
        height=384,
        width=384,
        num_frames=24,
        fps=12.0,
        video_steps=25,
        video_guidance=25.0,
        video_beta_schedule="scaled_linear",
        vae_chunk=8,
    )


def tempotokens_tiny() -> TwoStageConfig:
    # 12 frames at 6 fps: 2 s give 96 BEATs tokens, 8 per frame (10 frames would not divide).
    media = {**_TINY_MEDIA, "num_frames": 12, "fps": 6.0, "video_beta_schedule": "scaled_linear"}
    return TwoStageConfig(
        "tiny", "tempotokens", {**_audioldm_tiny(), **_tempotokens_tiny()}, **media
    )


# AudioLDM 2's sampling: DDIM, 200 steps, CFG 3.5 (the defaults of the authors' CLI,
# haoheliu/AudioLDM2 bin/audioldm2, and of diffusers' AudioLDM2Pipeline). The authors' CLI also
# ranks 3 candidates per prompt by CLAP score; we generate one clip per seed, as diffusers does.
_AUDIOLDM2_SAMPLING: dict[str, Any] = {"audio_steps": 200, "audio_guidance": 3.5}


def _with_audioldm2(
    base: TwoStageConfig, name: str, parts: dict[str, ComponentSpec], **options: Any
) -> TwoStageConfig:
    """``base`` with AudioLDM 2 (``parts``) making the soundtrack in place of AudioLDM."""
    kept = {k: v for k, v in base.components.items() if k not in AUDIOLDM_COMPONENTS}
    return replace(
        base, name=name, text_to_audio="audioldm2", components={**parts, **kept}, **options
    )


def audioldm_audioldm2() -> TwoStageConfig:
    return _with_audioldm2(
        audioldm_default(), "audioldm2", _audioldm2_default(), **_AUDIOLDM2_SAMPLING
    )


def audioldm_audioldm2_tiny() -> TwoStageConfig:
    return _with_audioldm2(audioldm_tiny(), "audioldm2-tiny", _audioldm2_tiny())


def tempotokens_audioldm2() -> TwoStageConfig:
    return _with_audioldm2(
        tempotokens_default(), "audioldm2", _audioldm2_default(), **_AUDIOLDM2_SAMPLING
    )


def tempotokens_audioldm2_tiny() -> TwoStageConfig:
    return _with_audioldm2(tempotokens_tiny(), "audioldm2-tiny", _audioldm2_tiny())


PRESETS = {
    "audioldm": {
        "default": audioldm_default,
        "tiny": audioldm_tiny,
        "audioldm2": audioldm_audioldm2,
        "audioldm2-tiny": audioldm_audioldm2_tiny,
    },
    "difffoley": {"default": difffoley_default, "tiny": difffoley_tiny},
    "tempotokens": {
        "default": tempotokens_default,
        "tiny": tempotokens_tiny,
        "audioldm2": tempotokens_audioldm2,
        "audioldm2-tiny": tempotokens_audioldm2_tiny,
    },
}


def load_config(name_or_path: str | Path | TwoStageConfig, audio_model: str) -> TwoStageConfig:
    """A preset of ``audio_model`` (``default``, ``tiny``; for ``audioldm`` and ``tempotokens``
    also ``audioldm2``, ``audioldm2-tiny``), a config, or a JSON file."""
    if isinstance(name_or_path, TwoStageConfig):
        config = name_or_path
    else:
        config = TwoStageConfig.load(name_or_path, PRESETS[audio_model], "preset")
    if config.audio_model != audio_model:
        raise ConfigError(
            f"config {config.name!r} is for audio model {config.audio_model!r}, not {audio_model!r}"
        )
    return config
