"""Caption audible-video clips the way TAVGBench did: BLIP-2 frames, an audio captioner, an LLM.

``pip install 'tavgbench[annotate]'``; the LLM is any OpenAI-compatible chat endpoint.
"""

from tavgbench.annotate.llm import ChatClient, LLMError, ResponseCache, cache_key
from tavgbench.annotate.pipeline import (
    AnnotateError,
    AnnotateReport,
    AudioCaptioner,
    Descriptions,
    FrameCaptioner,
    annotate_clips,
    describe,
    find_clips,
    read_done_ids,
)
from tavgbench.annotate.prompts import PROMPT_VERSION

__all__ = [
    "PROMPT_VERSION",
    "AnnotateError",
    "AnnotateReport",
    "AudioCaptioner",
    "ChatClient",
    "Descriptions",
    "FrameCaptioner",
    "LLMError",
    "ResponseCache",
    "annotate_clips",
    "cache_key",
    "describe",
    "find_clips",
    "read_done_ids",
]
