"""Leaderboard entries: one folder per system under ``submissions/``.

Layout::

    submissions/PROTOCOL.json                   the leaderboard's protocol (see protocol.py)
    submissions/<system>/meta.yaml              who, what, how it generated
    submissions/<system>/<split>/results.json   computed: the `tavgbench score` output
    submissions/<system>/<split>/per_sample.csv (beside it when it was there)
    submissions/<system>/<split>/reported.json  reported: numbers copied from a paper

``meta.yaml`` fields: ``system`` (display name), ``source`` (``computed``: scored with
tavgbench; ``reported``: copied from a paper, protocol unknown), ``authors``, ``date``
(ISO date the numbers were produced or published), ``paper`` (``title``, ``url``), ``code``
(URL), ``parameters`` (count, or null when unknown), ``generation`` (``frames``, ``fps``,
``resolution`` as ``HxW``, ``audio_rate`` in Hz, ``steps``, ``guidance``, ``seed_policy``; null
where unknown or not applicable), ``citation`` (required for reported entries), ``variant``
(free mapping, e.g. the ablation switches), ``paper_tables`` and ``notes``.

``reported.json`` (schema ``tavgbench.reported/1``): ``split`` (leaderboard split name),
``paper_split`` (what the paper evaluated on) and ``metrics`` (name -> value as printed).
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tavgbench.leaderboard.protocol import LeaderboardError, check_results

REPORTED_SCHEMA = "tavgbench.reported/1"
SOURCES = ("computed", "reported")
GENERATION_FIELDS = ("frames", "fps", "resolution", "audio_rate", "steps", "guidance")
_SLUG_RE = re.compile(r"[^a-z0-9]+")
_RESOLUTION_RE = re.compile(r"^\d+x\d+$")
_META_FIELDS = {
    "system", "source", "authors", "date", "paper", "code", "parameters", "generation",
    "citation", "variant", "paper_tables", "notes",
}  # fmt: skip


@dataclass(frozen=True)
class SystemMeta:
    """The parsed ``meta.yaml`` of one system."""

    system: str
    source: str
    authors: tuple[str, ...]
    date: str
    paper: Mapping[str, str] | None = None
    code: str | None = None
    parameters: int | None = None
    generation: Mapping[str, Any] = field(default_factory=dict)
    citation: str = ""
    variant: Mapping[str, Any] = field(default_factory=dict)
    paper_tables: tuple[int, ...] = ()
    notes: str = ""


@dataclass(frozen=True)
class MetricValue:
    """One number of the leaderboard, with its interval when it was computed here."""

    value: float
    ci_low: float | None = None
    ci_high: float | None = None


@dataclass(frozen=True)
class Entry:
    """A system's numbers on one split."""

    slug: str
    meta: SystemMeta
    split: str
    metrics: Mapping[str, MetricValue]
    path: Path
    n_generated: int | None = None
    n_reference: int | None = None
    toolkit_version: str | None = None
    paper_split: str = ""

    @property
    def reported(self) -> bool:
        return self.meta.source == "reported"


def slugify(name: str) -> str:
    """Folder name of a system: lower case, runs of other characters become one hyphen."""
    slug = _SLUG_RE.sub("-", name.lower()).strip("-")
    if not slug:
        raise LeaderboardError(f"system name {name!r} has no letters or digits to name a folder")
    return slug


def _text(value: Any, where: str, key: str, *, required: bool = False) -> str:
    if value is None or value == "":
        if required:
            raise LeaderboardError(f"{where}: '{key}' is required")
        return ""
    if not isinstance(value, str):
        raise LeaderboardError(f"{where}: '{key}' must be text, got {type(value).__name__}")
    return value.strip()


def _url(value: Any, where: str, key: str) -> str | None:
    text = _text(value, where, key)
    if text and not text.startswith(("https://", "http://")):
        raise LeaderboardError(f"{where}: '{key}' must be an http(s) URL, got {text!r}")
    return text or None


