"""TAVDiffusion configurations: ``paper`` (the published setting) and ``tiny`` (seconds on a CPU).

A configuration is plain data (JSON on disk), so a checkpoint carries the exact setting it was
trained with. Components come either from a pretrained source (a Hugging Face repository id or a
local folder, plus a subfolder) or, where ``source`` is empty, are built at random from the
``config`` dictionary given to their class; ``tiny`` builds every component that way.

What the paper leaves open and we chose (each named where it is set): frames are spread over the
whole 10 s clip (20 frames at 2 fps); the bridge acts at the inputs of the first three decoder
stages; classifier-free guidance scale 7.5 on both streams (Stable Diffusion's default); the EAS
loss compares the streams' features at the deepest bridge level, each projected to a shared width.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

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
SD15 = "stable-diffusion-v1-5/stable-diffusion-v1-5"
AUDIOLDM = "cvssp/audioldm-s-full-v2"
ANIMATEDIFF = "guoyww/animatediff-motion-adapter-v1-5-2"


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
class TAVDiffusionConfig:
    """Everything that defines a TAVDiffusion model, its training and its sampling.

    Media: ``height x width x num_frames`` at ``fps``; the soundtrack lasts
    ``num_frames / fps`` seconds at ``sample_rate``, analysed as a ``n_mels``-bin log-mel
    spectrogram (``n_fft``, ``hop_length``, ``fmin``-``fmax``, AudioLDM's front end).
    """

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
    bridge_levels: tuple[int, ...] = (0, 1, 2)
    bridge_heads: int = 8
    cross_attention: bool = True
    eas: bool = True
    eas_weight: float = 0.1
    eas_temperature: float = 0.1
    eas_dim: int = 256
    # diffusion (one DDPM schedule shared by both streams; Stable Diffusion's)
    num_train_timesteps: int = 1000
    beta_start: float = 0.00085
    beta_end: float = 0.012
    beta_schedule: str = "scaled_linear"
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
    guidance_scale: float = 7.5

    def __post_init__(self) -> None:
        missing = [c for c in COMPONENTS if c not in self.components and c != "motion_adapter"]
        if missing:
            raise ConfigError(f"config {self.name!r}: components missing: {', '.join(missing)}")
        if self.height % 8 or self.width % 8:
            raise ConfigError(
                f"config {self.name!r}: height and width must be multiples of 8 (the video VAE "
                f"downsamples by 8), got {self.height}x{self.width}"
            )
        if self.num_frames < 1 or self.fps <= 0:
            raise ConfigError(f"config {self.name!r}: num_frames and fps must be positive")
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
    def duration(self) -> float:
        """Seconds of video and of soundtrack."""
        return self.num_frames / self.fps

    @property
    def num_samples(self) -> int:
        """Soundtrack length in samples."""
        return round(self.duration * self.sample_rate)

    def mel_frames(self, multiple: int) -> int:
        """Mel frames that cover the soundtrack, rounded up to ``multiple`` (the latent grid)."""
        return math.ceil(math.ceil(self.num_samples / self.hop_length) / multiple) * multiple

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["bridge_levels"] = list(self.bridge_levels)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TAVDiffusionConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown TAVDiffusion config keys: {', '.join(unknown)}")
        data = dict(data)
        data["components"] = {
            name: spec if isinstance(spec, ComponentSpec) else ComponentSpec(**spec)
            for name, spec in data.get("components", {}).items()
        }
        if "bridge_levels" in data:
            data["bridge_levels"] = tuple(data["bridge_levels"])
        return cls(**data)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return path

    def with_options(self, **options: Any) -> TAVDiffusionConfig:
        """A copy with some fields replaced (``cross_attention=False``, ``eas=False``, ...)."""
        try:
            return replace(self, **options)
        except TypeError as exc:
            raise ConfigError(f"config {self.name!r}: {exc}") from exc


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
    unet = {
        "sample_size": 4,
        "block_out_channels": [8, 16],
        "layers_per_block": 1,
        "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
        "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"],
        "cross_attention_dim": text_dim,
        "attention_head_dim": 4,
        "norm_num_groups": 4,
    }
    vae = {"block_out_channels": [8, 8, 8, 8], "layers_per_block": 1, "norm_num_groups": 4}
    return TAVDiffusionConfig(
        name="tiny",
        components={
            "tokenizer": ComponentSpec(config={"max_length": 16}),
            "text_encoder": ComponentSpec(
                config={
                    "vocab_size": 258,
                    "hidden_size": text_dim,
                    "intermediate_size": 32,
                    "num_hidden_layers": 1,
                    "num_attention_heads": 2,
                    "max_position_embeddings": 16,
                    "projection_dim": text_dim,
                    "bos_token_id": 256,
                    "eos_token_id": 257,
                    "pad_token_id": 257,
                }
            ),
            "video_vae": ComponentSpec(
                config={
                    **vae,
                    "in_channels": 3,
                    "out_channels": 3,
                    "latent_channels": 4,
                    "down_block_types": ["DownEncoderBlock2D"] * 4,
                    "up_block_types": ["UpDecoderBlock2D"] * 4,
                }
            ),
            "audio_vae": ComponentSpec(
                config={
                    **vae,
                    "block_out_channels": [8, 8, 8],
                    "in_channels": 1,
                    "out_channels": 1,
                    "latent_channels": 8,
                    "down_block_types": ["DownEncoderBlock2D"] * 3,
                    "up_block_types": ["UpDecoderBlock2D"] * 3,
                }
            ),
            "vocoder": ComponentSpec(
                config={
                    "model_in_dim": 64,
                    "sampling_rate": 16000,
                    "upsample_initial_channel": 16,
                    "upsample_rates": [4, 4, 10],
                    "upsample_kernel_sizes": [8, 8, 20],
                    "resblock_kernel_sizes": [3],
                    "resblock_dilation_sizes": [[1, 3]],
                    "normalize_before": False,
                    # Large enough that the untrained vocoder is audible (validation refuses
                    # silence); the default 0.01 gives peaks near 1e-6.
                    "initializer_range": 0.1,
                }
            ),
            "video_unet": ComponentSpec(config={**unet, "in_channels": 4, "out_channels": 4}),
            "audio_unet": ComponentSpec(config={**unet, "in_channels": 8, "out_channels": 8}),
            "motion_adapter": ComponentSpec(
                config={
                    "block_out_channels": [8, 16],
                    "motion_layers_per_block": 1,
                    "motion_num_attention_heads": 2,
                    "motion_norm_num_groups": 4,
                    "motion_max_seq_length": 32,
                }
            ),
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
    if str(name_or_path) in PRESETS:
        return PRESETS[str(name_or_path)]()
    path = Path(name_or_path)
    if not path.is_file():
        raise ConfigError(
            f"{name_or_path}: not a TAVDiffusion preset ({', '.join(PRESETS)}) nor a config file"
        )
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the config as JSON ({exc})") from exc
    return TAVDiffusionConfig.from_dict(data)
