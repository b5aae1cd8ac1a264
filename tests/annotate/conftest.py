"""A real chat-completions server on 127.0.0.1, scripted per test."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest


@dataclass
class FakeChatServer:
    """Answers ``POST /v1/chat/completions``.

    The reply is ``"R:" + the last line of the last user message``, so a test can tell which
    request produced which field. ``failures`` holds (status, body) answers sent before that;
    a request whose text contains ``poison`` gets a 200 with a malformed body.
    """

    url: str = ""
    failures: list[tuple[int, bytes]] = field(default_factory=list)
    requests: list[dict] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


@pytest.fixture
def chat_server() -> Iterator[FakeChatServer]:
    state = FakeChatServer()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:  # keep test output clean
            pass

        def _send(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:
            data = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            with state.lock:
                state.requests.append(
                    {"path": self.path, "body": data, "auth": self.headers.get("Authorization")}
                )
                forced = state.failures.pop(0) if state.failures else None
            if self.path != "/v1/chat/completions":
                self._send(404, b'{"error": "not found"}')
            elif forced is not None:
                self._send(*forced)
            elif "poison" in json.dumps(data["messages"]):
                self._send(200, b'{"choices": []}')
            else:
                last = data["messages"][-1]["content"].strip().splitlines()[-1]
                reply = {"choices": [{"message": {"role": "assistant", "content": f"R:{last}"}}]}
                self._send(200, json.dumps(reply).encode())

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
