"""Reference baselines behind one generation interface (optional extra ``[baselines]``).

Each baseline registers by name with a one-line description and a loader; loaders import
diffusers and friends only when called, so listing works without the extra installed.
"""

from __future__ import annotations

import importlib
from typing import Any

from tavgbench.baselines.interface import (
    AudibleClip,
    GenerationReport,
    TextToAudibleVideo,
    clip_seed,
    generate_split,
)
from tavgbench.errors import TavgbenchError

BASELINES: dict[str, tuple[str, str]] = {
    "tavdiffusion": (
        "TAVDiffusion (TAVGBench paper): joint audio-video latent diffusion with a cross-modal "
        "bridge and the EAS loss",
        "tavgbench.baselines.tavdiffusion.pipeline:TAVDiffusionPipeline.load",
    ),
    "animatediff-audioldm": (
        "Two-stage: AnimateDiff (SD 1.5 + motion adapter) video, AudioLDM audio from the prompt",
        "tavgbench.baselines.twostage.pipeline:AnimateDiffAudioLDM.load",
    ),
    "animatediff-difffoley": (
        "Two-stage: AnimateDiff video, then Diff-Foley audio from the generated frames",
        "tavgbench.baselines.twostage.pipeline:AnimateDiffDiffFoley.load",
    ),
    "audioldm-tempotokens": (
        "Two-stage: AudioLDM audio from the prompt, then TempoTokens (ZeroScope) video from it",
        "tavgbench.baselines.twostage.pipeline:AudioLDMTempoTokens.load",
    ),
}

EXTRA_HINT = "install the baselines extra: pip install 'tavgbench[baselines]'"


def list_baselines() -> dict[str, str]:
    """Registered baselines and their descriptions."""
    return {name: description for name, (description, _) in BASELINES.items()}


def load_baseline(name: str, **options: Any) -> TextToAudibleVideo:
    """Build the baseline ``name`` with its loader's options (checkpoint, config, device...)."""
    if name not in BASELINES:
        raise TavgbenchError(
            f"unknown baseline {name!r}; known: {', '.join(BASELINES)} (`tavgbench baseline list`)"
        )
    module_name, _, attribute = BASELINES[name][1].partition(":")
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
    "GenerationReport",
    "TextToAudibleVideo",
    "clip_seed",
    "generate_split",
    "list_baselines",
    "load_baseline",
]
