"""Diff-Foley (Luo et al., NeurIPS 2023), video to audio, ported onto diffusers parts.

Facts from the reference (github.com/luosiallen/Diff-Foley at ``0ba1e8a``: ``inference/``
notebook, configs and ``demo_util.py``, ``diff_foley/``):

* CAVP video encoder: a SlowOnly ResNet3D-50 (mmaction layout: stem conv 1x7x7 stride 1x2x2 and
  a 1x3x3 max pool, bottleneck stages 3-4-6-3, temporal 3x1x1 kernels in stages 3 and 4 only,
  no temporal striding), frames at 4 fps resized to 224x224 and scaled to [0, 1] (no mean/std),
  features averaged over space per frame, projected 2048 -> 512 and L2-normalised: one 512-d
  vector per frame. The frames go through it in chunks of 40 (``batch_size = 40``), so its
  temporal kernels do not reach across a chunk boundary.
* Stage 2: a latent diffusion model whose UNet is Stable Diffusion 1.x's (320 channels, x1 x2 x4
  x4, attention at the first three levels, 8 heads, 768-d context). The context is the CAVP
  features through a linear layer 512 -> 768 plus learned positional embeddings (40 positions).
  The unconditional context for classifier-free guidance (scale 4.5) is all zeros (zeros in
  place of the encoded context). Latents ``[4, 16, 64]`` per 32-feature window (8 s); windows
  are generated one after another, each decoded and inverted to audio on its own, and the
  audio concatenated. Sampling: DPM-Solver++ (2nd order, multistep, 25 steps uniform in time
  from t = 1 to t = 1/1000, the last step 2nd order too and landing on the noise level of the
  first training step, not on zero noise) on the LDM's "linear" schedule (betas
  ``linspace(sqrt(0.00085), sqrt(0.012), 1000) ** 2``, diffusers' ``scaled_linear``); latents
  scaled by 0.18215.
* Double guidance (optional; the notebook turns it on): a classifier of the noisy latent given
  the video's CAVP features, trained to tell in-sync pairs, is an encoder-half LDM UNet (128
  channels x1 x2 x2, one res block per level, attention at the two lower levels, 8 heads,
  512-d context) ending in GroupNorm, SiLU, a 3x3 conv halving the channels, average pooling,
  a linear layer and a sigmoid. Each solver step subtracts ``scale * sigma_t * grad_x log p``
  (scale 50) from the classifier-free-guided noise. The sampler hands the classifier the raw
  CAVP features: its condition encoder (``cond_model``, used in training) is skipped.
* The KL VAE (3 channels, 128-wide, x1 x2 x4 x4) encodes the spectrogram; its decoded first
  channel is a 128-mel spectrogram in [0, 1], inverted by undoing the dB scaling, a
  non-negative least-squares mel inversion and librosa 0.8's Griffin-Lim (32 iterations,
  momentum 0.99, random initial phase, reflect padding) at hop 256; the audio is 16 kHz.

We resize frames with antialiased bilinear interpolation (the reference uses PIL's bilinear
resize), pick the 4 fps frames nearest in time (as ffmpeg's fps filter does), give clips
shorter than a window a proportionally shorter latent (2 columns per feature; the reference
only generates whole windows), draw each window's Griffin-Lim phase from the clip's seed, call
the UNet and classifier at diffusers' integer timesteps (the reference's are the same times
unrounded), give the classifier the window's features (the reference gives it the whole
clip's, which is the same for clips of one window) and apply it whatever the CFG scale (the
reference skips both guidances when that scale is 1).

Official checkpoints are PyTorch Lightning files (``{"state_dict": ...}``): :func:`convert_cavp`,
:func:`convert_difffoley` and :func:`convert_alignment_classifier` map them, without unpickling
anything but tensors, to the state dicts of :class:`CAVPVideoEncoder`, :class:`DiffFoleyLDM`
and :class:`AlignmentClassifier`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, DPMSolverMultistepScheduler, UNet2DConditionModel
from diffusers.models.embeddings import TimestepEmbedding, Timesteps
from diffusers.models.unets.unet_2d_blocks import get_down_block, get_mid_block
from torch import nn

from tavgbench.baselines.tavdiffusion.config import ComponentSpec
from tavgbench.baselines.tavdiffusion.mel import slaney_mel_filterbank
from tavgbench.baselines.twostage.components import WeightsMissing, freeze, seeded_noise
from tavgbench.baselines.twostage.config import TwoStageConfig
from tavgbench.errors import WeightsError
from tavgbench.weights import how_to_get, registered_file

CAVP_FILE = "cavp_epoch66.ckpt"
LDM_FILE = "ldm_epoch240.ckpt"
CLASSIFIER_FILE = "double_guidance_classifier.ckpt"
FOLEY_SALT = 2
PHASE_SALT = 3


# --- CAVP video encoder ----------------------------------------------------------------------


class ConvBN(nn.Module):
    """mmcv's ConvModule as the checkpoints name it: ``conv`` (no bias), ``bn``, optional ReLU."""

    def __init__(
        self,
        cin: int,
        cout: int,
        kernel: tuple[int, int, int],
        stride: tuple[int, int, int] = (1, 1, 1),
        relu: bool = True,
    ) -> None:
        super().__init__()
        padding = tuple((k - 1) // 2 for k in kernel)
        self.conv = nn.Conv3d(cin, cout, kernel, stride, padding, bias=False)
        self.bn = nn.BatchNorm3d(cout)
        self.relu = relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn(self.conv(x))
        return F.relu(x) if self.relu else x


class Bottleneck3d(nn.Module):
    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int, inflate: bool) -> None:
        super().__init__()
        # 'pytorch' style: the stride sits on the 3x3 conv; '3x1x1' inflation on conv1.
        self.conv1 = ConvBN(cin, planes, (3, 1, 1) if inflate else (1, 1, 1))
        self.conv2 = ConvBN(planes, planes, (1, 3, 3), (1, stride, stride))
        self.conv3 = ConvBN(planes, planes * self.expansion, (1, 1, 1), relu=False)
        self.downsample = (
            ConvBN(cin, planes * self.expansion, (1, 1, 1), (1, stride, stride), relu=False)
            if stride != 1 or cin != planes * self.expansion
            else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        return F.relu(self.conv3(self.conv2(self.conv1(x))) + identity)


class SlowOnly(nn.Module):
    """ResNet3D SlowOnly backbone, ``[b, 3, t, h, w]`` to ``[b, c, t, h/32, w/32]``."""

    def __init__(self, stage_blocks: Iterable[int] = (3, 4, 6, 3), base_channels: int = 64) -> None:
        super().__init__()
        self.conv1 = ConvBN(3, base_channels, (1, 7, 7), (1, 2, 2))
        self.maxpool = nn.MaxPool3d((1, 3, 3), (1, 2, 2), (0, 1, 1))
        cin = base_channels
        for i, blocks in enumerate(stage_blocks):
            planes = base_channels * 2**i
            layers = []
            for j in range(blocks):
                stride = 1 if i == 0 or j > 0 else 2
                layers.append(Bottleneck3d(cin, planes, stride, inflate=i >= 2))
                cin = planes * Bottleneck3d.expansion
            self.add_module(f"layer{i + 1}", nn.Sequential(*layers))
        self.num_stages = i + 1
        self.out_channels = cin

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.conv1(x))
        for i in range(self.num_stages):
            x = getattr(self, f"layer{i + 1}")(x)
        return x


