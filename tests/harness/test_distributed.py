"""Scoring across processes (torchrun, accelerate launch) equals the single-process run exactly.

The runs use small random-weight extractors (tests/factories.py), seeded so every process
builds the same weights, on gloo. Every run uses one intra-op thread (as torchrun sets by
default): on CPU, I3D's convolutions give different last bits with other thread counts, so
bit-identical features need the same thread count, not only the same batches.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

from tavgbench.data.demo import write_demo
from tavgbench.harness import distributed
from tavgbench.harness.distributed import DistributedError, device_for_rank, init_from_env
from tests.factories import clip_snapshot

REPO = Path(__file__).resolve().parents[2]
METRICS = ("fvd", "kvd", "clipsim", "fad", "avhscore")
LAUNCH_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")

#: Scores the faithful demo submission with the small random-weight extractors, as
#: ``tavgbench score`` does under a launcher: init_from_env, score this rank's share, finish;
#: rank 0 writes the results. Each rank also records, beside the results, how many clips it
#: ran through I3D and what merge_across_ranks gave it.
SCORE_SCRIPT = """
import argparse
import json
from pathlib import Path

import torch
import torch.distributed as dist

from tavgbench.data.splits import load_manifest
from tavgbench.extractors.clip import CLIPExtractor
from tavgbench.extractors.i3d import I3D, I3DExtractor
from tavgbench.extractors.imagebind import ImageBindEncoders, ImageBindExtractor
from tavgbench.extractors.vggish import VGGish, VGGishExtractor
from tavgbench.harness.distributed import finish, init_from_env, merge_across_ranks
from tavgbench.harness.score import ScoreOptions, score_submission, write_results
from tests.factories import TINY_IMAGEBIND

parser = argparse.ArgumentParser()
for name in ("demo", "clip", "cache", "out"):
    parser.add_argument("--" + name, type=Path, required=True)
parser.add_argument("--metrics", default="fvd,kvd,clipsim,fad,avhscore")
parser.add_argument("--batch-size", type=int, default=2)
parser.add_argument("--workers", type=int, default=0)
args = parser.parse_args()

rank, world_size = init_from_env("cpu")
try:
    torch.manual_seed(0)
    extractors = {
        "clip": CLIPExtractor.from_pretrained_dir(args.clip),
        "i3d": I3DExtractor(I3D(bn_eps=1e-3), size=193),
        "vggish": VGGishExtractor.from_state_dict(VGGish().state_dict()),
        "imagebind": ImageBindExtractor.from_state_dict(
            ImageBindEncoders.from_config(TINY_IMAGEBIND).state_dict(), config=TINY_IMAGEBIND
        ),
    }
    i3d_clips = []
    embed = extractors["i3d"].embed_frames

    def counting_embed(frames, *rest, **options):
        i3d_clips.append(len(frames))
        return embed(frames, *rest, **options)

    extractors["i3d"].embed_frames = counting_embed
    options = ScoreOptions(
        metrics=args.metrics.split(","),
        cache_dir=args.cache,
        batch_size=args.batch_size,
        num_workers=args.workers,
    )
    split = load_manifest(args.demo / "split.csv", name="demo")
    document = score_submission(
        args.demo / "submissions" / "faithful",
        split,
        args.demo / "reference",
        options,
        extractors=extractors,
        rank=rank,
        world_size=world_size,
    )
    merged = merge_across_ranks({f"rank{rank}": str(sum(i3d_clips))}, world_size)
finally:
    finish()
args.out.parent.mkdir(parents=True, exist_ok=True)
record = {"i3d_clips": sum(i3d_clips), "merged": merged, "group_left": dist.is_initialized()}
(args.out.parent / f"rank{rank}.json").write_text(json.dumps(record))
if rank == 0:
    write_results(document, args.out)
"""


def write_score_script(folder: Path) -> Path:
    """The scoring script above, written into ``folder``."""
    path = folder / "score_demo.py"
    path.write_text(SCORE_SCRIPT)
    return path


def script_env() -> dict[str, str]:
    """This environment without any launcher variables, one thread, the repository importable."""
    env = {k: v for k, v in os.environ.items() if k not in LAUNCH_ENV}
    env["OMP_NUM_THREADS"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


def script_args(script: Path, demo: Path, clip: Path, run: Path, **options: object) -> list[str]:
    """Arguments of one scoring run writing its cache and results under ``run``."""
    args = [str(script), "--demo", str(demo), "--clip", str(clip)]
    args += ["--cache", str(run / "cache"), "--out", str(run / "out" / "results.json")]
    for key, value in options.items():
        args += [f"--{key.replace('_', '-')}", str(value)]
    return args


def run_checked(command: list[str], timeout: float = 300) -> None:
    done = subprocess.run(
        command, env=script_env(), capture_output=True, text=True, timeout=timeout, cwd=REPO
    )
    assert done.returncode == 0, f"{command} failed:\n{done.stdout}\n{done.stderr[-4000:]}"


def read_run(run: Path) -> tuple[dict, list[dict[str, str]]]:
    """results.json and the rows of per_sample.csv of a run."""
    document = json.loads((run / "out" / "results.json").read_text())
    with (run / "out" / "per_sample.csv").open(newline="") as handle:
        return document, list(csv.DictReader(handle))


def cached_arrays(run: Path) -> dict[str, dict[str, np.ndarray]]:
    """Every feature cache entry of a run by file name (the key), arrays only.

    Files are not compared byte for byte: safetensors writes its metadata map in no fixed
    order.
    """
    return {p.name: load_file(p) for p in (run / "cache").rglob("*.safetensors")}


def assert_same_arrays(a: dict[str, dict[str, np.ndarray]], b: dict[str, dict[str, np.ndarray]]):
    assert a.keys() == b.keys()
    for key, arrays in a.items():
        assert arrays.keys() == b[key].keys()
        for name, array in arrays.items():
            np.testing.assert_array_equal(array, b[key][name], err_msg=f"{key}:{name}")


def assert_same_numbers(a: dict, b: dict) -> None:
    """Every metric's value and interval identical (exact float equality)."""
    assert a["metrics"].keys() == b["metrics"].keys()
    for name in a["metrics"]:
        for field in ("value", "ci95", "n_generated", "n_reference", "extras"):
            assert a["metrics"][name][field] == b["metrics"][name][field], (name, field)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("demo")
    write_demo(root, n_clips=4, seed=1)
    return root


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return clip_snapshot(tmp_path_factory.mktemp("clip"), full=False, legacy_eos=True, seed=0)


