"""The OpenAI and Anthropic backends, through the real SDK clients, against a local fake server on 127.0.0.1."""
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from fake_llm_server import FakeLLMServer, reply_text
from lcal.api_backends import APIRequestError, MissingAPIKey
from lcal.backends import SamplingParams, get_backend
from lcal.request_cache import RequestCache

KEY = "sk-test-secret-key-123"
KINDS = ["openai", "anthropic"]


@pytest.fixture(autouse=True)
def api_keys(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)


def backend_for(kind, server, **kwargs):
    base_url = server.url + "/v1" if kind == "openai" else server.url
    kwargs.setdefault("backoff_base", 0.01)
    return get_backend(f"{kind}:judge-model", base_url=base_url, **kwargs)


def expected_text(kind, prompt, params, index):
    "What the fake server answers for sample `index` of a plain-text prompt."
    body = {"messages": [{"role": "user", "content": prompt}]}
    if kind == "openai": body.update(seed=params.seed + index, temperature=params.temperature)
    return reply_text(body)


@pytest.mark.parametrize("kind", KINDS)
def test_round_trip_records_server_model_and_tokens(kind, tmp_path):
    params = SamplingParams(n=2, temperature=0.7, max_new_tokens=50, seed=5)
    prompts = ["What is the capital of Vell?", "Who founded Lumora?"]
    with FakeLLMServer() as server:
        backend = backend_for(kind, server, cache=RequestCache(tmp_path / "c.sqlite"))
        out = backend.generate(prompts, params)
        assert server.requests == 4
        for prompt, completions in zip(prompts, out):
            assert [c.text for c in completions] == [expected_text(kind, prompt, params, i) for i in range(2)]
            assert all(c.model == "judge-model-fake-20260101" and c.completion_tokens > 0 for c in completions)
        assert backend.ledger.requests == 4 and backend.ledger.output_tokens > 0
        # a rerun is served from the cache: nothing reaches the server
        again = backend.generate(prompts, params)
        assert again == out and server.requests == 4 and backend.ledger.cache_hits == 4


@pytest.mark.parametrize("kind", KINDS)
def test_chat_messages_stop_strings_and_length(kind):
    chat = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "Where was Ada born?"}]
    with FakeLLMServer() as server:
        backend = backend_for(kind, server, cache=False)
        cut = backend.generate([chat], SamplingParams(stop=["|"], seed=0))[0][0]
        assert cut.text.rstrip().endswith("Ada born?") and "|" not in cut.text and cut.finish_reason == "stop"
        if kind == "anthropic": assert cut.text.startswith("[be brief]")
        short = backend.generate([chat], SamplingParams(max_new_tokens=2))[0][0]
        assert short.finish_reason == "length" and short.completion_tokens == 2


def test_openai_logprobs_per_token():
    with FakeLLMServer() as server:
        c = backend_for("openai", server, cache=False).generate(["hi"], SamplingParams(logprobs=True))[0][0]
        assert c.logprobs is not None and len(c.logprobs) == c.completion_tokens


@pytest.mark.parametrize("kind", KINDS)
def test_twenty_percent_failures_all_complete_and_retries_counted(kind):
    params = SamplingParams(n=2, seed=1)
    prompts = [f"question {i}" for i in range(40)]
    with FakeLLMServer(fail_rate=0.2, seed=3) as server:
        backend = backend_for(kind, server, cache=False, concurrency=8, max_attempts=10)
        out = backend.generate(prompts, params)
        assert all(server.injected[m] > 0 for m in ("429", "500", "drop"))
        assert backend.ledger.retries == server.failed
        assert server.requests == 80 + server.failed
    for prompt, completions in zip(prompts, out):
        assert [c.text for c in completions] == [expected_text(kind, prompt, params, i) for i in range(2)]


def test_retry_after_is_honoured():
    with FakeLLMServer(script=["429"], retry_after="0.6") as server:
        backend = backend_for("openai", server, cache=False, backoff_base=0.0)
        start = time.perf_counter()
        backend.generate(["hi"])
        assert time.perf_counter() - start >= 0.55
        assert server.requests == 2 and backend.ledger.retries == 1


