"""Tests of the CLIP extractor against transformers' own CLIPModel and CLIP processor.

Hub downloads are impossible offline, so the models are random-init ``CLIPModel``s in the
OpenAI ViT-B/32 architecture family, saved in the hub snapshot layout, with a CLIP-BPE tokenizer
built from a small vocabulary generated here. The reference in each numeric test is transformers
run directly on the same folder: ``CLIPModel.get_image_features`` / ``get_text_features`` on the
output of a ``CLIPProcessor`` holding the PIL image processor, as torchmetrics' ``clip_score`` does.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import safetensors.torch
import torch
import transformers
from transformers import AutoTokenizer, CLIPConfig, CLIPModel, CLIPProcessor

from tavgbench.errors import WeightsError
from tavgbench.extractors.clip import (
    CLIPExtractor,
    clipsim_per_clip,
    convert_clip,
    preprocess_frames,
)
from tests.factories import PIL_IMAGE_PROCESSOR, clip_config, clip_snapshot

CAPTIONS = [
    "a photo of a cat",
    "A DOG playing the guitar on the beach!",
    "red car,   driving at night",
    "x",
]
# Far more than 77 tokens, so truncation must keep the end-of-text token last.
LONG_CAPTION = " ".join(["a red car driving at night on the beach"] * 12)

# Odd sizes give odd crop offsets and upscaling; 224x224 is the identity resize.
FRAME_SIZES = [(240, 320), (320, 240), (224, 224), (101, 333), (360, 640), (225, 500)]


@pytest.fixture(scope="module")
def small_snapshot(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Reduced-size CLIP with the hub config's legacy ``eos_token_id=2``."""
    return clip_snapshot(tmp_path_factory.mktemp("clip-small"), full=False, legacy_eos=True, seed=0)


