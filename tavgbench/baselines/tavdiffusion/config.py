"""TAVDiffusion configurations: ``paper`` (the published setting) and ``tiny`` (seconds on a CPU).

A configuration is plain data (JSON on disk), so a checkpoint carries the exact setting it was
trained with. Components come either from a pretrained source (a Hugging Face repository id or a
local folder, plus a subfolder) or, where ``source`` is empty, are built at random from the
``config`` dictionary given to their class; ``tiny`` builds every component that way.

What the paper leaves open and we chose (each named where it is set): frames are spread over the
whole 10 s clip (20 frames at 2 fps); the bridge acts at the inputs of the first three decoder
stages; the EAS loss compares the streams' features at the deepest bridge level, each projected
to a shared width. Where the authors' released inference code (github.com/OpenNLPLab/TAVGBench,
``config.yaml`` and ``inference.py``) fixes a value, we take it: the linear beta schedule
0.00085-0.012 shared by both streams, guidance 8.0 on both, AudioLDM-S-full's VAE and vocoder,
audio latents of 8 x 256 x 16 (10.24 s of mel frames), AudioLDM's waveform levels and centred
STFT. It samples 40 DDIM steps; we keep the paper's 50. Where the release departs from the paper
we follow the paper: its bridge is one cross-attention from audio to video (and at inference the
video attends to fresh noise), its EAS layers are never used in a loss, and it has no temporal
convolutions. Its motion modules have AnimateDiff v1's layout (24 positions, no mid block); we
start from the v1-5-2 adapter (32 positions, a mid block), diffusers' published SD-1.5 adapter;
both cover 20 frames.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tavgbench.baselines.presets import (
    ANIMATEDIFF,
    AUDIOLDM,
    SD15,
    JsonConfig,
    tiny_motion_adapter,
    tiny_text_encoder,
    tiny_tokenizer,
    tiny_unet,
    tiny_vae,
    tiny_vocoder,
)
from tavgbench.errors import TavgbenchError

COMPONENTS = (
    "tokenizer",
    "text_encoder",
    "video_vae",
    "audio_vae",
    "vocoder",
    "video_unet",
    "audio_unet",
    "motion_adapter",
)


class ConfigError(TavgbenchError):
    """A TAVDiffusion configuration is unknown or malformed."""


@dataclass(frozen=True)
class ComponentSpec:
    """Where one component comes from.

    Attributes:
        source: Hugging Face repository id or local folder; empty to build at random.
        subfolder: folder inside ``source`` (``unet``, ``vae``, ...).
        config: constructor arguments of the component's class for a random build.
    """

    source: str = ""
    subfolder: str = ""
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def pretrained(self) -> bool:
        return bool(self.source)


@dataclass(frozen=True)
class TAVDiffusionConfig(JsonConfig):
    """Everything that defines a TAVDiffusion model, its training and its sampling.

    Media: ``height x width x num_frames`` at ``fps``; the soundtrack lasts
    ``num_frames / fps`` seconds at ``sample_rate``, analysed as a ``n_mels``-bin log-mel
    spectrogram (``n_fft``, ``hop_length``, ``fmin``-``fmax``, AudioLDM's front end).
    """

    _error = ConfigError
    _kind = "TAVDiffusion"
    _component_spec = ComponentSpec
    _tuple_fields = ("bridge_levels",)

    name: str
    components: dict[str, ComponentSpec]
    # media
    height: int = 256
    width: int = 320
    num_frames: int = 20
    fps: float = 2.0
    sample_rate: int = 16000
    n_fft: int = 1024
    hop_length: int = 160
    n_mels: int = 64
    fmin: float = 0.0
    fmax: float = 8000.0
    max_text_length: int = 77
    vae_chunk: int = 16
    # model
    # The paper's pseudo-3D video UNet: a 1D temporal convolution after each 2D ResNet block
    # (zero-initialised) besides AnimateDiff's temporal transformers.
    temporal_conv: bool = True
    bridge_levels: tuple[int, ...] = (0, 1, 2)
    bridge_heads: int = 8
    cross_attention: bool = True
    eas: bool = True
    eas_weight: float = 0.1
    eas_temperature: float = 0.1
    eas_dim: int = 256
    # diffusion: one DDPM schedule shared by both streams, the released config.yaml's (AnimateDiff's
    # linear betas; Stable Diffusion's own are scaled-linear)
    num_train_timesteps: int = 1000
    beta_start: float = 0.00085
    beta_end: float = 0.012
    beta_schedule: str = "linear"
    # training
    learning_rate: float = 1e-4
    batch_size: int = 1
    gradient_accumulation_steps: int = 1
    max_steps: int = 100_000
    mixed_precision: str = "bf16"
    # ddp: every rank holds the whole model; fsdp: parameters, gradients and optimizer state
    # sharded over the ranks (torch FSDP2), for GPUs that cannot hold ~45 GB of training state.
    parallelism: str = "ddp"
    gradient_checkpointing: bool = True
    ema_decay: float = 0.9999
    checkpoint_every: int = 1000
    log_every: int = 10
    prompt_dropout: float = 0.1
    num_workers: int = 4
    shuffle_buffer: int = 1000
    seed: int = 0
    # sampling
    num_inference_steps: int = 50
    guidance_scale: float = 8.0  # the released config.yaml's

    def __post_init__(self) -> None:
        # The motion adapter is optional: without one it starts at random.
        self._check_media(c for c in COMPONENTS if c != "motion_adapter")
        if self.mixed_precision not in ("no", "bf16", "fp16"):
            raise ConfigError(
                f"config {self.name!r}: mixed_precision must be no, bf16 or fp16, "
                f"got {self.mixed_precision!r}"
            )
        if self.parallelism not in ("ddp", "fsdp"):
            raise ConfigError(
                f"config {self.name!r}: parallelism must be ddp or fsdp, got {self.parallelism!r}"
            )
        if self.parallelism == "fsdp" and self.mixed_precision == "fp16":
            raise ConfigError(
                f"config {self.name!r}: fsdp trains in bf16 or fp32 (fp16 would need a sharded "
                "gradient scaler); set mixed_precision to bf16"
            )

    @property
    def num_samples(self) -> int:
        """Soundtrack length in samples."""
        return round(self.duration * self.sample_rate)

    def mel_frames(self, multiple: int) -> int:
        """Mel frames that cover the soundtrack, rounded up to ``multiple`` (the latent grid)."""
        return math.ceil(math.ceil(self.num_samples / self.hop_length) / multiple) * multiple


def paper_config() -> TAVDiffusionConfig:
    """The paper's setting: Stable Diffusion 1.5, AudioLDM's VAE and vocoder, 256x320x20."""
    return TAVDiffusionConfig(
        name="paper",
        components={
            "tokenizer": ComponentSpec(SD15, "tokenizer"),
            "text_encoder": ComponentSpec(SD15, "text_encoder"),
            "video_vae": ComponentSpec(SD15, "vae"),
            "video_unet": ComponentSpec(SD15, "unet"),
            # The audio UNet starts from the same SD-1.5 weights; only conv_in/conv_out change.
            "audio_unet": ComponentSpec(SD15, "unet", {"in_channels": 8, "out_channels": 8}),
            "audio_vae": ComponentSpec(AUDIOLDM, "vae"),
            "vocoder": ComponentSpec(AUDIOLDM, "vocoder"),
            "motion_adapter": ComponentSpec(ANIMATEDIFF),
        },
    )


def tiny_config() -> TAVDiffusionConfig:
    """Random components of a few thousand parameters each: a whole run takes seconds on a CPU."""
    text_dim = 16
    return TAVDiffusionConfig(
        name="tiny",
        components={
            "tokenizer": ComponentSpec(config=tiny_tokenizer()),
            "text_encoder": ComponentSpec(config=tiny_text_encoder(text_dim)),
            "video_vae": ComponentSpec(config=tiny_vae(latent_channels=4, in_channels=3, levels=4)),
            "audio_vae": ComponentSpec(config=tiny_vae(latent_channels=8, in_channels=1, levels=3)),
            "vocoder": ComponentSpec(config=tiny_vocoder()),
            "video_unet": ComponentSpec(config=tiny_unet(4, text_dim)),
            "audio_unet": ComponentSpec(config=tiny_unet(8, text_dim)),
            "motion_adapter": ComponentSpec(config=tiny_motion_adapter()),
        },
        height=32,
        width=32,
        num_frames=10,
        fps=10.0,
        max_text_length=16,
        vae_chunk=8,
        bridge_levels=(0, 1),
        bridge_heads=2,
        eas_dim=16,
        batch_size=2,
        max_steps=30,
        mixed_precision="no",
        gradient_checkpointing=False,
        ema_decay=0.99,
        checkpoint_every=10,
        log_every=1,
        num_workers=0,
        shuffle_buffer=4,
        learning_rate=1e-3,
        num_inference_steps=2,
        guidance_scale=2.0,
    )


PRESETS = {"paper": paper_config, "tiny": tiny_config}


def load_config(name_or_path: str | Path) -> TAVDiffusionConfig:
    """A preset name (``paper``, ``tiny``) or a JSON file written by :meth:`save`."""
    return TAVDiffusionConfig.load(name_or_path, PRESETS, "TAVDiffusion preset")