def _optional_number(value: Any, where: str, key: str, *, integer: bool = False) -> Any:
    if value is None:
        return None
    ok = isinstance(value, int) if integer else isinstance(value, int | float)
    if isinstance(value, bool) or not ok or not math.isfinite(value) or value <= 0:
        kind = "a positive integer" if integer else "a positive number"
        raise LeaderboardError(f"{where}: '{key}' must be {kind} or null, got {value!r}")
    return value


def _generation(value: Any, where: str, source: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise LeaderboardError(
            f"{where}: 'generation' must be a mapping with {', '.join(GENERATION_FIELDS)} and "
            "seed_policy (null where unknown)"
        )
    missing = [k for k in (*GENERATION_FIELDS, "seed_policy") if k not in value]
    if missing:
        raise LeaderboardError(
            f"{where}: generation lacks {', '.join(missing)} (write null where unknown)"
        )
    out: dict[str, Any] = {}
    for key in ("frames", "steps", "audio_rate"):
        out[key] = _optional_number(value[key], where, f"generation.{key}", integer=True)
    for key in ("fps", "guidance"):
        out[key] = _optional_number(value[key], where, f"generation.{key}")
    resolution = value["resolution"]
    if resolution is not None and not (
        isinstance(resolution, str) and _RESOLUTION_RE.match(resolution)
    ):
        raise LeaderboardError(
            f"{where}: generation.resolution must be 'HEIGHTxWIDTH' (e.g. '256x320') or null"
        )
    out["resolution"] = resolution
    out["seed_policy"] = _text(value["seed_policy"], where, "generation.seed_policy") or None
    if source == "computed":
        unknown = [k for k in ("frames", "fps", "resolution", "audio_rate") if out[k] is None]
        if unknown:
            raise LeaderboardError(
                f"{where}: a computed entry states its output format: generation."
                f"{', generation.'.join(unknown)} cannot be null"
            )
        if out["seed_policy"] is None:
            raise LeaderboardError(
                f"{where}: a computed entry states its generation.seed_policy (e.g. 'seed 0 for "
                "every prompt')"
            )
    extra = sorted(set(value) - {*GENERATION_FIELDS, "seed_policy"})
    if extra:
        raise LeaderboardError(f"{where}: unknown generation fields {extra}")
    return out


def parse_meta(data: Any, where: str) -> SystemMeta:
    """Check a parsed ``meta.yaml``.

    Args:
        data: what ``yaml.safe_load`` returned.
        where: the file, for messages.

    Raises:
        LeaderboardError: a field is missing or malformed (the message names it).
    """
    if not isinstance(data, dict):
        raise LeaderboardError(f"{where}: must be a YAML mapping of fields")
    unknown = sorted(set(data) - _META_FIELDS)
    if unknown:
        raise LeaderboardError(
            f"{where}: unknown fields {unknown}; known: {', '.join(sorted(_META_FIELDS))}"
        )
    system = _text(data.get("system"), where, "system", required=True)
    source = data.get("source")
    if source not in SOURCES:
        raise LeaderboardError(f"{where}: 'source' must be 'computed' or 'reported'")
    authors = data.get("authors")
    if isinstance(authors, str):
        authors = [authors]
    if not (isinstance(authors, list) and authors and all(isinstance(a, str) for a in authors)):
        raise LeaderboardError(f"{where}: 'authors' must be a name or a list of names")
    date = data.get("date")
    if isinstance(date, dt.date):
        date = date.isoformat()
    try:
        dt.date.fromisoformat(str(date))
    except ValueError:
        raise LeaderboardError(f"{where}: 'date' must be an ISO date (YYYY-MM-DD)") from None
    paper = data.get("paper")
    if paper is not None:
        if not isinstance(paper, dict) or set(paper) - {"title", "url"}:
            raise LeaderboardError(f"{where}: 'paper' must be a mapping with title and url")
        paper = {
            "title": _text(paper.get("title"), where, "paper.title", required=True),
            "url": _url(paper.get("url"), where, "paper.url") or "",
        }
    citation = _text(data.get("citation"), where, "citation", required=source == "reported")
    variant = data.get("variant") or {}
    if not isinstance(variant, dict):
        raise LeaderboardError(f"{where}: 'variant' must be a mapping")
    tables = data.get("paper_tables") or []
    if not (isinstance(tables, list) and all(isinstance(t, int) for t in tables)):
        raise LeaderboardError(f"{where}: 'paper_tables' must be a list of table numbers")
    return SystemMeta(
        system=system,
        source=source,
        authors=tuple(a.strip() for a in authors),
        date=str(date),
        paper=paper,
        code=_url(data.get("code"), where, "code"),
        parameters=_optional_number(data.get("parameters"), where, "parameters", integer=True),
        generation=_generation(data.get("generation"), where, source),
        citation=citation,
        variant=variant,
        paper_tables=tuple(tables),
        notes=_text(data.get("notes"), where, "notes"),
    )


def load_meta(path: str | Path) -> SystemMeta:
    """Read and check a ``meta.yaml``."""
    path = Path(path)
    if not path.is_file():
        raise LeaderboardError(f"{path}: meta.yaml not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise LeaderboardError(f"{path}: not valid YAML ({exc})") from exc
    return parse_meta(data, str(path))


def _read_json(path: Path, what: str) -> dict[str, Any]:
    if not path.is_file():
        raise LeaderboardError(f"{path}: {what} not found")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise LeaderboardError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise LeaderboardError(f"{path}: {what} must be a JSON object")
    return data


def _computed_entry(slug: str, meta: SystemMeta, path: Path, protocol: Mapping[str, Any]) -> Entry:
    results = _read_json(path, "results.json")
    problems = check_results(results, protocol)
    if problems:
        raise LeaderboardError(
            f"{path} does not meet the leaderboard's protocol:\n  - " + "\n  - ".join(problems)
        )
    metrics = {
        name: MetricValue(
            value=float(results["metrics"][name]["value"]),
            ci_low=float(results["metrics"][name]["ci95"][0]),
            ci_high=float(results["metrics"][name]["ci95"][1]),
        )
        for name in protocol["metrics"]
    }
    references = [results["metrics"][n].get("n_reference") for n in protocol["metrics"]]
    return Entry(
        slug=slug,
        meta=meta,
        split=results["split"]["name"],
        metrics=metrics,
        path=path,
        n_generated=int(results["submission"]["scored"]),
        n_reference=min((n for n in references if n), default=None),
        toolkit_version=(results.get("toolkit") or {}).get("version"),
    )


def _reported_entry(slug: str, meta: SystemMeta, path: Path, protocol: Mapping[str, Any]) -> Entry:
    data = _read_json(path, "reported.json")
    if data.get("schema") != REPORTED_SCHEMA:
        raise LeaderboardError(f"{path}: not a {REPORTED_SCHEMA} document")
    split = data.get("split")
    if split not in protocol["splits"]:
        raise LeaderboardError(
            f"{path}: split {split!r} is not a leaderboard split ({', '.join(protocol['splits'])})"
        )
    metrics = data.get("metrics")
    if not isinstance(metrics, dict):
        raise LeaderboardError(f"{path}: 'metrics' must map metric names to numbers")
    missing = [m for m in protocol["metrics"] if m not in metrics]
    unknown = [m for m in metrics if m not in protocol["metrics"]]
    if missing or unknown:
        raise LeaderboardError(f"{path}: metrics missing {missing}, unknown {unknown}")
    values = {}
    for name in protocol["metrics"]:
        value = metrics[name]
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise LeaderboardError(f"{path}: {name} must be a number, got {value!r}")
        if not math.isfinite(value):
            raise LeaderboardError(f"{path}: {name} must be finite, got {value!r}")
        values[name] = MetricValue(value=float(value))
    return Entry(
        slug=slug,
        meta=meta,
        split=split,
        metrics=values,
        path=path,
        paper_split=_text(data.get("paper_split"), str(path), "paper_split"),
    )


def entry_folder_name(meta: SystemMeta) -> str:
    """``<slug>`` for computed entries, ``<slug>-reported`` for numbers copied from a paper."""
    return slugify(meta.system) + ("-reported" if meta.source == "reported" else "")


def load_entries(submissions: str | Path, protocol: Mapping[str, Any]) -> list[Entry]:
    """Every entry under a submissions folder, each checked against the protocol.

    Entries come sorted by split (protocol order), computed before reported, then system name.

    Raises:
        LeaderboardError: an entry is malformed or no longer meets the protocol; the message
            names the file.
    """
    root = Path(submissions)
    entries: list[Entry] = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        meta = load_meta(folder / "meta.yaml")
        if folder.name != entry_folder_name(meta):
            raise LeaderboardError(
                f"{folder}: the folder of {meta.source} system {meta.system!r} must be named "
                f"{entry_folder_name(meta)}"
            )
        wanted = "results.json" if meta.source == "computed" else "reported.json"
        other = "reported.json" if meta.source == "computed" else "results.json"
        found = 0
        for split_dir in sorted(p for p in folder.iterdir() if p.is_dir()):
            if (split_dir / other).exists():
                raise LeaderboardError(
                    f"{split_dir / other}: a {meta.source} entry holds {wanted} files only"
                )
            path = split_dir / wanted
            if not path.is_file():
                continue
            read = _computed_entry if meta.source == "computed" else _reported_entry
            entry = read(folder.name, meta, path, protocol)
            if entry.split != split_dir.name:
                raise LeaderboardError(f"{path}: holds split {entry.split}, not {split_dir.name}")
            entries.append(entry)
            found += 1
        if not found:
            raise LeaderboardError(f"{folder}: no <split>/{wanted} in this entry")
    order = list(protocol["splits"])
    entries.sort(key=lambda e: (order.index(e.split), e.reported, e.meta.system.lower()))
    return entries


def add_entry(
    results_path: str | Path,
    meta_path: str | Path,
    submissions: str | Path,
    protocol: Mapping[str, Any],
    *,
    replace: bool = False,
) -> Path:
    """Validate a computed entry and copy it into the submissions folder.

    Copies ``results.json`` (and ``per_sample.csv`` beside it, when there) to
    ``<submissions>/<system>/<split>/`` and ``meta.yaml`` to ``<submissions>/<system>/``.

    Args:
        results_path: the ``results.json`` written by ``tavgbench score``.
        meta_path: the system's ``meta.yaml`` (``source: computed``).
        submissions: the submissions folder.
        protocol: the leaderboard's protocol.
        replace: overwrite an existing entry of the same system and split, and its meta.yaml.

    Returns:
        The folder the results were copied to.

    Raises:
        LeaderboardError: the meta or results are invalid or computed under another protocol
            (every reason is listed), or the entry exists and ``replace`` is false.
    """
    results_path, meta_path = Path(results_path), Path(meta_path)
    meta = load_meta(meta_path)
    if meta.source != "computed":
        raise LeaderboardError(
            f"{meta_path}: source is {meta.source!r}; `leaderboard add` takes numbers computed "
            "with tavgbench (source: computed). Numbers from a paper go in "
            "<system>-reported/<split>/reported.json (see submissions/README.md)"
        )
    results = _read_json(results_path, "results.json")
    problems = check_results(results, protocol)
    if problems:
        raise LeaderboardError(f"{results_path} refused:\n  - " + "\n  - ".join(problems))
    folder = Path(submissions) / entry_folder_name(meta)
    target = folder / results["split"]["name"]
    existing_meta = folder / "meta.yaml"
    if existing_meta.is_file() and not replace and load_meta(existing_meta) != meta:
        raise LeaderboardError(
            f"{existing_meta} exists and differs from {meta_path}; pass --replace to overwrite it"
        )
    if (target / "results.json").exists() and not replace:
        raise LeaderboardError(
            f"{target / 'results.json'} exists: {meta.system} already has results on "
            f"{results['split']['name']}; pass --replace to overwrite them"
        )
    target.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(meta_path, existing_meta)
    shutil.copyfile(results_path, target / "results.json")
    per_sample = results_path.with_name("per_sample.csv")
    if per_sample.is_file():
        shutil.copyfile(per_sample, target / "per_sample.csv")
    else:
        (target / "per_sample.csv").unlink(missing_ok=True)
    return target
