"""Split manifests: the ids and captions a submission is scored against.

A split is an ordered list of clips (``id, caption`` plus optional ``video_caption``,
``audio_caption``, ``duration``, ``reference_path``), loaded from a CSV with a header or from
JSONL. Its sha256 is computed over a canonical form of the entries, so the same split stored as
CSV or JSONL has the same hash; results.json and the leaderboard record it.

Built-in names resolve to manifests in the cache (``$TAVGBENCH_HOME/splits/<name>.csv``):
``favdbench-test`` (``tavgbench split fetch favdbench-test``), ``tavgbench-3k``
(``tavgbench split make tavgbench-3k --captions release_captions.txt``), ``tavgbench-eval``
(``tavgbench split import tavgbench-eval MANIFEST``) and ``demo`` (``tavgbench demo``).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tavgbench import config
from tavgbench.errors import ManifestError

FIELDS = ("id", "caption", "video_caption", "audio_caption", "duration", "reference_path")
BUILTIN_SPLITS = {
    "favdbench-test": "the 1,000 FAVDBench test clips: `tavgbench split fetch favdbench-test`",
    "tavgbench-3k": "3,000 TAVGBench evaluation clips: "
    "`tavgbench split make tavgbench-3k --captions release_captions.txt --seed 0`",
    "tavgbench-eval": "your own TAVGBench evaluation manifest: "
    "`tavgbench split import tavgbench-eval MANIFEST.csv`",
    "demo": "the procedural demo set: `tavgbench demo`",
}
_ID_RE = re.compile(r"^[A-Za-z0-9_.\-]+$")
# A TAVGBench / AudioSet clip key: 11-character YouTube id, start and end in integer milliseconds.
_KEY = r"(?P<ytid>[A-Za-z0-9_\-]{11})_(?P<start>\d+)_(?P<end>\d+)"
_RELEASE_LINE = re.compile(rf"^{_KEY}\.mp4\s+(?P<caption>\S.*)$")
_RELEASE_KEY_ONLY = re.compile(rf"^{_KEY}\.mp4\s*$")


@dataclass(frozen=True)
class ClipEntry:
    """One clip of a split."""

    id: str
    caption: str
    video_caption: str = ""
    audio_caption: str = ""
    duration: float | None = None
    reference_path: str = ""

    def canonical(self) -> dict[str, object]:
        return {
            "id": self.id,
            "caption": self.caption,
            "video_caption": self.video_caption,
            "audio_caption": self.audio_caption,
            "duration": self.duration,
            "reference_path": self.reference_path,
        }


@dataclass(frozen=True)
class Split:
    """An ordered, validated list of clips with its canonical sha256."""

    name: str
    entries: tuple[ClipEntry, ...]
    source: str = ""
    sha256: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if not self.sha256:
            object.__setattr__(self, "sha256", manifest_sha256(self.entries))

    @property
    def ids(self) -> list[str]:
        return [e.id for e in self.entries]

    def __len__(self) -> int:
        return len(self.entries)

    def by_id(self) -> dict[str, ClipEntry]:
        return {e.id: e for e in self.entries}


def manifest_sha256(entries: Iterable[ClipEntry]) -> str:
    """sha256 of the entries' canonical JSON lines (format-independent)."""
    digest = hashlib.sha256()
    for entry in entries:
        line = json.dumps(entry.canonical(), sort_keys=True, ensure_ascii=False)
        digest.update(line.encode("utf-8") + b"\n")
    return digest.hexdigest()


def _check_entries(entries: Sequence[ClipEntry], source: str) -> None:
    if not entries:
        raise ManifestError(f"{source}: the manifest has no clips")
    seen: set[str] = set()
    for entry in entries:
        if entry.id in seen:
            raise ManifestError(f"{source}: duplicate id {entry.id!r}")
        seen.add(entry.id)


def _entry(row: dict[str, object], where: str) -> ClipEntry:
    clip_id = str(row.get("id") or "").strip()
    if not clip_id:
        raise ManifestError(f"{where}: missing id")
    if not _ID_RE.match(clip_id) or clip_id in {".", ".."}:
        raise ManifestError(
            f"{where}: id {clip_id!r} may only hold letters, digits, '_', '-' and '.'"
        )
    caption = str(row.get("caption") or "").strip()
    raw_duration = row.get("duration")
    duration: float | None = None
    if raw_duration not in (None, ""):
        try:
            duration = float(str(raw_duration))
        except ValueError as exc:
            raise ManifestError(f"{where}: duration {raw_duration!r} is not a number") from exc
        if not duration > 0:
            raise ManifestError(f"{where}: duration must be > 0, got {raw_duration!r}")
    return ClipEntry(
        id=clip_id,
        caption=caption,
        video_caption=str(row.get("video_caption") or "").strip(),
        audio_caption=str(row.get("audio_caption") or "").strip(),
        duration=duration,
        reference_path=str(row.get("reference_path") or "").strip(),
    )


