"""Published architectures of the baselines' pretrained parts, for builds with random weights.

Speed and memory do not depend on the values of the weights, so the GPU benchmarks build every
pretrained component at its published size with random weights (:func:`random_weights`) and
need no download. Each entry is the constructor configuration of the component's class as the
published ``config.json`` sets it, keeping only the values that differ from the class defaults
of diffusers 0.42 / transformers 5 (the classes' defaults are themselves the published
architectures where an entry is empty). Parameter counts are checked in
``tests/baselines/test_architectures.py``.

Tokenizers become byte tokenizers of the published maximum length: the text encoders see token
sequences of the published length, which is all that speed depends on.
"""

from __future__ import annotations

from typing import Any

from tavgbench.baselines.presets import ANIMATEDIFF, AUDIOLDM, AUDIOLDM2, SD15, ZEROSCOPE
from tavgbench.baselines.tavdiffusion.config import ComponentSpec, ConfigError

__all__ = [
    "ANIMATEDIFF",
    "AUDIOLDM",
    "AUDIOLDM2",
    "PUBLISHED",
    "SD15",
    "ZEROSCOPE",
    "random_weights",
]


_SD_VAE: dict[str, Any] = {
    "block_out_channels": [128, 256, 512, 512],
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
    "layers_per_block": 2,
    "sample_size": 512,
}
_SD_TOKENIZER: dict[str, Any] = {"max_length": 77}
_AUDIOLDM_UNET_LEVELS: dict[str, Any] = {
    "block_out_channels": [128, 256, 384, 640],
    "down_block_types": [
        "DownBlock2D",
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
    ],
    "up_block_types": [
        "CrossAttnUpBlock2D",
        "CrossAttnUpBlock2D",
        "CrossAttnUpBlock2D",
        "UpBlock2D",
    ],
}
_AUDIOLDM_VAE: dict[str, Any] = {
    "block_out_channels": [128, 256, 512],
    "down_block_types": ["DownEncoderBlock2D"] * 3,
    "up_block_types": ["UpDecoderBlock2D"] * 3,
    "layers_per_block": 2,
    "in_channels": 1,
    "out_channels": 1,
    "latent_channels": 8,
}
# HiFi-GAN at 16 kHz on 64-bin mels, hop 5 * 4 * 2 * 2 * 2 = 160.
_AUDIOLDM_VOCODER: dict[str, Any] = {
    "model_in_dim": 64,
    "upsample_initial_channel": 1024,
    "upsample_rates": [5, 4, 2, 2, 2],
    "upsample_kernel_sizes": [16, 16, 8, 4, 4],
    "normalize_before": False,
}

