"""Our Diff-Foley port against the reference code's outputs, and its double guidance.

The fixtures in ``tests/baselines/fixtures/`` (how they were made: the README there) hold, for
small random-weight configurations with every parameter perturbed, the reference state dicts
under their official key names, small inputs and what the reference code computed from them:

* ``difffoley_cavp.safetensors``: CAVP's video branch (``CAVP_Inference.encode_video`` with a
  ResNet3dSlowOnly of blocks 2-1-2-1 and base width 4) and the stage-2 condition encoder
  (``Video_Feat_Encoder_Posembed``, 8 -> 16) applied to those features.
* ``difffoley_classifier.safetensors``: the double-guidance classifier
  (``Alignment_Classifier_Double_Guidance`` around a 32-channel ``Classifier_Backbone``): its
  probabilities with the raw and the encoded context, and the sampler's ``grad log p``.
* ``difffoley_layouts.json``: key -> shape of the published CAVP, LDM and classifier, built by
  the reference code from its inference configs.

Each test writes the state dict in the official Lightning file layout and loads it through our
converters.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("diffusers", reason="needs the [baselines] extra")

from diffusers import AutoencoderKL, UNet2DConditionModel
from safetensors import safe_open
from safetensors.torch import load_file

from tavgbench.baselines.tavdiffusion.config import ComponentSpec
from tavgbench.baselines.twostage.config import TwoStageConfig, load_config
from tavgbench.baselines.twostage.difffoley import (
    CAVP,
    CAVP_FILE,
    CLASSIFIER_FILE,
    FOLEY_CLASSIFIER,
    FOLEY_CLASSIFIER_CONDITION,
    FOLEY_CONDITION,
    FOLEY_UNET,
    FOLEY_VAE,
    LDM_FILE,
    AlignmentClassifier,
    CAVPVideoEncoder,
    DiffFoley,
    DiffFoleyLDM,
    FoleyCondition,
    classifier_to_official,
    convert_alignment_classifier,
    convert_cavp,
    convert_difffoley,
    to_official,
)
from tavgbench.errors import TavgbenchError, WeightsError

FIXTURES = Path(__file__).parent / "fixtures"
CAVP_FIXTURE = FIXTURES / "difffoley_cavp.safetensors"
CLASSIFIER_FIXTURE = FIXTURES / "difffoley_classifier.safetensors"
LAYOUTS = FIXTURES / "difffoley_layouts.json"
TINY = load_config("tiny", "difffoley")
# inference/config/Double_Guidance_Classifier.yaml, classifier_config.params (reference).
PUBLISHED_BACKBONE = {
    "in_channels": 4,
    "out_channels": 1,
    "model_channels": 128,
    "attention_resolutions": [2, 4],
    "num_res_blocks": 1,
    "channel_mult": [1, 2, 2],
    "num_heads": 8,
    "context_dim": 512,
}


def _read(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, dict]]:
    with safe_open(str(path), "pt") as f:
        metadata = f.metadata() or {}
    return load_file(str(path)), json.loads(metadata["config"])


def _prefixed(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k.removeprefix(prefix): v for k, v in tensors.items() if k.startswith(prefix)}


def _backbone_arguments(reference: dict) -> dict:
    """``Classifier_Backbone``'s arguments as :class:`ClassifierBackbone`'s: one level per
    ``channel_mult``, cross-attention where the level's downsampling factor is in
    ``attention_resolutions``, ``num_heads`` heads, and the reference's fixed 32 norm groups."""
    widths = [reference["model_channels"] * m for m in reference["channel_mult"]]
    kinds = [
        "CrossAttnDownBlock2D" if 2**i in reference["attention_resolutions"] else "DownBlock2D"
        for i in range(len(widths))
    ]
    return {
        "in_channels": reference["in_channels"],
        "out_channels": reference["out_channels"],
        "block_out_channels": widths,
        "layers_per_block": reference["num_res_blocks"],
        "down_block_types": kinds,
        "cross_attention_dim": reference["context_dim"],
        "attention_head_dim": reference["num_heads"],
        "norm_num_groups": 32,
    }


