"""Run by ``torchrun --nproc-per-node 2`` from test_tavdiffusion.py, on gloo.

1. The EAS loss with global-batch negatives: each rank holds half the batch; the mean of the
   ranks' losses and the summed gradients must equal one process computing on the whole batch.
2. Two training steps of the tiny TAVDiffusion under accelerate's DDP.
Rank 0 writes ``OUT/report.json``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist

from tavgbench.baselines.tavdiffusion.config import tiny_config
from tavgbench.baselines.tavdiffusion.eas import StreamEmbedding, eas_loss
from tavgbench.baselines.tavdiffusion.train import Trainer


def _embedding(seed: int) -> StreamEmbedding:
    g = torch.Generator().manual_seed(seed)
    tokens = torch.nn.functional.normalize(torch.randn(4, 5, 8, generator=g), dim=-1)
    return StreamEmbedding(tokens, torch.softmax(torch.randn(4, 5, generator=g), dim=-1))


def main() -> None:
    shards, out = Path(sys.argv[1]), Path(sys.argv[2])
    torch.set_num_threads(1)
    trainer = Trainer(
        tiny_config().with_options(checkpoint_every=2, batch_size=1), shards, out / "run"
    )
    rank = dist.get_rank()
    video, audio = _embedding(0), _embedding(1)
    full_v = video.tokens.clone().requires_grad_()
    full_a = audio.tokens.clone().requires_grad_()
    expected = eas_loss(
        StreamEmbedding(full_v, video.weights), StreamEmbedding(full_a, audio.weights), gather=False
    )
    expected.backward()
    half = slice(2 * rank, 2 * rank + 2)
    local_v = video.tokens[half].clone().requires_grad_()
    local_a = audio.tokens[half].clone().requires_grad_()
    loss = eas_loss(
        StreamEmbedding(local_v, video.weights[half]), StreamEmbedding(local_a, audio.weights[half])
    )
    loss.backward()
    mean = loss.detach().clone()
    dist.all_reduce(mean)
    mean /= dist.get_world_size()
    # DDP averages gradients over ranks: the full-batch gradient is the local one over world.
    grad_error = max(
        float((local_v.grad / 2 - full_v.grad[half]).abs().max()),
        float((local_a.grad / 2 - full_a.grad[half]).abs().max()),
    )
    logs = trainer.train(2)
    errors = torch.tensor([float((mean - expected).abs()), grad_error])
    dist.all_reduce(errors, op=dist.ReduceOp.MAX)
    if rank == 0:
        report = {
            "loss_error": float(errors[0]),
            "grad_error": float(errors[1]),
            "steps": [log.step for log in logs],
        }
        (out / "report.json").write_text(json.dumps(report))


if __name__ == "__main__":
    main()
