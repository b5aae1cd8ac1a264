"""Every baseline runs in half precision (``--dtype``), on its tiny config."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("diffusers", reason="needs the [baselines] extra")

from tavgbench.baselines import BASELINES, load_baseline
from tavgbench.errors import TavgbenchError


@pytest.mark.parametrize(
    ("name", "config"),
    [(name, "tiny") for name in BASELINES] + [("animatediff-audioldm", "audioldm2-tiny")],
)
def test_bfloat16_generation(name: str, config: str) -> None:
    generator = load_baseline(name, config=config, dtype="bfloat16")
    assert generator.describe()["dtype"] == "bfloat16"
    (clip,) = generator.generate(["a dog barks in the rain"], [3])
    assert clip.frames.dtype == np.uint8 and clip.waveform.dtype == np.float32
    assert np.isfinite(clip.waveform).all() and np.abs(clip.waveform).max() > 0
    # The soundtrack lasts as long as the video (frames / fps), as in float32.
    assert len(clip.waveform) / clip.sample_rate == pytest.approx(
        len(clip.frames) / clip.fps, abs=0.05
    )


@pytest.mark.parametrize("name", list(BASELINES))
def test_unknown_dtype_is_a_user_error(name: str) -> None:
    with pytest.raises(TavgbenchError, match="dtype must be one of"):
        load_baseline(name, config="tiny", dtype="float8")
