"""Loading the two-stage baselines' parts: pretrained by source, or random from a config."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from tavgbench.baselines.tavdiffusion.config import ComponentSpec
from tavgbench.errors import TavgbenchError
from tavgbench.weights import how_to_get, hub_source


class WeightsMissing(TavgbenchError):
    """A pretrained component of a two-stage baseline is not available."""


def load_pretrained(cls: Any, spec: ComponentSpec, what: str, **kwargs: Any) -> Any:
    """``cls.from_pretrained`` of ``spec`` (a local folder, the weights cache's snapshot of a
    registered repository, or the hub), with an error that says how to get the weights."""
    options = {"subfolder": spec.subfolder} if spec.subfolder else {}
    try:
        return cls.from_pretrained(hub_source(spec.source), **options, **kwargs)
    except (OSError, ValueError) as exc:
        raise WeightsMissing(missing_message(spec, what, exc)) from exc


def build_part(spec: ComponentSpec, what: str, pretrained: Any, build: Any) -> Any:
    """``pretrained.from_pretrained`` of ``spec`` where it has a source (see
    :func:`load_pretrained`), else ``build(spec.config)``: a random part of that configuration."""
    if spec.pretrained:
        return load_pretrained(pretrained, spec, what)
    return build(spec.config)


def missing_message(spec: ComponentSpec, what: str, exc: Exception) -> str:
    where = f"{spec.source}/{spec.subfolder}" if spec.subfolder else spec.source
    how = how_to_get(spec.source) or (
        f"download it with `huggingface-cli download {spec.source}` (check its licence first)"
    )
    return (
        f"{what}: cannot load {where} ({exc}); {how}; or point the config at a local copy; "
        "the tiny presets run without any weights"
    )


def freeze(*modules: nn.Module) -> None:
    """Inference only: eval mode, no gradients."""
    for module in modules:
        module.requires_grad_(False)
        module.eval()


def seeded_noise(shape: tuple[int, ...], seeds: list[int], salt: int = 0) -> torch.Tensor:
    """One standard normal draw per seed on the CPU, so a clip depends only on its own seed.

    ``salt`` separates the draws of different stages taken from the same clip seed.
    """
    draws = []
    for seed in seeds:
        g = torch.Generator().manual_seed((int(seed) + salt) % 2**63)
        draws.append(torch.randn(shape, generator=g))
    return torch.stack(draws)


def tokenize(
    tokenizer: Any, prompts: list[str], max_length: int
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Padded token ids and, where the tokenizer gives one, the attention mask."""
    out = tokenizer(
        prompts,
        padding="max_length",
        max_length=min(tokenizer.model_max_length, max_length),
        truncation=True,
        return_tensors="pt",
    )
    mask = out.get("attention_mask") if hasattr(out, "get") else None
    return out["input_ids"], mask
