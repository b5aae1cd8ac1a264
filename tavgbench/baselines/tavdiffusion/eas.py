"""The EAS loss: symmetric InfoNCE between the audio and video streams' features.

Similarity is the paper's token-weighted cosine (its eq. 14): each stream's tokens are projected
to a shared width, a linear layer and a softmax over the tokens give each token a weight, and

    s(a, v) = 1/2 * [ sum_i w^a_i max_j cos(a_i, v_j) + sum_j w^v_j max_i cos(a_i, v_j) ].

Audio and video of the same clip are positives; every other clip of the *global* batch is a
negative: under ``torch.distributed`` the embeddings are all-gathered with gradients, each rank
scores its own clips against the whole batch, and the mean of the ranks' losses (which DDP's
gradient averaging realises) equals the loss of one process holding the whole batch.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn


class StreamEmbedding(NamedTuple):
    """Unit-norm token embeddings ``[b, n, d]`` and their softmax weights ``[b, n]``."""

    tokens: torch.Tensor
    weights: torch.Tensor


class TokenWeightedSimilarity(nn.Module):
    """Projections and token-weight layers of eq. 14, and the pairwise similarity matrix."""

    def __init__(self, video_dim: int, audio_dim: int, dim: int) -> None:
        super().__init__()
        self.video_proj = nn.Linear(video_dim, dim)
        self.audio_proj = nn.Linear(audio_dim, dim)
        # No bias: a softmax over tokens ignores a shared shift, so a bias would get only
        # rounding noise as gradient (which Adam would turn into random steps).
        self.video_weight = nn.Linear(dim, 1, bias=False)
        self.audio_weight = nn.Linear(dim, 1, bias=False)

    @staticmethod
    def _embed(tokens: torch.Tensor, proj: nn.Linear, weight: nn.Linear) -> StreamEmbedding:
        projected = proj(tokens.float())
        weights = torch.softmax(weight(projected).squeeze(-1), dim=-1)
        return StreamEmbedding(F.normalize(projected, dim=-1), weights)

    def forward(
        self, video_tokens: torch.Tensor, audio_tokens: torch.Tensor
    ) -> tuple[StreamEmbedding, StreamEmbedding]:
        """Embed ``video_tokens [b, n, cv]`` and ``audio_tokens [b, m, ca]``."""
        return (
            self._embed(video_tokens, self.video_proj, self.video_weight),
            self._embed(audio_tokens, self.audio_proj, self.audio_weight),
        )


def pairwise_similarity(audio: StreamEmbedding, video: StreamEmbedding) -> torch.Tensor:
    """Eq. 14 for every (audio clip i, video clip j): ``[b_audio, b_video]``."""
    cos = torch.einsum("imd,jnd->ijmn", audio.tokens, video.tokens)
    audio_side = (cos.amax(dim=3) * audio.weights[:, None, :]).sum(dim=2)
    video_side = (cos.amax(dim=2) * video.weights[None, :, :]).sum(dim=2)
    return 0.5 * (audio_side + video_side)


class _GatherWithGrad(torch.autograd.Function):
    """All-gather whose backward sums every rank's gradient and returns this rank's slice.

    ``torch.distributed.nn.all_gather`` needs reduce-scatter or all-to-all in its backward,
    which gloo lacks; one all-reduce works on every backend.
    """

    @staticmethod
    def forward(ctx: Any, tensor: torch.Tensor) -> torch.Tensor:
        ctx.rank, ctx.batch = dist.get_rank(), tensor.shape[0]
        parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, tensor.contiguous())
        return torch.cat(parts)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous()
        dist.all_reduce(grad)
        return grad[ctx.rank * ctx.batch : (ctx.rank + 1) * ctx.batch]


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def gather_with_grad(tensor: torch.Tensor) -> torch.Tensor:
    """The global batch, ranks in order, keeping gradients; the tensor itself without DDP."""
    return _GatherWithGrad.apply(tensor) if _distributed() else tensor


def eas_loss(
    video: StreamEmbedding,
    audio: StreamEmbedding,
    temperature: float = 0.1,
    *,
    gather: bool = True,
) -> torch.Tensor:
    """Symmetric InfoNCE of this rank's clips against the global batch.

    Args:
        video: this rank's video embeddings (every rank must hold the same batch size).
        audio: this rank's audio embeddings.
        temperature: softmax temperature tau.
        gather: take negatives from every rank (when ``torch.distributed`` is initialised).

    Returns:
        ``(CE(audio -> videos) + CE(video -> audios)) / 2``, averaged over this rank's clips.
    """
    gather = gather and _distributed()
    all_video = StreamEmbedding(*(gather_with_grad(t) for t in video)) if gather else video
    all_audio = StreamEmbedding(*(gather_with_grad(t) for t in audio)) if gather else audio
    batch = video.tokens.shape[0]
    offset = dist.get_rank() * batch if gather else 0
    targets = torch.arange(batch, device=video.tokens.device) + offset
    audio_to_video = pairwise_similarity(audio, all_video) / temperature
    video_to_audio = pairwise_similarity(all_audio, video).T / temperature
    return 0.5 * (
        F.cross_entropy(audio_to_video, targets) + F.cross_entropy(video_to_audio, targets)
    )
