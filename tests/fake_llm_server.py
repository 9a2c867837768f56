"""A local HTTP server speaking minimal OpenAI Chat Completions and Anthropic Messages (test-only code).

Point the real SDK clients at it (`base_url=server.url + "/v1"` for openai, `base_url=server.url` for anthropic).
It answers deterministically from the request (`reply_text`, or a test's own `respond(body)` where that returns a
string), can add latency, inject faults at a given rate, from a script or by a test's own `fault(body)`, records the
sampling settings of every request (`server.sampling`) and counts every request it receives. Faults: 429 / 500 /
dropped connections, malformed 200 replies (`badjson`: a body that is not JSON; `empty`: no OpenAI `choices` or
Anthropic `content`), `nousage` (a good reply with `usage: null`) and `401` (a rejected key, echoed in the message as
some servers do).

    with FakeLLMServer(latency=0.05, fail_rate=0.2) as server: ...
    python tests/fake_llm_server.py --latency 0.2      # prints "READY <port>", serves until killed
"""
import argparse
import json
import random
import socket
import sys
import threading
import time
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

FAILURE_MODES = ("429", "500", "drop")
MALFORMED_MODES = ("badjson", "empty")
ALL_MODES = FAILURE_MODES + MALFORMED_MODES + ("nousage", "401")
SAMPLING_KEYS = ("temperature", "top_p", "top_k", "seed")


class LocalHTTPServer(ThreadingHTTPServer):
    "A thread per connection, and a listen backlog deep enough that a burst of concurrent connects is never dropped."
    request_queue_size = 256  # socketserver's default of 5 drops connects beyond it: the client sees resets, retries


def last_user_text(messages: list) -> str:
    "The content of the last user message (string content or a list of text blocks)."
    content = [m for m in messages if m.get("role") == "user"][-1]["content"]
    return content if isinstance(content, str) else "".join(b.get("text", "") for b in content)


def reply_text(body: dict) -> str:
    "The deterministic answer to a request body: echoes the last user message, the seed and the temperature."
    return f"reply to {last_user_text(body['messages'])} | seed={body.get('seed')} | t={body.get('temperature')}"


def cut_at_stop(text: str, stops) -> tuple[str, bool]:
    cuts = [text.find(s) for s in (stops or []) if s in text]
    return (text[:min(cuts)], True) if cuts else (text, False)


