"""BEATs (Chen et al., ICML 2023), the audio encoder of TempoTokens, in the official key layout.

Facts from the reference (github.com/microsoft/unilm ``beats/BEATs.py``, ``backbone.py``,
``modules.py``, and TempoTokens' copy of them in ``modules/beats/``):

* Front end: 16 kHz mono scaled by ``2**15``, Kaldi fbank as torchaudio computes it with its
  defaults (128 mel bins, 25 ms frames every 10 ms, Povey window, pre-emphasis 0.97, DC removal,
  ``snip_edges``), normalised as ``(fbank - 15.41663) / (2 * 6.55582)`` (twice the std).
* A ``p x p`` convolution (``p = 16``, no bias) patches the ``[frames, 128]`` image; patches are
  read time-major (8 frequency patches per time step), layer-normalised and projected
  512 -> 768.
* Transformer (post-norm, DeepNorm residual scale ``(2 L)^(1/4)``): a grouped convolutional
  positional embedding (kernel 128, 16 groups, weight norm with one gain per kernel tap, one
  trailing output dropped, exact GELU) added to the input, then layer norm; each layer's
  self-attention adds a T5-style bucketed relative position bias (buckets and table computed
  once, table shared by all layers) scaled per query by a learned gate (``grep_linear``,
  ``grep_a``).
* TempoTokens uses ``extract_features(...)[1]`` of its copy, which it changed to also return the
  outputs of all layers concatenated along channels, ``[b, tokens, layers * 768]`` (upstream
  returns only the last layer's).

Checkpoints are ``{"cfg": dict, "model": state_dict}``; :func:`convert_beats` reads one with
``torch.load(weights_only=True)`` and drops the fine-tuned classifier head (``predictor``), which
TempoTokens does not use. A ``cfg`` key that is absent means the reference's default, as in the
reference's ``BEATsConfig``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from tavgbench.errors import WeightsError
from tavgbench.extractors.audio import kaldi_fbank

SAMPLE_RATE = 16000
FBANK_MEAN = 15.41663
FBANK_STD = 6.55582
NUM_MEL_BINS = 128
FRAME_LENGTH_MS = 25.0
FRAME_SHIFT_MS = 10.0
# The reference BEATsConfig's own defaults for the architecture fields: what a checkpoint whose
# `cfg` omits one of them gets (they differ from the released checkpoints' values).
REFERENCE_DEFAULTS: dict[str, Any] = {
    "input_patch_size": -1,
    "embed_dim": 512,
    "conv_bias": False,
    "encoder_layers": 12,
    "encoder_embed_dim": 768,
    "encoder_ffn_embed_dim": 3072,
    "encoder_attention_heads": 12,
    "activation_fn": "gelu",
    "layer_norm_first": False,
    "deep_norm": False,
    "conv_pos": 128,
    "conv_pos_groups": 16,
    "relative_position_embedding": False,
    "num_buckets": 320,
    "max_distance": 1280,
    "gru_rel_pos": False,
}


@dataclass(frozen=True)
class BEATsConfig:
    """The architecture fields of the official ``cfg`` (their names); training-only ones dropped.

    Defaults are those of the released iter3+ checkpoints.
    """

    input_patch_size: int = 16
    embed_dim: int = 512
    conv_bias: bool = False
    encoder_layers: int = 12
    encoder_embed_dim: int = 768
    encoder_ffn_embed_dim: int = 3072
    encoder_attention_heads: int = 12
    activation_fn: str = "gelu"
    layer_norm_first: bool = False
    deep_norm: bool = True
    conv_pos: int = 128
    conv_pos_groups: int = 16
    relative_position_embedding: bool = True
    num_buckets: int = 320
    max_distance: int = 800
    gru_rel_pos: bool = True

    @classmethod
    def from_official(cls, cfg: dict[str, Any]) -> BEATsConfig:
        """The architecture fields of a checkpoint's ``cfg`` (the others are training settings);
        absent ones take the reference's defaults, as the reference would build the model."""
        known = {f.name for f in fields(cls)}
        return cls(**{**REFERENCE_DEFAULTS, **{k: v for k, v in cfg.items() if k in known}})

    @property
    def output_dim(self) -> int:
        """Width of :meth:`BEATs.layer_features`: all layers' outputs side by side."""
        return self.encoder_layers * self.encoder_embed_dim

    def num_tokens(self, num_samples: int) -> int:
        """Patch tokens of a ``num_samples``-long 16 kHz waveform."""
        shift = int(SAMPLE_RATE * FRAME_SHIFT_MS / 1000)
        length = int(SAMPLE_RATE * FRAME_LENGTH_MS / 1000)
        frames = 1 + (num_samples - length) // shift if num_samples >= length else 0
        p = self.input_patch_size
        return (frames // p) * (NUM_MEL_BINS // p)


def beats_fbank(waveforms: torch.Tensor) -> torch.Tensor:
    """16 kHz waveforms ``[b, samples]`` in [-1, 1] to normalised fbanks ``[b, frames, 128]``."""
    banks = [
        kaldi_fbank(
            w.float() * 2**15,
            sample_frequency=SAMPLE_RATE,
            num_mel_bins=NUM_MEL_BINS,
            frame_length=FRAME_LENGTH_MS,
            frame_shift=FRAME_SHIFT_MS,
            # torchaudio's default, which BEATs keeps (ImageBind's "hanning" is ours).
            window_type="povey",
        )
        for w in waveforms.cpu()
    ]
    return (torch.stack(banks) - FBANK_MEAN) / (2 * FBANK_STD)


class WeightNormConv1d(nn.Module):
    """A grouped conv whose weight is ``g * v / |v|`` with the norm over all but the kernel axis.

    Parameters keep ``torch.nn.utils.weight_norm``'s names (``weight_g``, ``weight_v``).
    """

    def __init__(self, channels: int, kernel: int, groups: int) -> None:
        super().__init__()
        self.weight_g = nn.Parameter(torch.ones(1, 1, kernel))
        self.weight_v = nn.Parameter(torch.empty(channels, channels // groups, kernel))
        self.bias = nn.Parameter(torch.zeros(channels))
        nn.init.normal_(self.weight_v, std=math.sqrt(4 / (kernel * channels)))
        self.padding = kernel // 2
        self.groups = groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        v = self.weight_v
        weight = v * (self.weight_g / v.norm(dim=(0, 1), keepdim=True))
        return F.conv1d(x, weight, self.bias, padding=self.padding, groups=self.groups)


class BEATsAttention(nn.Module):
    """Self-attention with the gated relative position bias (``gru_rel_pos``)."""

    def __init__(self, config: BEATsConfig, has_bias_table: bool) -> None:
        super().__init__()
        d, h = config.encoder_embed_dim, config.encoder_attention_heads
        self.heads = h
        self.head_dim = d // h
        self.k_proj = nn.Linear(d, d)
        self.v_proj = nn.Linear(d, d)
        self.q_proj = nn.Linear(d, d)
        self.out_proj = nn.Linear(d, d)
        if has_bias_table:
            self.relative_attention_bias = nn.Embedding(config.num_buckets, h)
        self.gru_rel_pos = config.gru_rel_pos
        if config.gru_rel_pos:
            self.grep_linear = nn.Linear(self.head_dim, 8)
            self.grep_a = nn.Parameter(torch.ones(1, h, 1, 1))

    def forward(self, x: torch.Tensor, position_bias: torch.Tensor | None) -> torch.Tensor:
        b, n, d = x.shape

        def heads(t: torch.Tensor) -> torch.Tensor:
            return t.view(b, n, self.heads, self.head_dim).transpose(1, 2)

        q, k, v = heads(self.q_proj(x)), heads(self.k_proj(x)), heads(self.v_proj(x))
        # The reference divides by 32 and subtracts the row maximum before the softmax (fp16
        # headroom); neither changes the softmax.
        logits = (q * self.head_dim**-0.5) @ k.transpose(-1, -2)
        if position_bias is not None:
            bias = position_bias[None]
            if self.gru_rel_pos:
                gates = torch.sigmoid(self.grep_linear(q).view(b, self.heads, n, 2, 4).sum(-1))
                gate_a, gate_b = gates.chunk(2, dim=-1)
                bias = (gate_a * (gate_b * self.grep_a - 1.0) + 2.0) * bias
            logits = logits + bias
        out = logits.softmax(dim=-1) @ v
        return self.out_proj(out.transpose(1, 2).reshape(b, n, d))


class BEATsLayer(nn.Module):
    def __init__(self, config: BEATsConfig, has_bias_table: bool) -> None:
        super().__init__()
        d = config.encoder_embed_dim
        self.self_attn = BEATsAttention(config, has_bias_table)
        self.self_attn_layer_norm = nn.LayerNorm(d)
        self.fc1 = nn.Linear(d, config.encoder_ffn_embed_dim)
        self.fc2 = nn.Linear(config.encoder_ffn_embed_dim, d)
        self.final_layer_norm = nn.LayerNorm(d)
        self.layer_norm_first = config.layer_norm_first
        self.alpha = (2 * config.encoder_layers) ** 0.25 if config.deep_norm else 1.0

    def forward(self, x: torch.Tensor, position_bias: torch.Tensor | None) -> torch.Tensor:
        if self.layer_norm_first:
            x = x + self.self_attn(self.self_attn_layer_norm(x), position_bias)
            return x + self.fc2(F.gelu(self.fc1(self.final_layer_norm(x))))
        x = self.self_attn_layer_norm(x * self.alpha + self.self_attn(x, position_bias))
        return self.final_layer_norm(x * self.alpha + self.fc2(F.gelu(self.fc1(x))))


class BEATsEncoder(nn.Module):
    def __init__(self, config: BEATsConfig) -> None:
        super().__init__()
        self.config = config
        d = config.encoder_embed_dim
        self.pos_conv = nn.Sequential(WeightNormConv1d(d, config.conv_pos, config.conv_pos_groups))
        self.layers = nn.ModuleList(
            BEATsLayer(config, config.relative_position_embedding and i == 0)
            for i in range(config.encoder_layers)
        )
        if config.relative_position_embedding:
            # One table for all layers, registered under every layer as the reference does (so
            # the checkpoint holds a copy per layer).
            table = self.layers[0].self_attn.relative_attention_bias
            for layer in self.layers[1:]:
                layer.self_attn.relative_attention_bias = table
        self.layer_norm = nn.LayerNorm(d)

    def buckets(self, n: int, device: torch.device) -> torch.Tensor:
        """Bidirectional T5 buckets of the relative positions ``key - query``, ``[n, n]``."""
        c = self.config
        pos = torch.arange(n, device=device)
        rel = pos[None, :] - pos[:, None]
        half = c.num_buckets // 2
        exact = half // 2
        out = (rel > 0).long() * half
        rel = rel.abs()
        scaled = torch.log(rel.clamp(min=1).float() / exact) / math.log(c.max_distance / exact)
        large = (exact + (scaled * (half - exact)).long()).clamp(max=half - 1)
        return out + torch.where(rel < exact, rel, large)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Tokens ``[b, n, d]`` to every layer's output."""
        conv = self.pos_conv(x.transpose(1, 2))
        if self.config.conv_pos % 2 == 0:
            conv = conv[:, :, :-1]
        x = x + F.gelu(conv).transpose(1, 2)
        if not self.config.layer_norm_first:
            x = self.layer_norm(x)
        bias = None
        if self.config.relative_position_embedding:
            table = self.layers[0].self_attn.relative_attention_bias
            bias = table(self.buckets(x.shape[1], x.device)).permute(2, 0, 1)
        outputs = []
        for layer in self.layers:
            x = layer(x, bias)
            outputs.append(x)
        return outputs


class BEATs(nn.Module):
    """BEATs without its tokenizer or classifier head; attribute names follow the checkpoint."""

    def __init__(self, config: BEATsConfig | None = None) -> None:
        super().__init__()
        c = self.config = config or BEATsConfig()
        if c.input_patch_size < 1 or NUM_MEL_BINS % c.input_patch_size:
            raise ValueError(f"BEATs: patch size {c.input_patch_size} must divide 128 mel bins")
        # What the released checkpoints use; the reference's other activations are not ported.
        if c.activation_fn != "gelu":
            raise ValueError(f"BEATs: activation {c.activation_fn!r} is not supported (gelu)")
        if c.deep_norm and c.layer_norm_first:
            raise ValueError("BEATs: deep_norm and layer_norm_first exclude each other")
        p = c.input_patch_size
        self.patch_embedding = nn.Conv2d(1, c.embed_dim, p, p, bias=c.conv_bias)
        self.layer_norm = nn.LayerNorm(c.embed_dim)
        self.post_extract_proj = (
            nn.Linear(c.embed_dim, c.encoder_embed_dim)
            if c.embed_dim != c.encoder_embed_dim
            else None
        )
        self.encoder = BEATsEncoder(c)

    def layer_features(self, fbank: torch.Tensor) -> torch.Tensor:
        """Normalised fbanks ``[b, frames, 128]`` to ``[b, tokens, layers * d]`` (all layers)."""
        x = self.patch_embedding(fbank.unsqueeze(1))
        x = self.layer_norm(x.flatten(2).transpose(1, 2))
        if self.post_extract_proj is not None:
            x = self.post_extract_proj(x)
        return torch.cat(self.encoder(x), dim=-1)

    def forward(self, waveforms: torch.Tensor) -> torch.Tensor:
        """16 kHz waveforms ``[b, samples]`` in [-1, 1] to :meth:`layer_features`."""
        weight = self.patch_embedding.weight
        return self.layer_features(beats_fbank(waveforms).to(weight.device, weight.dtype))


def read_beats(path: Path) -> tuple[BEATsConfig, dict[str, torch.Tensor]]:
    """A BEATs checkpoint's architecture and the state dict of :class:`BEATs` (head dropped)."""
    path = Path(path)
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError as exc:
        raise WeightsError(f"{path}: BEATs checkpoint not found") from exc
    except Exception as exc:
        raise WeightsError(
            f"{path}: not a loadable PyTorch checkpoint ({exc}); re-download it"
        ) from exc
    if not (isinstance(data, dict) and isinstance(data.get("model"), dict)):
        raise WeightsError(f"{path}: no 'model' state dict; is this a BEATs checkpoint?")
    config = BEATsConfig.from_official(data.get("cfg") or {})
    state: dict[str, torch.Tensor] = {}
    for key, value in data["model"].items():
        if key.startswith("predictor.") or not torch.is_tensor(value):
            continue
        # Checkpoints saved under torch's newer weight-norm parametrisation.
        key = key.replace("parametrizations.weight.original0", "weight_g")
        state[key.replace("parametrizations.weight.original1", "weight_v")] = value
    return config, state


def convert_beats(path: Path) -> dict[str, torch.Tensor]:
    """``BEATs_iter3_plus_AS2M*.pt`` to the state dict of :class:`BEATs` (its ``cfg``)."""
    return read_beats(path)[1]


def load_beats(path: Path) -> BEATs:
    """A :class:`BEATs` built from a checkpoint's ``cfg`` with its weights."""
    config, state = read_beats(path)
    try:
        model = BEATs(config)
    except ValueError as exc:
        raise WeightsError(f"{path}: unsupported cfg ({exc})") from exc
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise WeightsError(f"{path}: weights do not fit its own cfg ({exc})") from exc
    return model.eval()
