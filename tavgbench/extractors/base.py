"""The extractor contract shared by every network that turns clips into features.

An extractor maps decoded media to a feature array and declares everything that changes
those features (its protocol), so the feature cache and results.json can name them.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch


class Extractor:
    """Base class of every feature extractor.

    Attributes:
        name: registry name (``"i3d"``, ``"clip"``, ``"vggish"``, ``"imagebind"``).
        version: bumped whenever preprocessing or the forward pass changes the numbers.
        weights: name of the checkpoint in :mod:`tavgbench.weights`.
        weights_sha256: sha256 of the safetensors file actually loaded ("" when built in memory).
        device: torch device the network runs on.
    """

    name: ClassVar[str]
    version: ClassVar[str]
    weights: ClassVar[str]

    def __init__(self, device: str | torch.device = "cpu", weights_sha256: str = "") -> None:
        self.device = torch.device(device)
        self.weights_sha256 = weights_sha256

    @property
    def protocol(self) -> dict[str, Any]:
        """Every preprocessing parameter that changes the features (fps, frames, size, rate)."""
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        """What results.json and the cache key record about this extractor."""
        return {
            "name": self.name,
            "version": self.version,
            "weights": self.weights,
            "weights_sha256": self.weights_sha256,
            "protocol": self.protocol,
        }
