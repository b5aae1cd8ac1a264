"""The leaderboard's protocol: the splits and metric definitions every computed entry must match.

It is a committed file, ``submissions/PROTOCOL.json`` (schema ``tavgbench.protocol/1``)::

    splits.<name>    {title, size, manifest_sha256 (null until pinned), how}
    metrics.<m>      {higher_is_better,
                      extractor: {name, version, weights, protocol: {...}},
                      weights_sha256: [accepted sha256 of the loaded weights file; empty: not
                                       pinned yet, any registry weights accepted]}

The metric part is what tavgbench computes today: :func:`current_metrics` builds each extractor
with its default options on the ``meta`` device (no weights, no memory) and reads its
description. A test compares it with the committed file, so a change of any extractor's
protocol or version shows up as a failing test and a deliberate update of the file
(``tavgbench leaderboard protocol --update``), which makes older computed entries incomparable.

A results.json is accepted (:func:`check_results`) when it was computed with registry weights
(``comparable``), on a leaderboard split whose manifest sha256 is pinned and equal, for every clip
of the split, and every metric has the leaderboard's direction, extractor name, version, weights
name, protocol and (when pinned) weights sha256.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

import torch

from tavgbench.errors import TavgbenchError

PROTOCOL_SCHEMA = "tavgbench.protocol/1"
RESULTS_SCHEMA = "tavgbench.results/1"
PROTOCOL_FILE = "PROTOCOL.json"

#: The leaderboard's splits, in display order.
SPLITS: dict[str, dict[str, Any]] = {
    "tavgbench-3k": {
        "title": "TAVGBench",
        "size": 3000,
        "how": "tavgbench split make tavgbench-3k --captions release_captions.txt --seed 0",
    },
    "favdbench-test": {
        "title": "FAVDBench",
        "size": 1000,
        "how": "tavgbench split fetch favdbench-test",
    },
}


class LeaderboardError(TavgbenchError):
    """A leaderboard entry or the protocol file is invalid, or an entry is refused."""


def _json_roundtrip(value: Any) -> Any:
    # Tuples become lists and keys strings, exactly as a results.json reader sees them.
    return json.loads(json.dumps(value))


def current_metrics() -> dict[str, dict[str, Any]]:
    """Per metric, the direction and extractor description tavgbench uses now.

    Each extractor is built with its default protocol options around a network on the ``meta``
    device, only to read ``describe()``; no weights are loaded.
    """
    from transformers import CLIPConfig, CLIPModel

    from tavgbench.extractors import EXTRACTORS
    from tavgbench.extractors.clip import CLIPExtractor
    from tavgbench.extractors.i3d import I3D, TF_BN_EPS, I3DExtractor
    from tavgbench.extractors.imagebind import ImageBindEncoders, ImageBindExtractor
    from tavgbench.extractors.vggish import VGGish, VGGishExtractor
    from tavgbench.metrics import METRICS

    with torch.device("meta"):
        built = {
            "i3d": I3DExtractor(I3D(bn_eps=TF_BN_EPS), device="meta"),
            # The tokenizer is only used to embed captions, never by describe().
            "clip": CLIPExtractor(CLIPModel(CLIPConfig()), cast(Any, None), device="meta"),
            "vggish": VGGishExtractor(VGGish(), device="meta"),
            "imagebind": ImageBindExtractor(ImageBindEncoders.from_config(None), device="meta"),
        }
    missing = set(EXTRACTORS) - set(built)
    if missing:
        raise LeaderboardError(f"no protocol description for extractors {sorted(missing)}")
    metrics = {}
    for name, spec in METRICS.items():
        description = built[spec.extractor].describe()
        description.pop("weights_sha256")
        metrics[name] = {
            "higher_is_better": spec.higher_is_better,
            "extractor": _json_roundtrip(description),
        }
    return metrics


def default_protocol() -> dict[str, Any]:
    """A protocol document with today's metrics and nothing pinned."""
    return {
        "schema": PROTOCOL_SCHEMA,
        "results_schema": RESULTS_SCHEMA,
        "splits": {
            name: {**info, "manifest_sha256": None}
            for name, info in _json_roundtrip(SPLITS).items()
        },
        "metrics": {
            name: {**metric, "weights_sha256": []} for name, metric in current_metrics().items()
        },
    }


def protocol_path(submissions: str | Path) -> Path:
    """Where the protocol of a submissions folder lives."""
    return Path(submissions) / PROTOCOL_FILE


