"""Caption-set statistics: the columns of the TAVGBench paper's Table 1.

For a caption file (TAVGBench's ``release_captions.txt``, a manifest CSV/JSONL, or the JSONL that
``tavgbench annotate`` writes) this counts the clips, their total duration in hours, and the mean
number of sentences and words per caption.

Durations come from the clips themselves when a folder of clips is given (the container duration
of ``<id>.mp4``), otherwise from the caption file (a TAVGBench key ``<ytid>_<start_ms>_<end_ms>``
gives ``(end - start) / 1000`` seconds; manifests and our JSONL may carry a ``duration`` field).
Clips without a known duration are counted and reported, never guessed.

Counting rules (stated so the numbers can be reproduced):

* a *sentence* is a maximal run of text ending at ``.``, ``!`` or ``?`` (one or more of them,
  optionally followed by closing quotes or brackets) that is followed by whitespace or the end of
  the caption; text after the last terminator counts as one more sentence. So ``"3.5 m"`` and
  ``"e.g.x"`` do not split, while ``"A dog barks. A car passes"`` is two sentences. There is no
  abbreviation list: ``"e.g. crows"`` splits after ``"e.g."``.
* a *word* is a whitespace-separated token holding at least one letter or digit (a lone ``-``
  or ``&`` is not a word).

The paper reports 1.7M clips, 11.8k hours, 2.32 sentences and 49.98 words per caption; note that
1.7M clips of 10 seconds are about 4.7k hours, so its hour count does not follow from its clips.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from tavgbench.data.splits import (
    ClipEntry,
    parse_manifest_csv,
    parse_manifest_jsonl,
    parse_release_captions,
)
from tavgbench.errors import ManifestError, MediaError

#: The CSV columns written by :func:`write_stats_csv`, in order.
CSV_COLUMNS = (
    "clips",
    "hours",
    "sentences_per_caption",
    "words_per_caption",
    "clips_without_duration",
    "duration_source",
    "source",
)

_SENTENCE_END = re.compile(r"[.!?]+[\"')\]]*(?=\s|$)")
_WORD = re.compile(r"[^\W_]")


def split_sentences(text: str) -> list[str]:
    """Split a caption into sentences by the rule stated in the module docstring."""
    sentences = []
    start = 0
    for match in _SENTENCE_END.finditer(text):
        piece = text[start : match.end()].strip()
        if _WORD.search(piece):
            sentences.append(piece)
        start = match.end()
    tail = text[start:].strip()
    if _WORD.search(tail):
        sentences.append(tail)
    return sentences


def count_words(text: str) -> int:
    """Whitespace-separated tokens holding at least one letter or digit."""
    return sum(1 for token in text.split() if _WORD.search(token))


@dataclass(frozen=True)
class CaptionStats:
    """Table 1 columns for one caption file.

    Attributes:
        clips: number of clips (captions).
        hours: total duration of the clips with a known duration, in hours.
        sentences_per_caption: mean sentences per caption (see :func:`split_sentences`).
        words_per_caption: mean words per caption (see :func:`count_words`).
        clips_without_duration: clips whose duration is unknown (not in ``hours``).
        duration_source: ``"clips"`` (probed files), ``"captions"`` (keys or duration fields).
        source: the caption file.
    """

    clips: int
    hours: float
    sentences_per_caption: float
    words_per_caption: float
    clips_without_duration: int
    duration_source: str
    source: str

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def load_captions(path: str | Path) -> list[ClipEntry]:
    """Read a caption file: ``.jsonl`` (ours or a manifest), ``.csv`` manifest, else release text.

    Raises:
        ManifestError: the file is missing, not UTF-8, malformed, empty, or repeats an id.
    """
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"{path}: caption file not found")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ManifestError(f"{path}: not UTF-8 text") from exc
    suffix = path.suffix.lower()
    if suffix in {".jsonl", ".ndjson"}:
        entries = parse_manifest_jsonl(text, str(path), ignore_unknown=True)
    elif suffix == ".csv":
        entries = parse_manifest_csv(text, str(path))
    else:
        entries = parse_release_captions(text, str(path))
    if not entries:
        raise ManifestError(f"{path}: no captions found")
    seen: set[str] = set()
    for entry in entries:
        if entry.id in seen:
            raise ManifestError(f"{path}: duplicate id {entry.id!r}")
        seen.add(entry.id)
    return entries


def clip_durations(
    ids: Sequence[str],
    clips_dir: str | Path,
    *,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, float]:
    """Container durations (seconds) of ``<clips_dir>/<id>.mp4`` for the ids that exist there.

    Missing or unreadable files are left out (their clips count as without duration).
    """
    from tavgbench.media import probe

    clips_dir = Path(clips_dir)
    if not clips_dir.is_dir():
        raise MediaError(f"{clips_dir}: clip folder not found")
    durations: dict[str, float] = {}
    for done, clip_id in enumerate(ids, start=1):
        path = clips_dir / f"{clip_id}.mp4"
        if path.is_file():
            try:
                seconds = probe(path).duration
            except MediaError:
                seconds = 0.0
            if seconds > 0:
                durations[clip_id] = seconds
        if progress is not None:
            progress(done, len(ids))
    return durations


def caption_stats(
    entries: Sequence[ClipEntry],
    *,
    durations: dict[str, float] | None = None,
    source: str = "",
) -> CaptionStats:
    """Compute the Table 1 columns.

    Args:
        entries: the captions (``ClipEntry.duration`` is used unless ``durations`` is given).
        durations: seconds per id measured from the clips; ids absent here have no duration.
        source: the caption file, recorded in the result.
    """
    if not entries:
        raise ManifestError(f"{source or '<captions>'}: no captions to count")
    seconds = 0.0
    unknown = 0
    sentences = 0
    words = 0
    for entry in entries:
        duration = entry.duration if durations is None else durations.get(entry.id)
        if duration is None:
            unknown += 1
        else:
            seconds += duration
        sentences += len(split_sentences(entry.caption))
        words += count_words(entry.caption)
    n = len(entries)
    return CaptionStats(
        clips=n,
        hours=seconds / 3600.0,
        sentences_per_caption=sentences / n,
        words_per_caption=words / n,
        clips_without_duration=unknown,
        duration_source="captions" if durations is None else "clips",
        source=source,
    )


def write_stats_csv(path: str | Path, stats: CaptionStats) -> Path:
    """Write one header line (:data:`CSV_COLUMNS`) and one row."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    row = stats.as_dict()
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        writer.writerow({key: row[key] for key in CSV_COLUMNS})
    return path
