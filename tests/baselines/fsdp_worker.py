"""Run by ``torchrun --nproc-per-node 2`` from test_tavdiffusion.py, on gloo.

Trains the tiny TAVDiffusion with ``parallelism`` = ``argv[3]`` (ddp or fsdp): three steps
straight, then two steps, a restart and the third. Rank 0 writes ``OUT/report.json`` with the
losses of both runs.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist

from tavgbench.baselines.tavdiffusion.config import tiny_config
from tavgbench.baselines.tavdiffusion.train import Trainer


def main() -> None:
    shards, out, mode = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
    torch.set_num_threads(1)
    config = tiny_config().with_options(checkpoint_every=2, batch_size=1, parallelism=mode)
    straight = Trainer(config, shards, out / "straight")
    sharded = straight.sharded
    straight_logs = straight.train(3)
    Trainer(config, shards, out / "resumed").train(2)
    resumed = Trainer(config, shards, out / "resumed").train(3)
    if dist.get_rank() == 0:
        report = {
            "sharded": sharded,
            "losses": [log.loss for log in straight_logs],
            "resumed": [log.loss for log in resumed],
        }
        (out / "report.json").write_text(json.dumps(report))


if __name__ == "__main__":
    main()
