"""TAVDiffusion on the tiny config: the model, one training step, training, resume, sampling."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("diffusers", reason="needs the [baselines] extra")
pytest.importorskip("accelerate", reason="needs the [baselines] extra")
pytest.importorskip("webdataset", reason="needs the [baselines] extra")

from safetensors.torch import load_file

from tavgbench.baselines.interface import clip_seed, generate_split
from tavgbench.baselines.tavdiffusion.checkpoint import load_model
from tavgbench.baselines.tavdiffusion.config import (
    ConfigError,
    load_config,
    tiny_config,
)
from tavgbench.baselines.tavdiffusion.data import (
    ShardBatches,
    ShardError,
    list_shards,
    write_shards,
)
from tavgbench.baselines.tavdiffusion.eas import (
    StreamEmbedding,
    eas_loss,
    pairwise_similarity,
)
from tavgbench.baselines.tavdiffusion.model import TAVDiffusion
from tavgbench.baselines.tavdiffusion.pipeline import TAVDiffusionPipeline
from tavgbench.baselines.tavdiffusion.train import Trainer, diffusion_loss
from tavgbench.data.demo import DemoLayout
from tavgbench.data.splits import load_manifest
from tavgbench.data.validate import validate_submission

REPO = Path(__file__).resolve().parents[2]


def _model(**options: object) -> TAVDiffusion:
    torch.manual_seed(0)
    return TAVDiffusion(tiny_config().with_options(**options))


def _batch(b: int = 2) -> dict[str, object]:
    g = torch.Generator().manual_seed(1)
    return {
        "frames": torch.randint(0, 256, (b, 10, 32, 32, 3), generator=g, dtype=torch.uint8),
        "waveform": 0.1 * torch.randn(b, 16000, generator=g),
        "caption": [f"clip {i}" for i in range(b)],
    }


def _inputs(model: TAVDiffusion, b: int = 2) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(2)
    video_shape, audio_shape = model.latent_shapes()
    return (
        torch.randn(b, *video_shape, generator=g),
        torch.randn(b, *audio_shape, generator=g),
        torch.tensor([3, 700])[:b],
        model.encode_text(["a dog barks", "rain on a roof"][:b]),
    )


def test_untrained_bridge_gives_the_single_stream_unets_exactly() -> None:
    model = _model()
    video, audio, t, text = _inputs(model)
    # Give the zero-initialised motion modules weights, so the video UNet is truly pseudo-3D.
    with torch.no_grad():
        for name, p in model.denoiser.video_unet.named_parameters():
            if "motion_modules" in name and "proj_out" in name:
                p.normal_(0, 0.1)
        out = model.denoiser(video, audio, t, text)
        video_ref = model.denoiser.video_unet(video, t, text.repeat_interleave(10, dim=0)).sample
        audio_ref = model.denoiser.audio_unet(audio, t, text).sample
    # Reference: diffusers' own UNet forward; the same operations in the same order, so exact.
    assert torch.equal(out.video, video_ref)
    assert torch.equal(out.audio, audio_ref)
    assert len(model.denoiser.bridges) == 2


def test_temporal_convolutions_mix_frames_once_trained() -> None:
    # Motion modules start at zero: only the temporal convolutions can carry frame 0 to frame 1.
    def frame_1_moves(model: TAVDiffusion) -> bool:
        video, audio, t, text = _inputs(model)
        shifted = video.clone()
        shifted[:, :, 0] += 1.0
        with torch.no_grad():
            a = model.denoiser(video, audio, t, text).video[:, :, 1]
            b = model.denoiser(shifted, audio, t, text).video[:, :, 1]
        return not torch.equal(a, b)

    model = _model()
    assert not frame_1_moves(model)  # zero-initialised: each frame on its own
    with torch.no_grad():
        for conv in model.denoiser.video_unet.temporal_convs:
            conv.conv.weight.normal_(0, 0.1)
    assert frame_1_moves(model)
    plain = _model(temporal_conv=False)
    assert not hasattr(plain.denoiser.video_unet, "temporal_convs")


def test_eas_is_a_training_loss_only() -> None:
    model = _model()
    inputs = _inputs(model)
    assert model.denoiser(*inputs).eas is not None
    model.denoiser.eval()
    # Sampling computes no loss, so ranks never meet in the EAS all-gather while generating.
    assert model.denoiser(*inputs).eas is None


def test_trained_bridge_couples_the_streams() -> None:
    model = _model()
    video, audio, t, text = _inputs(model)
    with torch.no_grad():
        base = model.denoiser(video, audio, t, text)
        for bridge in model.denoiser.bridges.values():
            bridge.video_from_audio.to_out.weight.normal_(0, 0.1)
        out = model.denoiser(video, audio + 1.0, t, text)
        base_shifted = model.denoiser.audio_unet(audio + 1.0, t, text).sample
    # The video prediction now depends on the audio input.
    assert not torch.equal(out.video, base.video)
    # The audio stream's own bridge is still zero, so audio is unchanged by video.
    assert torch.equal(out.audio, base_shifted)


def test_one_step_gives_every_trainable_parameter_a_gradient() -> None:
    model = _model()
    denoiser = model.denoiser
    params = dict(denoiser.named_parameters())
    optimizer = torch.optim.AdamW(denoiser.parameters(), lr=1e-2)
    generator = torch.Generator().manual_seed(0)
    loss, parts = diffusion_loss(model, denoiser, _batch(), generator)
    assert set(parts) == {"video_mse", "audio_mse", "eas"}
    loss.backward()
    missing = [n for n, p in params.items() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing
    # Behind the zero-initialised output layers (bridge, motion modules) gradients are exactly
    # zero at step 0; after one step every parameter receives a non-zero gradient.
    optimizer.step()
    optimizer.zero_grad()
    diffusion_loss(model, denoiser, _batch(), generator)[0].backward()
    zero = [n for n, p in params.items() if not p.grad.abs().gt(0).any()]
    assert not zero
    # The frozen codecs get none.
    assert all(p.grad is None for m in model.codecs.modules().values() for p in m.parameters())


def test_ablation_flags_remove_the_bridge_and_the_eas_term() -> None:
    plain = _model(cross_attention=False, eas=False)
    assert len(plain.denoiser.bridges) == 0 and plain.denoiser.similarity is None
    loss, parts = diffusion_loss(plain, plain.denoiser, _batch(), torch.Generator().manual_seed(0))
    assert set(parts) == {"video_mse", "audio_mse"}
    torch.testing.assert_close(loss, parts["video_mse"] + parts["audio_mse"], rtol=0, atol=0)
    no_bridge = _model(cross_attention=False)
    assert len(no_bridge.denoiser.bridges) == 0 and no_bridge.denoiser.similarity is not None
    _, parts = diffusion_loss(
        no_bridge, no_bridge.denoiser, _batch(), torch.Generator().manual_seed(0)
    )
    assert "eas" in parts
    no_eas = _model(eas=False)
    assert len(no_eas.denoiser.bridges) == 2 and no_eas.denoiser.similarity is None
    names = [n for n, _ in plain.denoiser.named_parameters()]
    assert not any(n.startswith(("bridges.", "similarity.")) for n in names)


def _naive_similarity(a: StreamEmbedding, v: StreamEmbedding, i: int, j: int) -> float:
    cos = a.tokens[i] @ v.tokens[j].T
    audio_side = sum(float(a.weights[i, k] * cos[k].max()) for k in range(cos.shape[0]))
    video_side = sum(float(v.weights[j, m] * cos[:, m].max()) for m in range(cos.shape[1]))
    return 0.5 * (audio_side + video_side)


def _embedding(b: int, n: int, seed: int) -> StreamEmbedding:
    g = torch.Generator().manual_seed(seed)
    tokens = torch.nn.functional.normalize(torch.randn(b, n, 8, generator=g), dim=-1)
    return StreamEmbedding(tokens, torch.softmax(torch.randn(b, n, generator=g), dim=-1))


def test_token_weighted_similarity_is_eq_14() -> None:
    audio, video = _embedding(3, 5, 0), _embedding(4, 7, 1)
    sim = pairwise_similarity(audio, video)
    # Reference: eq. 14 written out with loops; float32, 1e-6 absolute.
    for i in range(3):
        for j in range(4):
            assert abs(float(sim[i, j]) - _naive_similarity(audio, video, i, j)) < 1e-6


def test_eas_loss_is_symmetric_infonce() -> None:
    audio, video = _embedding(4, 5, 2), _embedding(4, 7, 3)
    sim = pairwise_similarity(audio, video) / 0.1
    targets = torch.arange(4)
    expected = 0.5 * (
        torch.nn.functional.cross_entropy(sim, targets)
        + torch.nn.functional.cross_entropy(sim.T, targets)
    )
    torch.testing.assert_close(eas_loss(video, audio, 0.1), expected, rtol=0, atol=1e-6)


def test_shard_stream_resumes_at_the_same_batch(shards: Path) -> None:
    config = tiny_config()
    stream = iter(ShardBatches(list_shards(shards), config))
    ids = [next(stream)["id"] for _ in range(4)]
    resumed = iter(ShardBatches(list_shards(shards), config, start_batch=3))
    assert next(resumed)["id"] == ids[3]
    with pytest.raises(ShardError, match="cannot feed"):
        ShardBatches(list_shards(shards), config, world=3)


@pytest.fixture(scope="module")
def latent_shards(demo: DemoLayout, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo clips in two-clip shards with float32 latents of the tiny config's VAEs."""
    from typer.testing import CliRunner

    from tavgbench.cli import app

    out = tmp_path_factory.mktemp("latent-shards")
    args = ["data", "shard", "--clips", str(demo.reference_dir), "--captions", str(demo.manifest)]
    args += ["--out", str(out), "--shard-size", "2", "--latents", "--config", "tiny"]
    result = CliRunner().invoke(app, [*args, "--latent-dtype", "float32"])
    assert result.exit_code == 0, result.output
    return out