def load_protocol(path: str | Path) -> dict[str, Any]:
    """Read and check a protocol file.

    Raises:
        LeaderboardError: the file is missing, not JSON, or not a ``tavgbench.protocol/1``.
    """
    path = Path(path)
    if not path.is_file():
        raise LeaderboardError(
            f"{path}: no leaderboard protocol file; create it with "
            "`tavgbench leaderboard protocol --update`"
        )
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise LeaderboardError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(document, dict) or document.get("schema") != PROTOCOL_SCHEMA:
        raise LeaderboardError(f"{path}: not a {PROTOCOL_SCHEMA} document")
    for key in ("splits", "metrics"):
        if not isinstance(document.get(key), dict) or not document[key]:
            raise LeaderboardError(f"{path}: '{key}' must be a non-empty mapping")
    for name, split in document["splits"].items():
        sha = split.get("manifest_sha256")
        if sha is not None and (not isinstance(sha, str) or len(sha) != 64):
            raise LeaderboardError(f"{path}: split {name}: manifest_sha256 must be 64 hex or null")
        if not isinstance(split.get("size"), int):
            raise LeaderboardError(f"{path}: split {name}: size must be an integer")
    for name, metric in document["metrics"].items():
        if not isinstance(metric.get("extractor"), dict):
            raise LeaderboardError(f"{path}: metric {name}: 'extractor' must be a mapping")
        if not isinstance(metric.get("weights_sha256"), list):
            raise LeaderboardError(f"{path}: metric {name}: 'weights_sha256' must be a list")
        if not isinstance(metric.get("higher_is_better"), bool):
            raise LeaderboardError(f"{path}: metric {name}: 'higher_is_better' must be a boolean")
    return document


def write_protocol(document: Mapping[str, Any], path: str | Path) -> Path:
    """Write a protocol document (stable key order, one trailing newline)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    return path


def _differences(
    expected: Any, actual: Any, where: str = "", side: str = "leaderboard"
) -> list[str]:
    """Readable differences between two JSON values (nested keys joined by dots).

    Each reads ``key=actual (side: expected)``, ``side`` naming where the expected value is from.
    """
    if isinstance(expected, dict) and isinstance(actual, dict):
        out = []
        for key in sorted(set(expected) | set(actual)):
            label = f"{where}.{key}" if where else str(key)
            if key not in actual:
                out.append(f"{label} missing ({side}: {expected[key]!r})")
            elif key not in expected:
                out.append(f"{label}={actual[key]!r} (not in the {side}'s protocol)")
            else:
                out += _differences(expected[key], actual[key], label, side)
        return out
    if expected != actual:
        return [f"{where or 'value'}={actual!r} ({side}: {expected!r})"]
    return []


def protocol_drift(document: Mapping[str, Any]) -> list[str]:
    """How today's metric definitions differ from a protocol document's (empty: none)."""
    current = current_metrics()
    committed = {
        name: {"higher_is_better": m["higher_is_better"], "extractor": m["extractor"]}
        for name, m in document["metrics"].items()
    }
    problems = []
    for name in sorted(set(current) | set(committed)):
        if name not in committed:
            problems.append(f"{name}: computed by tavgbench but not in the protocol")
        elif name not in current:
            problems.append(f"{name}: in the protocol but no longer computed by tavgbench")
        else:
            differences = _differences(committed[name], current[name], side="protocol file")
            problems += [f"{name}: {d}" for d in differences]
    return problems


def refreshed_protocol(document: Mapping[str, Any]) -> dict[str, Any]:
    """The document with today's metric definitions; weights pins kept where unchanged."""
    refreshed = _json_roundtrip(dict(document))
    metrics = {}
    for name, metric in current_metrics().items():
        old = document["metrics"].get(name, {})
        same = old.get("extractor") == metric["extractor"]
        metrics[name] = {
            **metric,
            "weights_sha256": list(old.get("weights_sha256", [])) if same else [],
        }
    refreshed["metrics"] = metrics
    for name, info in _json_roundtrip(SPLITS).items():
        refreshed["splits"].setdefault(name, {**info, "manifest_sha256": None})
    return refreshed


def pin_split(document: Mapping[str, Any], name: str, sha256: str, size: int) -> dict[str, Any]:
    """The document with a split's manifest sha256 recorded.

    Raises:
        LeaderboardError: the split is not a leaderboard split or its size is not the expected.
    """
    pinned = _json_roundtrip(dict(document))
    if name not in pinned["splits"]:
        raise LeaderboardError(
            f"{name!r} is not a leaderboard split ({', '.join(pinned['splits'])})"
        )
    expected = pinned["splits"][name]["size"]
    if size != expected:
        raise LeaderboardError(f"split {name} has {size} clips; the leaderboard's has {expected}")
    pinned["splits"][name]["manifest_sha256"] = sha256
    return pinned


def pin_weights(document: Mapping[str, Any], extractor: str, sha256: str) -> dict[str, Any]:
    """The document accepting ``sha256`` as the weights of every metric of ``extractor``."""
    pinned = _json_roundtrip(dict(document))
    matched = [m for m in pinned["metrics"].values() if m["extractor"]["name"] == extractor]
    if not matched:
        raise LeaderboardError(f"no leaderboard metric uses the extractor {extractor!r}")
    for metric in matched:
        if sha256 not in metric["weights_sha256"]:
            metric["weights_sha256"].append(sha256)
    return pinned


