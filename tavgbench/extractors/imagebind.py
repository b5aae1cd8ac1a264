"""ImageBind's vision, audio and text encoders, loading the official ``imagebind_huge.pth``.

Our own port of facebookresearch/ImageBind (``imagebind/models/imagebind_model.py``,
``multimodal_preprocessors.py``, ``transformer.py``, ``helpers.py``) for the three modalities
AVHScore and the ImageBind text scores need. Module and parameter names follow the official
``ImageBindModel`` so that its state dict, minus the depth, thermal and IMU entries, loads with
``load_state_dict(strict=True)``:

- ``modality_preprocessors.{vision,audio}``: patch stem (``rgbt_stem.proj``; vision repeats an
  image to 2 frames for its 2x14x14 Conv3d, audio uses a 16x16 stride-10 Conv2d followed by
  ``rgbt_stem.norm_layer``), ``cls_token``, learnable ``pos_embedding_helper.pos_embed``.
- ``modality_preprocessors.text``: ``token_embedding``, ``pos_embed`` and the causal ``mask``.
- ``modality_trunks.*``: pre-norm transformers (``blocks.i.attn`` with ``in_proj_weight``,
  ``in_proj_bias``, ``out_proj`` and, for audio, ``bias_k``/``bias_v``; ``norm_1``, ``mlp.fc1``,
  ``mlp.fc2``, ``norm_2``); vision has a LayerNorm before the blocks (``pre_transformer_layer.0``).
- ``modality_heads.*``: LayerNorm, the CLS token (vision, audio) or the end-of-text token (text),
  a bias-free Linear to the shared 1024-d space.
- ``modality_postprocessors.*``: L2 normalisation; text then multiplies by its learned logit scale
  (``exp`` of ``log_logit_scale``, capped at 100) and audio by a fixed 20.

AVHScore compares with a cosine, so the audio scaling (and the averaging of the 3 clip
embeddings after it, which breaks unit norm) does not change the score; the metric L2-normalises
the embeddings it receives again.
"""

from __future__ import annotations

import contextlib
import math
import pickle
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from tavgbench.errors import TavgbenchError, WeightsError
from tavgbench.extractors.base import Extractor
from tavgbench.extractors.video import center_crop, resize_shorter_side

MODALITIES = ("vision", "audio", "text")
# Modalities of the official checkpoint that tavgbench does not use; their keys are dropped.
_UNUSED_MODALITIES = ("depth", "thermal", "imu")
_SUBMODULES = (
    "modality_preprocessors",
    "modality_trunks",
    "modality_heads",
    "modality_postprocessors",
)

# imagebind_model.imagebind_huge(): ImageBindModel's defaults with the huge vision and text sizes.
HUGE_CONFIG: dict[str, Any] = {
    "video_frames": 2,
    "kernel_size": (2, 14, 14),
    "audio_kernel_size": 16,
    "audio_stride": 10,
    "out_embed_dim": 1024,
    "vision_embed_dim": 1280,
    "vision_num_blocks": 32,
    "vision_num_heads": 16,
    "audio_embed_dim": 768,
    "audio_num_blocks": 12,
    "audio_num_heads": 12,
    "audio_num_mel_bins": 128,
    "audio_target_len": 204,
    "text_embed_dim": 1024,
    "text_num_blocks": 24,
    "text_num_heads": 16,
}
# ImageBindModel arguments that change nothing here: the other modalities, and audio drop path
# (stochastic depth is the identity at inference).
_IGNORED_CONFIG = frozenset(
    ["audio_drop_path"]
    + [
        f"{modality}_{field}"
        for modality in _UNUSED_MODALITIES
        for field in ("embed_dim", "kernel_size", "num_blocks", "num_heads", "drop_path")
    ]
)

IMAGE_SIZE = 224
TEXT_CONTEXT_LENGTH = 77
TEXT_VOCAB_SIZE = 49408
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
AUDIO_LOGIT_SCALE = 20.0
TEXT_LOGIT_SCALE_INIT = 1 / 0.07
MAX_LOGIT_SCALE = 100.0


