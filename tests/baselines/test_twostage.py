"""The two-stage baselines on their tiny configs, and Diff-Foley's checkpoint conversion."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("diffusers", reason="needs the [baselines] extra")

from tavgbench.baselines import list_baselines, load_baseline
from tavgbench.baselines.interface import generate_split
from tavgbench.baselines.tavdiffusion.config import ComponentSpec
from tavgbench.baselines.twostage.config import ConfigError, audioldm_tiny, load_config
from tavgbench.baselines.twostage.difffoley import (
    CAVPVideoEncoder,
    DiffFoley,
    DiffFoleyLDM,
    convert_cavp,
    convert_difffoley,
    griffin_lim,
    nnls,
    to_official,
)
from tavgbench.data.demo import write_demo
from tavgbench.data.splits import load_manifest
from tavgbench.data.validate import validate_submission
from tavgbench.errors import TavgbenchError, WeightsError

NAMES = ("animatediff-audioldm", "animatediff-difffoley")


@pytest.fixture(scope="module")
def two_prompts(tmp_path_factory: pytest.TempPathFactory):
    layout = write_demo(tmp_path_factory.mktemp("demo2"), n_clips=2)
    return load_manifest(layout.manifest, name="demo")


def test_registry_has_the_two_stage_baselines() -> None:
    assert set(NAMES) <= set(list_baselines())


@pytest.mark.parametrize("name", NAMES)
def test_tiny_writes_a_valid_submission(name: str, two_prompts, tmp_path: Path) -> None:
    generator = load_baseline(name, config="tiny")
    report = generate_split(generator, two_prompts, tmp_path, seed=0, batch_size=2)
    assert report.generated == two_prompts.ids
    validation = validate_submission(tmp_path, two_prompts)
    assert validation.all_ok, [c.problems for c in validation.clips]
    record = json.loads((tmp_path / "generation.json").read_text())
    assert record["generator"]["name"] == name and record["generator"]["config"] == "tiny"


@pytest.mark.parametrize("name", NAMES)
def test_tiny_clip_depends_only_on_its_prompt_and_seed(name: str) -> None:
    generator = load_baseline(name, config="tiny")
    pair = generator.generate(["a dog barks", "rain on a roof"], [11, 12])
    alone = generator.generate(["rain on a roof"], [12])[0]
    clip = pair[1]
    assert clip.duration == pytest.approx(2.0)
    assert len(clip.waveform) == round(clip.duration * clip.sample_rate)
    np.testing.assert_array_equal(alone.frames, clip.frames)
    # Batched and single UNet calls differ by float rounding only (reference: the clip made in
    # the batch of two). Diff-Foley's exponential dB undoing and Griffin-Lim amplify that
    # rounding, so the tolerance is on the relative L2 error of the waveform: 5e-2.
    error = np.linalg.norm(alone.waveform - clip.waveform) / np.linalg.norm(clip.waveform)
    assert error < 5e-2
    other = generator.generate(["rain on a roof"], [13])[0]
    assert not np.array_equal(other.frames, clip.frames)


def test_missing_weights_and_checkpoint_misuse_are_user_errors(tmp_path: Path) -> None:
    missing = str(tmp_path / "nowhere")
    config = audioldm_tiny()
    components = dict(config.components, text_encoder=ComponentSpec(missing, "text_encoder"))
    with pytest.raises(TavgbenchError, match="cannot load .*nowhere/text_encoder"):
        load_baseline("animatediff-audioldm", config=config.with_options(components=components))
    with pytest.raises(ConfigError, match="takes no --checkpoint"):
        load_baseline("animatediff-audioldm", checkpoint=tmp_path, config="tiny")
    with pytest.raises(TavgbenchError, match="cavp_epoch66.ckpt"):
        load_baseline("animatediff-difffoley", checkpoint=tmp_path, config="tiny")
    with pytest.raises(ConfigError, match="audioldm"):
        load_config(config, "difffoley")


def _tiny_ldm(seed: int) -> DiffFoleyLDM:
    torch.manual_seed(seed)
    foley = DiffFoley.build(load_config("tiny", "difffoley"))
    # Random-init GroupNorm/BatchNorm affine terms are ones/zeros; perturb every tensor so a
    # key mapped to the wrong place cannot go unnoticed.
    with torch.no_grad():
        for p in foley.ldm.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return foley.ldm


def test_difffoley_checkpoint_round_trip(tmp_path: Path) -> None:
    ldm = _tiny_ldm(0)
    official = to_official(ldm)
    assert "model.diffusion_model.input_blocks.1.1.proj_in.weight" in official
    assert "first_stage_model.decoder.up.0.block.0.conv1.weight" in official
    assert official["first_stage_model.encoder.mid.attn_1.q.weight"].ndim == 4
    schedule = {"betas": torch.linspace(0.1, 0.2, 1000), "model_ema.decay": torch.tensor(0.9)}
    path = tmp_path / "ldm_epoch240.ckpt"
    torch.save({"state_dict": {**official, **schedule}, "global_step": 7, "epoch": 1}, path)
    fresh = _tiny_ldm(1)
    fresh.load_state_dict(convert_difffoley(path, fresh.unet.config, fresh.vae.config))
    g = torch.Generator().manual_seed(3)
    feats = torch.randn(2, 8, 8, generator=g)
    latents = torch.randn(2, 4, 2, 16, generator=g)
    with torch.no_grad():
        outs = [
            (
                m.unet(latents, 500, encoder_hidden_states=m.condition(feats)).sample,
                m.vae.decode(latents).sample,
                m.vae.encode(torch.rand(1, 3, 16, 16, generator=g.manual_seed(4))).latent_dist.mean,
            )
            for m in (ldm, fresh)
        ]
    for a, b in zip(*outs, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)  # same weights, same ops: exact


def test_official_layout_agrees_with_diffusers_ldm_converter() -> None:
    """diffusers' own LDM-checkpoint converter reads our official layout back to the model."""
    single_file = pytest.importorskip("diffusers.loaders.single_file_utils")
    ldm = _tiny_ldm(0)
    official = to_official(ldm)
    unet = single_file.convert_ldm_unet_checkpoint(official, dict(ldm.unet.config))
    vae = single_file.convert_ldm_vae_checkpoint(official, dict(ldm.vae.config))
    for ours, theirs in ((ldm.unet.state_dict(), unet), (ldm.vae.state_dict(), vae)):
        assert set(ours) == set(theirs)
        for key, value in ours.items():
            torch.testing.assert_close(theirs[key].reshape(value.shape), value, rtol=0, atol=0)


