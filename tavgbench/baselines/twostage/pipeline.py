"""The two-stage baselines behind the shared generation interface.

* ``animatediff-audioldm``: AnimateDiff makes the video from the prompt, AudioLDM makes the
  soundtrack from the same prompt (the two never see each other).
* ``animatediff-difffoley``: AnimateDiff makes the video, Diff-Foley makes the soundtrack from
  the generated frames (video to audio).
* ``audioldm-tempotokens``: AudioLDM makes the soundtrack from the prompt, TempoTokens makes the
  video from that soundtrack (audio to video on ZeroScope).

The text-to-audio stage of ``animatediff-audioldm`` and ``audioldm-tempotokens`` is AudioLDM or,
where the config's ``text_to_audio`` is ``audioldm2`` (the ``audioldm2`` presets), AudioLDM 2.

Each clip's two stages draw their noise from the clip's own seed (offset per stage), so a clip
does not depend on its batch or on the clips before it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from tavgbench.baselines.interface import AudibleClip, TextToAudibleVideo, torch_dtype
from tavgbench.baselines.twostage.config import ConfigError, TwoStageConfig, load_config
from tavgbench.baselines.twostage.video import AnimateDiffVideo


def _no_checkpoint(name: str, checkpoint: str | Path | None) -> None:
    if checkpoint is not None:
        raise ConfigError(
            f"{name} takes no --checkpoint: its parts come from the config's sources "
            "(Hugging Face ids or local folders); write a config JSON that points at local copies"
        )


def _text_to_audio(config: TwoStageConfig, device: str) -> Any:
    """The config's text-to-audio model: AudioLDM or AudioLDM 2."""
    if config.text_to_audio == "audioldm2":
        from tavgbench.baselines.twostage.audioldm2 import AudioLDM2

        return AudioLDM2(config, device)
    from tavgbench.baselines.twostage.audioldm import AudioLDM

    return AudioLDM(config, device)


def _cast(stage: Any, device: str, dtype: str | None) -> Any:
    """``stage`` in ``dtype`` (its own rule for which parts follow; None: as built, float32)."""
    if dtype is not None:
        stage.to(device, torch_dtype(dtype))
    return stage


class TwoStageBase(TextToAudibleVideo):
    """Shared by the baselines: loading, the two stages, step and guidance overrides, describe().

    Subclasses name their ``audio_model`` (the config family) and build their two stages in
    :meth:`stages`.
    """

    audio_model: ClassVar[str] = ""

    def __init__(
        self,
        config: TwoStageConfig,
        video: Any,
        audio: Any,
        *,
        num_inference_steps: int | None = None,
        guidance_scale: float | None = None,
        dtype: str | None = None,
    ) -> None:
        self.config = config
        self.video = video
        self.audio = audio
        self.dtype = dtype
        # The CLI's --steps/--guidance apply to the video stage; the audio stage keeps its own.
        self.num_inference_steps = num_inference_steps or config.video_steps
        self.guidance_scale = config.video_guidance if guidance_scale is None else guidance_scale

    @classmethod
    def load(
        cls,
        checkpoint: str | Path | None = None,
        *,
        config: str | Path | TwoStageConfig | None = None,
        device: str = "cpu",
        num_inference_steps: int | None = None,
        guidance_scale: float | None = None,
        dtype: str | None = None,
    ) -> TwoStageBase:
        """Build from a preset (``default``: published weights; ``tiny``: random weights; see
        ``tavgbench baseline list``) or a config JSON, on ``device``, in ``dtype``
        (``float16``/``bfloat16``; default float32). ``checkpoint`` is what :meth:`stages` says."""
        torch_dtype(dtype)  # a wrong name is refused before anything is built
        cfg = load_config(config or "default", cls.audio_model)
        video, audio = cls.stages(cfg, device, checkpoint)
        return cls(
            cfg,
            _cast(video, device, dtype),
            _cast(audio, device, dtype),
            num_inference_steps=num_inference_steps,
            guidance_scale=guidance_scale,
            dtype=dtype,
        )

    @classmethod
    def stages(
        cls, config: TwoStageConfig, device: str, checkpoint: str | Path | None
    ) -> tuple[Any, Any]:
        """The video and audio stages of ``config``."""
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "config": self.config.name,
            "num_inference_steps": self.num_inference_steps,
            "guidance_scale": self.guidance_scale,
            "dtype": self.dtype or "float32",
            "components": {
                k: f"{v.source}/{v.subfolder}".rstrip("/") if v.pretrained else "random"
                for k, v in sorted(self.config.components.items())
            },
        }

    def _clips(self, frames: Any, waves: Any, rate: int) -> list[AudibleClip]:
        """Pair each clip's frames with its waveform at the config's frame rate."""
        return [
            AudibleClip(f, self.config.fps, w, rate) for f, w in zip(frames, waves, strict=True)
        ]

    def _frames(self, prompts: Sequence[str], seeds: Sequence[int]) -> np.ndarray:
        if len(prompts) != len(seeds):
            raise ValueError("generate: one seed per prompt")
        return self.video.generate(
            list(prompts),
            list(seeds),
            num_inference_steps=self.num_inference_steps,
            guidance_scale=self.guidance_scale,
        )