class _RepeatFrames(nn.Module):
    """An image ``[B, C, H, W]`` (or a 1-frame video) becomes ``ntimes`` identical frames.

    ImageBind's ``PadIm2Video(pad_type="repeat")``; videos with more than one frame pass as is.
    """

    def __init__(self, ntimes: int) -> None:
        super().__init__()
        self.ntimes = ntimes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 4:
            x = x.unsqueeze(2)
        if x.ndim != 5:
            raise ValueError(
                f"expected images [B, C, H, W] or videos [B, C, T, H, W], got {x.shape}"
            )
        if x.shape[2] == 1:
            x = x.expand(-1, -1, self.ntimes, -1, -1)
        return x


class _PatchStem(nn.Module):
    """Patch projection, flattened to tokens ``[B, N, D]``, optionally LayerNorm-ed."""

    def __init__(self, proj: nn.Module, norm_layer: nn.Module | None = None) -> None:
        super().__init__()
        self.proj = proj
        self.norm_layer = norm_layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.proj(x).flatten(2).transpose(1, 2)
        if self.norm_layer is not None:
            tokens = self.norm_layer(tokens)
        return tokens


class _PositionEmbedding(nn.Module):
    """Holds the learnable ``pos_embed`` (ImageBind's SpatioTemporalPosEmbeddingHelper)."""

    def __init__(self, num_tokens: int, embed_dim: int) -> None:
        super().__init__()
        self.pos_embed = nn.Parameter(torch.zeros(1, num_tokens, embed_dim))


class _PatchPreprocessor(nn.Module):
    """Patch tokens, a prepended CLS token and learnable position embeddings (vision, audio).

    The position embedding is not interpolated: inputs must have the training size (224x224
    images; 128x204 fbank images), which the extractor guarantees.
    """

    def __init__(self, stem: _PatchStem, num_patches: int, embed_dim: int) -> None:
        super().__init__()
        self.rgbt_stem = stem
        self.pos_embedding_helper = _PositionEmbedding(num_patches + 1, embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.rgbt_stem(x)
        pos_embed = self.pos_embedding_helper.pos_embed
        if tokens.shape[1] + 1 != pos_embed.shape[1]:
            raise ValueError(
                f"input of shape {tuple(x.shape)} gives {tokens.shape[1]} patches; the position "
                f"embedding has {pos_embed.shape[1] - 1} (resize the input to the training size)"
            )
        cls = self.cls_token.expand(tokens.shape[0], -1, -1)
        return torch.cat((cls, tokens), dim=1) + pos_embed


class _TextPreprocessor(nn.Module):
    """Token and position embeddings; the causal mask is a buffer of the official state dict."""

    def __init__(self, embed_dim: int) -> None:
        super().__init__()
        self.token_embedding = nn.Embedding(TEXT_VOCAB_SIZE, embed_dim)
        self.pos_embed = nn.Parameter(torch.zeros(1, TEXT_CONTEXT_LENGTH, embed_dim))
        mask = torch.full((TEXT_CONTEXT_LENGTH, TEXT_CONTEXT_LENGTH), float("-inf")).triu_(1)
        self.register_buffer("mask", mask)

    def forward(self, token_ids: torch.Tensor) -> torch.Tensor:
        if token_ids.ndim != 2 or token_ids.shape[1] != TEXT_CONTEXT_LENGTH:
            raise ValueError(
                f"expected token ids [B, {TEXT_CONTEXT_LENGTH}], got {tuple(token_ids.shape)}"
            )
        return self.token_embedding(token_ids) + self.pos_embed


class _SelfAttention(nn.Module):
    """Multi-head self-attention with ``torch.nn.MultiheadAttention``'s parameter layout.

    Batch-first. With ``add_bias_kv`` a learned key and value are appended to every sequence
    (one extra attended position), as ``nn.MultiheadAttention(add_bias_kv=True)`` does.
    """

    def __init__(self, embed_dim: int, num_heads: int, add_bias_kv: bool) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * embed_dim, embed_dim))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * embed_dim))
        if add_bias_kv:
            self.bias_k = nn.Parameter(torch.zeros(1, 1, embed_dim))
            self.bias_v = nn.Parameter(torch.zeros(1, 1, embed_dim))
        else:
            self.bias_k = self.bias_v = None
        self.out_proj = nn.Linear(embed_dim, embed_dim)
        nn.init.xavier_uniform_(self.in_proj_weight)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        batch, length, dim = x.shape
        q, k, v = F.linear(x, self.in_proj_weight, self.in_proj_bias).chunk(3, dim=-1)
        if self.bias_k is not None and self.bias_v is not None:
            k = torch.cat((k, self.bias_k.to(k.dtype).expand(batch, 1, dim)), dim=1)
            v = torch.cat((v, self.bias_v.to(v.dtype).expand(batch, 1, dim)), dim=1)
            if attn_mask is not None:
                attn_mask = F.pad(attn_mask, (0, 1))
        if attn_mask is not None:
            attn_mask = attn_mask.to(q.dtype)

        def heads(t: torch.Tensor) -> torch.Tensor:
            return t.unflatten(-1, (self.num_heads, -1)).transpose(1, 2)

        out = F.scaled_dot_product_attention(heads(q), heads(k), heads(v), attn_mask=attn_mask)
        return self.out_proj(out.transpose(1, 2).reshape(batch, length, dim))


