"""Building TAVDiffusion's parts from a configuration: pretrained or random, never hand-written.

The codecs (CLIP text encoder, the video and audio VAEs, the vocoder) are frozen; the two
denoisers are trained. The vocoder is AudioLDM's HiFi-GAN (transformers ``SpeechT5HifiGan``):
the paper names MelGAN, but no MelGAN trained on AudioLDM's 64-bin 16 kHz mel is published,
while AudioLDM's own HiFi-GAN inverts exactly the spectrograms its VAE decodes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, MotionAdapter, UNet2DConditionModel, UNetMotionModel
from torch import nn
from transformers import (
    CLIPTextConfig,
    CLIPTextModel,
    CLIPTokenizer,
    SpeechT5HifiGan,
    SpeechT5HifiGanConfig,
)

from tavgbench.baselines.tavdiffusion.config import ComponentSpec, TAVDiffusionConfig
from tavgbench.errors import TavgbenchError
from tavgbench.weights import how_to_get, hub_source


class ComponentError(TavgbenchError):
    """A pretrained component cannot be loaded."""


class ByteTokenizer:
    """Random-weight configs' tokenizer: UTF-8 bytes between CLIP-style start and end tokens.

    It is called like a transformers tokenizer (``padding="max_length"``, truncation) and pads
    with the end token, as Stable Diffusion's CLIP tokenizer does.
    """

    bos_token_id = 256
    eos_token_id = 257

    def __init__(self, max_length: int) -> None:
        self.model_max_length = max_length

    def __call__(self, prompts: list[str], **_: Any) -> dict[str, torch.Tensor]:
        rows = []
        for prompt in prompts:
            body = list(prompt.encode("utf-8"))[: self.model_max_length - 2]
            ids = [self.bos_token_id, *body, self.eos_token_id]
            rows.append(ids + [self.eos_token_id] * (self.model_max_length - len(ids)))
        return {"input_ids": torch.tensor(rows, dtype=torch.long)}


@dataclass
class Codecs:
    """The frozen parts: text encoder and tokenizer, video and audio VAEs, vocoder."""

    tokenizer: Any
    text_encoder: CLIPTextModel
    video_vae: AutoencoderKL
    audio_vae: AutoencoderKL
    vocoder: SpeechT5HifiGan

    def modules(self) -> dict[str, nn.Module]:
        return {
            "text_encoder": self.text_encoder,
            "video_vae": self.video_vae,
            "audio_vae": self.audio_vae,
            "vocoder": self.vocoder,
        }


def _pretrained(cls: Any, spec: ComponentSpec, what: str, **kwargs: Any) -> Any:
    """From a local folder, the weights cache's snapshot of a registered repository, or the hub."""
    options = {"subfolder": spec.subfolder} if spec.subfolder else {}
    try:
        return cls.from_pretrained(hub_source(spec.source), **options, **kwargs)
    except (OSError, ValueError) as exc:
        where = f"{spec.source}/{spec.subfolder}" if spec.subfolder else spec.source
        how = how_to_get(spec.source) or (
            f"download it with `huggingface-cli download {spec.source}`"
        )
        raise ComponentError(
            f"TAVDiffusion {what}: cannot load {where} ({exc}); {how}; or point the config at a "
            "local copy"
        ) from exc


def build_codecs(config: TAVDiffusionConfig) -> Codecs:
    """The frozen components, in eval mode with gradients off."""
    specs = config.components
    tok = specs["tokenizer"]
    tokenizer = (
        _pretrained(CLIPTokenizer, tok, "tokenizer")
        if tok.pretrained
        else ByteTokenizer(tok.config.get("max_length", config.max_text_length))
    )
    text = specs["text_encoder"]
    text_encoder = (
        _pretrained(CLIPTextModel, text, "text encoder")
        if text.pretrained
        else CLIPTextModel(CLIPTextConfig(**text.config))
    )
    video_vae = _vae(specs["video_vae"], "video VAE")
    audio_vae = _vae(specs["audio_vae"], "audio VAE")
    voc = specs["vocoder"]
    vocoder = (
        _pretrained(SpeechT5HifiGan, voc, "vocoder")
        if voc.pretrained
        else SpeechT5HifiGan(SpeechT5HifiGanConfig(**voc.config))
    )
    codecs = Codecs(tokenizer, text_encoder, video_vae, audio_vae, vocoder)
    for module in codecs.modules().values():
        module.requires_grad_(False)
        module.eval()
    return codecs


def _vae(spec: ComponentSpec, what: str) -> AutoencoderKL:
    if spec.pretrained:
        return _pretrained(AutoencoderKL, spec, what)
    return AutoencoderKL(**spec.config)


def vae_factor(vae: AutoencoderKL) -> int:
    """Spatial downsampling of an ``AutoencoderKL``: 8 for SD 1.5, 4 for AudioLDM."""
    return 2 ** (len(vae.config.block_out_channels) - 1)


def unet_factor(unet: nn.Module) -> int:
    """How many times a UNet halves its input: latent sizes must be multiples of it."""
    return 2 ** (len(unet.config.block_out_channels) - 1)