def test_shard_latents_options_are_checked(demo: DemoLayout, tmp_path: Path) -> None:
    from tavgbench.cli import main

    args = ["data", "shard", "--clips", str(demo.reference_dir), "--captions", str(demo.manifest)]
    args += ["--out", str(tmp_path / "shards")]
    # Errors are one line and exit 1, before anything is written.
    assert main([*args, "--latents"]) == 1
    assert main([*args, "--config", "tiny"]) == 1
    assert main([*args, "--latents", "--config", "tiny", "--latent-dtype", "int8"]) == 1
    assert not (tmp_path / "shards" / "index.json").exists()


def test_precomputed_latents_give_the_on_the_fly_loss(shards: Path, latent_shards: Path) -> None:
    config = tiny_config()
    model = _model()  # seed 0: the codecs `data shard --config tiny` used
    decoded = next(iter(ShardBatches(list_shards(shards), config)))
    stored = next(iter(ShardBatches(list_shards(latent_shards), config, latents=True)))
    assert stored["id"] == decoded["id"] and "frames" not in stored
    on_the_fly, _ = diffusion_loss(model, model.denoiser, decoded, torch.Generator().manual_seed(5))
    precomputed, _ = diffusion_loss(model, model.denoiser, stored, torch.Generator().manual_seed(5))
    # Reference: the loss of encoding the decoded clips on the fly with the same generator; the
    # same posterior draws, VAE convolutions batched differently (float32 rounding, 1e-5).
    torch.testing.assert_close(precomputed, on_the_fly, rtol=1e-5, atol=1e-5)