PUBLISHED: dict[tuple[str, str], dict[str, Any]] = {
    # Stable Diffusion 1.5: UNet2DConditionModel (859,520,964 parameters), AutoencoderKL
    # (83,653,863), CLIP ViT-L/14 text encoder (123,060,480).
    (SD15, "unet"): {"cross_attention_dim": 768, "sample_size": 64},
    (SD15, "vae"): _SD_VAE,
    (SD15, "text_encoder"): {
        "hidden_size": 768,
        "intermediate_size": 3072,
        "num_attention_heads": 12,
        "projection_dim": 768,
    },
    (SD15, "tokenizer"): _SD_TOKENIZER,
    # AnimateDiff v1-5-2: MotionAdapter's defaults (8 heads, 2 motion layers per block, mid
    # block, 32 positions).
    (ANIMATEDIFF, ""): {},
    # AudioLDM-S-full (cvssp/audioldm; the AudioLDM-S architecture that -s-full-v2 shares, whose
    # published files the sizes are checked against): UNet on 8-channel latents with the CLAP
    # embedding as a class embedding, 3-level VAE on 64-bin mels, HiFi-GAN at 16 kHz, CLAP
    # (RoBERTa) text encoder.
    (AUDIOLDM, "unet"): {
        **_AUDIOLDM_UNET_LEVELS,
        "sample_size": 128,
        "in_channels": 8,
        "out_channels": 8,
        "cross_attention_dim": [128, 256, 384, 640],
        "class_embed_type": "simple_projection",
        "projection_class_embeddings_input_dim": 512,
        "class_embeddings_concat": True,
    },
    (AUDIOLDM, "vae"): {**_AUDIOLDM_VAE, "sample_size": 512},
    (AUDIOLDM, "vocoder"): _AUDIOLDM_VOCODER,
    (AUDIOLDM, "text_encoder"): {},
    (AUDIOLDM, "tokenizer"): {"max_length": 512},
    # ZeroScope v2 576w: ModelScope's UNet3DConditionModel (the class defaults), SD's VAE and
    # the OpenCLIP ViT-H/14 text encoder (23 layers of width 1024).
    (ZEROSCOPE, "unet"): {"sample_size": 32},
    (ZEROSCOPE, "vae"): _SD_VAE,
    (ZEROSCOPE, "text_encoder"): {
        "hidden_size": 1024,
        "intermediate_size": 4096,
        "num_attention_heads": 16,
        "num_hidden_layers": 23,
        "hidden_act": "gelu",
    },
    (ZEROSCOPE, "tokenizer"): _SD_TOKENIZER,
    # AudioLDM 2 (cvssp/audioldm2): the UNet's cross-attention is [self-only, GPT-2 768, T5
    # 1024] at every level (the self-only transformer is part of the published size).
    (AUDIOLDM2, "unet"): {
        **_AUDIOLDM_UNET_LEVELS,
        "sample_size": 256,
        "in_channels": 8,
        "out_channels": 8,
        "cross_attention_dim": [[None, 768, 1024]] * 4,
    },
    (AUDIOLDM2, "vae"): {
        **_AUDIOLDM_VAE,
        "sample_size": 1024,
        "scaling_factor": 0.4110932946205139,
    },
    (AUDIOLDM2, "vocoder"): _AUDIOLDM_VOCODER,
    (AUDIOLDM2, "text_encoder"): {
        "audio_config": {
            "depths": [2, 2, 12, 2],
            "hidden_size": 1024,
            "patch_embeds_hidden_size": 128,
        }
    },
    (AUDIOLDM2, "text_encoder_2"): {
        "d_model": 1024,
        "d_ff": 2816,
        "num_layers": 24,
        "num_decoder_layers": 24,
        "num_heads": 16,
        "feed_forward_proj": "gated-gelu",
        "tie_word_embeddings": False,
    },
    (AUDIOLDM2, "projection_model"): {
        "text_encoder_dim": 512,
        "text_encoder_1_dim": 1024,
        "langauge_model_dim": 768,  # sic: the class's keyword
    },
    (AUDIOLDM2, "language_model"): {"max_new_tokens": 8},
    (AUDIOLDM2, "tokenizer"): {"model_max_length": 512},
    (AUDIOLDM2, "tokenizer_2"): {"model_max_length": 128},
}


def published_config(spec: ComponentSpec, file_defaults: bool = False) -> dict[str, Any]:
    """The constructor config of ``spec``'s published component, with ``spec.config`` on top.

    Args:
        spec: a pretrained component.
        file_defaults: components loaded from checkpoint files (Diff-Foley, BEATs, the
            TempoTokens mapper) are built by our own classes, whose defaults are the published
            sizes: give them an empty config.
    """
    key = (spec.source, spec.subfolder)
    if key in PUBLISHED:
        return {**PUBLISHED[key], **spec.config}
    if file_defaults:
        return dict(spec.config)
    where = f"{spec.source}/{spec.subfolder}" if spec.subfolder else spec.source
    raise ConfigError(f"no published architecture recorded for {where}; cannot build it at random")


# Components our own classes build from checkpoint files; their constructors default to the
# published sizes.
FILE_COMPONENTS = frozenset(
    {"cavp", "foley_unet", "foley_vae", "foley_condition", "foley_classifier", "beats", "mapper"}
)


def random_weights(components: dict[str, ComponentSpec]) -> dict[str, ComponentSpec]:
    """``components`` with every pretrained part replaced by a random build of the same size."""
    return {
        name: ComponentSpec(config=published_config(spec, name in FILE_COMPONENTS))
        if spec.pretrained
        else spec
        for name, spec in components.items()
    }
