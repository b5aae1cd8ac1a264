"""Caption statistics (Table 1 columns): sentence/word rules, durations, wrapped release lines."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from tavgbench.data.stats import (
    CSV_COLUMNS,
    caption_stats,
    clip_durations,
    count_words,
    load_captions,
    split_sentences,
    write_stats_csv,
)
from tavgbench.errors import ManifestError

# Two clips; the first caption wraps onto two more lines (as in TAVGBench's release file).
RELEASE = """\
--0PQM4-hqg_30000_40000.mp4 A man plays a guitar on a stage. The crowd cheers
loudly while lights flash.
  A drum starts!
-0BIyqJj9ZU_0_10000.mp4 Rain falls on a tin roof during a storm; 3.5 m of water
"""


def test_sentence_rule() -> None:
    assert split_sentences("A dog barks. A car passes") == ["A dog barks.", "A car passes"]
    assert split_sentences("It is 3.5 m long, e.g.x here.") == ["It is 3.5 m long, e.g.x here."]
    assert split_sentences('He says "stop!" Then leaves...') == [
        'He says "stop!"',
        "Then leaves...",
    ]
    assert split_sentences("  ... ") == []
    assert split_sentences("Wow?! Yes.") == ["Wow?!", "Yes."]
    # The rule knows no abbreviations: "e.g. " ends a sentence (stated in the docstring).
    assert len(split_sentences("Birds, e.g. crows, call.")) == 2


def test_word_rule() -> None:
    assert count_words("A man - and a dog & a cat, 3 of them.") == 10
    assert count_words("") == 0


def test_release_file_with_wrapped_lines(tmp_path: Path) -> None:
    path = tmp_path / "release_captions.txt"
    path.write_text(RELEASE)
    entries = load_captions(path)
    assert [e.id for e in entries] == ["--0PQM4-hqg_30000_40000", "-0BIyqJj9ZU_0_10000"]
    stats = caption_stats(entries, source=str(path))
    # Hand count: clip 1 has 3 sentences and 18 words, clip 2 has 1 sentence and 13 words
    # ("3.5" does not split); both clips last 10 s. Exact arithmetic, tolerance 1e-12.
    assert stats.clips == 2
    assert stats.hours == pytest.approx(20 / 3600, abs=1e-12)
    assert stats.sentences_per_caption == pytest.approx(2.0, abs=1e-12)
    assert stats.words_per_caption == pytest.approx(15.5, abs=1e-12)
    assert stats.clips_without_duration == 0
    assert stats.duration_source == "captions"


def test_annotation_jsonl_and_csv(tmp_path: Path) -> None:
    path = tmp_path / "captions.jsonl"
    rows = [
        {"id": "a", "caption": "One. Two.", "frame_captions": ["x"], "duration": 4.0},
        {"id": "b", "caption": "Three words here", "prompt_version": "1"},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    stats = caption_stats(load_captions(path), source=str(path))
    assert (stats.clips, stats.clips_without_duration) == (2, 1)
    assert stats.hours == pytest.approx(4 / 3600, abs=1e-12)
    assert stats.sentences_per_caption == pytest.approx(1.5, abs=1e-12)
    assert stats.words_per_caption == pytest.approx(2.5, abs=1e-12)
    out = write_stats_csv(tmp_path / "stats.csv", stats)
    with out.open() as handle:
        read = list(csv.DictReader(handle))
    assert tuple(read[0]) == CSV_COLUMNS
    assert read[0]["clips"] == "2" and float(read[0]["words_per_caption"]) == 2.5


def test_durations_from_clips(tmp_path: Path, make_clip) -> None:
    clips = tmp_path / "clips"
    make_clip("--0PQM4-hqg_30000_40000.mp4", folder=clips, frames=24, fps=12)
    (tmp_path / "c.txt").write_text(RELEASE)
    entries = load_captions(tmp_path / "c.txt")
    durations = clip_durations([e.id for e in entries], clips)
    stats = caption_stats(entries, durations=durations)
    # 24 frames at 12 fps: a 2 s clip (container duration within AAC padding, 0.05 s).
    assert stats.hours * 3600 == pytest.approx(2.0, abs=0.05)
    assert stats.clips_without_duration == 1
    assert stats.duration_source == "clips"


def test_bad_files(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="not found"):
        load_captions(tmp_path / "nope.txt")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a"}\n')
    with pytest.raises(ManifestError, match="line 1: expected an object with 'id' and 'caption'"):
        load_captions(bad)
    dup = tmp_path / "dup.txt"
    dup.write_text("--0PQM4-hqg_0_10000.mp4 a\n--0PQM4-hqg_0_10000.mp4 b\n")
    with pytest.raises(ManifestError, match="duplicate id"):
        load_captions(dup)