def test_half_precision_latents_and_a_mismatched_model(
    demo: DemoLayout, latent_shards: Path, tmp_path: Path
) -> None:
    model = _model()
    write_shards(demo.reference_dir, demo.manifest, tmp_path / "half", shard_size=2, model=model)
    config = tiny_config()
    full = next(iter(ShardBatches(list_shards(latent_shards), config, latents=True)))
    half = next(iter(ShardBatches(list_shards(tmp_path / "half"), config, latents=True)))
    # float16 storage: relative rounding 2**-11 of the float32 posterior.
    torch.testing.assert_close(half["video_mean"], full["video_mean"], rtol=1e-3, atol=1e-4)
    trainer = Trainer(config.with_options(checkpoint_every=1000), latent_shards, tmp_path / "run")
    assert trainer.latents
    assert [log.step for log in trainer.train(2)] == [1, 2]
    with pytest.raises(ShardError, match="height: 32 vs 40"):
        Trainer(config.with_options(height=40), latent_shards, tmp_path / "other")


def test_training_lowers_the_loss(shards: Path, tmp_path: Path) -> None:
    config = tiny_config().with_options(checkpoint_every=1000)
    trainer = Trainer(config, shards, tmp_path)
    batch = next(iter(ShardBatches(list_shards(shards), config)))

    def held_out_loss() -> float:
        # The same prompt dropout, timesteps and noise before and after training.
        with torch.no_grad():
            loss, _ = diffusion_loss(
                trainer.model, trainer.denoiser, batch, torch.Generator().manual_seed(123)
            )
        return float(loss)

    before = held_out_loss()
    logs = trainer.train(30)
    after = held_out_loss()
    assert [log.step for log in logs] == list(range(1, 31))
    assert after < 0.9 * before, (before, after)
    rows = (tmp_path / "log.csv").read_text().splitlines()
    assert rows[0].startswith("step,loss,video_mse,audio_mse,eas") and len(rows) == 31