def cached_weights_sha256(extractor: str) -> str:
    """The weights sha256 that scoring records for ``extractor``'s default weights.

    Taken the way :func:`tavgbench.extractors.load_extractor` takes it (from the registry's
    ``load_state_dict``, or for Hugging Face snapshots the recorded model file hash), so a pin
    always matches what results.json will say.

    Raises:
        WeightsError: the weights are not in the cache.
    """
    from tavgbench import weights
    from tavgbench.extractors import EXTRACTORS

    registry_name = EXTRACTORS[extractor][1]
    if weights.get_spec(registry_name).is_snapshot:
        record = weights.original_path(registry_name).parent / "sha256.json"
        if not record.is_file():
            raise LeaderboardError(
                f"{registry_name} is not in the weights cache: "
                f"`tavgbench weights fetch {registry_name}`"
            )
        return json.loads(record.read_text())["sha256"]
    return weights.load_state_dict(registry_name)[1]


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def check_results(results: Mapping[str, Any], document: Mapping[str, Any]) -> list[str]:
    """Why a results.json cannot enter the leaderboard (empty list: it can).

    Args:
        results: the parsed ``results.json``.
        document: the leaderboard protocol.
    """
    if results.get("schema") != RESULTS_SCHEMA:
        return [
            f"schema is {results.get('schema')!r}, expected {RESULTS_SCHEMA!r} (a results.json "
            "written by `tavgbench score`)"
        ]
    problems = []
    if results.get("comparable") is not True:
        problems.append(
            "comparable is false: some extractors ran without the registry weights; score "
            "with the real checkpoints (`tavgbench weights fetch`)"
        )
    split = results.get("split") or {}
    name = split.get("name")
    expected_size = None
    if name not in document["splits"]:
        problems.append(
            f"split {name!r} is not a leaderboard split ({', '.join(document['splits'])})"
        )
    else:
        info = document["splits"][name]
        expected_size = info["size"]
        pinned = info.get("manifest_sha256")
        if pinned is None:
            problems.append(
                f"the leaderboard has not pinned the manifest sha256 of {name} yet; a "
                f"maintainer records it with `tavgbench leaderboard protocol --pin-split {name}`"
            )
        elif split.get("manifest_sha256") != pinned:
            problems.append(
                f"split {name} has manifest sha256 {split.get('manifest_sha256')}, the "
                f"leaderboard's is {pinned}: scored on other clips or captions; install the "
                f"split with `{info.get('how', 'tavgbench split list')}` and score again"
            )
        if split.get("size") != expected_size:
            problems.append(f"split {name} has {split.get('size')} clips, expected {expected_size}")
    submission = results.get("submission") or {}
    skipped = submission.get("skipped") or {}
    if expected_size is not None and submission.get("scored") != expected_size:
        problems.append(
            f"{submission.get('scored')} of {expected_size} clips were scored "
            f"({len(skipped)} skipped): the leaderboard takes complete submissions only"
        )
    metrics = results.get("metrics") or {}
    for metric_name, expected in document["metrics"].items():
        problems += [
            f"{metric_name}: {p}"
            for p in _check_metric(metrics.get(metric_name), expected, expected_size)
        ]
    return problems


def _check_metric(
    metric: Mapping[str, Any] | None, expected: Mapping[str, Any], size: int | None
) -> list[str]:
    if metric is None:
        return ["missing: the leaderboard needs every one of its metrics; score them all"]
    problems = []
    if not _finite(metric.get("value")):
        problems.append(f"value {metric.get('value')!r} is not a finite number")
    ci = metric.get("ci95")
    if not (isinstance(ci, list) and len(ci) == 2 and all(_finite(b) for b in ci)):
        problems.append(f"ci95 {ci!r} is not two finite numbers")
    elif ci[0] > ci[1]:
        problems.append(f"ci95 {ci!r} has its low bound above its high bound")
    if metric.get("higher_is_better") != expected["higher_is_better"]:
        problems.append(
            f"higher_is_better is {metric.get('higher_is_better')!r}, the leaderboard's is "
            f"{expected['higher_is_better']!r}"
        )
    extractor = dict(metric.get("extractor") or {})
    sha = extractor.pop("weights_sha256", "")
    problems += [f"extractor {d}" for d in _differences(expected["extractor"], extractor)]
    pins = expected.get("weights_sha256") or []
    if not sha:
        problems.append("no weights sha256: the extractor did not run with registry weights")
    elif pins and sha not in pins:
        problems.append(
            f"weights sha256 {sha} is not the leaderboard's ({', '.join(pins)}): other weights "
            "or another conversion of them"
        )
    if size is not None and metric.get("n_generated") != size:
        problems.append(f"n_generated is {metric.get('n_generated')}, expected {size}")
    return problems
