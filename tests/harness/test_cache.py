"""Tests of the per-clip feature cache: keys, round trips, damage, errors, concurrency."""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import multiprocessing
import os
from pathlib import Path

import numpy as np
import pytest
from safetensors import safe_open

from tavgbench.errors import TavgbenchError
from tavgbench.harness import cache as cache_module
from tavgbench.harness.cache import CacheError, FeatureCache, combined_hash, content_hash

EXTRACTOR = {
    "name": "i3d",
    "version": "1",
    "weights": "i3d-kinetics-400",
    "weights_sha256": "0" * 64,
    "protocol": {"preprocess": "tf", "frames": 16, "size": [224, 224]},
}
CLIP = hashlib.sha256(b"clip").hexdigest()


def _arrays() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "logits": rng.normal(size=(400,)).astype(np.float32),
        "frames": rng.normal(size=(16, 512)).astype(np.float64),
        "half": rng.normal(size=(3, 2)).astype(np.float16),
        "counts": np.arange(6, dtype=np.int64).reshape(2, 3),
        "mask": np.array([True, False, True]),
        "bytes": np.arange(5, dtype=np.uint8),
        "scalar": np.array(2.5, dtype=np.float32),
        "strided": np.arange(20, dtype=np.int32).reshape(4, 5)[:, ::2],
        "fortran": np.asfortranarray(np.arange(6, dtype=np.float32).reshape(2, 3)),
        "big_endian": np.arange(4, dtype=">f8"),
    }


def _assert_same(actual: dict[str, np.ndarray] | None, expected: dict[str, np.ndarray]) -> None:
    assert actual is not None
    assert set(actual) == set(expected)
    for name, array in expected.items():
        # Byte order is stored native; the value type must not change.
        assert actual[name].dtype == array.dtype.newbyteorder("="), name
        np.testing.assert_array_equal(actual[name], array, err_msg=name)


def test_content_hash_streams_file_bytes(tmp_path: Path) -> None:
    blob = os.urandom(3 * (1 << 20) + 17)  # spans several 1 MiB chunks
    path = tmp_path / "clip.mp4"
    path.write_bytes(blob)
    assert content_hash(path) == hashlib.sha256(blob).hexdigest()


def test_combined_hash_is_ordered_hash_of_file_digests(tmp_path: Path) -> None:
    video, audio = tmp_path / "a.mp4", tmp_path / "a.wav"
    video.write_bytes(b"video")
    audio.write_bytes(b"audio")
    expected = hashlib.sha256(
        hashlib.sha256(b"video").digest() + hashlib.sha256(b"audio").digest()
    ).hexdigest()
    assert combined_hash([video, audio]) == expected
    assert combined_hash([audio, video]) != expected
    renamed = tmp_path / "b.mp4"
    video.rename(renamed)
    assert combined_hash([renamed, audio]) == expected


def test_content_hash_missing_file_is_cache_error(tmp_path: Path) -> None:
    with pytest.raises(CacheError, match=r"cannot read .*missing\.mp4"):
        content_hash(tmp_path / "missing.mp4")


def test_round_trip_keeps_dtypes_shapes_and_values(tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path)
    assert cache.get(CLIP, EXTRACTOR) is None
    assert (CLIP, EXTRACTOR) not in cache
    arrays = _arrays()
    cache.put(CLIP, EXTRACTOR, arrays)
    assert (CLIP, EXTRACTOR) in cache
    _assert_same(cache.get(CLIP, EXTRACTOR), arrays)
    # A second put replaces the entry.
    cache.put(CLIP, EXTRACTOR, {"logits": np.zeros(400, np.float32)})
    _assert_same(cache.get(CLIP, EXTRACTOR), {"logits": np.zeros(400, np.float32)})