class CAVPVideoEncoder(nn.Module):
    """CAVP's video branch: frames ``float [b, t, 3, h, w]`` in [0, 1] to ``[b, t, embed_dim]``.

    Attribute names follow the official checkpoint (``video_encoder``, ``video_project_head``).
    """

    def __init__(
        self,
        stage_blocks: Iterable[int] = (3, 4, 6, 3),
        base_channels: int = 64,
        embed_dim: int = 512,
    ) -> None:
        super().__init__()
        self.video_encoder = SlowOnly(stage_blocks, base_channels)
        self.video_project_head = nn.Linear(self.video_encoder.out_channels, embed_dim)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        feats = self.video_encoder(frames.permute(0, 2, 1, 3, 4)).mean(dim=(3, 4))
        return F.normalize(self.video_project_head(feats.transpose(1, 2)), dim=-1)


class FoleyCondition(nn.Module):
    """CAVP features ``[b, t, origin_dim]`` to the UNet context ``[b, t, embed_dim]``."""

    def __init__(self, origin_dim: int = 512, embed_dim: int = 768, seq_len: int = 40) -> None:
        super().__init__()
        self.embedder = nn.Sequential(nn.Linear(origin_dim, embed_dim))
        self.pos_emb = nn.Embedding(seq_len, embed_dim)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(feats.shape[1], device=feats.device)
        return self.embedder(feats) + self.pos_emb(positions)[None]


class DiffFoleyLDM(nn.Module):
    """Stage 2's trained parts: ``condition``, ``unet`` (diffusers) and ``vae`` (diffusers)."""

    def __init__(
        self, condition: FoleyCondition, unet: UNet2DConditionModel, vae: AutoencoderKL
    ) -> None:
        super().__init__()
        self.condition = condition
        self.unet = unet
        self.vae = vae


