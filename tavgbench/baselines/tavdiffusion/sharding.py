"""Sharded training of the denoiser (torch FSDP2), and full state dicts of either layout.

With ``parallelism="fsdp"`` every decoder and encoder block of both UNets, their mid blocks and
each bridge become one FSDP unit; the rest (input and output convolutions, time embeddings, the
EAS head) is the root unit. The denoiser's forward calls the UNets block by block, so units are
blocks, never a whole UNet (whose own ``forward`` is never called and would never gather).

Checkpoints hold full, unsharded tensors keyed by parameter name whatever the layout, so a run
saved under DDP resumes under FSDP and the other way round, on any number of ranks. Gathering
is collective: every rank calls these functions; with ``cpu_offload`` only rank 0 receives the
tensors.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)
from torch.distributed.tensor import DTensor, distribute_tensor

try:
    from torch.distributed.fsdp import fully_shard
except ImportError:  # torch < 2.6
    from torch.distributed._composable.fsdp import fully_shard

# Gathered to rank 0's CPU when saving; every rank passes full tensors when loading.
_SAVE = StateDictOptions(full_state_dict=True, cpu_offload=True)
_LOAD = StateDictOptions(full_state_dict=True)


def shard_units(denoiser: nn.Module) -> list[nn.Module]:
    """The blocks that become FSDP units (see the module docstring)."""
    units: list[nn.Module] = []
    for unet in (denoiser.video_unet, denoiser.audio_unet):
        units.extend(unet.down_blocks)
        units.append(unet.mid_block)
        units.extend(unet.up_blocks)
    units.extend(denoiser.bridges.values())
    return units


def shard_denoiser(denoiser: nn.Module) -> nn.Module:
    """Shard ``denoiser`` in place over the default process group's ranks."""
    for unit in shard_units(denoiser):
        fully_shard(unit)
    fully_shard(denoiser)
    return denoiser


def is_sharded(module: nn.Module) -> bool:
    return any(isinstance(p, DTensor) for p in module.parameters())


def full_tensor(tensor: torch.Tensor) -> torch.Tensor:
    """The whole tensor of a shard (collective), or ``tensor`` itself."""
    return tensor.full_tensor() if isinstance(tensor, DTensor) else tensor


def full_state(module: nn.Module) -> dict[str, torch.Tensor]:
    """The module's full state dict (on rank 0's CPU when sharded; empty on other ranks)."""
    if not is_sharded(module):
        return dict(module.state_dict())
    return get_model_state_dict(module, options=_SAVE)


def full_optimizer_state(module: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """Optimizer state keyed by parameter name, unsharded (rank 0's copy when sharded)."""
    return get_optimizer_state_dict(module, optimizer, options=_SAVE)


def load_full_state(module: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Load a full state dict into a plain or sharded module (every rank passes all of it)."""
    if is_sharded(module):
        set_model_state_dict(module, state, options=_LOAD)
    else:
        module.load_state_dict(state, strict=True)


def load_full_optimizer_state(
    module: nn.Module, optimizer: torch.optim.Optimizer, state: dict[str, Any]
) -> None:
    """Load :func:`full_optimizer_state`'s dict (every rank passes all of it)."""
    # Unsharded modules take the name-keyed state as it is (the full-state path needs a process
    # group, absent in a single-process run).
    options = _LOAD if is_sharded(module) else None
    set_optimizer_state_dict(module, optimizer, state, options=options)


def copy_into(target: torch.Tensor, full: torch.Tensor) -> None:
    """Set ``target`` (a shard or a plain tensor) from the whole tensor ``full``."""
    with torch.no_grad():
        if isinstance(target, DTensor):
            full = distribute_tensor(
                full.to(target.device, target.dtype), target.device_mesh, target.placements
            )
        target.copy_(full)