def test_entry_layout_and_self_describing_metadata(tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path)
    cache.put(CLIP, EXTRACTOR, {"logits": np.ones(4, np.float32)})
    key = cache.key(CLIP, EXTRACTOR)
    path = tmp_path / "i3d" / key[:2] / f"{key}.safetensors"
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == [path]
    with safe_open(str(path), framework="np") as entry:
        metadata = entry.metadata()
    assert json.loads(metadata["tavgbench.extractor"]) == EXTRACTOR
    assert metadata["tavgbench.clip_hash"] == CLIP


def test_key_is_canonical_and_changes_with_what_changes_features() -> None:
    cache = FeatureCache("unused")
    key = cache.key(CLIP, EXTRACTOR)
    reordered = dict(reversed(list(EXTRACTOR.items())))
    reordered["protocol"] = dict(reversed(list(EXTRACTOR["protocol"].items())))
    assert cache.key(CLIP, reordered) == key
    changed = [
        {**EXTRACTOR, "version": "2"},
        {**EXTRACTOR, "weights_sha256": "1" * 64},
        {**EXTRACTOR, "protocol": {**EXTRACTOR["protocol"], "preprocess": "videogpt"}},
        {**EXTRACTOR, "protocol": {**EXTRACTOR["protocol"], "frames": 32}},
        {**EXTRACTOR, "name": "clip"},
    ]
    keys = {cache.key(CLIP, extractor) for extractor in changed}
    assert key not in keys and len(keys) == len(changed)
    assert cache.key(hashlib.sha256(b"other clip").hexdigest(), EXTRACTOR) != key


def test_entries_for_other_versions_are_not_returned(tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path)
    cache.put(CLIP, EXTRACTOR, {"logits": np.ones(4, np.float32)})
    assert cache.get(CLIP, {**EXTRACTOR, "version": "2"}) is None
    assert cache.get(CLIP, {**EXTRACTOR, "weights_sha256": "f" * 64}) is None