def _perturb(module: torch.nn.Module, seed: int) -> None:
    # Random-init norms are ones/zeros and some convs start at zero; move every tensor so a key
    # loaded into the wrong place cannot go unnoticed.
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))


def test_cavp_matches_reference(tmp_path: Path) -> None:
    tensors, config = _read(CAVP_FIXTURE)
    # The released file: a Lightning checkpoint of the whole CAVP model, DataParallel-prefixed.
    official = {f"module.{k}": v for k, v in _prefixed(tensors, "model.").items()}
    official["module.spec_encoder.fc1.weight"] = torch.zeros(2, 2)
    official["module.logit_scale"] = torch.tensor(2.66)
    path = tmp_path / CAVP_FILE
    torch.save({"state_dict": official, "epoch": 66}, path)
    cavp = CAVPVideoEncoder(**config["cavp"]).eval()
    cavp.load_state_dict(convert_cavp(path))
    with torch.no_grad():
        ours = cavp(tensors["input.frames"])
    # Reference: CAVP_Inference.encode_video(frames, normalize=True, pool=False), as demo_util
    # calls it. Unit-norm float32 features; tolerance 1e-5 absolute (measured 4e-7).
    torch.testing.assert_close(ours, tensors["output.features"], rtol=0, atol=1e-5)


def test_condition_encoder_matches_reference(tmp_path: Path) -> None:
    tensors, config = _read(CAVP_FIXTURE)
    condition = config["condition"]

    def ldm() -> DiffFoleyLDM:
        unet = dict(
            TINY.components["foley_unet"].config, cross_attention_dim=condition["embed_dim"]
        )
        return DiffFoleyLDM(
            FoleyCondition(**condition),
            UNet2DConditionModel(**unet),
            AutoencoderKL(**TINY.components["foley_vae"].config),
        )

    torch.manual_seed(0)
    official = to_official(ldm())
    reference = _prefixed(tensors, "condition_model.")
    assert set(reference) <= set(official)
    official.update(reference)
    path = tmp_path / LDM_FILE
    torch.save({"state_dict": official, "global_step": 1}, path)
    fresh = ldm().eval()
    fresh.load_state_dict(convert_difffoley(path, fresh.unet.config, fresh.vae.config))
    with torch.no_grad():
        ours = fresh.condition(tensors["output.features"])
    # Reference: Video_Feat_Encoder_Posembed (LatentDiffusion.get_learned_conditioning) on the
    # CAVP fixture's features; one linear layer and a sum, tolerance 1e-6 absolute.
    torch.testing.assert_close(ours, tensors["output.context"], rtol=0, atol=1e-6)


@pytest.fixture(scope="module")
def reference_classifier(tmp_path_factory: pytest.TempPathFactory):
    tensors, config = _read(CLASSIFIER_FIXTURE)
    path = tmp_path_factory.mktemp("classifier") / CLASSIFIER_FILE
    torch.save({"state_dict": _prefixed(tensors, "model."), "global_step": 1}, path)
    model = AlignmentClassifier(_backbone_arguments(config["backbone"]), config["condition"])
    model.load_state_dict(convert_alignment_classifier(path, model.model.config))
    return model.eval(), tensors


def test_classifier_matches_reference(reference_classifier) -> None:
    model, tensors = reference_classifier
    x, t, feats = tensors["input.latents"], tensors["input.t"], tensors["input.video_feat"]
    with torch.no_grad():
        prob = model.log_prob(x, t, feats).exp()
        encoded = model.log_prob(x, t, feats, encode_context=True).exp()
    # Reference: Alignment_Classifier_Double_Guidance.forward (the sampler's call, raw CAVP
    # features as context) and the same on cond_model's output (its training path), at the
    # sampler's fractional timesteps. Probabilities, tolerance 1e-6 absolute (measured 1e-7).
    torch.testing.assert_close(prob, tensors["output.prob"], rtol=0, atol=1e-6)
    torch.testing.assert_close(encoded, tensors["output.prob_encoded_context"], rtol=0, atol=1e-6)
    assert not torch.allclose(prob, encoded, rtol=0, atol=1e-4)