def test_resume_repeats_the_next_step_exactly(shards: Path, tmp_path: Path) -> None:
    config = tiny_config().with_options(checkpoint_every=2)
    straight = Trainer(config, shards, tmp_path / "straight").train(3)
    Trainer(config, shards, tmp_path / "resumed").train(2)
    resumed_trainer = Trainer(config, shards, tmp_path / "resumed")
    assert resumed_trainer.step == 2
    resumed = resumed_trainer.train(3)
    # Same weights, optimizer, EMA, generator and data position: bit-identical loss.
    assert [log.loss for log in resumed] == [straight[2].loss]


def test_fp16_loss_scale_survives_a_resume(shards: Path, tmp_path: Path) -> None:
    # accelerate makes a GradScaler only on accelerators; give the CPU trainer one to check that
    # its state is written and read back (a GPU run takes the same path).
    config = tiny_config().with_options(checkpoint_every=1000)
    trainer = Trainer(config, shards, tmp_path)
    trainer.accelerator.scaler = torch.amp.GradScaler("cpu", init_scale=2.0**16)
    trainer.accelerator.scaler.scale(torch.ones(()))  # the first scaled loss sets the scale
    trainer.accelerator.scaler.update(2.0**7)
    folder = trainer.save()
    resumed = Trainer(config, shards, tmp_path)
    resumed.accelerator.scaler = torch.amp.GradScaler("cpu")
    resumed.load(folder)
    assert resumed.accelerator.scaler.get_scale() == 2.0**7


def test_sampling_writes_a_valid_demo_submission(demo: DemoLayout, tmp_path: Path) -> None:
    split = load_manifest(demo.manifest, name="demo")
    pipeline = TAVDiffusionPipeline.load(config="tiny", num_inference_steps=2)
    report = generate_split(pipeline, split, tmp_path / "out", seed=0)
    assert report.generated == split.ids
    check = validate_submission(tmp_path / "out", split)
    assert check.all_ok, [c.problems for c in check.clips]
    record = json.loads((tmp_path / "out" / "generation.json").read_text())
    assert record["generator"]["num_inference_steps"] == 2
    assert record["clips"][split.ids[0]]["seed"] == clip_seed(0, split.ids[0])
    # Each clip depends on its seed only, not on the batch it was generated in.
    one = pipeline.generate([split.entries[1].caption], [7])[0]
    two = pipeline.generate([split.entries[0].caption, split.entries[1].caption], [5, 7])[1]
    assert (one.frames == two.frames).all()
    torch.testing.assert_close(torch.from_numpy(one.waveform), torch.from_numpy(two.waveform))


