"""A scripted OpenAI-compatible chat-completions server on 127.0.0.1 for judge tests.

Replies are scripted per *marker*: a request whose user message contains the marker
gets that marker's next reply (the last one repeats; when several markers match, the
one scripted last wins), so concurrent clients stay deterministic. Every request body is recorded. The server picks a free port, answers
at most `max_requests` requests (then 400s), and stops by itself after `lifetime_s`
seconds even if a test forgets to stop it.

    with FakeJudgeServer() as srv:
        srv.script("item-1", error(429), logprobs_reply({"42": 0.7, "40": 0.3}))
        judge = OpenAIJudge("m", api_key="k", base_url=srv.base_url, base_delay=0.001)
"""

from __future__ import annotations

import json
import math
import threading
import time
from dataclasses import dataclass, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass(frozen=True)
class Reply:
    status: int = 200
    top: tuple[tuple[str, float], ...] = ()  # (token, probability), any order
    with_logprobs: bool = True
    delay: float = 0.0


def logprobs_reply(probs: dict[str, float], delay: float = 0.0) -> Reply:
    """A 200 whose first token's top_logprobs are `probs` (the most probable token is the generated one)."""
    if any(p <= 0 for p in probs.values()):
        raise ValueError("probabilities must be positive")
    return Reply(top=tuple(probs.items()), delay=delay)


def error(status: int) -> Reply:
    return Reply(status=status)


def slow(seconds: float, then: Reply) -> Reply:
    """`then`, delivered after `seconds` (a client with a shorter timeout gives up first)."""
    return replace(then, delay=seconds)


def no_logprobs(token: str = "42") -> Reply:
    """A 200 with a message but no logprobs field, as servers without logprob support answer."""
    return Reply(top=((token, 1.0),), with_logprobs=False)


class FakeJudgeServer:
    def __init__(self, default: Reply | None = None, lifetime_s: float = 60.0, max_requests: int = 2000):
        self.default = default
        self.max_requests = max_requests
        self.requests: list[dict] = []
        self._scripts: dict[str, list[Reply]] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        self._server.block_on_close = False
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._timer = threading.Timer(lifetime_s, self.stop)
        self._timer.daemon = True

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1"

    def script(self, marker: str, *replies: Reply) -> None:
        """Requests containing `marker` get `replies` in order; the last one repeats."""
        with self._lock:
            self._scripts[marker] = list(replies)

    def count(self, marker: str | None = None) -> int:
        """Requests received (containing `marker`, when given)."""
        with self._lock:
            return sum(1 for r in self.requests if marker is None or marker in _prompt(r))

    def start(self) -> FakeJudgeServer:
        self._thread.start()
        self._timer.start()
        return self

    def stop(self) -> None:
        if self._stopping.is_set():
            return
        self._stopping.set()
        self._timer.cancel()
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FakeJudgeServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _next_reply(self, body: dict) -> Reply | None:
        with self._lock:
            self.requests.append(body)
            if len(self.requests) > self.max_requests:
                return None
            text = _prompt(body)
            for marker, replies in reversed(self._scripts.items()):  # the latest matching script wins
                if marker in text:
                    return replies.pop(0) if len(replies) > 1 else replies[0]
            return self.default

    def _sleep(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end and not self._stopping.is_set():
            time.sleep(0.01)


def _prompt(body: dict) -> str:
    return "\n".join(str(m.get("content", "")) for m in body.get("messages", []))


def completion_json(model: str, reply: Reply, top_n: int) -> dict:
    """The chat.completion body for a 200 reply."""
    ranked = sorted(reply.top, key=lambda t: -t[1])
    best = ranked[0][0] if ranked else ""
    choice: dict = {"index": 0, "message": {"role": "assistant", "content": best}, "finish_reason": "length"}
    if reply.with_logprobs:
        tops = [{"token": t, "logprob": math.log(p), "bytes": list(t.encode())} for t, p in ranked[:top_n]]
        choice["logprobs"] = {
            "content": [
                {"token": best, "logprob": tops[0]["logprob"], "bytes": list(best.encode()), "top_logprobs": tops}
            ]
        }
    return {
        "id": "fake",
        "object": "chat.completion",
        "created": 0,
        "model": model,
        "choices": [choice],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }


def _handler_for(server: FakeJudgeServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:  # keep test output clean
            pass

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            try:
                body = json.loads(self.rfile.read(length) or b"{}")
            except json.JSONDecodeError:
                return self._send(400, {"error": {"message": "invalid JSON body"}})
            if not self.path.endswith("/chat/completions"):
                return self._send(404, {"error": {"message": f"no route {self.path}"}})
            reply = server._next_reply(body)
            if reply is None:
                return self._send(
                    400, {"error": {"message": "fake server: no script for this request or request budget exhausted"}}
                )
            server._sleep(reply.delay)
            if server._stopping.is_set():
                return
            if reply.status != 200:
                return self._send(
                    reply.status, {"error": {"message": f"scripted status {reply.status}", "type": "fake"}}
                )
            self._send(200, completion_json(body.get("model", ""), reply, int(body.get("top_logprobs") or 20)))

        def _send(self, status: int, payload: dict) -> None:
            data = json.dumps(payload).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client timed out and hung up

    return Handler