def parse_manifest_csv(text: str, source: str = "<manifest>") -> list[ClipEntry]:
    """Parse a manifest CSV whose header names ``id,caption`` and optional fields."""
    reader = csv.DictReader(io.StringIO(text))
    header = reader.fieldnames or []
    if "id" not in header or "caption" not in header:
        raise ManifestError(
            f"{source}: line 1: the header must name at least 'id' and 'caption', got {header}"
        )
    unknown = [h for h in header if h not in FIELDS]
    if unknown:
        raise ManifestError(f"{source}: line 1: unknown columns {unknown}; known: {list(FIELDS)}")
    entries = []
    for row in reader:
        where = f"{source}: line {reader.line_num}"
        if None in row:
            raise ManifestError(f"{where}: more fields than the header has")
        entries.append(_entry(row, where))
    return entries


def parse_manifest_jsonl(
    text: str, source: str = "<manifest>", *, ignore_unknown: bool = False
) -> list[ClipEntry]:
    """Parse a JSONL manifest: one object per line with at least ``id`` and ``caption``.

    With ``ignore_unknown`` other fields are skipped instead of refused (``annotate`` output
    carries frame captions, model ids and more beside ``id`` and ``caption``).
    """
    entries = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{source}: line {number}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ManifestError(f"{where}: not valid JSON ({exc.msg})") from exc
        if not isinstance(row, dict):
            raise ManifestError(f"{where}: expected a JSON object")
        unknown = [k for k in row if k not in FIELDS]
        if unknown and not ignore_unknown:
            raise ManifestError(f"{where}: unknown fields {unknown}; known: {list(FIELDS)}")
        if "caption" not in row:
            raise ManifestError(f"{where}: expected an object with 'id' and 'caption'")
        entries.append(_entry({k: v for k, v in row.items() if k in FIELDS}, where))
    return entries


def parse_favdbench_caption_tsv(text: str, source: str = "test.caption.tsv") -> list[ClipEntry]:
    """Parse FAVDBench's ``metadata/test.caption.tsv``: rows ``test/<id>\\t<caption>``."""
    entries = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{source}: line {number}"
        parts = line.split("\t")
        if len(parts) != 2:
            raise ManifestError(f"{where}: expected 'test/<id><TAB><caption>', got {line[:80]!r}")
        key, caption = parts
        if not key.startswith("test/"):
            raise ManifestError(f"{where}: id {key!r} does not start with 'test/'")
        if not caption.strip():
            raise ManifestError(f"{where}: empty caption for {key!r}")
        entries.append(_entry({"id": key[len("test/") :], "caption": caption}, where))
    return entries


def parse_favdbench_meta_csv(text: str, source: str = "meta/test.csv") -> list[ClipEntry]:
    """Parse the FAVDBench Hugging Face ``meta/test.csv`` (``ytid,start,end`` in seconds).

    Ids become ``<ytid>_<start ms>_<end ms>`` as in the release; a ``caption`` column is used
    when present, otherwise captions are empty (merge them from ``test.caption.tsv``).
    """
    reader = csv.DictReader(io.StringIO(text))
    header = [h.strip() for h in (reader.fieldnames or [])]
    if not {"ytid", "start", "end"} <= set(header):
        raise ManifestError(f"{source}: line 1: the header must name ytid,start,end, got {header}")
    entries = []
    for row in reader:
        row = {k.strip(): (v or "").strip() for k, v in row.items() if k is not None}
        where = f"{source}: line {reader.line_num}"
        try:
            start, end = float(row["start"]), float(row["end"])
        except ValueError as exc:
            raise ManifestError(f"{where}: start/end must be seconds, got {row}") from exc
        if not end > start >= 0:
            raise ManifestError(f"{where}: need 0 <= start < end, got {start}, {end}")
        clip_id = f"{row['ytid']}_{round(start * 1000)}_{round(end * 1000)}"
        entries.append(
            _entry(
                {"id": clip_id, "caption": row.get("caption", ""), "duration": end - start},
                where,
            )
        )
    return entries