@pytest.fixture(scope="module")
def script(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_score_script(tmp_path_factory.mktemp("script"))


@pytest.fixture(scope="module")
def single_run(tmp_path_factory: pytest.TempPathFactory, demo: Path, clip_dir: Path, script: Path):
    run = tmp_path_factory.mktemp("single")
    run_checked([sys.executable, *script_args(script, demo, clip_dir, run)])
    return run


def _check_against_single(run: Path, single_run: Path) -> None:
    document, rows = read_run(run)
    reference, reference_rows = read_run(single_run)
    assert document["runtime"]["world_size"] == 2
    assert set(document["metrics"]) == set(METRICS)
    assert_same_numbers(document, reference)
    assert rows == reference_rows
    assert_same_arrays(cached_arrays(run), cached_arrays(single_run))
    ranks = [json.loads((run / "out" / f"rank{r}.json").read_text()) for r in (0, 1)]
    # 4 submission + 4 reference clips in batches of 2: each rank computes one batch of each.
    assert [r["i3d_clips"] for r in ranks] == [4, 4]
    assert all(r["merged"] == {"rank0": "4", "rank1": "4"} for r in ranks)
    assert not any(r["group_left"] for r in ranks)


@pytest.mark.slow
def test_torchrun_two_ranks_equal_single_process(
    tmp_path: Path, demo: Path, clip_dir: Path, script: Path, single_run: Path
) -> None:
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    launcher += ["--nproc-per-node", "2"]
    run_checked([*launcher, *script_args(script, demo, clip_dir, tmp_path)])
    _check_against_single(tmp_path, single_run)
    single = json.loads((single_run / "out" / "rank0.json").read_text())
    assert single == {"i3d_clips": 8, "merged": {"rank0": "8"}, "group_left": False}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.slow
@pytest.mark.skipif(
    importlib.util.find_spec("accelerate") is None, reason="accelerate is not installed"
)
def test_accelerate_launch_two_ranks_equal_single_process(
    tmp_path: Path, demo: Path, clip_dir: Path, script: Path, single_run: Path
) -> None:
    # --multi_gpu is accelerate's torch.distributed.run launcher; without GPUs it starts CPU
    # processes with the same RANK/WORLD_SIZE/LOCAL_RANK variables (its --cpu mode is mpirun).
    launcher = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu"]
    launcher += ["--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no"]
    launcher += ["--dynamo_backend", "no", "--main_process_port", str(_free_port())]
    run_checked([*launcher, *script_args(script, demo, clip_dir, tmp_path)])
    _check_against_single(tmp_path, single_run)


# --- init_from_env without launching ------------------------------------------------------


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in LAUNCH_ENV:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_without_launcher_is_one_process(clean_env: pytest.MonkeyPatch) -> None:
    assert init_from_env("cpu") == (0, 1)
    clean_env.setenv("WORLD_SIZE", "1")
    clean_env.setenv("RANK", "0")
    assert init_from_env("cpu") == (0, 1)
    distributed.finish()


@pytest.mark.parametrize(
    ("env", "device", "message"),
    [
        ({"WORLD_SIZE": "two"}, "cpu", "WORLD_SIZE='two' is not an integer"),
        ({"WORLD_SIZE": "2", "RANK": "2"}, "cpu", "RANK=2 and WORLD_SIZE=2 do not fit"),
        ({"WORLD_SIZE": "2", "RANK": "1"}, "cpu", "MASTER_ADDR and MASTER_PORT not set"),
        (
            {"WORLD_SIZE": "2", "RANK": "1", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "1"},
            "cuda:1",
            "would put all 2 ranks on one GPU",
        ),
    ],
)
def test_inconsistent_environment_is_refused(
    clean_env: pytest.MonkeyPatch, env: dict[str, str], device: str, message: str
) -> None:
    for name, value in env.items():
        clean_env.setenv(name, value)
    with pytest.raises(DistributedError, match=message):
        init_from_env(device)


def test_device_for_rank(clean_env: pytest.MonkeyPatch) -> None:
    assert device_for_rank("cuda") == "cuda"
    clean_env.setenv("LOCAL_RANK", "3")
    assert device_for_rank("cuda") == "cuda:3"
    assert device_for_rank("cuda:0") == "cuda:0"
    assert device_for_rank("cpu") == "cpu"