@pytest.mark.parametrize("kind", KINDS)
def test_client_errors_fail_at_once_with_a_clear_message(kind):
    with FakeLLMServer() as server:
        backend = backend_for(kind, server, cache=False)
        with pytest.raises(APIRequestError, match=f"{kind}:judge-model: HTTP 400: this prompt is not allowed"):
            backend.generate(["BAD REQUEST please"])
        assert server.requests == 1 and backend.ledger.retries == 0


def test_gives_up_after_max_attempts():
    with FakeLLMServer(fail_rate=1.0, failures=["500"]) as server:
        backend = backend_for("anthropic", server, cache=False, max_attempts=3)
        with pytest.raises(APIRequestError, match="gave up after 3 attempts; last error HTTP 500"):
            backend.generate(["hi"])
        assert server.requests == 3


@pytest.mark.parametrize("kind", KINDS)
def test_missing_key_fails_before_any_request(kind, monkeypatch):
    monkeypatch.delenv(f"{kind.upper()}_API_KEY")
    with FakeLLMServer() as server:
        with pytest.raises(MissingAPIKey, match=f"{kind.upper()}_API_KEY"):
            backend_for(kind, server)
        assert server.requests == 0


def test_concurrency_is_bounded():
    with FakeLLMServer(latency=0.05) as server:
        backend_for("openai", server, cache=False, concurrency=4).generate([f"q{i}" for i in range(24)])
        assert 2 <= server.max_in_flight <= 4


def test_fake_server_is_not_the_bottleneck():
    "A burst of 32 connects is accepted at once (listen backlog): no connection is reset and retried."
    with FakeLLMServer(latency=0.25) as server:
        backend = backend_for("openai", server, cache=False, concurrency=32)
        backend.generate([f"q{i}" for i in range(32)])
        assert server.max_in_flight == 32 and backend.ledger.retries == 0


def test_cache_stores_no_key_and_can_be_switched_off(tmp_path):
    path = tmp_path / "c.sqlite"
    with FakeLLMServer() as server:
        backend_for("openai", server, cache=RequestCache(path)).generate(["hi", "there"])
        assert f"Bearer {KEY}" in server.auth_headers  # the key was sent to the server ...
        uncached = backend_for("openai", server, cache=False)
        uncached.generate(["hi"]); uncached.generate(["hi"])
        assert server.requests == 4
    for file in tmp_path.iterdir():  # ... but is in no cache file (database, WAL)
        assert KEY.encode() not in file.read_bytes() and b"authorization" not in file.read_bytes().lower()


WORKER = textwrap.dedent("""
    import json, sys
    from lcal.backends import SamplingParams, get_backend
    url, out = sys.argv[1], sys.argv[2]
    backend = get_backend("openai:judge-model", base_url=url, concurrency=4)
    result = backend.generate([f"question {i}" for i in range(30)], SamplingParams(n=2, seed=0))
    json.dump([[c.text for c in cs] for cs in result], open(out, "w"))
""")


def run_worker(url, out, home, wait=True):
    env = {**os.environ, "LCAL_HOME": str(home), "PYTHONPATH": str(Path(__file__).parents[1])}
    proc = subprocess.Popen([sys.executable, "-c", WORKER, url, str(out)], env=env)
    if wait: assert proc.wait(timeout=120) == 0
    return proc


def test_killed_run_resumes_sending_only_missing_requests(tmp_path):
    with FakeLLMServer(latency=0.05) as server:
        url = server.url + "/v1"
        run_worker(url, tmp_path / "full.json", tmp_path / "home_full")
        assert server.requests == 60
        server.requests = 0
        proc = run_worker(url, tmp_path / "resumed.json", tmp_path / "home", wait=False)
        deadline = time.time() + 60
        while server.requests < 20 and time.time() < deadline: time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert not (tmp_path / "resumed.json").exists()
        cached = len(RequestCache(tmp_path / "home" / "cache" / "requests.sqlite"))
        assert 15 <= cached < 60
        server.requests = 0
        run_worker(url, tmp_path / "resumed.json", tmp_path / "home")
        assert server.requests == 60 - cached
    assert json.loads((tmp_path / "resumed.json").read_text()) == json.loads((tmp_path / "full.json").read_text())
