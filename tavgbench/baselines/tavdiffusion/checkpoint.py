"""TAVDiffusion checkpoints: one folder per saved step, safetensors for weights.

Layout of ``OUT/checkpoints/step-00001000/``::

    config.json            the configuration trained with
    denoiser.safetensors   trained weights (both UNets, bridges, EAS head)
    ema.safetensors        their exponential moving average (used for sampling)
    codecs.safetensors     the frozen parts built at random (only for random-weight configs)
    optimizer.pt           optimizer state, full (unsharded) and keyed by parameter name
                           (loaded with ``weights_only=True``)
    scaler.pt              fp16 only: the gradient scaler's loss scale and counters
    rng-rank<k>.pt         each rank's noise generator state
    state.json             step, batches consumed, world size, parallelism

``state.json`` is written last, so a folder without it is an interrupted save and is ignored.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from tavgbench.baselines.tavdiffusion.config import TAVDiffusionConfig, load_config
from tavgbench.baselines.tavdiffusion.model import TAVDiffusion
from tavgbench.errors import TavgbenchError

STEP_PREFIX = "step-"


class CheckpointError(TavgbenchError):
    """A TAVDiffusion checkpoint is missing or incomplete."""


def step_dir(out_dir: Path, step: int) -> Path:
    return out_dir / "checkpoints" / f"{STEP_PREFIX}{step:08d}"


def latest_checkpoint(out_dir: Path) -> Path | None:
    """The newest complete step folder under ``out_dir/checkpoints``, if any."""
    folder = out_dir / "checkpoints"
    if not folder.is_dir():
        return None
    done = sorted(
        p
        for p in folder.iterdir()
        if p.name.startswith(STEP_PREFIX) and (p / "state.json").is_file()
    )
    return done[-1] if done else None


def resolve_checkpoint(path: str | Path) -> Path:
    """A step folder, or a training folder (its latest step)."""
    path = Path(path)
    if (path / "state.json").is_file():
        return path
    latest = latest_checkpoint(path)
    if latest is None:
        raise CheckpointError(
            f"{path}: no TAVDiffusion checkpoint here (expected state.json, or "
            "checkpoints/step-*/state.json from `tavgbench baseline train tavdiffusion`)"
        )
    return latest


def random_codecs_state(model: TAVDiffusion) -> dict[str, torch.Tensor]:
    """State of the codecs that were built at random (pretrained ones are reloaded by source)."""
    specs = model.config.components
    state: dict[str, torch.Tensor] = {}
    for name, module in model.codecs.modules().items():
        if not specs[name].pretrained:
            state.update({f"{name}.{k}": v for k, v in module.state_dict().items()})
    return state


def _clone(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    # safetensors refuses shared storage; contiguous copies on the CPU are always accepted.
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in state.items()}


def save_weights(
    folder: Path,
    model: TAVDiffusion,
    denoiser: dict[str, torch.Tensor],
    ema: dict[str, torch.Tensor] | None,
) -> None:
    """Write config.json, the denoiser's and EMA state dicts and random codecs into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    model.config.save(folder / "config.json")
    save_file(_clone(denoiser), folder / "denoiser.safetensors")
    if ema is not None:
        save_file(_clone(ema), folder / "ema.safetensors")
    codecs = random_codecs_state(model)
    if codecs:
        save_file(_clone(codecs), folder / "codecs.safetensors")


def load_codecs(model: TAVDiffusion, folder: Path) -> None:
    path = folder / "codecs.safetensors"
    if not path.is_file():
        return
    state = load_file(path)
    for name, module in model.codecs.modules().items():
        prefix = f"{name}."
        part = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
        if part:
            module.load_state_dict(part, strict=True)


def load_model(
    checkpoint: str | Path | None,
    config: str | Path | TAVDiffusionConfig | None = None,
    *,
    use_ema: bool = True,
    device: str | torch.device = "cpu",
) -> TAVDiffusion:
    """A model for sampling: from a checkpoint (EMA weights by default) or, without one, untrained.

    Args:
        checkpoint: a step folder or a training folder; None for an untrained model.
        config: preset name, config file or config; defaults to the checkpoint's own.
        use_ema: load the EMA weights when the checkpoint has them.
        device: where the model runs.
    """
    if checkpoint is None:
        if config is None:
            raise CheckpointError("TAVDiffusion needs a --checkpoint or a --config")
        cfg = config if isinstance(config, TAVDiffusionConfig) else load_config(config)
        with torch.random.fork_rng():
            torch.manual_seed(cfg.seed)
            return TAVDiffusion(cfg).to(device)
    folder = resolve_checkpoint(checkpoint)
    if config is None:
        cfg = load_config(folder / "config.json")
    else:
        cfg = config if isinstance(config, TAVDiffusionConfig) else load_config(config)
    model = TAVDiffusion(cfg)
    load_codecs(model, folder)
    weights = folder / "ema.safetensors"
    if not (use_ema and weights.is_file()):
        weights = folder / "denoiser.safetensors"
    model.denoiser.load_state_dict(load_file(weights), strict=True)
    return model.to(device)


def read_state(folder: Path) -> dict[str, int]:
    return json.loads((folder / "state.json").read_text())