class FakeLLMServer:
    "Threaded fake LLM API server on 127.0.0.1 with latency, failure injection and request counting."

    def __init__(self, latency: float = 0.0, fail_rate: float = 0.0, failures=FAILURE_MODES,
                 retry_after: str | None = "0", script=(), seed: int = 0, port: int = 0, respond=None, fault=None):
        self.latency, self.fail_rate, self.failures = latency, fail_rate, tuple(failures)
        self.respond = respond       # optional body -> reply text (None: the default echo of `reply_text`)
        self.fault = fault           # optional body -> a mode of ALL_MODES to inject for this request, or None
        self.retry_after, self.script = retry_after, list(script)
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.requests = 0            # every request received, failed or not
        self.injected = {m: 0 for m in ALL_MODES}
        self.sampling: list[dict] = []  # the sampling settings of every request, in order of arrival
        self.answered: list[str] = []  # reply texts sent back, in order
        self.in_flight = self.max_in_flight = 0
        self.auth_headers: set[str] = set()
        self.httpd = LocalHTTPServer(("127.0.0.1", port), self._handler())
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = None

    def start(self):
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        return self

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self): return self.start()
    def __exit__(self, *exc): self.stop()

    @property
    def failed(self) -> int:
        "Requests that got no usable reply (every injected fault but `nousage`, which is a good reply)."
        return sum(n for m, n in self.injected.items() if m != "nousage")

    def reply_for(self, body: dict) -> str:
        "The reply text for a request body: the test's `respond(body)` if it gives a string, else `reply_text(body)`."
        text = self.respond(body) if self.respond else None
        return reply_text(body) if text is None else text

    def _next_failure(self, body: dict) -> str | None:
        chosen = self.fault(body) if self.fault else None
        with self.lock:
            self.requests += 1
            self.sampling.append({k: body[k] for k in SAMPLING_KEYS if k in body})
            if chosen: return chosen
            if self.script: return self.script.pop(0)
            if self.fail_rate and self.rng.random() < self.fail_rate: return self.rng.choice(self.failures)
        return None

    def _handler(server):
        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body are two writes: with Nagle the body waits ~40 ms

            def log_message(self, *args): pass

            def _send(self, status: int, payload: dict | bytes, headers: dict | None = None):
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                for k, v in (headers or {}).items(): self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def _error(self, status: int, kind: str, message: str, headers=None):
                anthropic = self.path.endswith("/messages")
                payload = {"type": "error", "error": {"type": kind, "message": message}} if anthropic \
                    else {"error": {"message": message, "type": kind}}
                self._send(status, payload, headers)

            def do_GET(self):
                if self.path != "/stats": return self._error(404, "not_found_error", f"no route {self.path}")
                with server.lock: stats = {"requests": server.requests, "injected": server.injected,
                                           "max_in_flight": server.max_in_flight}
                self._send(200, stats)

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))) or b"{}")
                with server.lock:
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                    self.key = self.headers.get("authorization") or self.headers.get("x-api-key") or ""
                    server.auth_headers.add(self.key)
                try: self._answer(body)
                finally:
                    with server.lock: server.in_flight -= 1

            def _answer(self, body: dict):
                failure = self.failure = server._next_failure(body)
                if server.latency: time.sleep(server.latency)
                if failure:
                    with server.lock: server.injected[failure] += 1
                if failure == "drop":
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                if failure == "429":
                    headers = {"retry-after": server.retry_after} if server.retry_after is not None else {}
                    return self._error(429, "rate_limit_error", "slow down", headers)
                if failure == "500": return self._error(500, "api_error", "internal error")
                if failure == "401": return self._error(401, "authentication_error", f"invalid key: {self.key}")
                if failure == "badjson": return self._send(200, b'{"id": "chatcmpl-1", "choices": [')
                if not body.get("messages") or not body.get("model"):
                    return self._error(400, "invalid_request_error", "model and messages are required")
                if "BAD REQUEST" in last_user_text(body["messages"]):
                    return self._error(400, "invalid_request_error", "this prompt is not allowed")
                if self.path == "/v1/chat/completions": return self._openai(body)
                if self.path == "/v1/messages": return self._anthropic(body)
                self._error(404, "not_found_error", f"no route {self.path}")

            def _openai(self, body: dict):
                stop = body.get("stop")
                text, stopped = cut_at_stop(server.reply_for(body), [stop] if isinstance(stop, str) else stop)
                limit = body.get("max_completion_tokens") or body.get("max_tokens") or 10**9
                words = text.split(" ")
                finish = "stop" if stopped or len(words) <= limit else "length"
                text = " ".join(words[:limit])
                n_out = len(text.split(" "))
                logprobs = {"content": [{"token": w, "logprob": -0.5, "bytes": None, "top_logprobs": []}
                                        for w in text.split(" ")]} if body.get("logprobs") else None
                if self.failure != "empty":
                    with server.lock: server.answered.append(text)
                n_in = sum(len(str(m["content"]).split()) for m in body["messages"])
                self._send(200, {
                    "id": f"chatcmpl-{server.requests}", "object": "chat.completion", "created": int(time.time()),
                    "model": body["model"] + "-fake-20260101",
                    "choices": [] if self.failure == "empty" else
                    [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish,
                      "logprobs": logprobs}],
                    "usage": None if self.failure == "nousage" else
                    {"prompt_tokens": n_in, "completion_tokens": n_out, "total_tokens": n_in + n_out}})

            def _anthropic(self, body: dict):
                if "max_tokens" not in body:
                    return self._error(400, "invalid_request_error", "max_tokens: field required")
                text = server.reply_for(body)
                if body.get("system"): text = f"[{body['system']}] {text}"
                text, stopped = cut_at_stop(text, body.get("stop_sequences"))
                words = text.split(" ")
                reason = "stop_sequence" if stopped else ("end_turn" if len(words) <= body["max_tokens"] else "max_tokens")
                text = " ".join(words[:body["max_tokens"]])
                if self.failure != "empty":
                    with server.lock: server.answered.append(text)
                n_in = sum(len(str(m["content"]).split()) for m in body["messages"])
                self._send(200, {
                    "id": f"msg_{server.requests}", "type": "message", "role": "assistant",
                    "model": body["model"] + "-fake-20260101",
                    "content": None if self.failure == "empty" else [{"type": "text", "text": text}],
                    "stop_reason": reason, "stop_sequence": None,
                    "usage": None if self.failure == "nousage" else
                    {"input_tokens": n_in, "output_tokens": len(text.split(" "))}})

        return Handler



@contextmanager
def scripted_judge_server(judge):
    """A server answering with a test's scripted `judge.respond(body)`, the judge reachable as `server.judge`; on exit,
    fails if the judge met a prompt it did not expect (`judge.unexpected`)."""
    with FakeLLMServer(respond=judge.respond) as server:
        server.judge = judge
        yield server
    assert judge.unexpected == [], judge.unexpected

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Run the fake LLM API server until killed.")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency", type=float, default=0.0)
    parser.add_argument("--fail-rate", type=float, default=0.0)
    args = parser.parse_args()
    server = FakeLLMServer(latency=args.latency, fail_rate=args.fail_rate, port=args.port)
    print(f"READY {server.port}", flush=True)
    try: server.httpd.serve_forever()
    except KeyboardInterrupt: pass
    sys.exit(0)