@pytest.fixture(scope="module", params=[True, False], ids=["legacy-eos", "eos-id"])
def text_snapshot(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Reduced-size CLIPs with either text pooling rule (argmax token id, first EOS id)."""
    folder = tmp_path_factory.mktemp("clip-text")
    return clip_snapshot(folder, full=False, legacy_eos=request.param, seed=1)


def _reference(folder: Path) -> tuple[CLIPModel, CLIPProcessor]:
    model = CLIPModel.from_pretrained(folder, local_files_only=True).eval()
    processor = CLIPProcessor(
        image_processor=PIL_IMAGE_PROCESSOR.from_pretrained(folder),
        tokenizer=AutoTokenizer.from_pretrained(folder, local_files_only=True),
    )
    return model, processor


def _pooled(
    output: torch.Tensor | transformers.modeling_outputs.BaseModelOutputWithPooling,
) -> np.ndarray:
    # transformers 4 returns the projected tensor, 5 an output whose pooler_output holds it.
    tensor = output if isinstance(output, torch.Tensor) else output.pooler_output
    return tensor.numpy()


def _reference_image_features(
    model: CLIPModel, processor: CLIPProcessor, frames: np.ndarray
) -> np.ndarray:
    pixels = processor(images=list(frames), return_tensors="pt")["pixel_values"]
    with torch.inference_mode():
        return _pooled(model.get_image_features(pixel_values=pixels))


def _reference_text_features(
    model: CLIPModel, processor: CLIPProcessor, captions: list[str]
) -> np.ndarray:
    # torchmetrics' padding (longest in the batch); truncation keeps the end-of-text token.
    tokens = processor(
        text=captions, return_tensors="pt", padding=True, truncation=True, max_length=77
    )
    with torch.inference_mode():
        return _pooled(model.get_text_features(tokens["input_ids"], tokens["attention_mask"]))


def _random_clips(rng: np.random.Generator, lengths: list[int]) -> list[np.ndarray]:
    clips = []
    for i, length in enumerate(lengths):
        height, width = FRAME_SIZES[i % len(FRAME_SIZES)]
        clips.append(rng.integers(0, 256, (length, height, width, 3), dtype=np.uint8))
    return clips


def test_preprocessing_equals_transformers_pil_processor() -> None:
    # Reference: transformers' PIL CLIP image processor; tolerance: none (bit-identical).
    rng = np.random.default_rng(0)
    processor = PIL_IMAGE_PROCESSOR()
    for height, width in FRAME_SIZES:
        frames = rng.integers(0, 256, (2, height, width, 3), dtype=np.uint8)
        expected = processor(images=list(frames), return_tensors="np")["pixel_values"]
        ours = preprocess_frames(frames)
        assert ours.dtype == np.float32
        assert ours.shape == (2, 3, 224, 224)
        np.testing.assert_array_equal(ours, expected)


def test_frame_embeddings_match_transformers(small_snapshot: Path) -> None:
    # Reference: CLIPModel.get_image_features on CLIPProcessor pixels; tolerance 1e-5.
    extractor = CLIPExtractor.from_pretrained_dir(small_snapshot, batch_size=5)
    model, processor = _reference(small_snapshot)
    # Lengths chosen so batches of 5 span clip boundaries and end part-full.
    clips = _random_clips(np.random.default_rng(1), [3, 7, 1, 4, 2, 2])
    ours = extractor.embed_frames(clips)
    assert [e.shape for e in ours] == [(len(c), 512) for c in clips]
    for clip, embedding in zip(clips, ours, strict=True):
        assert embedding.dtype == np.float32
        expected = _reference_image_features(model, processor, clip)
        np.testing.assert_allclose(embedding, expected, rtol=1e-5, atol=1e-5)


def test_frame_embeddings_of_an_array_batch(small_snapshot: Path) -> None:
    # Reference: the same frames passed as a list of clips; tolerance 1e-6 (batching only).
    extractor = CLIPExtractor.from_pretrained_dir(small_snapshot, batch_size=4)
    frames = np.random.default_rng(2).integers(0, 256, (3, 2, 160, 200, 3), dtype=np.uint8)
    as_array = extractor.embed_frames(frames)
    as_list = extractor.embed_frames([frames[i] for i in range(3)])
    assert len(as_array) == 3
    for a, b in zip(as_array, as_list, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)


def test_unprocessed_frames_skip_resize_and_rescale(small_snapshot: Path) -> None:
    # Reference: the uint8 path on the same 224x224 frames; tolerance 1e-5 (float32 vs
    # float64 division by 255).
    extractor = CLIPExtractor.from_pretrained_dir(small_snapshot)
    frames = np.random.default_rng(3).integers(0, 256, (1, 3, 224, 224, 3), dtype=np.uint8)
    from_uint8 = extractor.embed_frames(frames)
    from_unit = extractor.embed_frames(frames.astype(np.float32) / 255, preprocess=False)
    np.testing.assert_allclose(from_unit[0], from_uint8[0], rtol=1e-5, atol=1e-5)


def test_text_embeddings_match_transformers(text_snapshot: Path) -> None:
    # Reference: CLIPModel.get_text_features on CLIPProcessor tokens padded to the longest
    # caption, while ours pads to 77: equality shows padding does not change CLIP's pooled
    # end-of-text state. Tolerance 1e-5.
    extractor = CLIPExtractor.from_pretrained_dir(text_snapshot, batch_size=3)
    model, processor = _reference(text_snapshot)
    ours = extractor.embed_text(CAPTIONS)
    assert ours.dtype == np.float32
    assert ours.shape == (len(CAPTIONS), 512)
    expected = _reference_text_features(model, processor, CAPTIONS)
    np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=1e-5)


def test_long_captions_truncate_to_77_tokens_keeping_end_of_text(text_snapshot: Path) -> None:
    # Reference: the tokenizer's own truncation at 77 tokens, run through transformers;
    # tolerance 1e-5.
    extractor = CLIPExtractor.from_pretrained_dir(text_snapshot)
    model, processor = _reference(text_snapshot)
    tokens = processor.tokenizer([LONG_CAPTION], truncation=True, max_length=77)["input_ids"][0]
    assert len(tokens) == 77
    assert tokens[-1] == processor.tokenizer.eos_token_id
    ours = extractor.embed_text([LONG_CAPTION, CAPTIONS[0]])
    expected = _reference_text_features(model, processor, [LONG_CAPTION, CAPTIONS[0]])
    np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=1e-5)


def test_clipsim_of_embeddings_equals_transformers_cosines(small_snapshot: Path) -> None:
    # Reference: 100 * cos of transformers' image and text features per frame, averaged per
    # clip, as torchmetrics' clip_score computes per image; tolerance 1e-4 on a 0-100 scale.
    extractor = CLIPExtractor.from_pretrained_dir(small_snapshot)
    model, processor = _reference(small_snapshot)
    clips = _random_clips(np.random.default_rng(4), [2, 3])
    captions = CAPTIONS[:2]
    ours = clipsim_per_clip(extractor.embed_frames(clips), extractor.embed_text(captions))
    text = torch.from_numpy(_reference_text_features(model, processor, captions))
    for i, clip in enumerate(clips):
        image = torch.from_numpy(_reference_image_features(model, processor, clip))
        cosines = torch.nn.functional.cosine_similarity(image, text[i : i + 1], dim=-1)
        assert ours[i] == pytest.approx(100 * cosines.mean().item(), abs=1e-4)


def test_clipsim_prefers_matched_captions() -> None:
    # Synthetic embeddings: each clip's frames point near its own caption's direction, so
    # matched captions must score higher than swapped ones.
    rng = np.random.default_rng(5)
    captions = rng.normal(size=(3, 512))
    frames = [captions[i] + 0.3 * rng.normal(size=(t, 512)) for i, t in enumerate([4, 1, 16])]
    matched = clipsim_per_clip(frames, captions)
    swapped = clipsim_per_clip(frames, captions[[1, 2, 0]])
    assert np.all(matched > swapped)
    assert np.all(matched > 90)
    assert np.all(np.abs(swapped) < 20)


def test_clipsim_is_a_cosine_average() -> None:
    # Reference: the formula written out with numpy; tolerance 1e-10 (float64).
    rng = np.random.default_rng(6)
    text = rng.normal(size=(2, 8)).astype(np.float32)
    frames = [
        rng.normal(size=(3, 8)).astype(np.float32),
        rng.normal(size=(1, 8)).astype(np.float32),
    ]
    scores = clipsim_per_clip(frames, text)
    assert scores.dtype == np.float64
    for i, clip in enumerate(frames):
        clip64, text64 = clip.astype(np.float64), text[i].astype(np.float64)
        cosines = clip64 @ text64 / (np.linalg.norm(clip64, axis=1) * np.linalg.norm(text64))
        assert scores[i] == pytest.approx(100 * cosines.mean(), abs=1e-10)
    # A cosine, not a dot product: embedding norms do not matter.
    # Powers of two scale float32 exactly, so only the norms change.
    rescaled = clipsim_per_clip([8.0 * frames[0], 0.25 * frames[1]], 4.0 * text)
    np.testing.assert_allclose(rescaled, scores, rtol=1e-12)
    with pytest.raises(ValueError, match="one caption embedding row per clip"):
        clipsim_per_clip(frames, text[:1])


def test_convert_clip_reads_bin_and_safetensors_alike(tmp_path: Path) -> None:
    torch.manual_seed(7)
    model = CLIPModel(clip_config(full=False, eos_token_id=2))
    state = model.state_dict()
    safetensors.torch.save_file(state, str(tmp_path / "model.safetensors"))
    # Older transformers saved the position_ids buffers and sometimes float16 weights.
    legacy = {
        key: value.half() if value.is_floating_point() else value for key, value in state.items()
    }
    legacy["text_model.embeddings.position_ids"] = torch.arange(77)[None]
    legacy["vision_model.embeddings.position_ids"] = torch.arange(50)[None]
    torch.save(legacy, tmp_path / "pytorch_model.bin")

    from_safetensors = convert_clip(tmp_path / "model.safetensors")
    from_bin = convert_clip(tmp_path / "pytorch_model.bin")
    assert from_safetensors.keys() == from_bin.keys() == state.keys()
    for key, value in from_bin.items():
        assert value.dtype == state[key].dtype
        torch.testing.assert_close(value, state[key].half().to(state[key].dtype))
        torch.testing.assert_close(from_safetensors[key], state[key], rtol=0, atol=0)


def test_convert_clip_refuses_unsafe_or_foreign_files(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="does not exist"):
        convert_clip(tmp_path / "missing.bin")
    # weights_only loading refuses arbitrary pickled objects.
    torch.save({"weight": Path("not-a-tensor")}, tmp_path / "pickled.bin")
    with pytest.raises(WeightsError, match="cannot read"):
        convert_clip(tmp_path / "pickled.bin")
    torch.save({"weight": [1, 2]}, tmp_path / "list.bin")
    with pytest.raises(WeightsError, match="not a state dict of tensors"):
        convert_clip(tmp_path / "list.bin")


def test_from_state_dict_is_strict(small_snapshot: Path) -> None:
    config = CLIPConfig.from_pretrained(small_snapshot)
    tokenizer = AutoTokenizer.from_pretrained(small_snapshot)
    state = convert_clip(small_snapshot / "model.safetensors")
    extractor = CLIPExtractor.from_state_dict(state, config=config, tokenizer=tokenizer)
    assert extractor.embed_text(["a cat"]).shape == (1, 512)
    del state["visual_projection.weight"]
    with pytest.raises(WeightsError, match=r"visual_projection\.weight"):
        CLIPExtractor.from_state_dict(state, config=config, tokenizer=tokenizer)


def test_from_pretrained_dir_names_what_is_missing(small_snapshot: Path, tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match=r"no config\.json"):
        CLIPExtractor.from_pretrained_dir(tmp_path)
    (tmp_path / "config.json").write_text((small_snapshot / "config.json").read_text())
    with pytest.raises(WeightsError, match=r"model\.safetensors nor pytorch_model\.bin"):
        CLIPExtractor.from_pretrained_dir(tmp_path)


def test_from_pretrained_dir_refuses_other_preprocessing(
    small_snapshot: Path, tmp_path: Path
) -> None:
    for name in os.listdir(small_snapshot):
        (tmp_path / name).write_bytes((small_snapshot / name).read_bytes())
    settings = json.loads((tmp_path / "preprocessor_config.json").read_text())
    settings["size"] = {"shortest_edge": 336}
    settings["image_mean"] = [0.5, 0.5, 0.5]
    (tmp_path / "preprocessor_config.json").write_text(json.dumps(settings))
    with pytest.raises(WeightsError, match="size, image_mean"):
        CLIPExtractor.from_pretrained_dir(tmp_path)
    # The legacy integer form of the hub's CLIPFeatureExtractor config is accepted.
    settings |= {"size": 224, "crop_size": 224, "image_mean": [0.48145466, 0.4578275, 0.40821073]}
    (tmp_path / "preprocessor_config.json").write_text(json.dumps(settings))
    CLIPExtractor.from_pretrained_dir(tmp_path)


def test_bad_inputs_raise(small_snapshot: Path) -> None:
    extractor = CLIPExtractor.from_pretrained_dir(small_snapshot)
    with pytest.raises(ValueError, match="uint8"):
        extractor.embed_frames([np.zeros((2, 224, 224, 3), dtype=np.float32)])
    with pytest.raises(ValueError, match="no frames"):
        extractor.embed_frames([np.zeros((0, 224, 224, 3), dtype=np.uint8)])
    with pytest.raises(ValueError, match="frames, height, width, 3"):
        extractor.embed_frames([np.zeros((224, 224, 3), dtype=np.uint8)])
    with pytest.raises(ValueError, match="preprocess=False takes float frames"):
        extractor.embed_frames([np.zeros((1, 256, 256, 3), dtype=np.float32)], preprocess=False)
    with pytest.raises(ValueError, match=r"scaled to \[0, 1\]"):
        extractor.embed_frames([np.full((1, 224, 224, 3), 255.0)], preprocess=False)
    with pytest.raises(ValueError, match="list of strings"):
        extractor.embed_text("a photo of a cat")
    assert extractor.embed_text([]).shape == (0, 512)


def test_protocol_and_description(small_snapshot: Path) -> None:
    extractor = CLIPExtractor.from_pretrained_dir(small_snapshot, weights_sha256="ab" * 32)
    described = extractor.describe()
    assert described["name"] == "clip"
    assert described["version"] == "1"
    assert described["weights"] == "clip-vit-base-patch32"
    assert described["weights_sha256"] == "ab" * 32
    assert described["protocol"] == {
        "model": "openai/clip-vit-base-patch32",
        "image_size": 224,
        "resize": "bicubic-pil-shorter-side",
        "crop": "center",
        "mean": [0.48145466, 0.4578275, 0.40821073],
        "std": [0.26862954, 0.26130258, 0.27577711],
        "text_max_length": 77,
        "text_truncation": "keep-eot",
        "frames_per_clip": 16,
        "frame_sampling": "uniform",
    }
    other = CLIPExtractor.from_pretrained_dir(
        small_snapshot, model_id="openai/clip-vit-base-patch16", frames_per_clip=8
    )
    assert other.protocol["model"] == "openai/clip-vit-base-patch16"
    assert other.protocol["frames_per_clip"] == 8


def test_real_vit_b32_shape_matches_transformers(tmp_path: Path) -> None:
    # The full OpenAI ViT-B/32 architecture (151M parameters), random weights, through the
    # snapshot round trip. Reference: transformers on the same folder; tolerance 1e-5.
    folder = clip_snapshot(tmp_path / "clip-vit-base-patch32", full=True, legacy_eos=True, seed=8)
    extractor = CLIPExtractor.from_pretrained_dir(folder, batch_size=4)
    model, processor = _reference(folder)
    assert sum(p.numel() for p in model.parameters()) == 151_277_313
    clips = _random_clips(np.random.default_rng(9), [3, 2])
    for clip, embedding in zip(clips, extractor.embed_frames(clips), strict=True):
        expected = _reference_image_features(model, processor, clip)
        np.testing.assert_allclose(embedding, expected, rtol=1e-5, atol=1e-5)
    captions = [*CAPTIONS[:2], LONG_CAPTION]
    expected_text = _reference_text_features(model, processor, captions)
    np.testing.assert_allclose(extractor.embed_text(captions), expected_text, rtol=1e-5, atol=1e-5)


@pytest.mark.skipif(
    not os.environ.get("TAVGBENCH_CLIP_B16_DIR"),
    reason="set TAVGBENCH_CLIP_B16_DIR to a local openai/clip-vit-base-patch16 snapshot",
)
def test_torchmetrics_clip_score_vector() -> None:
    # Reference: torchmetrics functional clip_score docstring, openai/clip-vit-base-patch16:
    # clip_score(torch.randint(255, (3, 224, 224)), "a photo of a cat") == 24.4255 with
    # torch.manual_seed(42); printed to 4 decimals, so tolerance 1e-3.
    extractor = CLIPExtractor.from_pretrained_dir(
        Path(os.environ["TAVGBENCH_CLIP_B16_DIR"]), model_id="openai/clip-vit-base-patch16"
    )
    torch.manual_seed(42)
    image = torch.randint(255, (3, 224, 224))
    # torchmetrics hands the int64 CHW tensor to the processor, which casts it to uint8 HWC for
    # PIL; at 224x224 the resize and crop leave it unchanged.
    frame = image.permute(1, 2, 0).numpy().astype(np.uint8)
    scores = clipsim_per_clip(
        extractor.embed_frames([frame[None]]), extractor.embed_text(["a photo of a cat"])
    )
    assert max(scores.mean(), 0.0) == pytest.approx(24.4255, abs=1e-3)
