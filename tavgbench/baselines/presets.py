"""What the baselines' configuration modules share: tiny random components and JSON plumbing.

The ``tiny`` presets build every component at random from a few thousand parameters, so a whole
run takes seconds on a CPU and needs no download. The functions here return the constructor
arguments of each component's class (diffusers / transformers), to wrap in a ``ComponentSpec``.

:class:`JsonConfig` gives a frozen configuration dataclass its JSON round trip
(:meth:`~JsonConfig.to_dict`, :meth:`~JsonConfig.from_dict`, :meth:`~JsonConfig.save`),
:meth:`~JsonConfig.with_options` and :meth:`~JsonConfig.load` (a preset or a saved file).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, fields, replace
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from tavgbench.errors import TavgbenchError

_Config = TypeVar("_Config", bound="JsonConfig")

# Hugging Face repositories of the published components the baselines build on.
SD15 = "stable-diffusion-v1-5/stable-diffusion-v1-5"
ANIMATEDIFF = "guoyww/animatediff-motion-adapter-v1-5-2"
# AudioLDM-S-full, as the TAVGBench release loads it (`build_audio_pretrained_models(
# "audioldm-s-full")` in its inference.py); cvssp/audioldm is its diffusers port.
AUDIOLDM = "cvssp/audioldm"
AUDIOLDM2 = "cvssp/audioldm2"
ZEROSCOPE = "cerspense/zeroscope_v2_576w"

# Tokens a tiny prompt is cut or padded to.
TINY_TEXT_LENGTH = 16


def tiny_tokenizer() -> dict[str, Any]:
    """A byte tokenizer of :data:`TINY_TEXT_LENGTH` tokens."""
    return {"max_length": TINY_TEXT_LENGTH}


def tiny_text_encoder(dim: int) -> dict[str, Any]:
    """A one-layer CLIP text encoder of width ``dim`` over :func:`tiny_tokenizer`'s tokens."""
    return {
        # The byte tokenizer's 256 bytes, then beginning and end of text.
        "vocab_size": 258,
        "hidden_size": dim,
        "intermediate_size": 32,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "max_position_embeddings": TINY_TEXT_LENGTH,
        "projection_dim": dim,
        "bos_token_id": 256,
        "eos_token_id": 257,
        "pad_token_id": 257,
    }


def tiny_vae(latent_channels: int, in_channels: int, levels: int) -> dict[str, Any]:
    """An ``AutoencoderKL`` of 8 channels a level, downsampling by ``2 ** (levels - 1)``."""
    return {
        "block_out_channels": [8] * levels,
        "layers_per_block": 1,
        "norm_num_groups": 4,
        "in_channels": in_channels,
        "out_channels": in_channels,
        "latent_channels": latent_channels,
        "down_block_types": ["DownEncoderBlock2D"] * levels,
        "up_block_types": ["UpDecoderBlock2D"] * levels,
    }


def tiny_unet(
    channels: int,
    cross_attention_dim: int | list[Any],
    *,
    sample_size: int = 4,
    attention_level: int = 0,
    blocks: str = "2D",
) -> dict[str, Any]:
    """A two-level conditional UNet (``blocks`` 2D or 3D) attending at ``attention_level``."""
    kinds = ["CrossAttn" if level == attention_level else "" for level in range(2)]
    return {
        "sample_size": sample_size,
        "in_channels": channels,
        "out_channels": channels,
        "block_out_channels": [8, 16],
        "layers_per_block": 1,
        "down_block_types": [f"{kind}DownBlock{blocks}" for kind in kinds],
        "up_block_types": [f"{kind}UpBlock{blocks}" for kind in reversed(kinds)],
        "cross_attention_dim": cross_attention_dim,
        "attention_head_dim": 4,
        "norm_num_groups": 4,
    }


def tiny_motion_adapter() -> dict[str, Any]:
    """An AnimateDiff ``MotionAdapter`` matching :func:`tiny_unet`'s two levels."""
    return {
        "block_out_channels": [8, 16],
        "motion_layers_per_block": 1,
        "motion_num_attention_heads": 2,
        "motion_norm_num_groups": 4,
        "motion_max_seq_length": 32,
    }


