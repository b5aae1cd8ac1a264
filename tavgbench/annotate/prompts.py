"""The LLM prompts of the annotation pipeline, versioned.

Any change to a template text changes what the LLM writes, so it must bump
:data:`PROMPT_VERSION`; every output line records the version and the run's ``.meta.json`` holds
the full texts. These prompts are ours: the TAVGBench paper describes the steps (rephrase the
frame captions, rephrase the audio caption, merge both) but does not publish its prompts.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence

PROMPT_VERSION = "tavgbench-annotate/1"

SYSTEM = (
    "You write concise, factual captions for a dataset of video clips with sound. Use only what "
    "the given descriptions support; do not invent objects, names, places or numbers."
)

VISUAL = (
    "Below are automatic captions of {count} frames sampled evenly from one video clip, in time "
    "order. Rewrite them as one fluent description of what the video shows, in one or two "
    "sentences. Merge repeated content, keep changes over time, and leave out details that "
    "appear in a single frame and contradict the others. Answer with the description only.\n"
    "\n"
    "Frame captions:\n"
    "{captions}"
)

AUDIO = (
    "Below is an automatic caption of the soundtrack of a video clip. Rephrase it as one fluent "
    "sentence describing what can be heard. Answer with the sentence only.\n"
    "\n"
    "Audio caption: {caption}"
)

MERGE = (
    "Combine the visual description and the audio description of the same video clip into one "
    "caption of two or three sentences that says what is seen and what is heard, and how they "
    "relate where that is clear. Answer with the caption only.\n"
    "\n"
    "Visual: {visual}\n"
    "Audio: {audio}"
)

Messages = list[dict[str, str]]


def _messages(user: str) -> Messages:
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]


def visual_messages(frame_captions: Sequence[str]) -> Messages:
    """Chat messages asking to rephrase the frame captions into one visual description."""
    lines = "\n".join(f"{i}. {caption.strip()}" for i, caption in enumerate(frame_captions, 1))
    return _messages(VISUAL.format(count=len(frame_captions), captions=lines))


def audio_messages(audio_caption: str) -> Messages:
    """Chat messages asking to rephrase the audio caption."""
    return _messages(AUDIO.format(caption=audio_caption.strip()))


def merge_messages(visual: str, audio: str) -> Messages:
    """Chat messages asking to merge both descriptions into one 2-3 sentence caption."""
    return _messages(MERGE.format(visual=visual.strip(), audio=audio.strip()))


def prompt_texts() -> dict[str, str]:
    """The version and every template, as written into the run's ``.meta.json``."""
    return {
        "version": PROMPT_VERSION,
        "system": SYSTEM,
        "visual": VISUAL,
        "audio": AUDIO,
        "merge": MERGE,
    }


def prompts_sha256() -> str:
    """sha256 of :func:`prompt_texts`, so an edited template without a version bump shows."""
    return hashlib.sha256(json.dumps(prompt_texts(), sort_keys=True).encode()).hexdigest()