class _Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class _Block(nn.Module):
    """Pre-norm transformer block (ImageBind's BlockWithMasking without layer scale)."""

    def __init__(self, dim: int, num_heads: int, add_bias_kv: bool) -> None:
        super().__init__()
        self.attn = _SelfAttention(dim, num_heads, add_bias_kv)
        self.norm_1 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = _Mlp(dim, 4 * dim)
        self.norm_2 = nn.LayerNorm(dim, eps=1e-6)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None) -> torch.Tensor:
        x = x + self.attn(self.norm_1(x), attn_mask)
        return x + self.mlp(self.norm_2(x))


class _Transformer(nn.Module):
    """ImageBind's SimpleTransformer, batch-first (the official one transposes to [L, B, D])."""

    def __init__(
        self,
        embed_dim: int,
        num_blocks: int,
        num_heads: int,
        *,
        pre_transformer_ln: bool,
        add_bias_kv: bool,
    ) -> None:
        super().__init__()
        self.pre_transformer_layer = nn.Sequential(
            nn.LayerNorm(embed_dim, eps=1e-6) if pre_transformer_ln else nn.Identity()
        )
        self.blocks = nn.ModuleList(
            _Block(embed_dim, num_heads, add_bias_kv) for _ in range(num_blocks)
        )

    def forward(self, tokens: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        tokens = self.pre_transformer_layer(tokens)
        for block in self.blocks:
            tokens = block(tokens, attn_mask)
        return tokens


class _SelectToken(nn.Module):
    """Keeps one token of ``[B, L, D]`` (the CLS token at index 0)."""

    def __init__(self, index: int) -> None:
        super().__init__()
        self.index = index

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, self.index]


class _SelectEndOfTextAndProject(nn.Module):
    """Text pooling of CLIP: the token at the end-of-text position, then ``proj``."""

    def __init__(self, proj: nn.Module) -> None:
        super().__init__()
        self.proj = proj

    def forward(self, x: torch.Tensor, eot_index: torch.Tensor) -> torch.Tensor:
        return self.proj(x[torch.arange(x.shape[0], device=x.device), eot_index])