class ClassifierBackbone(nn.Module):
    """The double-guidance classifier's network: the encoder half of an LDM UNet, then a head.

    ``[b, c, h, w]`` latents, ``[b]`` timesteps and a ``[b, n, cross_attention_dim]`` context
    to ``[b, out_channels]`` logits (the published arguments: :data:`FOLEY_CLASSIFIER`). The
    trunk (time embedding, input conv, down blocks, middle block) is built as
    :class:`~diffusers.UNet2DConditionModel` builds its own from the same arguments, so the LDM
    key mapping applies; the head is GroupNorm, SiLU, a 3x3 conv to half the channels, a
    spatial mean and a linear layer.
    """

    def __init__(
        self,
        *,
        in_channels: int,
        out_channels: int,
        block_out_channels: Iterable[int],
        layers_per_block: int,
        down_block_types: Iterable[str],
        cross_attention_dim: int,
        attention_head_dim: int,
        norm_num_groups: int,
    ) -> None:
        super().__init__()
        channels = list(block_out_channels)
        down_types = list(down_block_types)
        self.config = SimpleNamespace(
            block_out_channels=channels,
            layers_per_block=layers_per_block,
            down_block_types=down_types,
        )
        # UNet2DConditionModel's defaults: SiLU, GroupNorm eps 1e-5, sin/cos flipped, no shift.
        time_dim = channels[0] * 4
        self.time_proj = Timesteps(channels[0], flip_sin_to_cos=True, downscale_freq_shift=0)
        self.time_embedding = TimestepEmbedding(channels[0], time_dim)
        self.conv_in = nn.Conv2d(in_channels, channels[0], 3, padding=1)
        blocks = dict(
            temb_channels=time_dim,
            resnet_eps=1e-5,
            resnet_act_fn="silu",
            resnet_groups=norm_num_groups,
            cross_attention_dim=cross_attention_dim,
            # UNet2DConditionModel's legacy naming: attention_head_dim is the number of heads.
            num_attention_heads=attention_head_dim,
            attention_head_dim=attention_head_dim,
        )
        self.down_blocks = nn.ModuleList()
        previous = channels[0]
        for i, (kind, width) in enumerate(zip(down_types, channels, strict=True)):
            self.down_blocks.append(
                get_down_block(
                    kind,
                    num_layers=layers_per_block,
                    in_channels=previous,
                    out_channels=width,
                    add_downsample=i < len(channels) - 1,
                    downsample_padding=1,
                    **blocks,
                )
            )
            previous = width
        self.mid_block = get_mid_block("UNetMidBlock2DCrossAttn", in_channels=previous, **blocks)
        self.conv_norm_out = nn.GroupNorm(norm_num_groups, previous)
        self.conv_out = nn.Conv2d(previous, previous // 2, 3, padding=1)
        self.classifier = nn.Linear(previous // 2, out_channels)

    def forward(
        self, latents: torch.Tensor, timesteps: torch.Tensor, context: torch.Tensor
    ) -> torch.Tensor:
        t = timesteps.expand(latents.shape[0])
        emb = self.time_embedding(self.time_proj(t).to(latents.dtype))
        h = self.conv_in(latents)
        for block in self.down_blocks:
            if getattr(block, "has_cross_attention", False):
                h, _ = block(h, temb=emb, encoder_hidden_states=context)
            else:
                h, _ = block(h, temb=emb)
        h = self.mid_block(h, emb, encoder_hidden_states=context)
        h = self.conv_out(F.silu(self.conv_norm_out(h)))
        return self.classifier(h.mean(dim=(2, 3)))


class AlignmentClassifier(nn.Module):
    """Diff-Foley's double-guidance classifier: is a noisy latent in sync with the video?

    Attribute names follow the official checkpoint: ``model`` (:class:`ClassifierBackbone`) and
    ``cond_model`` (a :class:`FoleyCondition`, which the reference trains with but its sampler
    skips; ``encode_context`` applies it).
    """

    def __init__(
        self, backbone: dict[str, Any] | None = None, condition: dict[str, Any] | None = None
    ) -> None:
        super().__init__()
        self.model = ClassifierBackbone(**(backbone or FOLEY_CLASSIFIER))
        self.cond_model = FoleyCondition(**(condition or FOLEY_CLASSIFIER_CONDITION))

    def log_prob(
        self,
        latents: torch.Tensor,
        timesteps: torch.Tensor,
        feats: torch.Tensor,
        *,
        encode_context: bool = False,
    ) -> torch.Tensor:
        """``log p(aligned)`` per latent, ``[b, 1]``: the log of the reference's sigmoid output
        (computed as a log-sigmoid, which stays finite where the probability underflows)."""
        context = self.cond_model(feats) if encode_context else feats
        return F.logsigmoid(self.model(latents, timesteps, context))


# --- checkpoint conversion -------------------------------------------------------------------

_RESNET = {
    "in_layers.0": "norm1",
    "in_layers.2": "conv1",
    "emb_layers.1": "time_emb_proj",
    "out_layers.0": "norm2",
    "out_layers.3": "conv2",
    "skip_connection": "conv_shortcut",
}
_VAE_RESNET = {"nin_shortcut": "conv_shortcut"}
_VAE_ATTENTION = {
    "norm": "group_norm",
    "q": "to_q",
    "k": "to_k",
    "v": "to_v",
    "proj_out": "to_out.0",
}

KeyPairs = list[tuple[str, str, dict[str, str]]]


def encoder_key_pairs(config: Any) -> KeyPairs:
    """``(official prefix, diffusers prefix, inner renames)`` of an LDM UNet's time embedding,
    input and middle blocks and ``out`` (GroupNorm, conv), shared by the UNet and the
    double-guidance classifier."""
    levels = len(config.block_out_channels)
    per = config.layers_per_block
    down_attn = ["CrossAttn" in t for t in config.down_block_types]
    pairs: KeyPairs = [
        ("time_embed.0", "time_embedding.linear_1", {}),
        ("time_embed.2", "time_embedding.linear_2", {}),
        ("input_blocks.0.0", "conv_in", {}),
        ("middle_block.0", "mid_block.resnets.0", _RESNET),
        ("middle_block.1", "mid_block.attentions.0", {}),
        ("middle_block.2", "mid_block.resnets.1", _RESNET),
        ("out.0", "conv_norm_out", {}),
        ("out.2", "conv_out", {}),
    ]
    for b in range(levels):
        for j in range(per):
            i = 1 + b * (per + 1) + j
            pairs.append((f"input_blocks.{i}.0", f"down_blocks.{b}.resnets.{j}", _RESNET))
            if down_attn[b]:
                pairs.append((f"input_blocks.{i}.1", f"down_blocks.{b}.attentions.{j}", {}))
        if b < levels - 1:
            i = (b + 1) * (per + 1)
            pairs.append((f"input_blocks.{i}.0.op", f"down_blocks.{b}.downsamplers.0.conv", {}))
    return pairs


def classifier_key_pairs(config: Any) -> KeyPairs:
    """The key pairs of the double-guidance classifier's backbone (``model.`` in its file)."""
    return [*encoder_key_pairs(config), ("classifier", "classifier", {})]


def unet_key_pairs(config: Any) -> KeyPairs:
    """``(official prefix, diffusers prefix, inner renames)`` of an LDM UNet (SD 1.x layout)."""
    levels = len(config.block_out_channels)
    per = config.layers_per_block
    up_attn = ["CrossAttn" in t for t in config.up_block_types]
    pairs = encoder_key_pairs(config)
    for b in range(levels):
        for j in range(per + 1):
            i = b * (per + 1) + j
            pairs.append((f"output_blocks.{i}.0", f"up_blocks.{b}.resnets.{j}", _RESNET))
            if up_attn[b]:
                pairs.append((f"output_blocks.{i}.1", f"up_blocks.{b}.attentions.{j}", {}))
            if b < levels - 1 and j == per:
                k = 2 if up_attn[b] else 1
                pairs.append(
                    (f"output_blocks.{i}.{k}.conv", f"up_blocks.{b}.upsamplers.0.conv", {})
                )
    return pairs


def vae_key_pairs(config: Any) -> KeyPairs:
    """``(official prefix, diffusers prefix, inner renames)`` of an LDM KL autoencoder."""
    levels = len(config.block_out_channels)
    per = config.layers_per_block
    pairs: KeyPairs = [("quant_conv", "quant_conv", {}), ("post_quant_conv", "post_quant_conv", {})]
    for side in ("encoder", "decoder"):
        pairs += [
            (f"{side}.conv_in", f"{side}.conv_in", {}),
            (f"{side}.conv_out", f"{side}.conv_out", {}),
            (f"{side}.norm_out", f"{side}.conv_norm_out", {}),
            (f"{side}.mid.block_1", f"{side}.mid_block.resnets.0", _VAE_RESNET),
            (f"{side}.mid.block_2", f"{side}.mid_block.resnets.1", _VAE_RESNET),
            (f"{side}.mid.attn_1", f"{side}.mid_block.attentions.0", _VAE_ATTENTION),
        ]
    for b in range(levels):
        for j in range(per):
            pairs.append(
                (f"encoder.down.{b}.block.{j}", f"encoder.down_blocks.{b}.resnets.{j}", _VAE_RESNET)
            )
        if b < levels - 1:
            pairs.append(
                (
                    f"encoder.down.{b}.downsample.conv",
                    f"encoder.down_blocks.{b}.downsamplers.0.conv",
                    {},
                )
            )
        # The LDM decoder numbers its levels from the deepest up; diffusers from the top down.
        up = levels - 1 - b
        for j in range(per + 1):
            pairs.append(
                (f"decoder.up.{up}.block.{j}", f"decoder.up_blocks.{b}.resnets.{j}", _VAE_RESNET)
            )
        if b < levels - 1:
            pairs.append(
                (f"decoder.up.{up}.upsample.conv", f"decoder.up_blocks.{b}.upsamplers.0.conv", {})
            )
    return pairs


def rename(key: str, pairs: KeyPairs, *, inverse: bool = False) -> str | None:
    """One key from the official layout to diffusers' (or back); ``None`` if no pair covers it."""
    for official, ours, inner in pairs:
        src, dst = (ours, official) if inverse else (official, ours)
        if key.startswith(src + "."):
            rest = key[len(src) + 1 :]
            table = {v: k for k, v in inner.items()} if inverse else inner
            for a, b in table.items():
                if rest.startswith(a + "."):
                    rest = b + rest[len(a) :]
                    break
            return f"{dst}.{rest}"
    return None


def _attention_weight(key: str, value: torch.Tensor, inverse: bool) -> torch.Tensor:
    # LDM's VAE attention projections are 1x1 convolutions; diffusers' are linear layers.
    is_proj = any(
        f".{n}.weight" in key
        for n in ("q", "k", "v", "proj_out", "to_q", "to_k", "to_v", "to_out.0")
    )
    if ("attn_1" not in key and "mid_block.attentions" not in key) or not is_proj:
        return value
    return value[..., None, None] if inverse else value.reshape(value.shape[:2])


def read_lightning(path: Path) -> dict[str, torch.Tensor]:
    """The ``state_dict`` of a Lightning checkpoint (or a bare state dict), tensors only."""
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError as exc:
        raise WeightsError(f"{path}: checkpoint not found") from exc
    except Exception as exc:
        raise WeightsError(
            f"{path}: not a loadable PyTorch checkpoint ({exc}); re-download it"
        ) from exc
    state = data.get("state_dict", data) if isinstance(data, dict) else None
    if not isinstance(state, dict):
        raise WeightsError(f"{path}: no state_dict in this checkpoint")
    # DataParallel training leaves a `module.` prefix; the reference strips it too.
    return {k.removeprefix("module."): v for k, v in state.items() if torch.is_tensor(v)}


def convert_cavp(path: Path) -> dict[str, torch.Tensor]:
    """``cavp_epoch66.ckpt`` to :class:`CAVPVideoEncoder`'s state dict (audio branch dropped)."""
    state = read_lightning(Path(path))
    out = {
        k: v for k, v in state.items() if k.startswith(("video_encoder.", "video_project_head."))
    }
    if not out:
        raise WeightsError(f"{path}: no video_encoder weights; is this CAVP's checkpoint?")
    return out


def convert_difffoley(
    path: Path, unet_config: Any | None = None, vae_config: Any | None = None
) -> dict[str, torch.Tensor]:
    """``ldm_epoch240.ckpt`` to the state dict of :class:`DiffFoleyLDM`.

    ``unet_config``/``vae_config`` (diffusers configs) give the layouts; by default the
    published ones. Keys outside the UNet, VAE and condition encoder (the noise schedule
    buffers) are dropped.
    """
    unet_config = unet_config or SimpleNamespace(**FOLEY_UNET)
    vae_config = vae_config or SimpleNamespace(**FOLEY_VAE)
    state = read_lightning(Path(path))
    unet_pairs, vae_pairs = unet_key_pairs(unet_config), vae_key_pairs(vae_config)
    out: dict[str, torch.Tensor] = {}
    unknown = []
    for key, value in state.items():
        if key.startswith("cond_stage_model."):
            out["condition." + key.removeprefix("cond_stage_model.")] = value
        elif key.startswith("model.diffusion_model."):
            new = rename(key.removeprefix("model.diffusion_model."), unet_pairs)
            if new is None:
                unknown.append(key)
            else:
                out["unet." + new] = value
        elif key.startswith("first_stage_model.") and ".loss." not in key:
            old = key.removeprefix("first_stage_model.")
            new = rename(old, vae_pairs)
            if new is None:
                unknown.append(key)
            else:
                out["vae." + new] = _attention_weight(old, value, inverse=False)
    if unknown:
        raise WeightsError(
            f"{path}: {len(unknown)} keys do not fit the Diff-Foley layout (first: {unknown[0]}); "
            "is this ldm_epoch240.ckpt?"
        )
    return out


def to_official(
    model: DiffFoleyLDM,
) -> dict[str, torch.Tensor]:
    """:class:`DiffFoleyLDM`'s weights in the official key layout (inverse of the converter)."""
    out = {f"cond_stage_model.{k}": v for k, v in model.condition.state_dict().items()}
    out.update(_official(model.unet, unet_key_pairs(model.unet.config), "model.diffusion_model."))
    out.update(
        _official(
            model.vae,
            vae_key_pairs(model.vae.config),
            "first_stage_model.",
            lambda k, v: _attention_weight(k, v, inverse=True),
        )
    )
    return out


def _official(
    module: nn.Module,
    pairs: KeyPairs,
    prefix: str,
    transform: Callable[[str, torch.Tensor], torch.Tensor] | None = None,
) -> dict[str, torch.Tensor]:
    """``module``'s weights under their official names (``pairs`` read backwards)."""
    out = {}
    for k, v in module.state_dict().items():
        old = rename(k, pairs, inverse=True)
        if old is None:
            raise KeyError(k)
        out[prefix + old] = transform(k, v) if transform is not None else v
    return out


def convert_alignment_classifier(
    path: Path, backbone_config: Any | None = None
) -> dict[str, torch.Tensor]:
    """``double_guidance_classifier.ckpt`` to the state dict of :class:`AlignmentClassifier`.

    ``backbone_config`` (a :class:`ClassifierBackbone`'s ``config``) gives the layout; by
    default the published one. The noise schedule buffers (``betas``, ``scale_factor``, ...)
    are dropped.
    """
    backbone_config = backbone_config or SimpleNamespace(**FOLEY_CLASSIFIER)
    state = read_lightning(Path(path))
    pairs = classifier_key_pairs(backbone_config)
    out: dict[str, torch.Tensor] = {}
    unknown = []
    for key, value in state.items():
        if key.startswith("model."):
            new = rename(key.removeprefix("model."), pairs)
            if new is None:
                unknown.append(key)
            else:
                out["model." + new] = value
        elif key.startswith("cond_model."):
            out[key] = value
        elif "." in key:
            unknown.append(key)
    if unknown:
        raise WeightsError(
            f"{path}: {len(unknown)} keys do not fit the Diff-Foley classifier layout (first: "
            f"{unknown[0]}); is this double_guidance_classifier.ckpt?"
        )
    if not out:
        raise WeightsError(
            f"{path}: no classifier weights; is this double_guidance_classifier.ckpt?"
        )
    return out


def classifier_to_official(model: AlignmentClassifier) -> dict[str, torch.Tensor]:
    """:class:`AlignmentClassifier`'s weights in the official key layout (inverse of
    :func:`convert_alignment_classifier`)."""
    out = {f"cond_model.{k}": v for k, v in model.cond_model.state_dict().items()}
    out.update(_official(model.model, classifier_key_pairs(model.model.config), "model."))
    return out


# Published architectures (Stage2_LDM.yaml, Stage1_CAVP.yaml, Double_Guidance_Classifier.yaml)
# as diffusers arguments.
FOLEY_UNET: dict[str, Any] = {
    "in_channels": 4,
    "out_channels": 4,
    "block_out_channels": [320, 640, 1280, 1280],
    "layers_per_block": 2,
    "down_block_types": ["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"],
    "up_block_types": ["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3,
    "cross_attention_dim": 768,
    "attention_head_dim": 8,
}
FOLEY_VAE: dict[str, Any] = {
    "in_channels": 3,
    "out_channels": 3,
    "latent_channels": 4,
    "block_out_channels": [128, 256, 512, 512],
    "layers_per_block": 2,
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
}
CAVP: dict[str, Any] = {"stage_blocks": [3, 4, 6, 3], "base_channels": 64, "embed_dim": 512}
FOLEY_CONDITION: dict[str, Any] = {"origin_dim": 512, "embed_dim": 768, "seq_len": 40}
# Classifier_Backbone: model_channels 128, channel_mult [1, 2, 2], num_res_blocks 1, attention
# at 2x and 4x downsampling, 8 heads, context 512; its cond_model maps 512 -> 512 (40 positions).
FOLEY_CLASSIFIER: dict[str, Any] = {
    "in_channels": 4,
    "out_channels": 1,
    "block_out_channels": [128, 256, 256],
    "layers_per_block": 1,
    "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
    "cross_attention_dim": 512,
    "attention_head_dim": 8,
    "norm_num_groups": 32,
}
FOLEY_CLASSIFIER_CONDITION: dict[str, Any] = {"origin_dim": 512, "embed_dim": 512, "seq_len": 40}


# --- spectrogram inversion -------------------------------------------------------------------


def nnls(a: torch.Tensor, b: torch.Tensor, iters: int = 100) -> torch.Tensor:
    """``argmin_{x >= 0} |a x - b|`` per column of ``b``, by projected gradient descent.

    Starts from the clamped least-squares solution; the step ``1 / |a|_2^2`` guarantees descent.
    """
    x = torch.linalg.lstsq(a, b).solution.clamp(min=0)
    ata, atb = a.T @ a, a.T @ b
    step = 1.0 / torch.linalg.matrix_norm(a, ord=2) ** 2
    for _ in range(iters):
        x = (x - step * (ata @ x - atb)).clamp(min=0)
    return x


def griffin_lim(
    magnitude: torch.Tensor,
    hop: int,
    iters: int,
    momentum: float,
    generator: torch.Generator,
) -> torch.Tensor:
    """Fast Griffin-Lim (librosa's: random initial phase, momentum), ``[bins, frames]`` to audio.

    The re-analysis STFT pads with reflection, as librosa 0.8's ``griffinlim`` does (Diff-Foley
    pins librosa 0.8; librosa pads with zeros since 0.10).
    """
    n_fft = 2 * (magnitude.shape[0] - 1)
    window = torch.hann_window(n_fft, dtype=magnitude.dtype)
    phase = torch.rand(magnitude.shape, generator=generator, dtype=magnitude.dtype)
    angles = torch.polar(torch.ones_like(magnitude), 2 * math.pi * phase)

    def istft(spec: torch.Tensor) -> torch.Tensor:
        return torch.istft(spec, n_fft, hop, window=window, center=True)

    def stft(wave: torch.Tensor) -> torch.Tensor:
        return torch.stft(
            wave, n_fft, hop, window=window, center=True, pad_mode="reflect", return_complex=True
        )

    rebuilt = torch.zeros_like(angles)
    for _ in range(iters):
        previous = rebuilt
        rebuilt = stft(istft(magnitude * angles))[:, : magnitude.shape[1]]
        angles = rebuilt - (momentum / (1 + momentum)) * previous
        angles = angles / (angles.abs() + 1e-16)
    return istft(magnitude * angles)


# --- the video-to-audio model ----------------------------------------------------------------


class DiffFoley:
    """Frames to ``float32 [b, samples]`` soundtracks at ``config.foley_sample_rate``.

    ``classifier`` (needed when ``config.foley_double_guidance``) adds the double guidance.
    """

    def __init__(
        self,
        config: TwoStageConfig,
        cavp: CAVPVideoEncoder,
        ldm: DiffFoleyLDM,
        device: str | torch.device = "cpu",
        classifier: AlignmentClassifier | None = None,
    ) -> None:
        if config.foley_double_guidance and classifier is None:
            raise WeightsMissing(
                f"config {config.name!r}: foley_double_guidance needs the alignment classifier"
            )
        self.config = config
        self.cavp = cavp
        self.ldm = ldm
        self.classifier = classifier if config.foley_double_guidance else None
        freeze(self.cavp, self.ldm, *([] if self.classifier is None else [self.classifier]))
        self.sample_rate = config.foley_sample_rate
        self.filters = slaney_mel_filterbank(
            config.foley_inverse_filter_rate,
            config.foley_n_fft,
            self.n_mels,
            config.foley_fmin,
            config.foley_fmax,
        ).double()
        self.to(device)

    @property
    def n_mels(self) -> int:
        vae = self.ldm.vae.config
        # 16 latent rows in the reference: 128 mels through the 8x VAE.
        return 16 * 2 ** (len(vae.block_out_channels) - 1)

    @classmethod
    def build(
        cls,
        config: TwoStageConfig,
        *,
        checkpoint_dir: str | Path | None = None,
        device: str | torch.device = "cpu",
    ) -> DiffFoley:
        """Random parts from ``config``, or the official checkpoints (``config`` sources, or
        ``checkpoint_dir`` holding ``cavp_epoch66.ckpt``, ``ldm_epoch240.ckpt`` and, with
        double guidance, ``double_guidance_classifier.ckpt``)."""
        specs = config.components
        cavp = CAVPVideoEncoder(**(specs["cavp"].config or CAVP))
        condition = FoleyCondition(**(specs["foley_condition"].config or FOLEY_CONDITION))
        unet = UNet2DConditionModel(**(specs["foley_unet"].config or FOLEY_UNET))
        vae = AutoencoderKL(**(specs["foley_vae"].config or FOLEY_VAE))
        ldm = DiffFoleyLDM(condition, unet, vae)
        if checkpoint_dir is not None or specs["cavp"].pretrained:
            cavp.load_state_dict(convert_cavp(_resolve(specs["cavp"], checkpoint_dir, CAVP_FILE)))
        ldm_spec = specs["foley_unet"]
        if checkpoint_dir is not None or ldm_spec.pretrained:
            ldm.load_state_dict(
                convert_difffoley(
                    _resolve(ldm_spec, checkpoint_dir, LDM_FILE), unet.config, vae.config
                )
            )
        classifier = None
        if config.foley_double_guidance:
            spec = specs["foley_classifier"]
            classifier = AlignmentClassifier(**spec.config)
            if checkpoint_dir is not None or spec.pretrained:
                path = _resolve(spec, checkpoint_dir, CLASSIFIER_FILE)
                classifier.load_state_dict(
                    convert_alignment_classifier(path, classifier.model.config)
                )
        return cls(config, cavp, ldm, device, classifier)

    def to(self, device: str | torch.device, dtype: torch.dtype | None = None) -> DiffFoley:
        self.device = torch.device(device)
        self.cavp.to(self.device, dtype)
        self.ldm.to(self.device, dtype)
        if self.classifier is not None:
            self.classifier.to(self.device, dtype)
        return self

    def scheduler(self) -> DPMSolverMultistepScheduler:
        c = self.config
        # The reference's DPM-Solver ends at t = 1/N, the first training step's noise level
        # (``sigma_min``), with a 2nd-order step: lower_order_final only acts below 15 steps.
        return DPMSolverMultistepScheduler(
            num_train_timesteps=1000,
            beta_start=c.foley_beta_start,
            beta_end=c.foley_beta_end,
            beta_schedule="scaled_linear",
            solver_order=2,
            algorithm_type="dpmsolver++",
            lower_order_final=True,
            timestep_spacing="linspace",
            final_sigmas_type="sigma_min",
        )

    def cavp_frames(self, frames: np.ndarray, fps: float, duration: float) -> torch.Tensor:
        """``uint8 [b, f, h, w, 3]`` to CAVP's input ``float [b, t, 3, S, S]`` at 4 fps."""
        c = self.config
        count = max(1, round(duration * c.cavp_fps))
        index = np.floor(np.arange(count) * fps / c.cavp_fps + 0.5).astype(int)
        picked = torch.from_numpy(frames[:, np.clip(index, 0, frames.shape[1] - 1)])
        b, t = picked.shape[:2]
        x = picked.flatten(0, 1).permute(0, 3, 1, 2).float() / 255.0
        x = F.interpolate(
            x,
            size=(c.cavp_size, c.cavp_size),
            mode="bilinear",
            antialias=True,
            align_corners=False,
        ).clamp(0, 1)
        return x.reshape(b, t, 3, c.cavp_size, c.cavp_size)

    def cavp_features(self, frames: torch.Tensor) -> torch.Tensor:
        """CAVP features ``[b, t, d]`` of ``[b, t, 3, S, S]`` frames, ``foley_cavp_chunk``
        frames at a time as the reference feeds them."""
        chunk = self.config.foley_cavp_chunk
        return torch.cat(
            [self.cavp(frames[:, i : i + chunk]) for i in range(0, frames.shape[1], chunk)],
            dim=1,
        )

    def alignment_gradient(
        self, latents: torch.Tensor, t: torch.Tensor, feats: torch.Tensor
    ) -> torch.Tensor:
        """``grad_x log p(aligned | x_t, video)`` of the double-guidance classifier."""
        assert self.classifier is not None
        # Callers may run under inference_mode, whose tensors cannot enter autograd: copy them.
        with torch.inference_mode(False), torch.enable_grad():
            x = latents.detach().clone().requires_grad_(True)
            log_prob = self.classifier.log_prob(
                x,
                t.clone().to(self.device, latents.dtype),
                feats.clone(),
                encode_context=self.config.foley_classifier_encode_context,
            )
            (grad,) = torch.autograd.grad(log_prob.sum(), x)
        return grad

    @torch.no_grad()
    def sample_spectrograms(self, feats: torch.Tensor, seeds: list[int]) -> list[torch.Tensor]:
        """CAVP features ``[b, t, d]`` to one spectrogram ``[b, mels, frames]`` in [0, 1] units
        per window of ``foley_window`` features."""
        c, ldm = self.config, self.ldm
        dtype = ldm.unet.dtype
        vae_factor = 2 ** (len(ldm.vae.config.block_out_channels) - 1)
        specs = []
        for w, start in enumerate(range(0, feats.shape[1], c.foley_window)):
            window = feats[:, start : start + c.foley_window].to(self.device, dtype)
            context = ldm.condition(window)
            context = torch.cat([torch.zeros_like(context), context])
            shape = (
                ldm.unet.config.in_channels,
                self.n_mels // vae_factor,
                window.shape[1] * c.foley_latent_per_frame,
            )
            latents = seeded_noise(shape, seeds, FOLEY_SALT + 1000 * w).to(self.device, dtype)
            sched = self.scheduler()
            sched.set_timesteps(c.foley_steps, device=self.device)
            latents = latents * sched.init_noise_sigma
            for t in sched.timesteps:
                model_in = sched.scale_model_input(torch.cat([latents, latents]), t)
                eps = ldm.unet(model_in, t, encoder_hidden_states=context).sample
                uncond, cond = eps.chunk(2)
                guided = uncond + c.foley_guidance * (cond - uncond)
                if self.classifier is not None:
                    # The reference's double guidance: eps - scale * sigma_t * grad log p.
                    sigma = (1 - sched.alphas_cumprod[int(t)]).sqrt().item()
                    grad = self.alignment_gradient(latents, t, window)
                    guided = guided - c.foley_classifier_scale * sigma * grad
                latents = sched.step(guided, t, latents).prev_sample
            decoded = ldm.vae.decode(latents / c.foley_scale_factor).sample
            specs.append(decoded[:, 0].float())
        return specs

    def spectrogram_to_audio(self, spec: torch.Tensor, seed: int, window: int = 0) -> torch.Tensor:
        """One ``[mels, frames]`` spectrogram to a waveform (the reference's ``inverse_op``)."""
        c = self.config
        db = spec.double().cpu() * 100 - 100
        mel = 10 ** ((db + 20) / 20)
        magnitude = nnls(self.filters, mel)
        g = torch.Generator().manual_seed((int(seed) + PHASE_SALT + 1000 * window) % 2**63)
        return griffin_lim(
            magnitude, c.foley_hop, c.griffin_lim_iters, c.griffin_lim_momentum, g
        ).float()

    @torch.no_grad()
    def generate(
        self, frames: np.ndarray, fps: float, seeds: list[int], duration: float
    ) -> np.ndarray:
        x = self.cavp_frames(frames, fps, duration).to(
            self.device, next(self.cavp.parameters()).dtype
        )
        specs = self.sample_spectrograms(self.cavp_features(x), seeds)
        n = round(duration * self.sample_rate)
        out = np.zeros((len(seeds), n), dtype=np.float32)
        for i, seed in enumerate(seeds):
            # Each window is inverted on its own and the audio concatenated, as the reference.
            wave = torch.cat(
                [self.spectrogram_to_audio(spec[i], seed, w) for w, spec in enumerate(specs)]
            )
            wave = wave[:n].clamp(-1, 1)
            out[i, : len(wave)] = wave.numpy()
        return out


def _resolve(spec: ComponentSpec, checkpoint_dir: str | Path | None, name: str) -> Path:
    """The local checkpoint file ``name`` of a Diff-Foley component."""
    if checkpoint_dir is not None:
        path = Path(checkpoint_dir) / name
        if not path.is_file():
            raise WeightsMissing(
                f"{path}: Diff-Foley checkpoint not found; put {name} (from the Diff-Foley "
                "release, research use) in that folder"
            )
        return path
    if not spec.pretrained:
        raise WeightsMissing(f"Diff-Foley: the config gives no source for {name}")
    local = Path(spec.source) / spec.subfolder
    if local.is_file():
        return local
    cached = registered_file(name)
    if cached is not None:
        return cached
    try:
        from huggingface_hub import hf_hub_download

        return Path(hf_hub_download(spec.source, spec.subfolder))
    except Exception as exc:
        raise WeightsMissing(
            f"Diff-Foley: cannot find {spec.subfolder} in {spec.source} ({exc}); "
            f"{how_to_get(name)}; or pass the folder holding {name} as --checkpoint, or use "
            "config='tiny'"
        ) from exc