def test_cavp_checkpoint_round_trip_and_layout(tmp_path: Path) -> None:
    torch.manual_seed(0)
    cavp = CAVPVideoEncoder(stage_blocks=(1, 1, 1, 1), base_channels=4, embed_dim=8).eval()
    wrapped = {f"module.{k}": v for k, v in cavp.state_dict().items()}
    wrapped["module.spec_encoder.fc1.weight"] = torch.zeros(2, 2)
    wrapped["module.logit_scale"] = torch.tensor(2.6)
    path = tmp_path / "cavp_epoch66.ckpt"
    torch.save({"state_dict": wrapped, "epoch": 66}, path)
    fresh = CAVPVideoEncoder(stage_blocks=(1, 1, 1, 1), base_channels=4, embed_dim=8).eval()
    fresh.load_state_dict(convert_cavp(path))
    frames = torch.rand(1, 6, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        out = cavp(frames)
        torch.testing.assert_close(fresh(frames), out, rtol=0, atol=0)
    assert out.shape == (1, 6, 8)  # SlowOnly keeps every frame: one feature per frame
    torch.testing.assert_close(out.norm(dim=-1), torch.ones(1, 6))
    # The published encoder: ResNet3D-50 with 3x1x1 temporal kernels in stages 3-4 only.
    full = CAVPVideoEncoder().state_dict()
    assert full["video_encoder.conv1.conv.weight"].shape == (64, 3, 1, 7, 7)
    assert full["video_encoder.layer2.0.conv1.conv.weight"].shape[2:] == (1, 1, 1)
    assert full["video_encoder.layer3.5.conv1.conv.weight"].shape[2:] == (3, 1, 1)
    assert full["video_project_head.weight"].shape == (512, 2048)
    n = sum(v.numel() for k, v in full.items() if k.endswith("conv.weight"))
    # mmaction's SlowOnly R50 has 31.6 M conv weights (ResNet-50 with inflated stages 3-4).
    assert n == pytest.approx(31.6e6, rel=0.01)


def test_unreadable_checkpoint_is_a_weights_error(tmp_path: Path) -> None:
    bad = tmp_path / "ldm_epoch240.ckpt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match="ldm_epoch240.ckpt"):
        convert_difffoley(bad)
    torch.save({"state_dict": {"model.diffusion_model.nonsense.weight": torch.zeros(1)}}, bad)
    with pytest.raises(WeightsError, match="do not fit"):
        convert_difffoley(bad)


def test_nnls_matches_scipy() -> None:
    optimize = pytest.importorskip("scipy.optimize")
    g = torch.Generator().manual_seed(0)
    a = torch.rand(12, 20, generator=g, dtype=torch.float64)
    b = torch.rand(12, 3, generator=g, dtype=torch.float64)
    ours = nnls(a, b, iters=5000)
    for j in range(3):
        ref, _ = optimize.nnls(a.numpy(), b[:, j].numpy())
        # Reference: scipy's active-set NNLS; compare residuals (the minimiser of an
        # underdetermined problem is not unique), tolerance 1e-6 absolute.
        res_ours = torch.linalg.norm(a @ ours[:, j] - b[:, j]).item()
        assert res_ours == pytest.approx(
            np.linalg.norm(a.numpy() @ ref - b[:, j].numpy()), abs=1e-6
        )
    assert (ours >= 0).all()


def test_griffin_lim_recovers_a_tone_magnitude() -> None:
    sr, n_fft, hop = 16000, 1024, 256
    t = torch.arange(sr, dtype=torch.float64) / sr
    wave = 0.5 * torch.sin(2 * torch.pi * 440 * t)
    window = torch.hann_window(n_fft, dtype=torch.float64)
    # Reflect padding, as librosa 0.8's griffinlim (Diff-Foley's) pads.
    spec = torch.stft(wave, n_fft, hop, window=window, return_complex=True, pad_mode="reflect")
    out = griffin_lim(spec.abs(), hop, 32, 0.99, torch.Generator().manual_seed(0))
    again = torch.stft(out, n_fft, hop, window=window, return_complex=True, pad_mode="reflect")
    # Spectral convergence |S - |STFT(x)|| / |S| (the usual Griffin-Lim measure); a pure tone
    # converges well within 32 fast iterations (measured 0.131, the reflected edges converge
    # last): tolerance 0.15.
    convergence = torch.linalg.norm(spec.abs() - again.abs()) / torch.linalg.norm(spec.abs())
    assert convergence < 0.15
