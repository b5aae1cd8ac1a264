"""Per-clip feature cache, keyed by clip content and everything that changes the features.

An entry holds the arrays one extractor produced for one clip. Its key is the sha256 of the
clip's content hash together with the extractor description (name, version, protocol,
weights sha256), so re-encoding a clip, bumping an extractor version, changing a protocol
option or loading other weights each give a new entry, while renaming or moving a clip
does not. Entries are safetensors files that carry their description in the metadata::

    <root>/<extractor name>/<key[:2]>/<key>.safetensors

Writes are atomic (temporary file in the same folder, fsync, rename), so several processes
or ranks may fill the same cache at once; a damaged entry is deleted and reported missing.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import re
import secrets
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import safetensors.numpy
from safetensors import SafetensorError, safe_open

from tavgbench.errors import TavgbenchError

logger = logging.getLogger(__name__)

_CHUNK_BYTES = 1 << 20
_FORMAT = "tavgbench.features/1"
_META_FORMAT = "tavgbench.format"
_META_CLIP = "tavgbench.clip_hash"
_META_EXTRACTOR = "tavgbench.extractor"
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_NO_SPACE = {errno.ENOSPC} | ({errno.EDQUOT} if hasattr(errno, "EDQUOT") else set())
_NOT_WRITABLE = {errno.EACCES, errno.EPERM, errno.EROFS}


class CacheError(TavgbenchError):
    """The feature cache cannot be read or written."""


def content_hash(path: Path) -> str:
    """sha256 (hex) of a file's bytes, read in 1 MiB chunks.

    Raises:
        CacheError: the file cannot be read.
    """
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as stream:
            while chunk := stream.read(_CHUNK_BYTES):
                digest.update(chunk)
    except OSError as error:
        raise CacheError(
            f"cannot read {path} to hash it ({error.strerror or error}); check that the file "
            "exists and is readable."
        ) from error
    return digest.hexdigest()


def combined_hash(paths: Sequence[Path]) -> str:
    """Content hash of a clip stored as several files (e.g. ``<id>.mp4`` + ``<id>.wav``).

    The sha256 over the raw per-file sha256 digests in the given order, so it depends only on
    the files' contents and order, not on their names. It differs from :func:`content_hash`
    even for a single file, so a clip keeps one hashing scheme.

    Raises:
        CacheError: a file cannot be read.
        ValueError: ``paths`` is empty.
    """
    if not paths:
        raise ValueError("combined_hash needs at least one file")
    digest = hashlib.sha256()
    for path in paths:
        digest.update(bytes.fromhex(content_hash(path)))
    return digest.hexdigest()


def _canonical_json(value: Any) -> str:
    # Key order and separators are fixed so equal descriptions always hash equally.
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def _write_error(error: OSError, folder: Path) -> CacheError:
    reason = error.strerror or str(error)
    if error.errno in _NO_SPACE:
        return CacheError(
            f"no space left to write the feature cache in {folder} ({reason}): free disk "
            "space, or set TAVGBENCH_HOME or --cache-dir to a folder on a disk with room."
        )
    if isinstance(error, PermissionError) or error.errno in _NOT_WRITABLE:
        return CacheError(
            f"the feature cache folder {folder} is not writable ({reason}): set "
            "TAVGBENCH_HOME or --cache-dir to a writable folder."
        )
    return CacheError(
        f"cannot write the feature cache in {folder} ({reason}): check the disk, or set "
        "TAVGBENCH_HOME or --cache-dir to another folder."
    )


def _storable(array: np.ndarray) -> np.ndarray:
    # safetensors copies the raw buffer as it is: a strided or Fortran-ordered array would
    # be stored scrambled, so hand it C-ordered, native-endian memory.
    array = np.asarray(array)
    return np.require(array, dtype=array.dtype.newbyteorder("="), requirements="C")


def _fsync_folder(folder: Path) -> None:
    # Makes the rename itself durable; some platforms and file systems cannot open or sync a
    # folder, and the entry is still valid there, only less durable.
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class FeatureCache:
    """Feature arrays per (clip content hash, extractor description), on disk.

    Args:
        root: cache folder; created on the first write.

    Example:
        >>> cache = FeatureCache(tmp_path)  # doctest: +SKIP
        >>> cache.put(clip_hash, extractor.describe(), {"logits": features})  # doctest: +SKIP
        >>> cache.get(clip_hash, extractor.describe())["logits"]  # doctest: +SKIP
    """

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    def key(self, clip_hash: str, extractor: Mapping[str, Any]) -> str:
        """sha256 (hex) of the canonical JSON of the clip hash and extractor description.

        Args:
            clip_hash: :func:`content_hash` or :func:`combined_hash` of the clip.
            extractor: JSON-serialisable description with at least ``name`` (normally
                ``Extractor.describe()``: name, version, weights, weights_sha256, protocol).
        """
        payload = _canonical_json({"clip": clip_hash, "extractor": extractor})
        return hashlib.sha256(payload.encode("ascii")).hexdigest()

    def path(self, clip_hash: str, extractor: Mapping[str, Any]) -> Path:
        """File of the entry for this clip and extractor (which may not exist)."""
        name = extractor.get("name")
        if not isinstance(name, str) or not _SAFE_NAME.fullmatch(name):
            raise ValueError(
                f"extractor description needs a 'name' made of letters, digits, '.', '_' "
                f"or '-', got {name!r}"
            )
        key = self.key(clip_hash, extractor)
        return self.root / name / key[:2] / f"{key}.safetensors"

    def __contains__(self, item: tuple[str, Mapping[str, Any]]) -> bool:
        """Whether an entry file exists for ``(clip_hash, extractor)``; :meth:`get` still
        checks that it is intact."""
        clip_hash, extractor = item
        return self.path(clip_hash, extractor).is_file()

    def get(self, clip_hash: str, extractor: Mapping[str, Any]) -> dict[str, np.ndarray] | None:
        """The cached arrays, or None when absent or damaged (a damaged entry is deleted).

        Raises:
            CacheError: the entry exists but the file system refuses to read it.
        """
        path = self.path(clip_hash, extractor)
        try:
            with safe_open(str(path), framework="np") as entry:
                metadata = entry.metadata() or {}
                # safe_open handles are not iterable, so .keys() is required here.
                arrays = {name: entry.get_tensor(name) for name in entry.keys()}  # noqa: SIM118
        except FileNotFoundError:
            return None
        except SafetensorError as error:
            self._discard(path, f"unreadable safetensors file ({error})")
            return None
        except OSError as error:
            raise CacheError(
                f"cannot read feature cache entry {path} ({error.strerror or error}): check "
                "the folder's permissions, or set TAVGBENCH_HOME or --cache-dir to another "
                "folder."
            ) from error
        expected = {
            _META_FORMAT: _FORMAT,
            _META_CLIP: clip_hash,
            _META_EXTRACTOR: _canonical_json(extractor),
        }
        if any(metadata.get(field) != value for field, value in expected.items()):
            self._discard(path, "its metadata does not describe this clip and extractor")
            return None
        return arrays

    def put(
        self, clip_hash: str, extractor: Mapping[str, Any], arrays: Mapping[str, np.ndarray]
    ) -> None:
        """Stores arrays for a clip and extractor, replacing any previous entry atomically.

        Raises:
            CacheError: the folder is not writable or the disk is full.
            TypeError: an array has a dtype safetensors cannot store.
            ValueError: ``arrays`` is empty.
        """
        if not arrays:
            raise ValueError("FeatureCache.put needs at least one array")
        path = self.path(clip_hash, extractor)
        metadata = {
            _META_FORMAT: _FORMAT,
            _META_CLIP: clip_hash,
            _META_EXTRACTOR: _canonical_json(extractor),
        }
        try:
            payload = safetensors.numpy.save(
                {name: _storable(array) for name, array in arrays.items()}, metadata=metadata
            )
        except SafetensorError as error:
            raise TypeError(
                f"cannot store {sorted(arrays)} in the feature cache: {error}"
            ) from error

        folder = path.parent
        # pid + random suffix: concurrent writers of the same key never share a temporary file.
        temporary = folder / f".{path.stem}.{os.getpid()}.{secrets.token_hex(8)}.tmp"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            with os.fdopen(fd, "wb") as stream:
                stream.write(payload)
                stream.flush()
                os.fsync(stream.fileno())
            os.replace(temporary, path)
        except OSError as error:
            with contextlib.suppress(OSError):
                temporary.unlink(missing_ok=True)
            raise _write_error(error, folder) from error
        _fsync_folder(folder)

    def sweep(self, names: Sequence[str], older_than_s: float = 3600.0) -> int:
        """Delete temporary files that writers killed mid-write left in the folders of the
        extractors ``names``; returns how many.

        Only files older than ``older_than_s`` go: a write takes well under a second, and a
        live writer on another machine sharing the folder cannot be asked whether it is alive.
        """
        cutoff = time.time() - older_than_s
        removed = 0
        for name in names:
            folder = self.root / name
            if not folder.is_dir():
                continue
            for temporary in folder.glob("*/.*.tmp"):
                with contextlib.suppress(OSError):
                    if temporary.stat().st_mtime < cutoff:
                        temporary.unlink()
                        removed += 1
        return removed

    def _discard(self, path: Path, reason: str) -> None:
        logger.warning("Deleting damaged feature cache entry %s: %s", path, reason)
        # Another process may already have removed or replaced it; either way it is recomputed.
        with contextlib.suppress(OSError):
            path.unlink()
