"""Reference statistics: the real clips' features, extracted once and reused by every score.

:func:`build_reference` validates a folder of real clips against a split, extracts their raw
per-clip features through the same cached path as scoring
(:func:`~tavgbench.harness.extract.extract_to_cache`) and records a manifest,
``$TAVGBENCH_HOME/references/<name>.json``: the split name and manifest sha256, the clip ids and
content hashes used, and each extractor's ``describe()`` (name, version, weights sha256,
protocol). The features stay in the feature cache; the manifest names them.

:meth:`Reference.export` writes one safetensors file (``.tavgref``): a tensor per clip and
output, keyed ``<extractor>/<output>/<clip id>``, with the manifest and a sha256 over the
tensors in its metadata. :func:`import_reference` checks such a file (safetensors holds only
arrays; nothing is unpickled) and keeps it as ``$TAVGBENCH_HOME/references/<name>.tavgref``, so
submissions can be scored against published features without the real videos.

A reference is never reused silently with other features: :meth:`Reference.features` refuses an
extractor that describes itself differently from what the reference recorded, and
:meth:`Reference.check_split` refuses a split whose manifest sha256 differs.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import secrets
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import numpy as np
import safetensors.numpy
from safetensors import SafetensorError, safe_open

from tavgbench import __version__, config
from tavgbench.data.splits import Split
from tavgbench.data.validate import validate_submission
from tavgbench.errors import TavgbenchError
from tavgbench.extractors.base import Extractor
from tavgbench.harness.cache import FeatureCache
from tavgbench.harness.extract import clip_sources, extract_to_cache, load_cached, load_extractors
from tavgbench.metrics import METRICS

if TYPE_CHECKING:
    from tavgbench.harness.score import ScoreOptions

SCHEMA = "tavgbench.reference/1"
SUFFIX = ".tavgref"
_META_FORMAT = "tavgbench.format"
_META_MANIFEST = "tavgbench.reference"
_META_DIGEST = "tavgbench.features_sha256"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_CLIP_ID = re.compile(r"[A-Za-z0-9_.\-]+")
_SHA256 = re.compile(r"[0-9a-f]{64}")
#: Description fields compared apart from the protocol, grouped as the user thinks of them.
_ASPECTS = {"version": ("version",), "weights": ("weights", "weights_sha256")}


class ReferenceFileError(TavgbenchError):
    """A reference cannot be found, or its manifest or exported file is damaged."""


class StaleReferenceError(TavgbenchError):
    """A reference was built for another split or with other extractor settings."""


def references_dir() -> Path:
    """Where built manifests and imported reference files are kept."""
    return config.home() / "references"


def stored_references() -> dict[str, Path]:
    """Stored references by name: built manifests (``.json``) and imported files."""
    folder = references_dir()
    if not folder.is_dir():
        return {}
    found = [p for p in folder.iterdir() if p.suffix in (".json", SUFFIX) and p.is_file()]
    return {path.stem: path for path in sorted(found, key=lambda p: p.stem)}


def _plain(value: Any) -> Any:
    # Descriptions are compared as they read back from JSON (tuples become lists, and so on).
    return json.loads(json.dumps(value))


def _shown(values: Mapping[str, Any]) -> str:
    return repr(dict(values))


@dataclass
class Reference:
    """A named set of reference features, kept in the feature cache or in an exported file.

    Attributes:
        name: how commands name it (its stored name, or the stem of a file given by path).
        manifest: the JSON manifest (schema ``tavgbench.reference/1``).
        source: the manifest file of a built reference, or the ``.tavgref`` file.
        cache: the feature cache holding a built reference's features; None for a file.
    """

    name: str
    manifest: dict[str, Any]
    source: Path
    cache: FeatureCache | None = None

    @property
    def origin(self) -> str:
        """``"cache"`` (built here) or ``"file"`` (exported, then imported or given by path)."""
        return "cache" if self.cache is not None else "file"

    @property
    def clip_ids(self) -> list[str]:
        """The clips' ids in the order their features are stacked."""
        return [clip["id"] for clip in self.manifest["clips"]]

    @property
    def extractors(self) -> dict[str, dict[str, Any]]:
        """Each extractor's recorded ``describe()``."""
        return self.manifest["extractors"]

    @property
    def split(self) -> dict[str, Any]:
        """The split it was built for: ``name``, ``manifest_sha256``, ``size``."""
        return self.manifest["split"]

    @property
    def skipped(self) -> dict[str, str]:
        """Clips of the split left out at build time, with the reason."""
        return self.manifest["skipped"]

    def _rebuild(self) -> str:
        """How to make this reference again with the extractors now in use."""
        if self.origin == "file":
            return "import a reference file exported with the extractors now in use"
        return (
            f"rebuild it with `tavgbench reference build --split {self.split['name']} "
            f"--videos {self.manifest['local']['videos']} --name {self.name}`"
        )

    def check_split(self, split: Split) -> None:
        """Refuse a split other than the one the reference was built for.

        Raises:
            StaleReferenceError: the split's manifest sha256 differs from the recorded one.
        """
        recorded = self.split
        if recorded["manifest_sha256"] == split.sha256:
            return
        raise StaleReferenceError(
            f"reference {self.name!r} was built for split {recorded['name']!r} (manifest "
            f"sha256 {recorded['manifest_sha256'][:12]}…, {recorded['size']} clips) but "
            f"scoring uses split {split.name!r} (manifest sha256 {split.sha256[:12]}…, "
            f"{len(split)} clips): build a reference for this split with `tavgbench reference "
            f"build --split {split.name} --videos DIR`"
        )

    def check(self, description: Mapping[str, Any]) -> None:
        """Refuse an extractor that is absent from the reference or described differently.

        Args:
            description: ``Extractor.describe()`` of the extractor now loaded for scoring.

        Raises:
            StaleReferenceError: the reference holds no features of this extractor, or they
                were computed with another version, weights or protocol.
        """
        name = description["name"]
        recorded = self.extractors.get(name)
        if recorded is None:
            built_for = ", ".join(self.manifest["metrics"])
            remedy = (
                f"{self._rebuild()} adding the metrics that use {name} to --metrics"
                if self.origin == "cache"
                else "import a reference file that holds them"
            )
            raise StaleReferenceError(
                f"reference {self.name!r} holds no {name} features (it was built for "
                f"{built_for}): {remedy}, or score without the metrics that use {name}"
            )
        differences = _differences(recorded, _plain(dict(description)))
        if not differences:
            return
        if len(differences) == 1:
            aspect, old, new = differences[0]
            built, used = f"{aspect} {_shown(old)}", _shown(new)
        else:
            built = " and ".join(f"{aspect} {_shown(old)}" for aspect, old, _ in differences)
            used = " and ".join(f"{aspect} {_shown(new)}" for aspect, _, new in differences)
        same = " and ".join(aspect for aspect, _, _ in differences)
        raise StaleReferenceError(
            f"reference {self.name!r} was built with {name} {built} but scoring uses {used}: "
            f"{self._rebuild()}, or score with the same {same}"
        )

    def features(self, description: Mapping[str, Any]) -> dict[str, dict[str, np.ndarray]]:
        """Every clip's arrays for one extractor: ``{clip id: {output: array}}``.

        Args:
            description: ``Extractor.describe()`` of the extractor used for scoring; it must
                equal the recorded one.

        Raises:
            StaleReferenceError: see :meth:`check`.
            ReferenceFileError: features are missing from the cache, or the file is damaged.
        """
        self.check(description)
        name = description["name"]
        if self.cache is None:
            return self._file_features(name)
        features: dict[str, dict[str, np.ndarray]] = {}
        for clip in self.manifest["clips"]:
            arrays = self.cache.get(clip["hash"], self.extractors[name])
            if arrays is None:
                raise ReferenceFileError(
                    f"{name} features of reference clip {clip['id']!r} are missing from the "
                    f"feature cache {self.cache.root} (was it cleared?): {self._rebuild()}"
                )
            features[clip["id"]] = arrays
        return features

    def _file_features(self, name: str) -> dict[str, dict[str, np.ndarray]]:
        outputs = self.manifest["outputs"][name]
        try:
            with safe_open(str(self.source), framework="np") as handle:
                return {
                    clip_id: {o: handle.get_tensor(f"{name}/{o}/{clip_id}") for o in outputs}
                    for clip_id in self.clip_ids
                }
        except (SafetensorError, OSError) as error:
            raise ReferenceFileError(
                f"{self.source}: cannot read reference features ({error}); import the file again"
            ) from error

    def export(self, out: str | Path) -> Path:
        """Write every feature and the manifest into one safetensors file, atomically.

        The manifest keeps everything but the local paths (videos folder, cache folder).

        Raises:
            ReferenceFileError: features are missing, or the file cannot be written.
        """
        arrays: dict[str, np.ndarray] = {}
        for name, description in self.extractors.items():
            outputs = self.manifest["outputs"][name]
            for clip_id, clip_arrays in self.features(description).items():
                if sorted(clip_arrays) != sorted(outputs):
                    raise ReferenceFileError(
                        f"reference {self.name!r}: cached {name} features of clip {clip_id!r} "
                        f"hold {sorted(clip_arrays)}, the manifest says {outputs}: "
                        f"{self._rebuild()}"
                    )
                for output, array in clip_arrays.items():
                    arrays[f"{name}/{output}/{clip_id}"] = _native(array)
        manifest = {k: v for k, v in self.manifest.items() if k != "local"} | {"name": self.name}
        metadata = {
            _META_FORMAT: SCHEMA,
            _META_MANIFEST: json.dumps(manifest, sort_keys=True),
            _META_DIGEST: _digest(arrays),
        }
        out = Path(out)
        temporary = out.with_name(f".{out.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            safetensors.numpy.save_file(arrays, str(temporary), metadata=metadata)
            os.replace(temporary, out)
        except OSError as error:
            with contextlib.suppress(OSError):
                temporary.unlink(missing_ok=True)
            raise ReferenceFileError(
                f"cannot write {out} ({error.strerror or error}): choose a writable folder "
                "with room"
            ) from error
        return out


def _differences(
    recorded: Mapping[str, Any], current: Mapping[str, Any]
) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """``(aspect, recorded values, current values)`` for each aspect that differs."""
    found = []
    for aspect, keys in _ASPECTS.items():
        changed = [k for k in keys if recorded.get(k) != current.get(k)]
        if changed:
            found.append((aspect, {k: recorded.get(k) for k in changed},
                          {k: current.get(k) for k in changed}))  # fmt: skip
    old, new = recorded.get("protocol") or {}, current.get("protocol") or {}
    keys = [*old, *(k for k in new if k not in old)]
    changed = [k for k in keys if old.get(k) != new.get(k)]
    if changed:
        found.append(("protocol", {k: old[k] for k in changed if k in old},
                      {k: new[k] for k in changed if k in new}))  # fmt: skip
    known = {"name", "protocol", *(k for keys in _ASPECTS.values() for k in keys)}
    other = sorted(k for k in {*recorded, *current} - known if recorded.get(k) != current.get(k))
    if other:
        found.append(("description", {k: recorded.get(k) for k in other},
                      {k: current.get(k) for k in other}))  # fmt: skip
    return found


def _native(array: np.ndarray) -> np.ndarray:
    # safetensors stores the raw buffer: hand it C-ordered, native-endian memory.
    array = np.asarray(array)
    return np.require(array, dtype=array.dtype.newbyteorder("="), requirements="C")


def _digest(arrays: Mapping[str, np.ndarray]) -> str:
    """sha256 over every tensor's key, dtype, shape and bytes, in key order."""
    digest = hashlib.sha256()
    for key in sorted(arrays):
        array = _native(arrays[key])
        header = json.dumps([key, array.dtype.str, list(array.shape)])
        digest.update(header.encode("utf-8") + b"\n")
        digest.update(array.tobytes())
    return digest.hexdigest()


def _check_manifest(manifest: Any, where: str, *, stored: bool) -> dict[str, Any]:
    """The manifest, once every field that is read later has the right type."""

    def fail(problem: str) -> NoReturn:
        remedy = (
            "build it again with `tavgbench reference build`"
            if stored
            else "export it again with `tavgbench reference export`, or download it again"
        )
        raise ReferenceFileError(f"{where}: not a valid tavgbench reference ({problem}); {remedy}")

    def is_sha(value: Any) -> bool:
        return isinstance(value, str) and _SHA256.fullmatch(value) is not None

    if not isinstance(manifest, dict) or manifest.get("schema") != SCHEMA:
        fail(f"the manifest's schema is not {SCHEMA!r}")
    split = manifest.get("split")
    if not (
        isinstance(split, dict)
        and isinstance(split.get("name"), str)
        and is_sha(split.get("manifest_sha256"))
        and isinstance(split.get("size"), int)
    ):
        fail("'split' needs a name, a manifest_sha256 and a size")
    clips = manifest.get("clips")
    if not isinstance(clips, list) or not clips:
        fail("'clips' must be a non-empty list")
    for clip in clips:
        if not (
            isinstance(clip, dict)
            and isinstance(clip.get("id"), str)
            and _CLIP_ID.fullmatch(clip["id"])
            and is_sha(clip.get("hash"))
        ):
            fail(f"clip {clip!r} needs an id and a sha256 content hash")
    ids = [clip["id"] for clip in clips]
    if len(set(ids)) != len(ids):
        fail("duplicate clip ids")
    extractors, outputs = manifest.get("extractors"), manifest.get("outputs")
    if not isinstance(extractors, dict) or not extractors or not isinstance(outputs, dict):
        fail("'extractors' and 'outputs' must name at least one extractor")
    if set(outputs) != set(extractors):
        fail("'outputs' must name the same extractors as 'extractors'")
    for name, description in extractors.items():
        if not (
            _NAME.fullmatch(name)
            and isinstance(description, dict)
            and description.get("name") == name
            and isinstance(description.get("version"), str)
            and isinstance(description.get("weights_sha256"), str)
            and isinstance(description.get("protocol"), dict)
        ):
            fail(f"extractor {name!r} needs its name, version, weights_sha256 and protocol")
        names = outputs[name]
        if not (
            isinstance(names, list)
            and names
            and all(isinstance(o, str) and _NAME.fullmatch(o) for o in names)
        ):
            fail(f"'outputs' of {name!r} must be a non-empty list of names")
    if not (
        isinstance(manifest.get("name"), str)
        and isinstance(manifest.get("valid"), int)
        and isinstance(manifest.get("metrics"), list)
        and all(isinstance(m, str) for m in manifest["metrics"])
        and isinstance(manifest.get("skipped"), dict)
        and all(isinstance(v, str) for v in manifest["skipped"].values())
    ):
        fail("'name', 'valid', 'metrics' and 'skipped' are missing or of the wrong type")
    local = manifest.get("local")
    if stored and not (
        isinstance(local, dict)
        and isinstance(local.get("videos"), str)
        and isinstance(local.get("cache"), str)
    ):
        fail("'local' must name the videos and cache folders")
    return manifest


def _read_manifest(path: Path, name: str) -> Reference:
    """A built reference from its JSON manifest."""
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ReferenceFileError(
            f"{path}: cannot read the reference manifest ({error}); build it again with "
            "`tavgbench reference build`"
        ) from error
    manifest = _check_manifest(manifest, str(path), stored=True)
    return Reference(name, manifest, path, FeatureCache(manifest["local"]["cache"]))


def _read_file(path: Path, name: str | None = None) -> Reference:
    """An exported reference file, checked whole: structure, tensor keys and sha256."""
    where = str(path)
    hint = "export it again with `tavgbench reference export`, or download it again"
    try:
        with safe_open(where, framework="np") as handle:
            metadata = handle.metadata() or {}
            if metadata.get(_META_FORMAT) != SCHEMA:
                raise ReferenceFileError(
                    f"{path}: a safetensors file but not a tavgbench reference (no "
                    f"{_META_FORMAT}={SCHEMA} in its metadata); {hint}"
                )
            try:
                manifest = json.loads(metadata.get(_META_MANIFEST, ""))
            except json.JSONDecodeError as error:
                raise ReferenceFileError(
                    f"{path}: the reference manifest in its metadata is not JSON ({error}); {hint}"
                ) from error
            manifest = _check_manifest(manifest, where, stored=False)
            expected = {
                f"{extractor}/{output}/{clip['id']}"
                for extractor, outputs in manifest["outputs"].items()
                for output in outputs
                for clip in manifest["clips"]
            }
            keys = set(handle.keys())
            if keys != expected:
                missing, extra = sorted(expected - keys), sorted(keys - expected)
                raise ReferenceFileError(
                    f"{path}: its tensors do not match its manifest (missing {missing[:3]}, "
                    f"unexpected {extra[:3]}); {hint}"
                )
            arrays = {key: handle.get_tensor(key) for key in sorted(keys)}
    except SafetensorError as error:
        raise ReferenceFileError(
            f"{path}: not a readable safetensors file ({error}); {hint}"
        ) from error
    except OSError as error:
        raise ReferenceFileError(f"{path}: cannot read it ({error.strerror or error})") from error
    not_float = sorted(k for k, a in arrays.items() if not np.issubdtype(a.dtype, np.floating))
    if not_float:
        raise ReferenceFileError(f"{path}: tensors {not_float[:3]} are not floating point; {hint}")
    if _digest(arrays) != metadata.get(_META_DIGEST):
        raise ReferenceFileError(
            f"{path}: its features do not match the sha256 recorded when it was exported (the "
            f"file is damaged); {hint}"
        )
    return Reference(name or path.stem, manifest, path)


def load_reference(value: str | Path) -> Reference:
    """A stored reference by name, a built manifest (``.json``) or an exported file.

    Raises:
        ReferenceFileError: nothing of that name, or the manifest or file is damaged.
    """
    path = Path(value)
    if path.is_file():
        return _read_manifest(path, path.stem) if path.suffix == ".json" else _read_file(path)
    stored = stored_references()
    name = str(value)
    if name in stored:
        found = stored[name]
        return _read_manifest(found, name) if found.suffix == ".json" else _read_file(found, name)
    known = ", ".join(stored) or "none"
    raise ReferenceFileError(
        f"{value}: no reference folder, reference file or stored reference of that name (stored "
        f"in {references_dir()}: {known}); build one with `tavgbench reference build --split "
        "SPLIT --videos DIR --name NAME`, or import one with `tavgbench reference import FILE`"
    )


def resolve_reference(value: str | Path | Reference) -> Reference | Path:
    """What ``--reference`` names: a folder of real clips (returned as a Path) or a reference.

    A folder wins over a stored reference of the same name.
    """
    if isinstance(value, Reference):
        return value
    if Path(value).is_dir():
        return Path(value)
    return load_reference(value)


def _check_name(name: str) -> None:
    if not _NAME.fullmatch(name):
        raise TavgbenchError(
            f"reference name {name!r} may only hold letters, digits, '.', '_' and '-' (and "
            "must start with a letter or digit)"
        )


def build_reference(
    videos: str | Path,
    split: Split,
    options: ScoreOptions,
    *,
    name: str | None = None,
    extractors: Mapping[str, Extractor] | None = None,
    on_stage: Callable[[str], None] | None = None,
) -> Reference:
    """Extract the real clips' features into the cache once and record them under a name.

    Clips go through exactly the path that scoring takes for a reference folder (validation,
    the same clip order and batches, the same cache), so scoring against the built reference
    gives the numbers that scoring against the folder gives. As there, invalid clips are left
    out and recorded with their reasons; clips that fail to decode are refused unless
    ``options.allow_partial``.

    Args:
        videos: folder of real clips in the submission layout.
        split: the split they belong to.
        options: which metrics (only those that compare against a reference count), device,
            cache folder, batch size, decode workers, extractor options.
        name: the reference's name (default: the split's name); a built reference of the same
            name is replaced.
        extractors: prebuilt extractors by name; the default loads the real checkpoints.
        on_stage: called with a short description as each stage starts.

    Raises:
        TavgbenchError: no metric needs a reference, no valid clips, clips failed to decode,
            or the name is taken by an imported reference.
    """
    name = name or split.name
    _check_name(name)
    stage = on_stage or (lambda _: None)
    imported = references_dir() / f"{name}{SUFFIX}"
    if imported.exists():
        raise TavgbenchError(
            f"a reference named {name!r} was imported from a file ({imported}); choose another "
            "--name, or delete that file first"
        )
    unknown = [m for m in options.metrics if m not in METRICS]
    if unknown:
        raise TavgbenchError(f"unknown metrics {unknown}; known: {', '.join(METRICS)}")
    metrics = [m for m in options.metrics if METRICS[m].needs_reference]
    if not metrics:
        needing = ", ".join(m for m, spec in METRICS.items() if spec.needs_reference)
        raise TavgbenchError(
            f"none of the metrics {list(options.metrics)} compares against real clips; "
            f"references serve {needing}"
        )
    names = sorted({METRICS[m].extractor for m in metrics})

    stage("validating the reference clips")
    report = validate_submission(videos, split)
    if not report.valid:
        raise TavgbenchError(
            f"{videos}: no valid reference clips (run `tavgbench validate {videos} --split "
            f"{split.name}` for the list)"
        )
    sources = clip_sources([(c.id, c.video_path, c.audio_path) for c in report.valid])
    loaded = load_extractors(
        names,
        device=options.device,
        extractor_options=options.extractor_options,
        prebuilt=extractors,
        stage=stage,
    )
    cache = FeatureCache(options.cache_dir or config.home() / "features")
    stage(f"extracting reference features ({len(sources)} clips)")
    extraction = extract_to_cache(
        sources,
        [loaded[n] for n in names],
        cache,
        batch_size=options.batch_size,
        num_workers=options.num_workers,
    )
    if extraction.failed and not options.allow_partial:
        first = next(iter(extraction.failed.values()))
        raise TavgbenchError(
            f"{len(extraction.failed)} reference clips failed to decode (first: {first}); "
            "use --allow-partial to build the reference from the rest"
        )
    sources = [s for s in sources if s.id not in extraction.failed]
    if not sources:
        raise TavgbenchError(f"{videos}: no reference clip could be decoded")
    outputs = {}
    for extractor_name in names:
        features = load_cached(sources, loaded[extractor_name], cache)
        outputs[extractor_name] = sorted(next(iter(features.values())))

    manifest = {
        "schema": SCHEMA,
        "name": name,
        "created": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "toolkit": {"name": "tavgbench", "version": __version__},
        "split": {"name": split.name, "manifest_sha256": split.sha256, "size": len(split)},
        "metrics": metrics,
        "extractors": {n: _plain(loaded[n].describe()) for n in names},
        "outputs": outputs,
        "clips": [{"id": s.id, "hash": s.hash} for s in sources],
        "valid": len(report.valid),
        "skipped": {c.id: "; ".join(c.problems) for c in report.invalid} | extraction.failed,
        "local": {"videos": str(Path(videos).resolve()), "cache": str(cache.root.resolve())},
    }
    target = references_dir() / f"{name}.json"
    _write_atomically(target, (json.dumps(manifest, indent=2) + "\n").encode("utf-8"))
    return Reference(name, manifest, target, cache)


def _write_atomically(path: Path, payload: bytes) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary.write_bytes(payload)
        os.replace(temporary, path)
    except OSError as error:
        with contextlib.suppress(OSError):
            temporary.unlink(missing_ok=True)
        raise ReferenceFileError(
            f"cannot write {path} ({error.strerror or error}): set TAVGBENCH_HOME to a "
            "writable folder"
        ) from error


def import_reference(file: str | Path, name: str | None = None) -> Reference:
    """Check an exported reference file and keep a copy under a name.

    Args:
        file: a ``.tavgref`` file written by :meth:`Reference.export`.
        name: the name to keep it under (default: the name recorded in the file); an imported
            reference of the same name is replaced.

    Raises:
        ReferenceFileError: the file is damaged or not a reference.
        TavgbenchError: the name is taken by a reference built here.
    """
    file = Path(file)
    if not file.is_file():
        raise ReferenceFileError(f"{file}: reference file not found")
    checked = _read_file(file)
    name = name or checked.manifest["name"]
    _check_name(name)
    built = references_dir() / f"{name}.json"
    if built.exists():
        raise TavgbenchError(
            f"a reference named {name!r} was built here ({built}); import this file under "
            "another --name"
        )
    target = references_dir() / f"{name}{SUFFIX}"
    temporary = target.with_name(f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(file, temporary)
        os.replace(temporary, target)
    except OSError as error:
        with contextlib.suppress(OSError):
            temporary.unlink(missing_ok=True)
        raise ReferenceFileError(
            f"cannot copy {file} to {target} ({error.strerror or error}): set TAVGBENCH_HOME to "
            "a writable folder with room"
        ) from error
    return _read_file(target, name)
