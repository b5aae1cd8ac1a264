"""The shared generation interface and split runner, with a procedural stand-in generator."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from tavgbench.baselines import BASELINES, list_baselines, load_baseline
from tavgbench.baselines.interface import (
    AudibleClip,
    TextToAudibleVideo,
    clip_seed,
    generate_split,
)
from tavgbench.data.demo import DemoLayout
from tavgbench.data.splits import load_manifest
from tavgbench.data.validate import validate_submission
from tavgbench.errors import TavgbenchError


class NoiseGenerator(TextToAudibleVideo):
    """12 frames of seeded noise and a seeded tone: stands in for a real model."""

    name = "noise"

    def __init__(self) -> None:
        self.calls = 0

    def generate(self, prompts: Sequence[str], seeds: Sequence[int]) -> list[AudibleClip]:
        self.calls += len(prompts)
        clips = []
        for seed in seeds:
            rng = np.random.default_rng(seed)
            frames = rng.integers(0, 256, (12, 32, 32, 3), dtype=np.uint8)
            t = np.arange(12 * 16000 // 8) / 16000
            wave = (0.3 * np.sin(2 * np.pi * rng.uniform(200, 800) * t)).astype(np.float32)
            clips.append(AudibleClip(frames, 8.0, wave, 16000))
        return clips


def test_clip_seed_is_stable_and_distinct() -> None:
    assert clip_seed(0, "a") == clip_seed(0, "a")
    assert len({clip_seed(0, "a"), clip_seed(0, "b"), clip_seed(1, "a")}) == 3
    assert 0 <= clip_seed(5, "x") < 2**63


def test_generate_split_writes_valid_submission_and_resumes(
    demo: DemoLayout, tmp_path: Path
) -> None:
    split = load_manifest(demo.manifest, name="demo")
    generator = NoiseGenerator()
    report = generate_split(generator, split, tmp_path, seed=3, batch_size=3)
    assert report.generated == split.ids and not report.skipped
    assert validate_submission(tmp_path, split).all_ok
    record = json.loads((tmp_path / "generation.json").read_text())
    assert record["generator"] == {"name": "noise"}
    assert record["split"]["sha256"] == split.sha256
    assert {k: v["seed"] for k, v in record["clips"].items()} == {
        i: clip_seed(3, i) for i in split.ids
    }
    # A broken file is regenerated; the valid ones are kept.
    (tmp_path / f"{split.ids[0]}.mp4").write_bytes(b"not a video")
    again = generate_split(generator, split, tmp_path, seed=3)
    assert again.generated == [split.ids[0]] and again.skipped == split.ids[1:]
    assert generator.calls == len(split) + 1
    assert validate_submission(tmp_path, split).all_ok


def test_generate_split_refuses_another_generators_folder(demo: DemoLayout, tmp_path: Path) -> None:
    split = load_manifest(demo.manifest, name="demo")
    (tmp_path / "generation.json").write_text(json.dumps({"generator": {"name": "other"}}))
    with pytest.raises(TavgbenchError, match="another generator"):
        generate_split(NoiseGenerator(), split, tmp_path)


def test_registry_lists_and_refuses_unknown() -> None:
    assert "tavdiffusion" in list_baselines()
    with pytest.raises(TavgbenchError, match="unknown baseline"):
        load_baseline("nope")


def test_listed_presets_are_the_real_ones(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("diffusers", reason="needs the [baselines] extra")
    from tavgbench.baselines.tavdiffusion.config import PRESETS as TAVD_PRESETS
    from tavgbench.baselines.twostage.config import PRESETS as TWO_STAGE_PRESETS
    from tavgbench.cli import main

    audio_models = {
        "animatediff-audioldm": "audioldm",
        "animatediff-difffoley": "difffoley",
        "audioldm-tempotokens": "tempotokens",
    }
    assert set(BASELINES["tavdiffusion"].presets) == set(TAVD_PRESETS)
    for name, audio_model in audio_models.items():
        assert set(BASELINES[name].presets) == set(TWO_STAGE_PRESETS[audio_model]), name
    assert main(["baseline", "list"]) == 0
    out = capsys.readouterr().out
    assert "VideoToAudio" in out and "CC BY-NC 4.0" in out
