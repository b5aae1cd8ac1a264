"""Reference baselines behind one generation interface (optional extra ``[baselines]``).

Each baseline registers by name with a one-line description and a loader; loaders import
diffusers and friends only when called, so listing works without the extra installed.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from tavgbench.baselines.interface import (
    AudibleClip,
    GenerationReport,
    TextToAudibleVideo,
    clip_seed,
    generate_split,
)
from tavgbench.errors import TavgbenchError


@dataclass(frozen=True)
class BaselineInfo:
    """What ``tavgbench baseline list`` shows of a baseline, and where its loader lives.

    Attributes:
        description: one line.
        loader: ``module:attribute`` of the function that builds it.
        stages: the generation stages, in order (``TextToVideo`` ...).
        weights: the published weights its default presets load, with their licences.
        presets: configuration presets (``--config``).
    """

    description: str
    loader: str
    stages: tuple[str, ...]
    weights: tuple[str, ...]
    presets: tuple[str, ...]


_SD = "Stable Diffusion 1.5 (CreativeML OpenRAIL-M)"
_ANIMATEDIFF = "AnimateDiff motion adapter v1-5-2 (Apache-2.0)"
_AUDIOLDM = "AudioLDM-S-full (CC BY-NC-SA 4.0); audioldm2 presets: AudioLDM 2 (CC BY-NC-SA 4.0)"

BASELINES: dict[str, BaselineInfo] = {
    "tavdiffusion": BaselineInfo(
        "TAVDiffusion (TAVGBench paper): joint audio-video latent diffusion with a cross-modal "
        "bridge and the EAS loss",
        "tavgbench.baselines.tavdiffusion.pipeline:TAVDiffusionPipeline.load",
        ("TextToAudibleVideo",),
        (
            "a trained checkpoint (`baseline train tavdiffusion`), initialised from "
            f"{_SD}, {_ANIMATEDIFF}, AudioLDM-S-full VAE and vocoder (CC BY-NC-SA 4.0)",
        ),
        ("paper", "tiny"),
    ),
    "animatediff-audioldm": BaselineInfo(
        "Two-stage: AnimateDiff (SD 1.5 + motion adapter) video, AudioLDM audio from the prompt",
        "tavgbench.baselines.twostage.pipeline:AnimateDiffAudioLDM.load",
        ("TextToVideo", "TextToAudio"),
        (_SD, _ANIMATEDIFF, _AUDIOLDM),
        ("default", "tiny", "audioldm2", "audioldm2-tiny"),
    ),
    "animatediff-difffoley": BaselineInfo(
        "Two-stage: AnimateDiff video, then Diff-Foley audio from the generated frames",
        "tavgbench.baselines.twostage.pipeline:AnimateDiffDiffFoley.load",
        ("TextToVideo", "VideoToAudio"),
        (
            _SD,
            _ANIMATEDIFF,
            "Diff-Foley cavp_epoch66.ckpt + ldm_epoch240.ckpt + double_guidance_classifier.ckpt "
            "(research use)",
        ),
        ("default", "tiny"),
    ),
    "audioldm-tempotokens": BaselineInfo(
        "Two-stage: AudioLDM audio from the prompt, then TempoTokens (ZeroScope) video from it",
        "tavgbench.baselines.twostage.pipeline:AudioLDMTempoTokens.load",
        ("TextToAudio", "AudioToVideo"),
        (
            _AUDIOLDM,
            "ZeroScope v2 576w (CC BY-NC 4.0)",
            "BEATs iter3+ AS2M fine-tuned (MIT)",
            "TempoTokens vggsound/learned_embeds.pth (research code, MIT)",
        ),
        ("default", "tiny", "audioldm2", "audioldm2-tiny"),
    ),
}

EXTRA_HINT = "install the baselines extra: pip install 'tavgbench[baselines]'"


def list_baselines() -> dict[str, str]:
    """Registered baselines and their descriptions."""
    return {name: info.description for name, info in BASELINES.items()}


def load_baseline(name: str, **options: Any) -> TextToAudibleVideo:
    """Build the baseline ``name`` with its loader's options (checkpoint, config, device...)."""
    if name not in BASELINES:
        raise TavgbenchError(
            f"unknown baseline {name!r}; known: {', '.join(BASELINES)} (`tavgbench baseline list`)"
        )
    module_name, _, attribute = BASELINES[name].loader.partition(":")
    try:
        target: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise TavgbenchError(f"baseline {name!r} needs {exc.name}: {EXTRA_HINT}") from exc
    for part in attribute.split("."):
        target = getattr(target, part)
    return target(**options)


__all__ = [
    "BASELINES",
    "AudibleClip",
    "BaselineInfo",
    "GenerationReport",
    "TextToAudibleVideo",
    "clip_seed",
    "generate_split",
    "list_baselines",
    "load_baseline",
]
