"""Reference statistics: build once, reuse in `score`, export/import, refuse stale references.

Small random-weight extractors as in test_score.py on a 4-clip demo split. The numbers are not
comparable; what is tested is that every way of giving the reference yields the same features
and so bit-identical metric values (tolerance 0: the same arrays go through the same code).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import safetensors.numpy
import torch

from tavgbench.data.demo import write_demo
from tavgbench.data.splits import Split, load_manifest, write_manifest
from tavgbench.errors import TavgbenchError
from tavgbench.extractors.clip import CLIPExtractor
from tavgbench.extractors.i3d import I3D, I3DExtractor
from tavgbench.extractors.imagebind import ImageBindEncoders, ImageBindExtractor
from tavgbench.extractors.vggish import VGGish, VGGishExtractor
from tavgbench.harness.reference import (
    Reference,
    ReferenceFileError,
    StaleReferenceError,
    build_reference,
    import_reference,
    load_reference,
    references_dir,
)
from tavgbench.harness.score import DEFAULT_METRICS, ScoreOptions, score_submission
from tests.factories import TINY_IMAGEBIND, clip_snapshot

SET_METRICS = ("fvd", "kvd", "fad")


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A TAVGBENCH_HOME of this module's own (references and the default feature cache)."""
    folder = tmp_path_factory.mktemp("home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TAVGBENCH_HOME", str(folder))
        yield folder


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("demo")
    write_demo(root, n_clips=4, seed=3)
    return root


@pytest.fixture(scope="module")
def split(demo: Path) -> Split:
    return load_manifest(demo / "split.csv", name="demo")