def tiny_vocoder() -> dict[str, Any]:
    """A HiFi-GAN vocoder from 64 mel bins to 16 kHz at hop 160."""
    return {
        "model_in_dim": 64,
        "sampling_rate": 16000,
        "upsample_initial_channel": 16,
        "upsample_rates": [4, 4, 10],
        "upsample_kernel_sizes": [8, 8, 20],
        "resblock_kernel_sizes": [3],
        "resblock_dilation_sizes": [[1, 3]],
        "normalize_before": False,
        # Large enough that the untrained vocoder is audible (validation refuses silence); the
        # default 0.01 gives peaks near 1e-6.
        "initializer_range": 0.1,
    }


class JsonConfig:
    """JSON plumbing and shared checks of a frozen configuration dataclass with ``components``
    and video settings (``height``, ``width``, ``num_frames``, ``fps``).

    A subclass sets ``_error`` (the error it raises), ``_kind`` (its name in messages),
    ``_component_spec`` (the class of ``components``' values) and, where it has tuple fields,
    ``_tuple_fields`` (JSON has only lists).
    """

    name: str
    components: Mapping[str, Any]
    height: int
    width: int
    num_frames: int
    fps: float
    _error: ClassVar[type[TavgbenchError]]
    _kind: ClassVar[str]
    _component_spec: ClassVar[type]
    _tuple_fields: ClassVar[tuple[str, ...]] = ()

    @property
    def duration(self) -> float:
        """Seconds of video, and so of soundtrack."""
        return self.num_frames / self.fps

    def _check_media(self, needed: Iterable[str]) -> None:
        """Every ``needed`` component present, a frame size the video VAE (x8) can take, and a
        positive frame count and rate."""
        missing = [c for c in needed if c not in self.components]
        if missing:
            raise self._error(f"config {self.name!r}: components missing: {', '.join(missing)}")
        if self.height % 8 or self.width % 8:
            raise self._error(
                f"config {self.name!r}: height and width must be multiples of 8 (the video VAE "
                f"downsamples by 8), got {self.height}x{self.width}"
            )
        if self.num_frames < 1 or self.fps <= 0:
            raise self._error(f"config {self.name!r}: num_frames and fps must be positive")

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON: components as dictionaries, tuples as lists."""
        data = asdict(self)
        for name in self._tuple_fields:
            data[name] = list(data[name])
        return data

    @classmethod
    def from_dict(cls: type[_Config], data: dict[str, Any]) -> _Config:
        """The config :meth:`to_dict` gave; unknown keys are refused."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise cls._error(f"unknown {cls._kind} config keys: {', '.join(unknown)}")
        data = dict(data)
        data["components"] = {
            name: spec if isinstance(spec, cls._component_spec) else cls._component_spec(**spec)
            for name, spec in data.get("components", {}).items()
        }
        for name in cls._tuple_fields:
            if name in data:
                data[name] = tuple(data[name])
        return cls(**data)

    def save(self, path: str | Path) -> Path:
        """Write :meth:`to_dict` as indented JSON to ``path``; returns the path."""
        path = Path(path)
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return path

    def with_options(self: _Config, **options: Any) -> _Config:
        """A copy with some fields replaced (``num_frames=8``, ...); unknown fields are refused."""
        try:
            return replace(self, **options)
        except TypeError as exc:
            raise self._error(f"config {self.name!r}: {exc}") from exc

    @classmethod
    def load(
        cls: type[_Config],
        name_or_path: str | Path,
        presets: Mapping[str, Callable[[], _Config]],
        what: str,
    ) -> _Config:
        """The preset ``name_or_path`` names, else the JSON file written by :meth:`save` there.

        ``what`` names the presets in the error for a path that is neither.
        """
        if str(name_or_path) in presets:
            return presets[str(name_or_path)]()
        path = Path(name_or_path)
        if not path.is_file():
            raise cls._error(
                f"{name_or_path}: not a {what} ({', '.join(presets)}) nor a config file"
            )
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise cls._error(f"{path}: cannot read the config as JSON ({exc})") from exc
        return cls.from_dict(data)
