"""The FAVDBench test split: 1,000 clips, used zero-shot by the TAVGBench paper.

Ids and captions come from the official release's ``metadata.zip`` (``metadata/test.caption.tsv``,
rows ``test/<id>\\t<caption>``); the Hugging Face dataset's ``meta/test.csv`` (``ytid,start,end``)
gives the ids alone.
"""

from __future__ import annotations

import tempfile
import zipfile
from pathlib import Path

from tavgbench.data.splits import (
    ClipEntry,
    builtin_manifest_path,
    parse_favdbench_caption_tsv,
    parse_favdbench_meta_csv,
    write_manifest,
)
from tavgbench.download import DownloadError, download
from tavgbench.errors import ManifestError

METADATA_URL = (
    "https://github.com/OpenNLPLab/FAVDBench/releases/download/r-data-preparation/metadata.zip"
)
#: The md5 published in the FAVDBench README (no sha256 is published).
METADATA_MD5 = "f03e61e48212132bfd9589c2d8041cb1"
CAPTION_MEMBER = "test.caption.tsv"
EXPECTED_CLIPS = 1000


def read_favdbench_test(source: Path) -> list[ClipEntry]:
    """Entries of the test split from ``metadata.zip``, ``test.caption.tsv`` or ``test.csv``."""
    if not source.is_file():
        raise ManifestError(f"{source}: not found")
    if zipfile.is_zipfile(source):
        with zipfile.ZipFile(source) as archive:
            names = [n for n in archive.namelist() if n.rsplit("/", 1)[-1] == CAPTION_MEMBER]
            if not names:
                raise ManifestError(f"{source}: holds no {CAPTION_MEMBER}")
            text = archive.read(names[0]).decode("utf-8-sig")
        return parse_favdbench_caption_tsv(text, f"{source}:{names[0]}")
    text = source.read_text(encoding="utf-8-sig")
    if source.suffix.lower() == ".csv":
        return parse_favdbench_meta_csv(text, str(source))
    return parse_favdbench_caption_tsv(text, str(source))


def install_favdbench_test(source: Path | None = None, *, quiet: bool = False) -> Path:
    """Install the ``favdbench-test`` manifest from a local file or the official release.

    Returns:
        The manifest path (``$TAVGBENCH_HOME/splits/favdbench-test.csv``).
    """
    if source is None:
        with tempfile.TemporaryDirectory(prefix="tavgbench-favd-") as tmp:
            try:
                archive = download(
                    METADATA_URL, Path(tmp) / "metadata.zip", md5=METADATA_MD5, quiet=quiet
                )
            except DownloadError as exc:
                raise ManifestError(
                    f"{exc}. Download metadata.zip from the FAVDBench release yourself and run "
                    "`tavgbench split fetch favdbench-test --from metadata.zip`"
                ) from exc
            entries = read_favdbench_test(archive)
    else:
        entries = read_favdbench_test(source)
    if len(entries) != EXPECTED_CLIPS:
        raise ManifestError(
            f"{source or METADATA_URL}: {len(entries)} test clips, expected {EXPECTED_CLIPS}"
        )
    return write_manifest(builtin_manifest_path("favdbench-test"), entries)
