"""``audioldm-tempotokens`` on its tiny config; BEATs and TempoTokens mapper checkpoints."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("diffusers", reason="needs the [baselines] extra")

from diffusers import UNet3DConditionModel
from diffusers.models.attention_processor import Attention, AttnProcessor2_0

from tavgbench.baselines import list_baselines, load_baseline
from tavgbench.baselines.interface import generate_split
from tavgbench.baselines.tavdiffusion.config import ComponentSpec
from tavgbench.baselines.twostage.beats import (
    BEATs,
    BEATsConfig,
    convert_beats,
    load_beats,
)
from tavgbench.baselines.twostage.config import ConfigError, tempotokens_tiny
from tavgbench.baselines.twostage.tempotokens import (
    BEATS_FILE,
    TempoTokensMapper,
    convert_mapper,
    mapper_options,
    use_per_frame_contexts,
)
from tavgbench.data.demo import write_demo
from tavgbench.data.splits import load_manifest
from tavgbench.data.validate import validate_submission
from tavgbench.errors import TavgbenchError, WeightsError

NAME = "audioldm-tempotokens"
TINY_BEATS = tempotokens_tiny().components["beats"].config


@pytest.fixture(scope="module")
def two_prompts(tmp_path_factory: pytest.TempPathFactory):
    layout = write_demo(tmp_path_factory.mktemp("demo2"), n_clips=2)
    return load_manifest(layout.manifest, name="demo")


def _perturbed(module: torch.nn.Module, seed: int) -> torch.nn.Module:
    # Random-init LayerNorm/bias terms are ones/zeros; perturb every tensor so a key mapped to
    # the wrong place cannot go unnoticed.
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g))
    return module.eval()


def test_registry_lists_the_baseline() -> None:
    assert NAME in list_baselines()


def test_tiny_writes_a_valid_submission(two_prompts, tmp_path: Path) -> None:
    generator = load_baseline(NAME, config="tiny")
    report = generate_split(generator, two_prompts, tmp_path, seed=0, batch_size=2)
    assert report.generated == two_prompts.ids
    validation = validate_submission(tmp_path, two_prompts)
    assert validation.all_ok, [c.problems for c in validation.clips]
    record = json.loads((tmp_path / "generation.json").read_text())
    assert record["generator"]["name"] == NAME and record["generator"]["config"] == "tiny"


def test_tiny_clip_depends_only_on_its_prompt_and_seed() -> None:
    generator = load_baseline(NAME, config="tiny")
    pair = generator.generate(["a dog barks", "rain on a roof"], [11, 12])
    alone = generator.generate(["rain on a roof"], [12])[0]
    clip = pair[1]
    assert clip.duration == pytest.approx(2.0) and len(clip.frames) == 12
    assert len(clip.waveform) == round(clip.duration * clip.sample_rate)
    # Reference: the clip made in the batch of two. Batched and single calls differ by float
    # rounding only (AudioLDM's waveform, as in test_twostage: relative L2 error < 5e-2); the
    # video is made from that waveform, so its frames may move by a byte level or two: at most
    # 4 levels anywhere, mean under 0.5.
    error = np.linalg.norm(alone.waveform - clip.waveform) / np.linalg.norm(clip.waveform)
    assert error < 5e-2
    diff = np.abs(alone.frames.astype(int) - clip.frames.astype(int))
    assert diff.max() <= 4 and diff.mean() < 0.5
    other = generator.generate(["rain on a roof"], [13])[0]
    assert np.abs(other.frames.astype(int) - clip.frames.astype(int)).mean() > 2


def test_beats_checkpoint_round_trip(tmp_path: Path) -> None:
    torch.manual_seed(0)
    config = BEATsConfig(**TINY_BEATS)
    beats = _perturbed(BEATs(config), 0)
    state = beats.state_dict()
    # The official names (unilm beats/backbone.py): weight-norm conv, per-layer copies of the
    # shared relative position table, the gate.
    for key in (
        "patch_embedding.weight",
        "post_extract_proj.weight",
        "encoder.pos_conv.0.weight_g",
        "encoder.pos_conv.0.weight_v",
        "encoder.layers.1.self_attn.relative_attention_bias.weight",
        "encoder.layers.0.self_attn.grep_linear.weight",
        "encoder.layers.0.self_attn.grep_a",
        "encoder.layer_norm.weight",
    ):
        assert key in state, key
    assert "patch_embedding.bias" not in state  # conv_bias False
    cfg = {**TINY_BEATS, "finetuned_model": True, "predictor_class": 3, "dropout": 0.1}
    model = {**state, "predictor.weight": torch.zeros(3, 16), "predictor.bias": torch.zeros(3)}
    path = tmp_path / BEATS_FILE
    torch.save({"cfg": cfg, "model": model}, path)
    assert set(convert_beats(path)) == set(state)
    fresh = load_beats(path)
    assert fresh.config == config
    wave = 0.1 * torch.randn(2, 32000, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        out = beats(wave)
        torch.testing.assert_close(fresh(wave), out, rtol=0, atol=0)  # same weights: exact
    # 2 s give 12 time patches x 8 frequency patches, all layers side by side.
    assert out.shape == (2, 96, config.output_dim) == (2, config.num_tokens(32000), 32)


def test_published_shapes_fit_each_other() -> None:
    """The released BEATs gives 96 tokens of 12 x 768 for 2 s; TempoTokens maps them to 24
    frames of six 1024-d tokens (ZeroScope's text width)."""
    published = BEATsConfig()
    assert published.num_tokens(32000) == 96 and published.output_dim == 9216
    mapper = TempoTokensMapper().eval()
    with torch.no_grad():
        tokens = mapper(torch.randn(1, 96, 9216))
    assert tokens.shape == (1, 24, 6, 1024)


def test_mapper_checkpoint_round_trip(tmp_path: Path) -> None:
    torch.manual_seed(0)
    options = dict(input_size=32, hidden_size=24, output_size=16, seq_target_length=12)
    mapper = _perturbed(TempoTokensMapper(**options), 0)
    path = tmp_path / "learned_embeds.pth"
    torch.save(mapper.state_dict(), path)
    state = convert_mapper(path)
    assert "fga.pp_models.0.embed_X.weight" in state and "fga.reduce_potentials.0.weight" in state
    fresh = TempoTokensMapper(**mapper_options(state, 12)).eval()
    fresh.load_state_dict(state)
    feats = torch.randn(2, 96, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        out = mapper(feats)
        torch.testing.assert_close(fresh(feats), out, rtol=0, atol=0)
    # Token 0 is the frame's own; local window 1 averages frames i-1 and i (the reference's
    # [i - w, i + w) slice); the clip-level token is the same for every frame.
    torch.testing.assert_close(out[:, 1:, 1], (out[:, :-1, 0] + out[:, 1:, 0]) / 2)
    torch.testing.assert_close(out[:, 0, 5], out[:, -1, 5])
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match="bad.pth"):
        convert_mapper(bad)
    torch.save({"other.weight": torch.zeros(1)}, bad)
    with pytest.raises(WeightsError, match="learned_embeds"):
        convert_mapper(bad)


class _RowContexts:
    """Cross-attention on a given ``[rows, tokens, d]`` context: the reference UNet's input."""

    def __init__(self, context: torch.Tensor) -> None:
        self.context = context
        self.inner = AttnProcessor2_0()

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, *args, **kwargs):
        return self.inner(
            attn, hidden_states, self.context if encoder_hidden_states is not None else None
        )


