"""AudioLDM 2 as the text-to-audio stage: the ``audioldm2-tiny`` presets, per-clip seeding,
agreement with diffusers' own pipeline, loading from the official folder layout, user errors."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("diffusers", reason="needs the [baselines] extra")

from diffusers import AudioLDM2Pipeline

from tavgbench.baselines import load_baseline
from tavgbench.baselines.interface import generate_split
from tavgbench.baselines.tavdiffusion.config import ComponentSpec
from tavgbench.baselines.twostage.audioldm import AUDIO_SALT
from tavgbench.baselines.twostage.audioldm2 import AudioLDM2
from tavgbench.baselines.twostage.components import seeded_noise
from tavgbench.baselines.twostage.config import (
    AUDIOLDM2,
    AUDIOLDM2_COMPONENTS,
    AUDIOLDM_COMPONENTS,
    ConfigError,
    TwoStageConfig,
    audioldm_audioldm2,
    audioldm_audioldm2_tiny,
    difffoley_tiny,
    load_config,
    tempotokens_audioldm2,
)
from tavgbench.data.demo import write_demo
from tavgbench.data.splits import load_manifest
from tavgbench.data.validate import validate_submission
from tavgbench.errors import TavgbenchError

NAMES = ("animatediff-audioldm", "audioldm-tempotokens")
PRESET = "audioldm2-tiny"


@pytest.fixture(scope="module")
def two_prompts(tmp_path_factory: pytest.TempPathFactory):
    layout = write_demo(tmp_path_factory.mktemp("demo2"), n_clips=2)
    return load_manifest(layout.manifest, name="demo")


def _perturbed(model: AudioLDM2, seed: int) -> AudioLDM2:
    # Random-init norm and bias terms are ones/zeros; perturb every tensor so a part loaded from
    # the wrong place, or not at all, cannot go unnoticed.
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.pipe.components.values():
            if isinstance(module, torch.nn.Module):
                for p in module.parameters():
                    p.add_(0.02 * torch.randn(p.shape, generator=g))
    return model


@pytest.mark.parametrize("name", NAMES)
def test_tiny_writes_a_valid_submission(name: str, two_prompts, tmp_path: Path) -> None:
    generator = load_baseline(name, config=PRESET)
    assert type(generator.audio).__name__ == "AudioLDM2"
    report = generate_split(generator, two_prompts, tmp_path, seed=0, batch_size=2)
    assert report.generated == two_prompts.ids
    validation = validate_submission(tmp_path, two_prompts)
    assert validation.all_ok, [c.problems for c in validation.clips]
    record = json.loads((tmp_path / "generation.json").read_text())
    assert record["generator"]["name"] == name and record["generator"]["config"] == PRESET
    assert record["generator"]["components"]["audioldm2_unet"] == "random"


@pytest.mark.parametrize("name", NAMES)
def test_tiny_clip_depends_only_on_its_prompt_and_seed(name: str) -> None:
    generator = load_baseline(name, config=PRESET)
    prompts, seeds = ["a dog barks", "rain falls on a tin roof"], [11, 12]
    pair = generator.generate(prompts, seeds)
    for i, clip in enumerate(pair):
        alone = generator.generate([prompts[i]], [seeds[i]])[0]
        assert clip.duration == pytest.approx(generator.config.duration)
        assert len(clip.waveform) == round(generator.config.duration * clip.sample_rate)
        # Reference: the clip made in the batch of two, where the shorter prompt's T5 states are
        # padded and masked. Batched and single calls differ by float rounding only: relative
        # L2 error of the waveform < 1e-4 (measured ~1e-6). The video of audioldm-tempotokens is
        # made from that waveform, so its frames may move by a byte level: at most 2 anywhere.
        error = np.linalg.norm(alone.waveform - clip.waveform) / np.linalg.norm(clip.waveform)
        assert error < 1e-4
        diff = np.abs(alone.frames.astype(int) - clip.frames.astype(int))
        assert diff.max() <= 2
    other = generator.generate([prompts[1]], [13])[0]
    assert np.linalg.norm(other.waveform - pair[1].waveform) > 0.1 * np.linalg.norm(
        pair[1].waveform
    )


def test_matches_diffusers_pipeline_on_a_single_prompt() -> None:
    """Reference: diffusers' own AudioLDM2Pipeline (its encode_prompt, its cached GPT-2 loop, its
    denoising) on the same parts, noise and settings; tolerance 1e-5 absolute on the waveform
    (float32 rounding; measured 0)."""
    transformers = pytest.importorskip("transformers")
    model = _perturbed(AudioLDM2(load_config(PRESET, "audioldm")), 0)
    parts = dict(model.pipe.components)
    # diffusers' loop needs GenerationMixin, which transformers 5 gives GPT2LMHeadModel only
    # (diffusers issue #12630); the head is unused, the transformer is the same weights.
    lm = transformers.GPT2LMHeadModel(parts["language_model"].config).eval()
    lm.transformer.load_state_dict(parts["language_model"].state_dict())
    reference = AudioLDM2Pipeline(**{**parts, "language_model": lm})
    reference.set_progress_bar_config(disable=True)
    cfg = model.config
    prompt, seed = "rain falls on a tin roof", 12
    latents = seeded_noise(model.latent_shape(cfg.duration), [seed], AUDIO_SALT)
    try:
        expected = reference(
            prompt,
            negative_prompt=cfg.audioldm2_negative_prompt,
            latents=latents,
            audio_length_in_s=cfg.duration,
            num_inference_steps=cfg.audio_steps,
            guidance_scale=cfg.audio_guidance,
            max_new_tokens=cfg.audioldm2_new_tokens,
            output_type="pt",
        ).audios
    except AttributeError as exc:
        pytest.skip(f"diffusers' GPT-2 loop does not run with this transformers: {exc}")
    ours = model.generate([prompt], [seed], cfg.duration)
    assert cfg.audio_guidance > 1 and ours.shape == (1, round(cfg.duration * model.sample_rate))
    np.testing.assert_allclose(ours, expected.clamp(-1, 1).numpy(), rtol=0, atol=1e-5)


def _local(config: TwoStageConfig, root: Path) -> TwoStageConfig:
    """``config`` with AudioLDM 2's parts read from ``root``, in the hub preset's subfolders."""
    hub = audioldm_audioldm2().components
    parts = {k: ComponentSpec(str(root), hub[k].subfolder) for k in AUDIOLDM2_COMPONENTS}
    return config.with_options(components={**config.components, **parts})


def test_loads_the_official_folder_layout(tmp_path: Path) -> None:
    model = _perturbed(AudioLDM2(load_config(PRESET, "audioldm")), 1)
    # diffusers' own save: model_index.json and one subfolder per part, as on the hub.
    AudioLDM2Pipeline(**model.pipe.components).save_pretrained(tmp_path)
    assert (tmp_path / "model_index.json").is_file()
    hub = audioldm_audioldm2().components
    for name in AUDIOLDM2_COMPONENTS:
        assert (tmp_path / hub[name].subfolder).is_dir(), name
    loaded = AudioLDM2(_local(model.config, tmp_path))
    assert type(loaded.pipe.tokenizer).__name__ == "RobertaTokenizer"
    assert type(loaded.pipe.tokenizer_2).__name__ == "T5Tokenizer"
    prompts, seeds = ["a dog barks", "rain falls on a tin roof"], [3, 4]
    # Same weights, same ops: exact.
    np.testing.assert_array_equal(
        loaded.generate(prompts, seeds, 2.0), model.generate(prompts, seeds, 2.0)
    )


def test_presets_and_components() -> None:
    for config in (audioldm_audioldm2(), tempotokens_audioldm2()):
        assert config.name == "audioldm2" and config.text_to_audio == "audioldm2"
        assert (config.audio_steps, config.audio_guidance) == (200, 3.5)
        assert config.audioldm2_negative_prompt == "" and config.audioldm2_new_tokens == 8
        # AudioLDM 1's parts are neither needed nor present.
        assert not set(AUDIOLDM_COMPONENTS) & set(config.components)
        assert not set(AUDIOLDM_COMPONENTS) & set(config.needed_components)
        for name in AUDIOLDM2_COMPONENTS:
            assert config.components[name].source == AUDIOLDM2
    # The video settings stay those of each audio model's default preset.
    for audio_model in ("audioldm", "tempotokens"):
        base, ours = load_config("default", audio_model), load_config("audioldm2", audio_model)
        assert (ours.height, ours.num_frames, ours.fps) == (base.height, base.num_frames, base.fps)
    tiny = audioldm_audioldm2_tiny()
    assert TwoStageConfig.from_dict(json.loads(json.dumps(tiny.to_dict()))) == tiny
    assert not any(c.pretrained for c in tiny.components.values())


def test_missing_weights_and_bad_configs_are_user_errors(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    for name, audio_model in zip(NAMES, ("audioldm", "tempotokens"), strict=True):
        config = _local(load_config(PRESET, audio_model), missing)
        with pytest.raises(TavgbenchError, match=r"cannot load .*nowhere/tokenizer.*download"):
            load_baseline(name, config=config)
    # Each part says which one it is.
    config = audioldm_audioldm2_tiny()
    unet = ComponentSpec(str(missing), "unet")
    with pytest.raises(TavgbenchError, match=r"AudioLDM 2 UNet: cannot load .*nowhere/unet"):
        AudioLDM2(config.with_options(components={**config.components, "audioldm2_unet": unet}))
    with pytest.raises(ConfigError, match="text_to_audio must be one of"):
        config.with_options(text_to_audio="audioldm3")
    with pytest.raises(ConfigError, match="components missing: audioldm2_unet"):
        parts = {k: v for k, v in config.components.items() if k != "audioldm2_unet"}
        config.with_options(components=parts)
    with pytest.raises(ConfigError, match="components missing: clap_tokenizer"):
        config.with_options(text_to_audio="audioldm")
    with pytest.raises(ConfigError, match="text_to_audio applies to"):
        replace(difffoley_tiny(), text_to_audio="audioldm2")
    with pytest.raises(ConfigError, match="not a preset"):
        load_config("audioldm2-tiny", "difffoley")