@pytest.fixture(scope="module")
def extractors(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    folder = tmp_path_factory.mktemp("clip")
    clip = CLIPExtractor.from_pretrained_dir(
        clip_snapshot(folder, full=False, legacy_eos=True, seed=0)
    )
    torch.manual_seed(0)
    i3d = I3DExtractor(I3D(bn_eps=1e-3), size=193, batch_size=4)
    vggish = VGGishExtractor.from_state_dict(VGGish().state_dict())
    imagebind = ImageBindExtractor.from_state_dict(
        ImageBindEncoders.from_config(TINY_IMAGEBIND).state_dict(), config=TINY_IMAGEBIND
    )
    return {"i3d": i3d, "vggish": vggish, "imagebind": imagebind, "clip": clip}


@pytest.fixture(scope="module")
def submission_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Cache of the folder-scoring run; later runs find the submission's features here."""
    return tmp_path_factory.mktemp("submission-cache")


@pytest.fixture(scope="module")
def folder_document(
    demo: Path, split: Split, extractors, submission_cache: Path, home: Path
) -> dict:
    """Scores against the reference folder, which extracts the real clips in its own cache."""
    options = ScoreOptions(metrics=DEFAULT_METRICS, cache_dir=submission_cache)
    return score_submission(
        demo / "submissions" / "faithful", split, demo / "reference", options,
        extractors=extractors,
    )  # fmt: skip


@pytest.fixture(scope="module")
def built(demo: Path, split: Split, extractors, home: Path, folder_document: dict) -> Reference:
    """Built in the default cache ($TAVGBENCH_HOME/features), apart from the folder run's."""
    options = ScoreOptions(metrics=DEFAULT_METRICS)
    return build_reference(demo / "reference", split, options, name="demo-ref",
                           extractors=extractors)  # fmt: skip


def _score(demo: Path, split: Split, reference, extractors, cache: Path, metrics, stages=None):
    options = ScoreOptions(metrics=metrics, cache_dir=cache)
    return score_submission(
        demo / "submissions" / "faithful", split, reference, options, extractors=extractors,
        on_stage=None if stages is None else stages.append,
    )  # fmt: skip


def _assert_same_metrics(document: dict, expected: dict) -> None:
    assert set(document["metrics"]) == set(expected["metrics"])
    for name, metric in expected["metrics"].items():
        got = document["metrics"][name]
        assert (got["value"], got["ci95"]) == (metric["value"], metric["ci95"]), name
        assert got["n_reference"] == metric["n_reference"]


def test_build_records_the_manifest(built: Reference, split: Split, extractors, home: Path):
    path = home / "references" / "demo-ref.json"
    assert built.source == path and built.origin == "cache"
    manifest = json.loads(path.read_text())
    assert manifest["split"] == {"name": "demo", "manifest_sha256": split.sha256, "size": 4}
    assert [c["id"] for c in manifest["clips"]] == split.ids
    assert all(len(c["hash"]) == 64 for c in manifest["clips"])
    assert manifest["metrics"] == list(SET_METRICS)
    assert manifest["extractors"] == {n: extractors[n].describe() for n in ("i3d", "vggish")}
    assert manifest["outputs"] == {"i3d": ["logits"], "vggish": ["examples"]}
    assert manifest["skipped"] == {} and manifest["valid"] == 4
    assert Path(manifest["local"]["cache"]) == home / "features"


def test_score_reuses_the_built_reference(
    demo: Path, split: Split, extractors, built: Reference, folder_document: dict,
    submission_cache: Path,
) -> None:  # fmt: skip
    stages: list[str] = []
    document = _score(demo, split, "demo-ref", extractors, submission_cache, DEFAULT_METRICS,
                      stages)  # fmt: skip
    assert not [s for s in stages if "reference" in s]  # no reference clip touched
    _assert_same_metrics(document, folder_document)
    assert document["reference"] == {
        "path": str(built.source), "name": "demo-ref", "valid": 4, "scored": 4
    }  # fmt: skip
    # The manifest file itself also works as --reference.
    by_manifest = _score(demo, split, built.source, extractors, submission_cache, ("kvd",))
    assert by_manifest["metrics"]["kvd"]["value"] == folder_document["metrics"]["kvd"]["value"]


def test_export_then_import_scores_without_the_videos(
    demo: Path, split: Split, extractors, built: Reference, folder_document: dict,
    submission_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    exported = built.export(tmp_path / "out" / "demo.tavgref")
    with safetensors.safe_open(str(exported), framework="np") as handle:
        keys = set(handle.keys())
        metadata = handle.metadata()
    assert keys == {f"i3d/logits/{i}" for i in split.ids} | {
        f"vggish/examples/{i}" for i in split.ids
    }
    assert "local" not in json.loads(metadata["tavgbench.reference"])

    monkeypatch.setenv("TAVGBENCH_HOME", str(tmp_path / "fresh-home"))
    imported = import_reference(exported)
    assert imported.name == "demo-ref" and imported.origin == "file"
    assert imported.source == tmp_path / "fresh-home" / "references" / "demo-ref.tavgref"
    for description in built.extractors.values():
        mine, theirs = built.features(description), imported.features(description)
        assert list(mine) == list(theirs)
        for clip_id, arrays in mine.items():
            for output, array in arrays.items():
                np.testing.assert_array_equal(theirs[clip_id][output], array)

    stages: list[str] = []
    document = _score(demo, split, "demo-ref", extractors, submission_cache, SET_METRICS, stages)
    assert not [s for s in stages if "reference" in s]
    _assert_same_metrics(document, {"metrics": {
        m: folder_document["metrics"][m] for m in SET_METRICS
    }})  # fmt: skip
    # The exported file itself also works as --reference, without importing it.
    direct = _score(demo, split, str(exported), extractors, submission_cache, ("kvd",))
    assert direct["metrics"]["kvd"]["value"] == folder_document["metrics"]["kvd"]["value"]
    assert direct["reference"]["name"] == "demo"


def test_other_i3d_protocol_is_refused_before_extraction(
    demo: Path, split: Split, extractors, built: Reference, tmp_path: Path
) -> None:
    videogpt = I3DExtractor(I3D(bn_eps=1e-5), protocol="videogpt", size=193)
    with pytest.raises(StaleReferenceError) as raised:
        _score(demo, split, "demo-ref", extractors | {"i3d": videogpt}, tmp_path / "cache",
               ("fvd",))  # fmt: skip
    message = str(raised.value)
    assert message.startswith(
        "reference 'demo-ref' was built with i3d protocol {'protocol': 'tf', "
    )
    assert "but scoring uses {'protocol': 'videogpt', " in message
    assert "rebuild it with `tavgbench reference build --split demo --videos " in message
    assert message.endswith("--name demo-ref`, or score with the same protocol")
    assert not (tmp_path / "cache").exists()  # refused before any submission clip was extracted


def test_other_weights_are_refused(
    demo: Path, split: Split, extractors, built: Reference, tmp_path: Path
) -> None:
    other = I3DExtractor(extractors["i3d"].model, size=193, weights_sha256="ab" * 32)
    with pytest.raises(StaleReferenceError, match=r"i3d weights \{'weights_sha256': ''\} but "
                       r"scoring uses \{'weights_sha256': 'abab"):  # fmt: skip
        _score(demo, split, "demo-ref", extractors | {"i3d": other}, tmp_path, ("kvd",))


def test_missing_extractor_is_refused(
    demo: Path, split: Split, extractors, built: Reference, tmp_path: Path
) -> None:
    # Its I3D features are already in the default cache: nothing is extracted again.
    only_fvd = build_reference(demo / "reference", split, ScoreOptions(metrics=("fvd",)),
                               name="fvd-only", extractors=extractors)  # fmt: skip
    assert list(only_fvd.extractors) == ["i3d"]
    with pytest.raises(StaleReferenceError, match="holds no vggish features .*built for fvd"):
        _score(demo, split, "fvd-only", extractors, tmp_path, ("fad",))


def test_other_split_is_refused(
    demo: Path, split: Split, extractors, built: Reference, tmp_path: Path
) -> None:
    first, *rest = split.entries
    changed = type(first)(id=first.id, caption=first.caption + " at dawn")
    other = load_manifest(write_manifest(tmp_path / "split.csv", [changed, *rest]), name="demo")
    with pytest.raises(
        StaleReferenceError,
        match=rf"built for split 'demo' \(manifest sha256 {split.sha256[:12]}…, 4 clips\) but "
        rf"scoring uses split 'demo' \(manifest sha256 {other.sha256[:12]}…",
    ):
        _score(demo, split=other, reference="demo-ref", extractors=extractors,
               cache=tmp_path / "cache", metrics=("fvd",))  # fmt: skip


def _flip_last_bytes(data: bytes) -> bytes:
    return data[:-4] + bytes(b ^ 0xFF for b in data[-4:])


@pytest.mark.parametrize(
    ("damage", "match"),
    [
        (lambda d: d[: len(d) - 100], "not a readable safetensors file"),
        (lambda d: d[:10], "not a readable safetensors file"),
        (lambda d: b"\x80\x04\x95" + d[3:], "not a readable safetensors file"),  # pickle opcode
        (_flip_last_bytes, "do not match the sha256 recorded when it was exported"),
    ],
    ids=["truncated", "cut-in-header", "pickle-bytes", "flipped-data"],
)
def test_damaged_export_is_refused(built: Reference, tmp_path: Path, damage, match: str) -> None:
    exported = built.export(tmp_path / "demo.tavgref")
    exported.write_bytes(damage(exported.read_bytes()))
    with pytest.raises(ReferenceFileError, match=match):
        import_reference(exported, name="damaged")
    assert "damaged" not in {p.stem for p in references_dir().iterdir()}


def test_export_with_wrong_structure_is_refused(built: Reference, tmp_path: Path) -> None:
    exported = built.export(tmp_path / "demo.tavgref")
    with safetensors.safe_open(str(exported), framework="np") as handle:
        arrays = {k: handle.get_tensor(k) for k in handle.keys()}  # noqa: SIM118
        metadata = handle.metadata()
    plain = tmp_path / "plain.tavgref"
    safetensors.numpy.save_file(arrays, str(plain))
    with pytest.raises(ReferenceFileError, match="a safetensors file but not a tavgbench"):
        load_reference(plain)
    first = next(iter(sorted(arrays)))
    fewer = tmp_path / "fewer.tavgref"
    safetensors.numpy.save_file({k: a for k, a in arrays.items() if k != first}, str(fewer),
                                metadata=metadata)  # fmt: skip
    with pytest.raises(ReferenceFileError, match=f"missing \\['{first}'\\]"):
        load_reference(fewer)
    manifest = json.loads(metadata["tavgbench.reference"])
    manifest["clips"][0]["hash"] = "not a hash"
    bad = tmp_path / "bad.tavgref"
    safetensors.numpy.save_file(arrays, str(bad), metadata=metadata | {
        "tavgbench.reference": json.dumps(manifest)
    })  # fmt: skip
    with pytest.raises(ReferenceFileError, match="needs an id and a sha256 content hash"):
        load_reference(bad)


def test_names_are_resolved_and_guarded(built: Reference, tmp_path: Path) -> None:
    with pytest.raises(ReferenceFileError, match="stored reference of that name .*demo-ref"):
        load_reference("no-such-reference")
    exported = built.export(tmp_path / "demo.tavgref")
    with pytest.raises(TavgbenchError, match="'demo-ref' was built here"):
        import_reference(exported)
    with pytest.raises(TavgbenchError, match="reference name '../x' may only hold"):
        import_reference(exported, name="../x")
