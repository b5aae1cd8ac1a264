"""Manifest parsing: our CSV/JSONL and both official FAVDBench/TAVGBench formats."""

from __future__ import annotations

import csv
import zipfile
from pathlib import Path

import pytest

from tavgbench.data.favdbench import install_favdbench_test, read_favdbench_test
from tavgbench.data.splits import (
    ClipEntry,
    load_manifest,
    parse_favdbench_caption_tsv,
    parse_favdbench_meta_csv,
    parse_release_captions,
    resolve_split,
    select_tavgbench_3k,
    write_manifest,
)
from tavgbench.errors import ManifestError
from tests.conftest import shared_path


def test_csv_and_jsonl_share_canonical_hash(tmp_path: Path) -> None:
    (tmp_path / "m.csv").write_text('id,caption,duration\na1,"a dog, barking",10\nb2,rain,5\n')
    (tmp_path / "m.jsonl").write_text(
        '{"id": "a1", "caption": "a dog, barking", "duration": 10}\n'
        '\n{"id": "b2", "caption": "rain", "duration": 5.0}\n'
    )
    a, b = load_manifest(tmp_path / "m.csv"), load_manifest(tmp_path / "m.jsonl")
    assert a.ids == ["a1", "b2"] and a.entries[0].caption == "a dog, barking"
    assert a.sha256 == b.sha256 and len(a.sha256) == 64
    round_trip = load_manifest(write_manifest(tmp_path / "w.csv", a.entries))
    assert round_trip.sha256 == a.sha256


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name,caption\na,b\n", "line 1: the header must name"),
        ("id,caption\na,x\na,y\n", "duplicate id 'a'"),
        ("id,caption\na,x\n../x,y\n", "line 3: id '../x'"),
        ("id,caption,duration\na,x,long\n", "line 2: duration 'long'"),
        ("id,caption\na,x,extra\n", "line 2: more fields"),
        ("id,caption,colour\na,x,red\n", "unknown columns"),
        ("id,caption\n", "no clips"),
    ],
)
def test_bad_csv_names_the_line(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(ManifestError, match=message):
        load_manifest(path)


def test_bad_jsonl_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"id": "a", "caption": "x"}\n{"id": "b", \n')
    with pytest.raises(ManifestError, match="bad.jsonl: line 2: not valid JSON"):
        load_manifest(path)


def test_favdbench_caption_tsv() -> None:
    text = "test/-05wY41ht1s_123000_133000\tA man talks. A dog barks.\ntest/x_1_2\tRain.\n"
    entries = parse_favdbench_caption_tsv(text)
    assert [e.id for e in entries] == ["-05wY41ht1s_123000_133000", "x_1_2"]
    assert entries[0].caption == "A man talks. A dog barks."
    with pytest.raises(ManifestError, match="line 1: id 'train/a'"):
        parse_favdbench_caption_tsv("train/a\tcaption\n")
    with pytest.raises(ManifestError, match="line 2: expected"):
        parse_favdbench_caption_tsv("test/a\tok\ntest/b caption without tab\n")


def test_favdbench_meta_csv_ids_in_milliseconds() -> None:
    entries = parse_favdbench_meta_csv("ytid,start,end\n-0gYWIOfqdM,3.0,8.0\nabc,1.5,11.5\n")
    assert [e.id for e in entries] == ["-0gYWIOfqdM_3000_8000", "abc_1500_11500"]
    assert entries[0].duration == 5.0
    with pytest.raises(ManifestError, match="line 2: need 0 <= start < end"):
        parse_favdbench_meta_csv("ytid,start,end\nabc,9,8\n")


def test_release_captions_with_wrapped_lines() -> None:
    text = (
        "--0PQM4-hqg_30000_40000.mp4 A waterfall pours into a pool.\n"
        "The water roars steadily\n"
        "   and birds chirp.\n"
        "\n"
        "a_b_c_d_e_f_10000_20000.mp4 A car drives by.\n"
    )
    entries = parse_release_captions(text)
    assert [e.id for e in entries] == ["--0PQM4-hqg_30000_40000", "a_b_c_d_e_f_10000_20000"]
    assert entries[0].caption == (
        "A waterfall pours into a pool. The water roars steadily and birds chirp."
    )
    assert entries[0].duration == 10.0
    with pytest.raises(ManifestError, match="line 1: expected '<ytid>_<start_ms>_<end_ms>.mp4"):
        parse_release_captions("continuation without a key\n")
    with pytest.raises(ManifestError, match="line 1: end 100 ms <= start 200 ms"):
        parse_release_captions("abcdefghijk_200_100.mp4 x\n")


def test_tavgbench_3k_selection_is_deterministic() -> None:
    entries = [ClipEntry(f"c{i:05d}", f"caption {i}") for i in range(5000)]
    first = select_tavgbench_3k(entries, n=3000, seed=0)
    again = select_tavgbench_3k(list(reversed(entries)), n=3000, seed=0)
    assert first == again and len(first) == 3000
    assert [e.id for e in first] == sorted(e.id for e in first)
    assert select_tavgbench_3k(entries, n=3000, seed=1) != first
    with pytest.raises(ManifestError, match="fewer than 3000"):
        select_tavgbench_3k(entries[:10])


def test_real_favdbench_ids_through_both_official_formats(tmp_path: Path, monkeypatch) -> None:
    """The 1,000 real test ids (shared data) survive the release zip and the meta CSV."""
    ids_csv = shared_path("data/favdbench/audioscore_result_test_ids.csv")
    with ids_csv.open() as handle:
        ids = [row["case"] for row in csv.DictReader(handle) if row["case"] != "mean"]
    assert len(ids) == 1000
    tsv = "".join(f"test/{i}\tcaption of {i}\n" for i in ids)
    archive = tmp_path / "metadata.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("metadata/test.caption.tsv", tsv)
        zf.writestr("metadata/train.caption.tsv", "train/x\ty\n")
    monkeypatch.setenv("TAVGBENCH_HOME", str(tmp_path / "home"))
    install_favdbench_test(archive)
    split = resolve_split("favdbench-test")
    assert sorted(split.ids) == sorted(ids) and split.name == "favdbench-test"
    lengths = [int(i.rsplit("_", 2)[2]) - int(i.rsplit("_", 2)[1]) for i in ids]
    assert lengths.count(10000) == 567 and lengths.count(5000) == 433
    parts = [i.rsplit("_", 2) for i in ids]
    meta = "ytid,start,end\n" + "".join(
        f"{y},{int(s) / 1000},{int(e) / 1000}\n" for y, s, e in parts
    )
    (tmp_path / "test.csv").write_text(meta)
    assert [e.id for e in read_favdbench_test(tmp_path / "test.csv")] == ids


def test_unknown_split_name(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("TAVGBENCH_HOME", str(tmp_path))
    with pytest.raises(ManifestError, match="split 'favdbench-test' is not installed"):
        resolve_split("favdbench-test")
    with pytest.raises(ManifestError, match="neither a built-in split"):
        resolve_split("no-such-split")
