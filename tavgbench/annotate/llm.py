"""A small client for OpenAI-compatible chat-completions endpoints, with a response cache.

Works with any server speaking ``POST {base_url}/chat/completions`` (OpenAI, vLLM, llama.cpp
server, Ollama's OpenAI endpoint, ...). Only the standard library is used, so the annotation
pipeline adds no HTTP dependency.

* Cache: each response is stored under the sha256 of ``(model, messages, parameters)`` as one
  small JSON file written atomically, so a rerun (or a second run writing another output file)
  sends no request it already has an answer for. Threads may share one cache.
* Retries: HTTP 408/409/429/5xx, timeouts and connection errors are retried with exponential
  backoff (doubling from ``backoff`` seconds; at least the server's ``Retry-After`` seconds when
  it sends one; never more than ``max_backoff``) up to ``max_retries`` times. Other HTTP errors
  and malformed responses are not retried: they raise :class:`LLMError` at once.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tavgbench.errors import TavgbenchError

RETRY_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504})


class LLMError(TavgbenchError):
    """The chat endpoint failed, gave up after retries, or answered something unusable."""


def cache_key(model: str, messages: Sequence[dict[str, str]], params: dict[str, Any]) -> str:
    """sha256 over the canonical JSON of what determines a response."""
    material = {"model": model, "messages": list(messages), "params": params}
    text = json.dumps(material, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class ResponseCache:
    """Responses as ``<folder>/<key[:2]>/<key>.json`` files, each written atomically."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)

    def _path(self, key: str) -> Path:
        return self.folder / key[:2] / f"{key}.json"

    def get(self, key: str) -> str | None:
        try:
            record = json.loads(self._path(key).read_text(encoding="utf-8"))
        except (FileNotFoundError, json.JSONDecodeError):
            return None
        content = record.get("content") if isinstance(record, dict) else None
        return content if isinstance(content, str) else None

    def put(self, key: str, content: str, request: dict[str, Any]) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".", suffix=".json", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump({"request": request, "content": content}, handle, ensure_ascii=False)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


class ChatClient:
    """Chat completions with caching and retries; safe to call from several threads.

    Args:
        base_url: the API root, e.g. ``http://127.0.0.1:8000/v1`` (``/chat/completions`` is
            appended).
        model: model name sent with each request (and part of the cache key).
        api_key: bearer token; None sends no ``Authorization`` header (local servers).
        temperature: sampling temperature (part of the cache key).
        max_tokens: response length limit (part of the cache key).
        timeout: seconds per HTTP request.
        max_retries: retries after the first attempt for retryable failures.
        backoff: first retry delay in seconds, doubled on each retry.
        max_backoff: longest delay between attempts.
        cache_dir: response cache folder, or None for no cache.
        sleep: the delay function (tests pass a recorder).
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        temperature: float = 0.0,
        max_tokens: int = 256,
        timeout: float = 120.0,
        max_retries: int = 5,
        backoff: float = 1.0,
        max_backoff: float = 60.0,
        cache_dir: str | Path | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise LLMError(f"LLM base URL {base_url!r} must start with http:// or https://")
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model = model
        self.params: dict[str, Any] = {"temperature": temperature, "max_tokens": max_tokens}
        self._api_key = api_key
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.cache = ResponseCache(cache_dir) if cache_dir is not None else None
        self._sleep = sleep
        self._lock = threading.Lock()
        self.requests_sent = 0
        self.cache_hits = 0

    def complete(self, messages: Sequence[dict[str, str]]) -> str:
        """The assistant's reply text to ``messages`` (from the cache when it is there).

        Raises:
            LLMError: a non-retryable HTTP error, retries exhausted, or a malformed response.
        """
        key = cache_key(self.model, messages, self.params)
        if self.cache is not None:
            cached = self.cache.get(key)
            if cached is not None:
                with self._lock:
                    self.cache_hits += 1
                return cached
        body = {"model": self.model, "messages": list(messages), **self.params}
        content = self._post_with_retries(body)
        if self.cache is not None:
            self.cache.put(key, content, body)
        return content

    def _post_with_retries(self, body: dict[str, Any]) -> str:
        payload = json.dumps(body).encode("utf-8")
        headers = {"Content-Type": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        last = ""
        retry_after: str | None = None
        for attempt in range(self.max_retries + 1):
            if attempt:
                self._sleep(self._delay(attempt, retry_after))
            request = urllib.request.Request(self.url, payload, headers, method="POST")
            with self._lock:
                self.requests_sent += 1
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    raw = response.read()
            except urllib.error.HTTPError as exc:
                detail = exc.read()[:300].decode("utf-8", "replace").strip()
                last = f"HTTP {exc.code} {detail}".strip()
                if exc.code not in RETRY_STATUS:
                    raise LLMError(f"{self.url}: {last}") from exc
                retry_after = exc.headers.get("Retry-After") if exc.headers else None
                continue
            except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
                last = f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}"
                retry_after = None
                continue
            return self._content(raw)
        raise LLMError(f"{self.url}: gave up after {self.max_retries + 1} attempts (last: {last})")

    def _delay(self, attempt: int, retry_after: str | None) -> float:
        delay = min(self.max_backoff, self.backoff * 2 ** (attempt - 1))
        if retry_after is not None and retry_after.strip().isdigit():
            delay = min(self.max_backoff, max(delay, float(retry_after)))
        return delay

    def _content(self, raw: bytes) -> str:
        snippet = raw[:200].decode("utf-8", "replace")
        try:
            document = json.loads(raw)
            content = document["choices"][0]["message"]["content"]
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, IndexError, TypeError) as exc:
            raise LLMError(
                f"{self.url}: malformed chat-completions response (expected "
                f"choices[0].message.content): {snippet!r}"
            ) from exc
        if not isinstance(content, str) or not content.strip():
            raise LLMError(f"{self.url}: empty reply in chat-completions response: {snippet!r}")
        return content.strip()
