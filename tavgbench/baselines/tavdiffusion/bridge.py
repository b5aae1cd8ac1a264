"""The cross-modal bridge: bidirectional cross-attention between the audio and video streams.

At each configured decoder level the two streams' features are exchanged,
``f_a' = f_a + CrossAttn(f_a, f_v)`` and ``f_v' = f_v + CrossAttn(f_v, f_a)``, both computed
from the features before the exchange. The attention output projections start at zero, so an
untrained bridge is the identity and each stream is exactly its single-modality UNet.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class CrossModalAttention(nn.Module):
    """Pre-norm multi-head cross-attention with a residual and a zero-initialised output.

    Args:
        query_dim: channels of the stream that is updated.
        context_dim: channels of the stream attended to.
        heads: attention heads; ``query_dim`` must be divisible by it.
    """

    def __init__(self, query_dim: int, context_dim: int, heads: int) -> None:
        super().__init__()
        if query_dim % heads:
            raise ValueError(f"bridge: {query_dim} channels are not divisible by {heads} heads")
        self.heads = heads
        self.norm_query = nn.LayerNorm(query_dim)
        self.norm_context = nn.LayerNorm(context_dim)
        self.to_q = nn.Linear(query_dim, query_dim, bias=False)
        self.to_k = nn.Linear(context_dim, query_dim, bias=False)
        self.to_v = nn.Linear(context_dim, query_dim, bias=False)
        self.to_out = nn.Linear(query_dim, query_dim)
        nn.init.zeros_(self.to_out.weight)
        nn.init.zeros_(self.to_out.bias)

    def forward(self, tokens: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """``tokens [b, n, query_dim]`` attend to ``context [b, m, context_dim]``."""
        b, n, c = tokens.shape
        q = self.to_q(self.norm_query(tokens))
        ctx = self.norm_context(context)
        k, v = self.to_k(ctx), self.to_v(ctx)
        q, k, v = (x.reshape(b, -1, self.heads, c // self.heads).transpose(1, 2) for x in (q, k, v))
        out = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, c)
        return tokens + self.to_out(out)


class CrossModalBridge(nn.Module):
    """One level of the bridge: video attends to audio and audio to video, simultaneously."""

    def __init__(self, video_dim: int, audio_dim: int, heads: int) -> None:
        super().__init__()
        self.video_from_audio = CrossModalAttention(video_dim, audio_dim, heads)
        self.audio_from_video = CrossModalAttention(audio_dim, video_dim, heads)

    def forward(
        self, video_tokens: torch.Tensor, audio_tokens: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return (
            self.video_from_audio(video_tokens, audio_tokens),
            self.audio_from_video(audio_tokens, video_tokens),
        )


def video_to_tokens(features: torch.Tensor, num_frames: int) -> torch.Tensor:
    """``[b * f, c, h, w]`` (the motion UNet's layout) to ``[b, f * h * w, c]``."""
    bf, c, h, w = features.shape
    return (
        features.reshape(bf // num_frames, num_frames, c, h * w)
        .permute(0, 1, 3, 2)
        .reshape(bf // num_frames, num_frames * h * w, c)
    )


def tokens_to_video(tokens: torch.Tensor, num_frames: int, height: int, width: int) -> torch.Tensor:
    """Inverse of :func:`video_to_tokens`."""
    b, _, c = tokens.shape
    return (
        tokens.reshape(b, num_frames, height * width, c)
        .permute(0, 1, 3, 2)
        .reshape(b * num_frames, c, height, width)
    )


def audio_to_tokens(features: torch.Tensor) -> torch.Tensor:
    """``[b, c, h, w]`` to ``[b, h * w, c]``."""
    return features.flatten(2).transpose(1, 2)


def tokens_to_audio(tokens: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Inverse of :func:`audio_to_tokens`."""
    return tokens.transpose(1, 2).reshape(tokens.shape[0], -1, height, width)