def test_sampling_from_a_trained_checkpoint(shards: Path, demo: DemoLayout, tmp_path: Path) -> None:
    Trainer(tiny_config().with_options(checkpoint_every=2), shards, tmp_path / "run").train(2)
    pipeline = TAVDiffusionPipeline.load(tmp_path / "run")
    assert pipeline.describe()["checkpoint"].endswith("step-00000002")
    split = load_manifest(demo.manifest, name="demo")
    generate_split(pipeline, split, tmp_path / "out")
    assert validate_submission(tmp_path / "out", split).all_ok


def test_config_round_trip_and_errors(tmp_path: Path) -> None:
    config = tiny_config().with_options(eas=False, bridge_levels=(1,))
    assert load_config(config.save(tmp_path / "c.json")) == config
    assert load_config("paper").components["audio_unet"].config["in_channels"] == 8
    with pytest.raises(ConfigError, match="not a TAVDiffusion preset"):
        load_config(tmp_path / "missing.json")
    with pytest.raises(ConfigError, match="bridge_levels"):
        _model(bridge_levels=(5,))


def _torchrun(worker: str, port: int, *args: str) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc-per-node",
            "2",
            "--master-port",
            str(port),
            str(Path(__file__).with_name(worker)),
            *args,
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-4000:]


@pytest.mark.slow
def test_two_process_training_uses_global_batch_negatives(shards: Path, tmp_path: Path) -> None:
    _torchrun("ddp_worker.py", 29517, str(shards), str(tmp_path))
    report = json.loads((tmp_path / "report.json").read_text())
    # Reference: the same EAS loss and gradients computed by one process on the whole batch;
    # float32 sums in a different order, 1e-5.
    assert report["loss_error"] < 1e-5 and report["grad_error"] < 1e-5
    assert report["steps"] == [1, 2]
    assert (tmp_path / "run" / "checkpoints" / "step-00000002" / "rng-rank1.pt").is_file()


@pytest.mark.slow
def test_fsdp_trains_like_ddp_and_resumes_exactly(shards: Path, tmp_path: Path) -> None:
    reports = {}
    for port, mode in ((29518, "ddp"), (29519, "fsdp")):
        _torchrun("fsdp_worker.py", port, str(shards), str(tmp_path / mode), mode)
        reports[mode] = json.loads((tmp_path / mode / "report.json").read_text())
    assert reports["fsdp"]["sharded"] and not reports["ddp"]["sharded"]
    for report in reports.values():
        # Restored weights, optimizer, EMA, generators and data position: the same third step.
        assert report["resumed"] == report["losses"][2:]
    # Reference: DDP on the same data; sharded all-gathers and reduce-scatters sum in another
    # order (float32, 1e-5).
    assert reports["fsdp"]["losses"] == pytest.approx(reports["ddp"]["losses"], abs=1e-5)
    step = Path("checkpoints") / "step-00000002"
    ddp = load_file(tmp_path / "ddp" / "straight" / step / "ema.safetensors")
    fsdp = load_file(tmp_path / "fsdp" / "straight" / step / "ema.safetensors")
    assert ddp.keys() == fsdp.keys()
    for key in ddp:
        torch.testing.assert_close(fsdp[key], ddp[key], rtol=1e-4, atol=1e-5)
    # A sharded run's checkpoint is a plain one: sampling loads it like any other.
    model = load_model(tmp_path / "fsdp" / "straight")
    assert model.config.parallelism == "fsdp"