@pytest.mark.parametrize("damage", ["half", "one byte short", "empty", "garbage"])
def test_damaged_entry_is_missing_deleted_and_recomputable(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, damage: str
) -> None:
    cache = FeatureCache(tmp_path)
    arrays = _arrays()
    cache.put(CLIP, EXTRACTOR, arrays)
    path = cache.path(CLIP, EXTRACTOR)
    blob = path.read_bytes()
    damaged = {
        "half": blob[: len(blob) // 2],
        "one byte short": blob[:-1],
        "empty": b"",
        "garbage": os.urandom(len(blob)),
    }[damage]
    path.write_bytes(damaged)
    with caplog.at_level(logging.WARNING, logger="tavgbench.harness.cache"):
        assert cache.get(CLIP, EXTRACTOR) is None
    assert "Deleting damaged feature cache entry" in caplog.text
    assert not path.exists()
    cache.put(CLIP, EXTRACTOR, arrays)
    _assert_same(cache.get(CLIP, EXTRACTOR), arrays)


def test_entry_with_foreign_metadata_is_discarded(tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path)
    other = {**EXTRACTOR, "version": "2"}
    cache.put(CLIP, other, {"logits": np.ones(2, np.float32)})
    # A file moved under the wrong key must not be served as this extractor's features.
    target = cache.path(CLIP, EXTRACTOR)
    target.parent.mkdir(parents=True, exist_ok=True)
    cache.path(CLIP, other).rename(target)
    assert cache.get(CLIP, EXTRACTOR) is None
    assert not target.exists()


@pytest.mark.parametrize(
    ("failure", "expected"),
    [
        (PermissionError(errno.EACCES, "Permission denied"), "is not writable"),
        (OSError(errno.EROFS, "Read-only file system"), "is not writable"),
        (OSError(errno.ENOSPC, "No space left on device"), "no space left"),
    ],
)
@pytest.mark.parametrize("failing_call", ["open", "replace"])
def test_write_failures_raise_cache_error_naming_folder(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    failure: OSError,
    expected: str,
    failing_call: str,
) -> None:
    # Tests run as root, where chmod cannot make a folder read-only: simulate the OS error.
    def fail(*args: object, **kwargs: object) -> None:
        raise failure

    monkeypatch.setattr(cache_module.os, failing_call, fail)
    cache = FeatureCache(tmp_path)
    with pytest.raises(CacheError, match=expected) as caught:
        cache.put(CLIP, EXTRACTOR, {"logits": np.ones(2, np.float32)})
    monkeypatch.undo()
    message = str(caught.value)
    assert str(cache.path(CLIP, EXTRACTOR).parent) in message
    assert "TAVGBENCH_HOME" in message and "--cache-dir" in message
    assert isinstance(caught.value, TavgbenchError)
    # No temporary file is left behind, and the cache still works once the error is gone.
    assert not list(tmp_path.rglob("*.tmp"))
    assert cache.get(CLIP, EXTRACTOR) is None


def test_unwritable_root_folder_is_cache_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(CacheError, match="cannot write the feature cache"):
        FeatureCache(blocker).put(CLIP, EXTRACTOR, {"logits": np.ones(2, np.float32)})


def test_put_rejects_unstorable_input(tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path)
    with pytest.raises(ValueError, match="at least one array"):
        cache.put(CLIP, EXTRACTOR, {})
    with pytest.raises(TypeError, match="cannot store"):
        cache.put(CLIP, EXTRACTOR, {"names": np.array(["a", "b"], dtype=object)})
    with pytest.raises(ValueError, match="'name'"):
        cache.put(CLIP, {**EXTRACTOR, "name": "../escape"}, {"x": np.ones(1)})


def _write_repeatedly(root: str, worker: int, barrier, rounds: int) -> None:
    cache = FeatureCache(root)
    barrier.wait()
    for _ in range(rounds):
        cache.put(CLIP, EXTRACTOR, {"logits": np.full(4096, worker, np.float32)})


@pytest.mark.skipif(
    "fork" not in multiprocessing.get_all_start_methods(), reason="needs the fork start method"
)
def test_concurrent_writers_of_one_key_leave_a_valid_entry(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    context = multiprocessing.get_context("fork")
    barrier = context.Barrier(3)
    writers = [
        context.Process(target=_write_repeatedly, args=(str(tmp_path), worker, barrier, 40))
        for worker in (1, 2)
    ]
    for process in writers:
        process.start()
    cache = FeatureCache(tmp_path)
    barrier.wait()
    seen: set[float] = set()
    # Read while both processes write: a reader sees nothing or a whole entry, never a torn one.
    with caplog.at_level(logging.WARNING, logger="tavgbench.harness.cache"):
        while any(process.is_alive() for process in writers):
            entry = cache.get(CLIP, EXTRACTOR)
            if entry is not None:
                values = np.unique(entry["logits"])
                assert values.size == 1 and entry["logits"].shape == (4096,)
                seen.add(float(values[0]))
    for process in writers:
        process.join(timeout=60)
        assert process.exitcode == 0
    assert "damaged" not in caplog.text
    final = cache.get(CLIP, EXTRACTOR)
    assert final is not None
    assert set(np.unique(final["logits"])) <= {1.0, 2.0}
    assert seen <= {1.0, 2.0}
    assert not list(tmp_path.rglob("*.tmp"))


def test_sweep_removes_only_stale_temporaries(tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path)
    cache.put(CLIP, EXTRACTOR, {"logits": np.ones(4, np.float32)})
    entry = cache.path(CLIP, EXTRACTOR)
    # What a writer killed between open and rename leaves: an old one and one being written.
    stale = entry.parent / f".{entry.stem}.123.aaaa.tmp"
    fresh = entry.parent / f".{entry.stem}.456.bbbb.tmp"
    stale.write_bytes(b"partial")
    fresh.write_bytes(b"partial")
    old = stale.stat().st_mtime - 7200
    os.utime(stale, (old, old))
    assert cache.sweep(["i3d", "clip"]) == 1
    assert not stale.exists() and fresh.exists() and entry.exists()
