"""ChatClient against a real HTTP server on 127.0.0.1: replies, retries, errors, cache."""

from __future__ import annotations

from pathlib import Path

import pytest

from tavgbench.annotate.llm import ChatClient, LLMError, cache_key

MESSAGES = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "say\nhello"}]


def _client(server, sleeps: list[float] | None = None, **options) -> ChatClient:
    recorder = sleeps.append if sleeps is not None else (lambda _: None)
    return ChatClient(server.url, "test-model", sleep=recorder, timeout=10, **options)


def test_reply_and_request_body(chat_server) -> None:
    client = _client(chat_server, api_key="sk-local", temperature=0.3, max_tokens=77)
    assert client.complete(MESSAGES) == "R:hello"
    (request,) = chat_server.requests
    assert request["path"] == "/v1/chat/completions"
    assert request["auth"] == "Bearer sk-local"
    assert request["body"] == {
        "model": "test-model",
        "messages": MESSAGES,
        "temperature": 0.3,
        "max_tokens": 77,
    }


def test_503_then_success_backs_off(chat_server) -> None:
    chat_server.failures = [(503, b"busy"), (502, b"")]
    sleeps: list[float] = []
    client = _client(chat_server, sleeps, backoff=0.5)
    assert client.complete(MESSAGES) == "R:hello"
    assert len(chat_server.requests) == 3 and client.requests_sent == 3
    assert sleeps == [0.5, 1.0]


def test_gives_up_after_retries(chat_server) -> None:
    chat_server.failures = [(503, b"busy")] * 3
    client = _client(chat_server, max_retries=2)
    with pytest.raises(LLMError, match=r"gave up after 3 attempts \(last: HTTP 503 busy\)"):
        client.complete(MESSAGES)
    assert len(chat_server.requests) == 3


def test_client_errors_and_malformed_replies_are_not_retried(chat_server) -> None:
    chat_server.failures = [(400, b'{"error": "bad model"}')]
    with pytest.raises(LLMError, match="HTTP 400"):
        _client(chat_server).complete(MESSAGES)
    chat_server.failures = [(200, b"<html>oops</html>")]
    with pytest.raises(LLMError, match=r"malformed chat-completions response .*<html>oops"):
        _client(chat_server).complete(MESSAGES)
    chat_server.failures = [(200, b'{"choices": [{"message": {"content": "  "}}]}')]
    with pytest.raises(LLMError, match="empty reply"):
        _client(chat_server).complete(MESSAGES)
    assert len(chat_server.requests) == 3


def test_connection_refused_is_retried_then_reported(chat_server) -> None:
    dead = ChatClient("http://127.0.0.1:9/v1", "m", max_retries=1, sleep=lambda _: None, timeout=2)
    with pytest.raises(LLMError, match="gave up after 2 attempts"):
        dead.complete(MESSAGES)
    with pytest.raises(LLMError, match="must start with http"):
        ChatClient("127.0.0.1:8000", "m")


def test_cache_answers_without_requests(chat_server, tmp_path: Path) -> None:
    first = _client(chat_server, cache_dir=tmp_path / "cache")
    assert first.complete(MESSAGES) == "R:hello"
    assert first.complete(MESSAGES) == "R:hello"
    assert first.requests_sent == 1 and first.cache_hits == 1
    second = _client(chat_server, cache_dir=tmp_path / "cache")
    assert second.complete(MESSAGES) == "R:hello"
    assert second.requests_sent == 0
    # Another temperature is another key: a request is made.
    third = _client(chat_server, cache_dir=tmp_path / "cache", temperature=0.7)
    third.complete(MESSAGES)
    assert third.requests_sent == 1 and len(chat_server.requests) == 2
    key = cache_key("test-model", MESSAGES, {"temperature": 0.0, "max_tokens": 256})
    assert (tmp_path / "cache" / key[:2] / f"{key}.json").is_file()