class _Normalize(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(x, dim=-1, p=2)


class _LogitScale(nn.Module):
    """Multiplies by ``min(exp(log_logit_scale), 100)``; a buffer when not learnable (audio)."""

    def __init__(self, init: float, learnable: bool) -> None:
        super().__init__()
        log_scale = torch.tensor(math.log(init), dtype=torch.float32)
        if learnable:
            self.log_logit_scale = nn.Parameter(log_scale)
        else:
            self.register_buffer("log_logit_scale", log_scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.clip(self.log_logit_scale.exp(), max=MAX_LOGIT_SCALE) * x


class ImageBindEncoders(nn.Module):
    """ImageBind's vision, audio and text encoders under the official module names.

    Keyword arguments are those of ``ImageBindModel`` for these modalities; the defaults are the
    huge model (:data:`HUGE_CONFIG`). Build from a full ``ImageBindModel`` configuration, with
    the other modalities' arguments, with :meth:`from_config`.
    """

    def __init__(
        self,
        *,
        video_frames: int = 2,
        kernel_size: Sequence[int] = (2, 14, 14),
        audio_kernel_size: int = 16,
        audio_stride: int = 10,
        out_embed_dim: int = 1024,
        vision_embed_dim: int = 1280,
        vision_num_blocks: int = 32,
        vision_num_heads: int = 16,
        audio_embed_dim: int = 768,
        audio_num_blocks: int = 12,
        audio_num_heads: int = 12,
        audio_num_mel_bins: int = 128,
        audio_target_len: int = 204,
        text_embed_dim: int = 1024,
        text_num_blocks: int = 24,
        text_num_heads: int = 16,
    ) -> None:
        super().__init__()
        kt, kh, kw = kernel_size
        vision_patches = (video_frames // kt) * (IMAGE_SIZE // kh) * (IMAGE_SIZE // kw)
        vision_stem = _PatchStem(
            nn.Sequential(
                _RepeatFrames(2),
                nn.Conv3d(
                    3, vision_embed_dim, kernel_size=kernel_size, stride=kernel_size, bias=False
                ),
            )
        )
        audio_stem = _PatchStem(
            nn.Conv2d(
                1, audio_embed_dim, kernel_size=audio_kernel_size, stride=audio_stride, bias=False
            ),
            # nn.LayerNorm's default eps: the official stem norm does not pass 1e-6.
            norm_layer=nn.LayerNorm(audio_embed_dim),
        )
        audio_patches = ((audio_num_mel_bins - audio_kernel_size) // audio_stride + 1) * (
            (audio_target_len - audio_kernel_size) // audio_stride + 1
        )
        self.modality_preprocessors = nn.ModuleDict(
            {
                "vision": _PatchPreprocessor(vision_stem, vision_patches, vision_embed_dim),
                "audio": _PatchPreprocessor(audio_stem, audio_patches, audio_embed_dim),
                "text": _TextPreprocessor(text_embed_dim),
            }
        )
        self.modality_trunks = nn.ModuleDict(
            {
                "vision": _Transformer(
                    vision_embed_dim,
                    vision_num_blocks,
                    vision_num_heads,
                    pre_transformer_ln=True,
                    add_bias_kv=False,
                ),
                "audio": _Transformer(
                    audio_embed_dim,
                    audio_num_blocks,
                    audio_num_heads,
                    pre_transformer_ln=False,
                    add_bias_kv=True,
                ),
                "text": _Transformer(
                    text_embed_dim,
                    text_num_blocks,
                    text_num_heads,
                    pre_transformer_ln=False,
                    add_bias_kv=False,
                ),
            }
        )

        def cls_head(dim: int) -> nn.Sequential:
            return nn.Sequential(
                nn.LayerNorm(dim, eps=1e-6),
                _SelectToken(0),
                nn.Linear(dim, out_embed_dim, bias=False),
            )

        self.modality_heads = nn.ModuleDict(
            {
                "vision": cls_head(vision_embed_dim),
                "audio": cls_head(audio_embed_dim),
                "text": _SelectEndOfTextAndProject(
                    nn.Sequential(
                        nn.LayerNorm(text_embed_dim, eps=1e-6),
                        nn.Linear(text_embed_dim, out_embed_dim, bias=False),
                    )
                ),
            }
        )
        self.modality_postprocessors = nn.ModuleDict(
            {
                "vision": _Normalize(),
                "audio": nn.Sequential(
                    _Normalize(), _LogitScale(AUDIO_LOGIT_SCALE, learnable=False)
                ),
                "text": nn.Sequential(
                    _Normalize(), _LogitScale(TEXT_LOGIT_SCALE_INIT, learnable=True)
                ),
            }
        )

    @classmethod
    def from_config(cls, config: Mapping[str, Any] | None = None) -> ImageBindEncoders:
        """Build from ``ImageBindModel`` keyword arguments; ``None`` gives the huge model.

        Arguments of the depth, thermal and IMU modalities and ``audio_drop_path`` are accepted
        and ignored; unknown names raise ``ValueError``.
        """
        kwargs = {k: v for k, v in (config or {}).items() if k not in _IGNORED_CONFIG}
        unknown = sorted(set(kwargs) - set(HUGE_CONFIG))
        if unknown:
            raise ValueError(f"unknown ImageBind configuration keys: {', '.join(unknown)}")
        return cls(**kwargs)

    def encode(self, modality: str, inputs: torch.Tensor) -> torch.Tensor:
        """Preprocessor, trunk, head and postprocessor of one modality, no clip averaging.

        Args:
            modality: ``"vision"`` (images ``[B, 3, 224, 224]``, normalised), ``"audio"``
                (fbank images ``[B, 1, 128, 204]``) or ``"text"`` (token ids ``[B, 77]``).
            inputs: the batch.

        Returns:
            ``[B, out_embed_dim]`` embeddings after the postprocessor.
        """
        if modality not in MODALITIES:
            raise ValueError(f"unknown modality {modality!r}; use one of {MODALITIES}")
        tokens = self.modality_preprocessors[modality](inputs)
        if modality == "text":
            tokens = self.modality_trunks["text"](
                tokens, attn_mask=self.modality_preprocessors["text"].mask
            )
            # The end-of-text token has the largest id of CLIP's vocabulary.
            embedding = self.modality_heads["text"](tokens, inputs.argmax(dim=-1))
        else:
            embedding = self.modality_heads[modality](self.modality_trunks[modality](tokens))
        return self.modality_postprocessors[modality](embedding)

    def forward(self, inputs: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``ImageBindModel.forward``: inputs with 5 or more dimensions ``[B, S, ...]`` are S
        clips per item, embedded separately and averaged after the postprocessor."""
        outputs = {}
        for modality, value in inputs.items():
            if value.ndim >= 5:
                batch, clips = value.shape[:2]
                flat = self.encode(modality, value.reshape(batch * clips, *value.shape[2:]))
                outputs[modality] = flat.reshape(batch, clips, -1).mean(dim=1)
            else:
                outputs[modality] = self.encode(modality, value)
        return outputs


def convert_imagebind(path: Path) -> dict[str, torch.Tensor]:
    """Read the official ``imagebind_huge.pth`` and keep the vision, audio and text entries.

    The file is a plain ``torch.save`` of ``ImageBindModel.state_dict()``; it is read with
    ``weights_only=True``. Depth, thermal and IMU entries are dropped; what remains loads into
    :class:`ImageBindEncoders` with ``strict=True`` under unchanged names.

    Raises:
        WeightsError: the file cannot be read or is not an ImageBind state dict.
    """
    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError) as error:
        raise WeightsError(
            f"{path}: cannot read as a torch checkpoint ({error}); download imagebind_huge.pth "
            "again"
        ) from error
    if not isinstance(state, Mapping) or not all(
        isinstance(v, torch.Tensor) for v in state.values()
    ):
        raise WeightsError(f"{path}: not a state dict of tensors; is it imagebind_huge.pth?")
    kept: dict[str, torch.Tensor] = {}
    unexpected = []
    for key, tensor in state.items():
        parts = key.split(".")
        if len(parts) < 3 or parts[0] not in _SUBMODULES:
            unexpected.append(key)
        elif parts[1] in MODALITIES:
            kept[key] = tensor.contiguous()
        elif parts[1] not in _UNUSED_MODALITIES:
            unexpected.append(key)
    if unexpected or not kept:
        shown = ", ".join(unexpected[:5]) or "no vision/audio/text keys"
        raise WeightsError(f"{path}: not an ImageBind state dict (unexpected keys: {shown})")
    return kept


def _as_dtype(dtype: str | torch.dtype) -> torch.dtype:
    names = {"float32": torch.float32, "bfloat16": torch.bfloat16}
    if isinstance(dtype, torch.dtype) and dtype in names.values():
        return dtype
    if isinstance(dtype, str) and dtype in names:
        return names[dtype]
    raise TavgbenchError(f"ImageBind dtype {dtype!r} is not supported; use float32 or bfloat16")


def _batches(n: int, size: int) -> Iterator[slice]:
    for start in range(0, n, size):
        yield slice(start, min(start + size, n))


class ImageBindExtractor(Extractor):
    """ImageBind (huge) per-frame vision, audio and text embeddings for AVHScore.

    Vision: every frame is resized (shorter side 224, Pillow's bicubic, as the reference decodes
    frames into PIL images before torchvision's ``Resize``), centre-cropped to 224, divided by
    255, normalised with CLIP's mean and std, repeated to 2 frames and embedded; embeddings are
    L2-normalised. Audio: ImageBind's ``load_and_transform_audio_data`` front end (3 clips of 2 s,
    128-bin Kaldi fbank, see :func:`tavgbench.extractors.audio.imagebind_audio_clips`), clip
    embeddings normalised, scaled by 20 and averaged. Text: token ids of ImageBind's (CLIP's) BPE
    tokenizer, normalised and scaled by the learned logit scale. Metrics take cosines, so they
    L2-normalise whatever they receive.

    Args:
        model: the encoders, weights loaded.
        device: where the network runs.
        weights_sha256: sha256 of the loaded checkpoint file.
        batch_size: images, audio clips or captions per forward pass.
        dtype: ``"float32"`` or ``"bfloat16"`` (CUDA autocast only; changes the numbers, so it is
            part of the protocol).
    """

    name = "imagebind"
    version = "1"
    weights = "imagebind-huge"

    def __init__(
        self,
        model: ImageBindEncoders,
        *,
        device: str | torch.device = "cpu",
        weights_sha256: str = "",
        batch_size: int = 32,
        dtype: str | torch.dtype = "float32",
    ) -> None:
        super().__init__(device=device, weights_sha256=weights_sha256)
        self.dtype = _as_dtype(dtype)
        if self.dtype == torch.bfloat16 and self.device.type != "cuda":
            raise TavgbenchError(
                f"ImageBind in bfloat16 needs a CUDA device, got {self.device}; use float32"
            )
        if batch_size < 1:
            raise TavgbenchError(f"ImageBind batch_size must be at least 1, got {batch_size}")
        self.batch_size = batch_size
        self.model = model.to(self.device).eval()
        self._mean = torch.tensor(CLIP_MEAN, device=self.device).view(1, 3, 1, 1)
        self._std = torch.tensor(CLIP_STD, device=self.device).view(1, 3, 1, 1)

    @classmethod
    def from_state_dict(
        cls,
        state_dict: Mapping[str, torch.Tensor],
        *,
        device: str | torch.device = "cpu",
        weights_sha256: str = "",
        config: Mapping[str, Any] | None = None,
        batch_size: int = 32,
        dtype: str | torch.dtype = "float32",
    ) -> ImageBindExtractor:
        """Build from the state dict :func:`convert_imagebind` returns.

        Args:
            state_dict: vision, audio and text entries under the official names.
            config: ``ImageBindModel`` arguments; ``None`` is the huge model.

        Raises:
            WeightsError: keys or shapes do not match the configuration.
        """
        with torch.device("meta"):
            model = ImageBindEncoders.from_config(config)
        try:
            model.load_state_dict(state_dict, strict=True, assign=True)
        except RuntimeError as error:
            raise WeightsError(
                f"ImageBind weights do not match the model ({error}); convert imagebind_huge.pth "
                "with convert_imagebind"
            ) from error
        model.float()
        return cls(
            model,
            device=device,
            weights_sha256=weights_sha256,
            batch_size=batch_size,
            dtype=dtype,
        )

    @property
    def protocol(self) -> dict[str, Any]:
        """Everything besides the weights that changes ImageBind features."""
        return {
            "frames": "every decoded frame, one embedding each",
            "resize": "shorter side 224, Pillow bicubic",
            "crop": "center 224",
            "mean": list(CLIP_MEAN),
            "std": list(CLIP_STD),
            "image_frames": 2,
            "audio_sample_rate": 16000,
            "audio_clips": 3,
            "audio_clip_seconds": 2.0,
            "audio_fbank": "kaldi, 128 mel bins, hanning, 25 ms / 10 ms, 204 frames",
            "audio_norm": [-4.268, 9.138],
            "dtype": str(self.dtype).removeprefix("torch."),
        }

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.dtype == torch.bfloat16:
            return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _run(self, modality: str, inputs: torch.Tensor) -> torch.Tensor:
        with self._autocast():
            return self.model({modality: inputs.to(self.device)})[modality].float()

    def preprocess_frames(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 frames ``[n, h, w, 3]`` to normalised ``[n, 3, 224, 224]`` float32 images."""
        if frames.dtype != torch.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
            raise ValueError(
                f"expected uint8 RGB frames [n, h, w, 3], got {frames.dtype} {tuple(frames.shape)}"
            )
        # Pillow's integer resize runs in float64, which e.g. MPS lacks.
        work = self.device if self.device.type in ("cpu", "cuda") else torch.device("cpu")
        images = frames.to(work).permute(0, 3, 1, 2)
        images = center_crop(resize_shorter_side(images, IMAGE_SIZE, "bicubic_pil"), IMAGE_SIZE)
        images = images.to(self.device, torch.float32).div(255)
        return (images - self._mean) / self._std

    @torch.inference_mode()
    def embed_frames(
        self,
        frames: np.ndarray | torch.Tensor | Sequence[np.ndarray | torch.Tensor],
        preprocess: bool = True,
    ) -> list[np.ndarray]:
        """Per-frame L2-normalised vision embeddings.

        Args:
            frames: ``[n_clips, t, h, w, 3]`` uint8, or a list of per-clip ``[t_i, h, w, 3]``
                uint8 arrays (clips may differ in length and size). With ``preprocess=False``,
                already normalised float images ``[t_i, 3, 224, 224]`` per clip.
            preprocess: apply the resize, crop and normalisation.

        Returns:
            One float32 array ``[t_i, out_embed_dim]`` per clip.
        """
        clips = [
            torch.as_tensor(np.asarray(c) if not isinstance(c, torch.Tensor) else c) for c in frames
        ]
        outputs: list[np.ndarray] = []
        for clip in clips:
            pieces = []
            for part in _batches(clip.shape[0], self.batch_size):
                chunk = clip[part]
                images = self.preprocess_frames(chunk) if preprocess else chunk.float()
                pieces.append(self._run("vision", images).cpu())
            dim = self.model.modality_heads["vision"][2].out_features
            stacked = torch.cat(pieces) if pieces else torch.empty(0, dim)
            outputs.append(stacked.numpy().astype(np.float32, copy=False))
        return outputs

    @torch.inference_mode()
    def embed_audio(
        self, waveforms: Sequence[np.ndarray | torch.Tensor], sample_rate: int
    ) -> np.ndarray:
        """Audio embeddings, one per waveform: mean of the 3 clip embeddings (each unit norm x 20).

        Args:
            waveforms: mono 1-D waveforms (float, [-1, 1]).
            sample_rate: their sample rate; resampled to 16 kHz.

        Returns:
            float32 ``[n, out_embed_dim]``.
        """
        from tavgbench.extractors.audio import imagebind_audio_clips

        per_batch = max(1, self.batch_size // 3)
        outputs = []
        for part in _batches(len(waveforms), per_batch):
            clips = torch.stack(
                [
                    imagebind_audio_clips(torch.as_tensor(w, dtype=torch.float32), sample_rate)
                    for w in waveforms[part]
                ]
            )
            outputs.append(self._run("audio", clips).cpu())
        dim = self.model.modality_heads["audio"][2].out_features
        result = torch.cat(outputs) if outputs else torch.empty(0, dim)
        return result.numpy().astype(np.float32, copy=False)

    @torch.inference_mode()
    def embed_text(self, token_ids: np.ndarray | torch.Tensor) -> np.ndarray:
        """Text embeddings (unit norm x learned logit scale) of ``[n, 77]`` CLIP BPE token ids.

        The ids must start with ``<|startoftext|>`` (49406) and contain ``<|endoftext|>`` (49407),
        the largest id, whose position is pooled; ImageBind's tokenizer pads with 0.
        """
        ids = torch.as_tensor(token_ids, dtype=torch.long)
        outputs = [
            self._run("text", ids[part]).cpu() for part in _batches(ids.shape[0], self.batch_size)
        ]
        dim = self.model.modality_heads["text"].proj[1].out_features
        result = torch.cat(outputs) if outputs else torch.empty(0, dim)
        return result.numpy().astype(np.float32, copy=False)
