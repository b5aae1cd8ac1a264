"""Scoring across processes: torch.distributed set up from the launcher's environment.

``torchrun --nproc-per-node N -m tavgbench score ...`` and ``accelerate launch -m tavgbench
score ...`` start N copies of the command with ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR`` and ``MASTER_PORT`` set. Each copy calls :func:`init_from_env`, takes its share
of the clips (:func:`~tavgbench.harness.extract.extract_to_cache` cuts fixed batches and gives
rank ``r`` every ``world_size``-th one, so the features are bit-identical to a single-process
run), writes them to the shared feature cache, and waits for the others; rank 0 then computes
the metrics from the cache and writes the results. :func:`finish` ends the process group.

A plain ``tavgbench score`` (no launcher, or ``WORLD_SIZE=1``) starts no process group.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import timedelta

import torch
import torch.distributed as dist

from tavgbench.errors import TavgbenchError

#: How long a rank waits for the others at a collective. Ranks can finish their share hours
#: apart (a resumed run finds one rank's share already cached while another computes all of
#: its own), and the launchers' defaults (10 min for NCCL, 30 min for gloo) would abort that.
#: A rank that crashes does not leave the others waiting: torchrun and accelerate stop them.
DEFAULT_TIMEOUT = timedelta(hours=12)

_LAUNCHERS = "torchrun --nproc-per-node N -m tavgbench ... or accelerate launch -m tavgbench ..."

# Whether this module started the process group (and so must end it in finish()).
_state = {"owned": False}


class DistributedError(TavgbenchError):
    """The launcher's environment cannot start a process group."""


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise DistributedError(
            f"environment variable {name}={raw!r} is not an integer; unset it, or start "
            f"through {_LAUNCHERS}"
        ) from None


def device_for_rank(device: str) -> str:
    """The device this rank runs on: ``cuda`` becomes ``cuda:LOCAL_RANK`` under a launcher.

    A device that names its index (``cuda:1``) or is not CUDA is returned unchanged.
    """
    parsed = torch.device(device)
    if parsed.type != "cuda" or parsed.index is not None or "LOCAL_RANK" not in os.environ:
        return device
    return f"cuda:{_env_int('LOCAL_RANK', 0)}"


def init_from_env(device: str = "cpu", *, timeout: timedelta = DEFAULT_TIMEOUT) -> tuple[int, int]:
    """Read ``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` and join the process group when needed.

    With ``WORLD_SIZE`` above 1 this initialises torch.distributed from the environment
    (``env://``): gloo when ``device`` is a CPU, NCCL when it is CUDA, after making
    ``cuda:LOCAL_RANK`` this process's current device. A process group that the caller already
    started (e.g. inside an accelerate script) is used as it is and left to the caller.

    Args:
        device: the device the command was given (``cpu``, ``cuda``).
        timeout: how long a collective waits for the slowest rank.

    Returns:
        ``(rank, world_size)``; ``(0, 1)`` when not launched across processes.

    Raises:
        DistributedError: the environment is inconsistent (a rank outside the world, no
            rendezvous address, a CUDA device that is missing or named with an index).
    """
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    world_size = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    if world_size < 1 or not 0 <= rank < world_size:
        raise DistributedError(
            f"RANK={rank} and WORLD_SIZE={world_size} do not fit (0 <= RANK < WORLD_SIZE); "
            f"start through {_LAUNCHERS}"
        )
    if world_size == 1:
        return 0, 1
    if not dist.is_available():
        raise DistributedError(
            f"WORLD_SIZE={world_size} but this torch build has no torch.distributed; "
            "score in one process (without the launcher)"
        )
    missing = [name for name in ("MASTER_ADDR", "MASTER_PORT") if not os.environ.get(name)]
    if missing:
        raise DistributedError(
            f"WORLD_SIZE={world_size} but {' and '.join(missing)} not set; start through "
            f"{_LAUNCHERS}, which set them"
        )
    parsed = torch.device(device)
    if parsed.type == "cuda":
        if parsed.index is not None:
            raise DistributedError(
                f"--device {device} would put all {world_size} ranks on one GPU; give "
                "--device cuda and each rank takes cuda:LOCAL_RANK"
            )
        local_rank = _env_int("LOCAL_RANK", 0)
        available = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if local_rank >= available:
            raise DistributedError(
                f"rank {rank} needs cuda:{local_rank} but {available} CUDA devices are visible; "
                "start at most one process per GPU (--nproc-per-node)"
            )
        torch.cuda.set_device(local_rank)
        dist.init_process_group("nccl", timeout=timeout, device_id=torch.device("cuda", local_rank))
    else:
        dist.init_process_group("gloo", timeout=timeout)
    _state["owned"] = True
    return rank, world_size


def merge_across_ranks(items: Mapping[str, str], world_size: int) -> dict[str, str]:
    """Every rank's ``items`` merged, on every rank (a collective: all ranks must call it).

    Scoring uses it to share which clips failed to decode, so every rank refuses or goes on
    together and rank 0 knows which features will never be in the cache.
    """
    if world_size == 1:
        return dict(items)
    gathered: list[dict[str, str] | None] = [None] * world_size
    dist.all_gather_object(gathered, dict(items))
    merged: dict[str, str] = {}
    for part in gathered:
        merged |= part or {}
    return merged


def finish() -> None:
    """End the process group that :func:`init_from_env` started (no-op otherwise)."""
    if _state["owned"] and dist.is_initialized():
        dist.destroy_process_group()
    _state["owned"] = False
