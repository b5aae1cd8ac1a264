"""Feature extractors: one module per network, each a port loading the official checkpoint.

:func:`load_extractor` builds an extractor from the weights registry; it never falls back to
random weights: a missing checkpoint raises :class:`~tavgbench.errors.WeightsError` with the
command that fetches it.
"""

from __future__ import annotations

import importlib
import json
from typing import Any

import torch

from tavgbench import weights as registry
from tavgbench.extractors.base import Extractor

#: Extractor name -> (class path, default weights).
EXTRACTORS: dict[str, tuple[str, str]] = {
    "i3d": ("tavgbench.extractors.i3d:I3DExtractor", "i3d-kinetics-400"),
    "clip": ("tavgbench.extractors.clip:CLIPExtractor", "clip-vit-base-patch32"),
    "vggish": ("tavgbench.extractors.vggish:VGGishExtractor", "vggish"),
    "imagebind": ("tavgbench.extractors.imagebind:ImageBindExtractor", "imagebind-huge"),
}


def extractor_class(name: str) -> type[Extractor]:
    """The class of a named extractor."""
    from tavgbench.errors import TavgbenchError

    if name not in EXTRACTORS:
        raise TavgbenchError(f"unknown extractor {name!r}; known: {', '.join(EXTRACTORS)}")
    module, _, cls = EXTRACTORS[name][0].partition(":")
    return getattr(importlib.import_module(module), cls)


def load_extractor(
    name: str,
    device: str | torch.device = "cpu",
    *,
    weights: str | None = None,
    **options: Any,
) -> Extractor:
    """Build a named extractor with its real checkpoint from the weights cache.

    Args:
        name: ``"i3d"``, ``"clip"``, ``"vggish"`` or ``"imagebind"``.
        device: torch device.
        weights: another registry entry for the same network (e.g.
            ``"i3d-kinetics-400-pytorch"``); default: the reference checkpoint.
        **options: protocol options of the extractor (``protocol=``, ``batch_size=``, ...).

    Raises:
        WeightsError: the checkpoint is not in the cache (the message says how to fetch it).
    """
    cls = extractor_class(name)
    weights_name = weights or EXTRACTORS[name][1]
    spec = registry.get_spec(weights_name)
    if spec.is_snapshot:
        folder = registry.weights_path(weights_name)
        record = folder.parent / "sha256.json"
        sha256 = json.loads(record.read_text())["sha256"] if record.exists() else ""
        return cls.from_pretrained_dir(folder, device=device, weights_sha256=sha256, **options)
    state_dict, sha256 = registry.load_state_dict(weights_name)
    return cls.from_state_dict(state_dict, device=device, weights_sha256=sha256, **options)


__all__ = ["EXTRACTORS", "Extractor", "extractor_class", "load_extractor"]
