"""Published architectures for random-weight builds: sizes, and the paper model's shapes.

Everything is built on the meta device (shapes only, no memory), so full-size models cost
seconds here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch

pytest.importorskip("diffusers", reason="needs the [baselines] extra")

from diffusers import (
    AudioLDM2ProjectionModel,
    AudioLDM2UNet2DConditionModel,
    AutoencoderKL,
    MotionAdapter,
    UNet2DConditionModel,
    UNet3DConditionModel,
)
from transformers import (
    ClapConfig,
    ClapModel,
    ClapTextConfig,
    ClapTextModelWithProjection,
    CLIPTextConfig,
    CLIPTextModel,
    GPT2Config,
    GPT2Model,
    SpeechT5HifiGan,
    SpeechT5HifiGanConfig,
    T5Config,
    T5EncoderModel,
)

from tavgbench.baselines.architectures import (
    ANIMATEDIFF,
    AUDIOLDM,
    AUDIOLDM2,
    PUBLISHED,
    SD15,
    ZEROSCOPE,
    random_weights,
)
from tavgbench.baselines.tavdiffusion.components import (
    build_audio_unet,
    build_codecs,
    build_video_unet,
    count_parameters,
)
from tavgbench.baselines.tavdiffusion.config import ComponentSpec, ConfigError, paper_config
from tavgbench.baselines.tavdiffusion.model import TAVDiffusionDenoiser
from tavgbench.baselines.twostage.config import PRESETS

Build = Callable[[dict[str, Any]], torch.nn.Module]

# Parameter counts of the published components. Reference: the published weight files' sizes
# (fp32 4 bytes, fp16 2 bytes per parameter) and the parameter counts their model cards state.
SIZES: dict[tuple[str, str], tuple[Build, int]] = {
    # 859.52M: the count diffusers and the SD-1.5 card give for its UNet.
    (SD15, "unet"): (lambda c: UNet2DConditionModel(**c), 859_520_964),
    (SD15, "vae"): (lambda c: AutoencoderKL(**c), 83_653_863),
    (SD15, "text_encoder"): (lambda c: CLIPTextModel(CLIPTextConfig(**c)), 123_060_480),
    # diffusion_pytorch_model.safetensors of 1.82 GB (fp32).
    (ANIMATEDIFF, ""): (lambda c: MotionAdapter(**c), 453_209_280),
    # AudioLDM-S (cvssp/audioldm-s-full-v2, the same architecture): unet 740 MB, vae 222 MB (fp32).
    (AUDIOLDM, "unet"): (lambda c: UNet2DConditionModel(**c), 185_036_552),
    (AUDIOLDM, "vae"): (lambda c: AutoencoderKL(**c), 55_376_873),
    (AUDIOLDM, "vocoder"): (lambda c: SpeechT5HifiGan(SpeechT5HifiGanConfig(**c)), 55_264_897),
    (AUDIOLDM, "text_encoder"): (
        lambda c: ClapTextModelWithProjection(ClapTextConfig(**c)),
        125_302_016,
    ),
    # fp16 files of 2.6 GB (unet) and 649.3 MB (text encoder); 1.7B in all (ModelScope T2V).
    (ZEROSCOPE, "unet"): (lambda c: UNet3DConditionModel(**c), 1_411_233_860),
    (ZEROSCOPE, "text_encoder"): (lambda c: CLIPTextModel(CLIPTextConfig(**c)), 340_387_840),
    # diffusers' AudioLDM 2 docs: UNet 350M, 1.1B in all; projection_model file 4.74 MB (fp32).
    (AUDIOLDM2, "unet"): (lambda c: AudioLDM2UNet2DConditionModel(**c), 346_943_496),
    (AUDIOLDM2, "text_encoder"): (lambda c: ClapModel(ClapConfig(**c)), 193_913_882),
    (AUDIOLDM2, "text_encoder_2"): (lambda c: T5EncoderModel(T5Config(**c)), 341_231_104),
    (AUDIOLDM2, "projection_model"): (lambda c: AudioLDM2ProjectionModel(**c), 1_184_256),
    (AUDIOLDM2, "language_model"): (lambda c: GPT2Model(GPT2Config(**c)), 124_439_808),
}


@pytest.mark.parametrize("key", list(SIZES), ids=lambda k: f"{k[0].split('/')[-1]}/{k[1]}")
def test_published_sizes(key: tuple[str, str]) -> None:
    build, expected = SIZES[key]
    with torch.device("meta"):
        module = build(PUBLISHED[key])
    assert count_parameters(module) == expected


def test_audioldm2_sums_to_its_published_total() -> None:
    parts = sum(n for (source, _), (_, n) in SIZES.items() if source == AUDIOLDM2)
    # + VAE and vocoder (AudioLDM's architecture): "1.1B" in diffusers' docs.
    total = parts + SIZES[(AUDIOLDM, "vae")][1] + SIZES[(AUDIOLDM, "vocoder")][1]
    assert 1.05e9 < total < 1.15e9


def test_paper_model_at_full_size_has_the_paper_shapes() -> None:
    config = paper_config()
    config = config.with_options(components=random_weights(config.components))
    with torch.device("meta"):
        denoiser = TAVDiffusionDenoiser(config, build_video_unet(config), build_audio_unet(config))
        codecs = build_codecs(config)
        b = 2
        # 256x320x20 frames -> 4 x 20 x 32 x 40 latents; 10 s of 16 kHz audio -> 1008 mel frames
        # (1001 rounded up to the latent grid) x 64 bins -> 8 x 252 x 16 latents.
        video = torch.empty(b, 4, config.num_frames, config.height // 8, config.width // 8)
        audio = torch.empty(b, 8, config.mel_frames(32) // 4, config.n_mels // 4)
        out = denoiser(video, audio, torch.tensor([10, 500]), torch.empty(b, 77, 768))
    assert out.video.shape == video.shape and out.audio.shape == audio.shape
    assert out.eas is not None and out.eas.shape == ()
    # SD-1.5 + AnimateDiff video UNet, SD-1.5 audio UNet with 8-channel conv_in/conv_out.
    temporal = denoiser.video_unet.temporal_convs
    assert count_parameters(denoiser.video_unet) - count_parameters(temporal) == (
        859_520_964 + 453_209_280
    )
    # One k=3 temporal convolution (and its GroupNorm) per ResNet block: 22 in SD-1.5's UNet.
    widths = [t.conv.in_channels for t in temporal]
    assert len(widths) == 22
    assert count_parameters(temporal) == sum(3 * c * c + c + 2 * c for c in widths)
    # 4 more input channels into 320 and 320 into 4 more outputs (3x3), 4 more output biases.
    assert count_parameters(denoiser.audio_unet) == 859_520_964 + 2 * (4 * 320 * 9) + 4
    assert count_parameters(codecs.text_encoder) == 123_060_480


@pytest.mark.parametrize(
    ("audio_model", "preset"),
    [(m, p) for m, presets in PRESETS.items() for p in presets if "tiny" not in p],
)
def test_every_published_preset_has_a_random_twin(audio_model: str, preset: str) -> None:
    components = PRESETS[audio_model][preset]().components
    twin = random_weights(components)
    assert twin.keys() == components.keys()
    assert not any(spec.pretrained for spec in twin.values())


def test_unknown_sources_are_refused() -> None:
    with pytest.raises(ConfigError, match="no published architecture"):
        random_weights({"unet": ComponentSpec("someone/model", "unet")})