def test_classifier_gradient_matches_reference(reference_classifier) -> None:
    model, tensors = reference_classifier
    x = tensors["input.latents"].clone().requires_grad_(True)
    log_prob = model.log_prob(x, tensors["input.t"], tensors["input.video_feat"])
    (grad,) = torch.autograd.grad(log_prob.sum(), x)
    # Reference: cond_grad_fn_classifier (dpm_solver.py), grad_x sum(log(classifier(x))) through
    # the reference's gradient checkpointing. Entries up to 1e-2; tolerance 1e-6 absolute
    # (measured 1e-8).
    torch.testing.assert_close(grad, tensors["output.grad_log_prob"], rtol=0, atol=1e-6)


def test_published_configs_have_the_reference_layouts() -> None:
    layouts = json.loads(LAYOUTS.read_text())
    assert _backbone_arguments(PUBLISHED_BACKBONE) == FOLEY_CLASSIFIER
    with torch.device("meta"):
        cavp = CAVPVideoEncoder(**CAVP)
        ldm = DiffFoleyLDM(
            FoleyCondition(**FOLEY_CONDITION),
            UNet2DConditionModel(**FOLEY_UNET),
            AutoencoderKL(**FOLEY_VAE),
        )
        classifier = AlignmentClassifier(FOLEY_CLASSIFIER, FOLEY_CLASSIFIER_CONDITION)
    ours = {
        "cavp": cavp.state_dict(),
        "ldm": to_official(ldm),
        "classifier": classifier_to_official(classifier),
    }
    for name, state in ours.items():
        shapes = {k: list(v.shape) for k, v in state.items()}
        # The classifier file also holds its noise schedule (betas, ...): top-level buffers.
        reference = {k: v for k, v in layouts[name].items() if "." in k}
        assert shapes == reference, name


def _classifier_file(model: AlignmentClassifier, path: Path) -> Path:
    schedule = {"betas": torch.linspace(1e-3, 1e-2, 1000), "scale_factor": torch.tensor(0.18215)}
    state = {**classifier_to_official(model), **schedule}
    torch.save({"state_dict": state, "global_step": 3, "epoch": 1}, path)
    return path


def test_classifier_checkpoint_round_trip(tmp_path: Path) -> None:
    spec = TINY.components["foley_classifier"]
    torch.manual_seed(0)
    model = AlignmentClassifier(**spec.config).eval()
    _perturb(model, 1)
    official = classifier_to_official(model)
    assert official["model.input_blocks.3.1.proj_in.weight"].ndim == 4
    assert "model.middle_block.1.transformer_blocks.0.attn2.to_k.weight" in official
    assert {"model.out.2.weight", "model.classifier.weight", "cond_model.pos_emb.weight"} <= set(
        official
    )
    path = _classifier_file(model, tmp_path / CLASSIFIER_FILE)
    torch.manual_seed(1)
    fresh = AlignmentClassifier(**spec.config).eval()
    fresh.load_state_dict(convert_alignment_classifier(path, fresh.model.config))
    g = torch.Generator().manual_seed(2)
    x, feats = torch.randn(2, 4, 16, 16, generator=g), torch.randn(2, 8, 8, generator=g)
    with torch.no_grad():
        for encode in (False, True):
            a = model.log_prob(x, torch.tensor(500.0), feats, encode_context=encode)
            b = fresh.log_prob(x, torch.tensor(500.0), feats, encode_context=encode)
            torch.testing.assert_close(a, b, rtol=0, atol=0)  # same weights, same ops: exact


def test_foreign_classifier_checkpoint_is_a_weights_error(tmp_path: Path) -> None:
    bad = tmp_path / CLASSIFIER_FILE
    torch.save({"state_dict": {"model.diffusion_model.out.2.weight": torch.zeros(1)}}, bad)
    with pytest.raises(WeightsError, match="do not fit the Diff-Foley classifier"):
        convert_alignment_classifier(bad)
    torch.save({"state_dict": {"betas": torch.zeros(3)}}, bad)
    with pytest.raises(WeightsError, match="no classifier weights"):
        convert_alignment_classifier(bad)