def parse_release_captions(text: str, source: str = "release_captions.txt") -> list[ClipEntry]:
    """Parse TAVGBench's ``release_captions.txt``.

    Each clip starts a line with ``<ytid>_<start_ms>_<end_ms>.mp4`` followed by its caption; a
    caption may wrap onto following lines, which do not start with a clip key and are joined to
    it with a space. The duration comes from the key.
    """
    entries: list[ClipEntry] = []
    current: dict[str, object] | None = None
    current_line = 0

    def flush() -> None:
        if current is not None:
            if not str(current["caption"]).strip():
                raise ManifestError(f"{source}: line {current_line}: empty caption")
            entries.append(_entry(current, f"{source}: line {current_line}"))

    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        match = _RELEASE_LINE.match(line) or _RELEASE_KEY_ONLY.match(line)
        if match:
            flush()
            start, end = int(match["start"]), int(match["end"])
            if end <= start:
                raise ManifestError(f"{source}: line {number}: end {end} ms <= start {start} ms")
            current = {
                "id": f"{match['ytid']}_{start}_{end}",
                "caption": match.groupdict().get("caption") or "",
                "duration": (end - start) / 1000.0,
            }
            current_line = number
        elif current is None:
            raise ManifestError(
                f"{source}: line {number}: expected '<ytid>_<start_ms>_<end_ms>.mp4 <caption>', "
                f"got {line[:80]!r}"
            )
        else:
            current["caption"] = f"{current['caption']} {line}".strip()
    flush()
    return entries


def load_manifest(path: str | Path, name: str | None = None) -> Split:
    """Load a manifest file (CSV with a header, or ``.jsonl``) as a :class:`Split`."""
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"{path}: manifest not found")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ManifestError(f"{path}: not UTF-8 text") from exc
    if path.suffix.lower() in {".jsonl", ".ndjson"}:
        entries = parse_manifest_jsonl(text, str(path))
    else:
        entries = parse_manifest_csv(text, str(path))
    _check_entries(entries, str(path))
    return Split(name=name or path.stem, entries=tuple(entries), source=str(path))


def write_manifest(path: str | Path, entries: Sequence[ClipEntry]) -> Path:
    """Write entries as a manifest CSV (only the columns some entry uses)."""
    path = Path(path)
    _check_entries(entries, str(path))
    used = [f for f in FIELDS if f in ("id", "caption") or any(e.canonical()[f] for e in entries)]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=used)
        writer.writeheader()
        for entry in entries:
            row = entry.canonical()
            writer.writerow({f: "" if row[f] is None else row[f] for f in used})
    tmp.replace(path)
    return path


def splits_dir() -> Path:
    return config.home() / "splits"


def builtin_manifest_path(name: str) -> Path:
    """Where a built-in split's manifest lives once fetched, made or imported."""
    if name == "demo":
        return config.demo_dir() / "split.csv"
    return splits_dir() / f"{name}.csv"


def resolve_split(name_or_path: str) -> Split:
    """A built-in split name or a path to a manifest file, loaded as a :class:`Split`."""
    if name_or_path in BUILTIN_SPLITS:
        path = builtin_manifest_path(name_or_path)
        if not path.is_file():
            raise ManifestError(
                f"split {name_or_path!r} is not installed ({path} missing); get it with "
                f"{BUILTIN_SPLITS[name_or_path].split(': ', 1)[1]}"
            )
        return load_manifest(path, name=name_or_path)
    path = Path(name_or_path)
    if path.exists():
        return load_manifest(path)
    raise ManifestError(
        f"{name_or_path!r} is neither a built-in split ({', '.join(BUILTIN_SPLITS)}) "
        "nor a manifest file"
    )


def select_tavgbench_3k(
    entries: Sequence[ClipEntry], *, n: int = 3000, seed: int = 0
) -> list[ClipEntry]:
    """The documented deterministic selection of the TAVGBench evaluation clips.

    Clips are sorted by id (so the order of the caption file does not matter), a permutation is
    drawn with ``numpy.random.default_rng(seed)``, its first ``n`` clips are kept, and the result
    is sorted by id again.
    """
    ordered = sorted(entries, key=lambda e: e.id)
    if len(ordered) < n:
        raise ManifestError(f"the caption file holds {len(ordered)} clips, fewer than {n}")
    order = np.random.default_rng(seed).permutation(len(ordered))[:n]
    return sorted((ordered[i] for i in order), key=lambda e: e.id)