def test_per_frame_contexts_match_per_row_cross_attention() -> None:
    torch.manual_seed(0)
    unet = UNet3DConditionModel(**tempotokens_tiny().components["zeroscope_unet"].config).eval()
    b, frames, tokens, d = 2, 3, 5, 16
    g = torch.Generator().manual_seed(0)
    contexts = torch.randn(b, frames, tokens, d, generator=g)
    latents = torch.randn(b, 4, frames, 4, 4, generator=g)
    with torch.no_grad():
        for module in unet.modules():
            if isinstance(module, Attention) and module.is_cross_attention:
                module.set_processor(_RowContexts(contexts.flatten(0, 1)))
        # The reference UNet takes [b * frames, tokens, d] and skips the per-frame repeat; the
        # stock one gets a placeholder of the right batch and the processors ignore it.
        expected = unet(latents, 10, encoder_hidden_states=contexts[:, 0]).sample
        use_per_frame_contexts(unet, tokens)
        ours = unet(latents, 10, encoder_hidden_states=contexts.flatten(1, 2)).sample
    # Same ops on the same rows (reference: the per-row run); float32 tolerance 1e-5.
    torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-5)


def test_missing_weights_and_bad_configs_are_user_errors(tmp_path: Path) -> None:
    with pytest.raises(TavgbenchError, match=BEATS_FILE):
        load_baseline(NAME, checkpoint=tmp_path, config="tiny")
    config = tempotokens_tiny()
    missing = ComponentSpec(str(tmp_path / "nowhere"), BEATS_FILE)
    components = dict(config.components, beats=missing)
    with pytest.raises(TavgbenchError, match="nowhere.*not found"):
        load_baseline(NAME, config=config.with_options(components=components))
    with pytest.raises(ConfigError, match="do not split into 10 frames|makes 12 frames"):
        load_baseline(NAME, config=config.with_options(num_frames=10, fps=5.0))
    with pytest.raises(ConfigError, match="tempotokens"):
        load_baseline("animatediff-audioldm", config=config)