def build_audio_unet(config: TAVDiffusionConfig) -> UNet2DConditionModel:
    """SD-1.5's UNet with 8 latent channels in and out (only conv_in/conv_out re-initialised)."""
    spec = config.components["audio_unet"]
    if not spec.pretrained:
        return UNet2DConditionModel(**spec.config)
    unet = _pretrained(UNet2DConditionModel, spec, "audio UNet")
    in_channels = spec.config.get("in_channels", unet.config.in_channels)
    out_channels = spec.config.get("out_channels", unet.config.out_channels)
    old_in, old_out = unet.conv_in, unet.conv_out
    unet.conv_in = nn.Conv2d(
        in_channels, old_in.out_channels, old_in.kernel_size, padding=old_in.padding
    )
    unet.conv_out = nn.Conv2d(
        old_out.in_channels, out_channels, old_out.kernel_size, padding=old_out.padding
    )
    unet.register_to_config(in_channels=in_channels, out_channels=out_channels)
    return unet


class TemporalConv(nn.Module):
    """A residual 1D convolution over frames: ``x + conv(silu(norm(x)))`` along time.

    Applied to a ResNet block's output ``[(b f), c, h, w]``; the convolution starts at zero, so
    at step 0 the block is unchanged.
    """

    def __init__(self, channels: int, groups: int, kernel: int = 3) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(groups, channels)
        self.conv = nn.Conv1d(channels, channels, kernel, padding=kernel // 2)
        nn.init.zeros_(self.conv.weight)
        nn.init.zeros_(self.conv.bias)

    def forward(self, x: torch.Tensor, num_frames: int) -> torch.Tensor:
        bf, c, h, w = x.shape
        b = bf // num_frames
        y = x.reshape(b, num_frames, c, h, w).permute(0, 3, 4, 2, 1).reshape(b * h * w, c, -1)
        y = self.conv(F.silu(self.norm(y)))
        y = y.reshape(b, h, w, c, num_frames).permute(0, 4, 3, 1, 2).reshape(bf, c, h, w)
        return x + y


def add_temporal_convs(unet: UNetMotionModel) -> None:
    """Make ``unet`` pseudo-3D as the paper describes: a 1D temporal convolution after every 2D
    ResNet block (``unet.temporal_convs``), besides AnimateDiff's temporal transformers.

    The convolutions run as forward hooks of the ResNet blocks, so the UNet's own forward, its
    block-by-block use in :class:`TAVDiffusionDenoiser` and gradient checkpointing all apply
    them, and pretrained ResNet weights keep their names. The frame count comes from the UNet's
    input (``unet.temporal_frames``, which the block-by-block forward sets itself).
    """
    resnets = [
        resnet
        for block in (*unet.down_blocks, unet.mid_block, *unet.up_blocks)
        for resnet in block.resnets
    ]
    unet.temporal_convs = nn.ModuleList(
        TemporalConv(r.out_channels, r.norm2.num_groups) for r in resnets
    )
    frames = {"n": 1}
    unet.temporal_frames = frames

    def from_input(_: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        sample = args[0] if args else kwargs["sample"]
        frames["n"] = sample.shape[2]

    unet.register_forward_pre_hook(from_input, with_kwargs=True)
    for resnet, temporal in zip(resnets, unet.temporal_convs, strict=True):

        def after(_: nn.Module, __: Any, out: torch.Tensor, t: TemporalConv = temporal) -> Any:
            return t(out, frames["n"])

        resnet.register_forward_hook(after)


def build_video_unet(config: TAVDiffusionConfig) -> UNetMotionModel:
    """SD-1.5's UNet made pseudo-3D with AnimateDiff motion modules (and, with
    ``config.temporal_conv``, temporal convolutions after its ResNet blocks).

    With a pretrained motion adapter its modules are loaded; otherwise they start at random with
    their output projections zeroed, so the untrained video UNet is its image UNet frame by frame.
    """
    spec = config.components["video_unet"]
    unet2d = (
        _pretrained(UNet2DConditionModel, spec, "video UNet")
        if spec.pretrained
        else UNet2DConditionModel(**spec.config)
    )
    adapter_spec = config.components.get("motion_adapter", ComponentSpec())
    if adapter_spec.pretrained:
        adapter = _pretrained(MotionAdapter, adapter_spec, "motion adapter")
    else:
        options = dict(adapter_spec.config)
        options.setdefault("block_out_channels", list(unet2d.config.block_out_channels))
        options.setdefault("motion_layers_per_block", unet2d.config.layers_per_block)
        adapter = MotionAdapter(**options)
        for name, module in adapter.named_modules():
            if name.endswith("proj_out") and isinstance(module, nn.Linear):
                nn.init.zeros_(module.weight)
                nn.init.zeros_(module.bias)
    unet = UNetMotionModel.from_unet2d(unet2d, motion_adapter=adapter)
    if config.temporal_conv:
        add_temporal_convs(unet)
    return unet


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