class AnimateDiffAudioLDM(TwoStageBase):
    """AnimateDiff video and AudioLDM (or AudioLDM 2, the ``audioldm2`` presets) audio, both
    from the prompt."""

    name = "animatediff-audioldm"
    audio_model = "audioldm"

    @classmethod
    def stages(
        cls, config: TwoStageConfig, device: str, checkpoint: str | Path | None
    ) -> tuple[Any, Any]:
        """AnimateDiff and the text-to-audio model; no ``checkpoint`` (the config's sources)."""
        _no_checkpoint(cls.name, checkpoint)
        return AnimateDiffVideo(config, device), _text_to_audio(config, device)

    @torch.no_grad()
    def generate(self, prompts: Sequence[str], seeds: Sequence[int]) -> list[AudibleClip]:
        frames = self._frames(prompts, seeds)
        waves = self.audio.generate(list(prompts), list(seeds), self.config.duration)
        rate = self.audio.sample_rate
        return self._clips(frames, waves, rate)


class AnimateDiffDiffFoley(TwoStageBase):
    """AnimateDiff video, then Diff-Foley audio from the generated frames."""

    name = "animatediff-difffoley"
    audio_model = "difffoley"

    @classmethod
    def stages(
        cls, config: TwoStageConfig, device: str, checkpoint: str | Path | None
    ) -> tuple[Any, Any]:
        """AnimateDiff and Diff-Foley; ``checkpoint`` is the folder holding Diff-Foley's
        ``cavp_epoch66.ckpt``, ``ldm_epoch240.ckpt`` and, for double guidance (on in
        ``default``), ``double_guidance_classifier.ckpt`` (overrides the config's sources)."""
        from tavgbench.baselines.twostage.difffoley import DiffFoley

        return (
            AnimateDiffVideo(config, device),
            DiffFoley.build(config, checkpoint_dir=checkpoint, device=device),
        )

    @torch.no_grad()
    def generate(self, prompts: Sequence[str], seeds: Sequence[int]) -> list[AudibleClip]:
        frames = self._frames(prompts, seeds)
        waves = self.audio.generate(frames, self.config.fps, list(seeds), self.config.duration)
        rate = self.audio.sample_rate
        return self._clips(frames, waves, rate)


class AudioLDMTempoTokens(TwoStageBase):
    """AudioLDM (or AudioLDM 2) audio from the prompt, then TempoTokens (ZeroScope) video from
    that audio."""

    name = "audioldm-tempotokens"
    audio_model = "tempotokens"

    @classmethod
    def stages(
        cls, config: TwoStageConfig, device: str, checkpoint: str | Path | None
    ) -> tuple[Any, Any]:
        """TempoTokens and the text-to-audio model; ``checkpoint`` is the folder holding
        ``BEATs_iter3_plus_AS2M_finetuned_on_AS2M_cpt2.pt`` and TempoTokens'
        ``learned_embeds.pth`` (overrides the config's sources for those two)."""
        from tavgbench.baselines.twostage.tempotokens import TempoTokensVideo

        return (
            TempoTokensVideo(config, device, checkpoint_dir=checkpoint),
            _text_to_audio(config, device),
        )

    @torch.no_grad()
    def generate(self, prompts: Sequence[str], seeds: Sequence[int]) -> list[AudibleClip]:
        if len(prompts) != len(seeds):
            raise ValueError("generate: one seed per prompt")
        waves = self.audio.generate(list(prompts), list(seeds), self.config.duration)
        rate = self.audio.sample_rate
        frames = self.video.generate(
            waves,
            rate,
            list(seeds),
            num_inference_steps=self.num_inference_steps,
            guidance_scale=self.guidance_scale,
        )
        return self._clips(frames, waves, rate)
