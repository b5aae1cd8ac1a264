"""Our BEATs and TempoTokens mapper ports against the reference code's outputs.

The fixtures in ``tests/baselines/fixtures/`` (how they were made: the README there) hold, for a
tiny random-weight configuration with every parameter perturbed, the reference state dicts under
their official key names, a small input and what the reference code computed from it:

* ``beats_tiny.safetensors``: BEATs at our ``tiny`` preset's size, two seeded 2 s waveforms at
  16 kHz, the reference fbank, TempoTokens' ``extract_features(...)[1]`` (every layer's output)
  and upstream unilm's ``extract_features(...)[0]`` (the last layer's).
* ``tempotokens_mapper_tiny.safetensors``: TempoTokens' ``TempEmbedder`` at the tiny preset's
  size, fed the BEATs fixture's features, and its six outputs.

Each test writes the state dict in the official file layout and loads it through our converters.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from tavgbench.baselines.twostage.beats import (
    BEATsConfig,
    beats_fbank,
    convert_beats,
    load_beats,
)
from tavgbench.baselines.twostage.config import tempotokens_tiny
from tavgbench.errors import WeightsError

FIXTURES = Path(__file__).parent / "fixtures"
BEATS_FIXTURE = FIXTURES / "beats_tiny.safetensors"
MAPPER_FIXTURE = FIXTURES / "tempotokens_mapper_tiny.safetensors"
TINY = tempotokens_tiny()
# TempoTokens' prompt order: temporal token, local windows 1, 2, 4, 8, clip-level token.
MAPPER_OUTPUTS = ("temporal", "local1", "local2", "local3", "local4", "class")


def _read(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    with safe_open(str(path), "pt") as f:
        metadata = f.metadata() or {}
    return load_file(str(path)), metadata


def _model(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k.removeprefix("model."): v for k, v in tensors.items() if k.startswith("model.")}


@pytest.fixture(scope="module")
def beats_reference() -> tuple[dict[str, torch.Tensor], dict[str, object]]:
    tensors, metadata = _read(BEATS_FIXTURE)
    return tensors, json.loads(metadata["cfg"])


def _beats_checkpoint(reference, folder: Path, cfg: dict[str, object] | None = None) -> Path:
    """The fixture as the released BEATs ``.pt``: ``{"cfg": ..., "model": ...}``."""
    tensors, official_cfg = reference
    path = folder / "BEATs_iter3_plus_AS2M_finetuned_on_AS2M_cpt2.pt"
    torch.save({"cfg": official_cfg if cfg is None else cfg, "model": _model(tensors)}, path)
    return path


def test_beats_matches_reference(beats_reference, tmp_path: Path) -> None:
    tensors, cfg = beats_reference
    path = _beats_checkpoint(beats_reference, tmp_path)
    official = _model(tensors)
    # The fine-tuned checkpoint's classifier head is dropped (TempoTokens sets predictor=None).
    assert any(k.startswith("predictor.") for k in official)
    assert set(convert_beats(path)) == {k for k in official if not k.startswith("predictor.")}
    beats = load_beats(path)
    # The fixture is our tiny preset, as the reference's cfg spells it.
    assert beats.config == BEATsConfig(**TINY.components["beats"].config)
    assert BEATsConfig.from_official(cfg) == beats.config
    wave = tensors["input.waveform"]
    with torch.no_grad():
        fbank = beats_fbank(wave)
        features = beats(wave)
    # Reference: BEATs.preprocess (torchaudio.compliance.kaldi.fbank, torchaudio 2.11) in the
    # TempoTokens copy of BEATs; the same float32 arithmetic, measured difference 0: atol 1e-5.
    torch.testing.assert_close(fbank, tensors["output.fbank"], rtol=0, atol=1e-5)
    # Reference: TempoTokens' BEATs.extract_features(wave)[1], every layer's output side by side
    # ([2, 96, 2 * 16], values up to ~3.7). Attention sums in another order (the reference
    # scales q by 1/32 and subtracts the row maximum): measured max difference 1.3e-6, so
    # tolerance 2e-5 absolute and relative.
    ref = tensors["output.layer_features"]
    assert features.shape == ref.shape == (2, 96, beats.config.output_dim)
    torch.testing.assert_close(features, ref, rtol=2e-5, atol=2e-5)
    # Reference: upstream microsoft/unilm BEATs.extract_features(wave)[0], the last layer;
    # same tolerance.
    last = features[..., -beats.config.encoder_embed_dim :]
    torch.testing.assert_close(last, tensors["output.last_layer"], rtol=2e-5, atol=2e-5)


def test_beats_cfg_without_a_key_means_the_reference_default(beats_reference, tmp_path) -> None:
    _, cfg = beats_reference
    # The reference BEATsConfig defaults max_distance to 1280 and the switches below to off.
    assert BEATsConfig.from_official({k: v for k, v in cfg.items() if k != "max_distance"}) == (
        BEATsConfig(**{**TINY.components["beats"].config, "max_distance": 1280})
    )
    partial = {k: v for k, v in cfg.items() if k != "gru_rel_pos"}
    assert not BEATsConfig.from_official(partial).gru_rel_pos
    # Built as the reference would build it, the gate weights are then unexpected keys.
    with pytest.raises(WeightsError, match="do not fit its own cfg"):
        load_beats(_beats_checkpoint(beats_reference, tmp_path, partial))
    with pytest.raises(WeightsError, match="unsupported cfg"):
        load_beats(_beats_checkpoint(beats_reference, tmp_path, {**cfg, "activation_fn": "relu"}))


def test_mapper_matches_reference(beats_reference, tmp_path: Path) -> None:
    pytest.importorskip("diffusers", reason="needs the [baselines] extra")
    from tavgbench.baselines.twostage.tempotokens import (
        MAPPER_FILE,
        TempoTokensMapper,
        convert_mapper,
        mapper_options,
    )

    tensors, metadata = _read(MAPPER_FIXTURE)
    config = json.loads(metadata["config"])
    assert {k: v for k, v in config.items() if k != "class_token"} == (
        TINY.components["mapper"].config
    )
    # learned_embeds.pth is the TempEmbedder's bare state dict (torch.save(state_dict())).
    path = tmp_path / MAPPER_FILE
    torch.save(_model(tensors), path)
    state = convert_mapper(path)
    mapper = TempoTokensMapper(**mapper_options(state, TINY.num_frames)).eval()
    mapper.load_state_dict(state)
    features = tensors["input.features"]
    with torch.no_grad():
        tokens = mapper(features)
    assert tokens.shape == (2, TINY.num_frames, len(MAPPER_OUTPUTS), config["output_size"])
    # Reference: TempoTokens' TempEmbedder.forward (modules/temp_tokens/embedder.py) with its
    # Unary's F.dropout disabled (see the fixtures README); the same float32 ops, measured
    # difference 0: tolerance 1e-5.
    for i, name in enumerate(MAPPER_OUTPUTS[:-1]):
        torch.testing.assert_close(tokens[:, :, i], tensors[f"output.{name}"], rtol=1e-5, atol=1e-5)
    clip_token = tensors["output.class"][:, None].expand_as(tokens[:, :, -1])
    torch.testing.assert_close(tokens[:, :, -1], clip_token, rtol=1e-5, atol=1e-5)

    # The chain as TempoTokens runs it: our BEATs on the waveform, then our mapper. The mapper
    # fixture's input is the BEATs fixture's reference output.
    beats_tensors, _ = beats_reference
    torch.testing.assert_close(features, beats_tensors["output.layer_features"], rtol=0, atol=0)
    beats = load_beats(_beats_checkpoint(beats_reference, tmp_path))
    with torch.no_grad():
        chained = mapper(beats(beats_tensors["input.waveform"]))
    # Reference: the same TempEmbedder outputs; BEATs' 2e-5 carried through the mapper's four
    # linear layers (measured below 1e-5): tolerance 1e-4.
    torch.testing.assert_close(chained[:, :, 0], tensors["output.temporal"], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(chained[:, :, -1], clip_token, rtol=1e-4, atol=1e-4)