def test_missing_classifier_names_its_file(tmp_path: Path) -> None:
    config = TINY.with_options(foley_double_guidance=True)
    foley = _foley(TINY)
    torch.save({"state_dict": foley.cavp.state_dict()}, tmp_path / CAVP_FILE)
    torch.save({"state_dict": to_official(foley.ldm)}, tmp_path / LDM_FILE)
    with pytest.raises(TavgbenchError, match="double_guidance_classifier.ckpt"):
        DiffFoley.build(config, checkpoint_dir=tmp_path)


def _foley(config: TwoStageConfig, seed: int = 0) -> DiffFoley:
    torch.manual_seed(seed)
    foley = DiffFoley.build(config)
    if foley.classifier is not None:
        _perturb(foley.classifier, seed + 1)
    return foley


def _features(frames: int = 8) -> torch.Tensor:
    feats = torch.randn(2, frames, 8, generator=torch.Generator().manual_seed(5))
    return torch.nn.functional.normalize(feats, dim=-1)


def test_double_guidance_off_is_the_plain_sampler() -> None:
    plain = _foley(TINY)
    assert plain.classifier is None  # the spec is in the preset, but only loaded when used
    zero = _foley(TINY.with_options(foley_double_guidance=True, foley_classifier_scale=0.0))
    assert zero.classifier is not None
    a = plain.sample_spectrograms(_features(), [3, 4])
    b = zero.sample_spectrograms(_features(), [3, 4])
    for x, y in zip(a, b, strict=True):
        torch.testing.assert_close(x, y, rtol=0, atol=0)  # eps - 0 * grad is eps: exact


def test_double_guidance_steers_the_sample() -> None:
    plain = _foley(TINY).sample_spectrograms(_features(), [3, 4])
    guided_foley = _foley(TINY.with_options(foley_double_guidance=True))
    guided = guided_foley.sample_spectrograms(_features(), [3, 4])
    assert [s.shape for s in guided] == [s.shape for s in plain]
    assert all(torch.isfinite(s).all() for s in guided)
    assert (guided[0] - plain[0]).abs().max() > 1e-3
    # The pipeline may run it under inference_mode; the classifier gradient still works there.
    frames = np.random.default_rng(0).integers(0, 256, (1, 10, 32, 32, 3), dtype=np.uint8)
    with torch.inference_mode():
        wave = guided_foley.generate(frames, 5.0, [7], 2.0)
    assert wave.shape == (1, 32000) and np.isfinite(wave).all() and np.abs(wave).max() <= 1


def test_cavp_sees_chunks_of_frames_separately() -> None:
    foley = _foley(TINY.with_options(foley_cavp_chunk=3))
    frames = torch.rand(1, 8, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        chunked = foley.cavp_features(frames)
        parts = torch.cat([foley.cavp(frames[:, i : i + 3]) for i in (0, 3, 6)], dim=1)
        whole = foley.cavp(frames)
    torch.testing.assert_close(chunked, parts, rtol=0, atol=0)
    # The 3x1x1 kernels of stages 3-4 reach across the chunk boundary in one pass.
    assert not torch.allclose(chunked, whole, atol=1e-4)
    assert TwoStageConfig.__dataclass_fields__["foley_cavp_chunk"].default == 40


def test_sampler_ends_at_the_first_training_noise_level() -> None:
    sched = _foley(TINY).scheduler()
    sched.set_timesteps(25)
    alpha = sched.alphas_cumprod[0]
    # The reference's DPM-Solver stops at t = 1/N, i.e. training step 0, not at zero noise.
    assert float(sched.sigmas[-1]) == pytest.approx(float(((1 - alpha) / alpha).sqrt()))
    assert int(sched.timesteps[0]) == 999


def test_default_config_names_the_released_classifier() -> None:
    spec = load_config("default", "difffoley").components["foley_classifier"]
    assert spec == ComponentSpec(
        "SimianLuo/Diff-Foley", "diff_foley_ckpt/double_guidance_classifier.ckpt"
    )
    # On, as the authors' inference notebook runs it; tiny stays unguided.
    assert load_config("default", "difffoley").foley_double_guidance
    assert not load_config("tiny", "difffoley").foley_double_guidance
