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

from fake_llm_server import FAILURE_MODES, MALFORMED_MODES, FakeLLMServer, last_user_text, reply_text
from lcal.api_backends import APIRequestError, MissingAPIKey
from lcal.backends import GenerationError, SamplingParams, get_backend
from lcal.cli import main
from lcal.core import get_logger
from lcal.request_cache import RequestCache, request_stage

KEY = "sk-test-secret-key-123"
KINDS = ["openai", "anthropic"]


@pytest.fixture(autouse=True)
def api_keys(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)


def url_of(kind, server): return server.url + "/v1" if kind == "openai" else server.url


def backend_for(kind, server, **kwargs):
    kwargs.setdefault("backoff_base", 0.01)
    return get_backend(f"{kind}:judge-model", base_url=url_of(kind, server), **kwargs)


def expected_text(kind, prompt, params, index):
    "What the fake server answers for sample `index` of a plain-text prompt."
    body = {"messages": [{"role": "user", "content": prompt}]}
    if kind == "openai": body.update(seed=params.seed + index, temperature=params.temperature)
    elif params.temperature != 1: body.update(temperature=params.temperature)
    return reply_text(body)


def texts(out): return [[c.text for c in cs] for cs in out]


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
        with pytest.raises(GenerationError, match=f"{kind}:judge-model: 1 of 1 requests failed .*"
                                                  "HTTP 400: this prompt is not allowed"):
            backend.generate(["BAD REQUEST please"])
        assert server.requests == 1 and backend.ledger.retries == 0


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("failure", FAILURE_MODES)
def test_max_attempts_is_every_attempt_a_request_gets(kind, failure):
    "No SDK retries and no later round: a request failing every time reaches the server exactly `max_attempts` times."
    with FakeLLMServer(fail_rate=1.0, failures=[failure]) as server:
        backend = backend_for(kind, server, cache=False, max_attempts=3, backoff_max=0.01)
        with pytest.raises(GenerationError, match="2 of 2 requests failed .*gave up after 3 attempts; last error"):
            backend.generate(["hi", "there"])
        assert server.requests == 2 * 3 and backend.ledger.retries == 2 * 2
        with pytest.raises(GenerationError, match="gave up after 1 attempts"):
            backend_for(kind, server, cache=False, max_attempts=1).generate(["once"])
        assert server.requests == 2 * 3 + 1


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


def settled(server, quiet: float = 0.5, timeout: float = 10.0) -> None:
    "Wait until the server has received no request for `quiet` seconds."
    deadline, seen, since = time.time() + timeout, server.requests, time.time()
    while time.time() < deadline and time.time() - since < quiet:
        time.sleep(0.05)
        if server.requests != seen: seen, since = server.requests, time.time()


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
        settled(server)  # a request cut off by the kill may still reach the server (and be counted) after it
        assert not (tmp_path / "resumed.json").exists()
        cached = len(RequestCache(tmp_path / "home" / "cache" / "requests.sqlite"))
        assert 15 <= cached < 60
        server.requests = 0
        run_worker(url, tmp_path / "resumed.json", tmp_path / "home")
        assert server.requests == 60 - cached
    assert json.loads((tmp_path / "resumed.json").read_text()) == json.loads((tmp_path / "full.json").read_text())


# --- issue 15: what a probe with fault injection, malformed replies and echoing servers found ---

@pytest.mark.parametrize("kind", KINDS)
def test_sampling_settings_reach_the_server(kind):
    "OpenAI gets temperature, top-p and seed always, top-k when set; Anthropic each setting that is not its default."
    sampled = SamplingParams(temperature=0.2, top_p=0.9, top_k=40, seed=3)
    with FakeLLMServer() as server:
        backend = backend_for(kind, server, cache=False)
        for params in (sampled, SamplingParams(temperature=0), SamplingParams()): backend.generate(["hi"], params)
    if kind == "openai":
        assert server.sampling == [{"temperature": 0.2, "top_p": 0.9, "top_k": 40, "seed": 3},
                                   {"temperature": 0.0, "top_p": 1.0, "seed": 0},
                                   {"temperature": 1.0, "top_p": 1.0, "seed": 0}]
    else:
        assert server.sampling == [{"temperature": 0.2, "top_p": 0.9, "top_k": 40}, {"temperature": 0.0}, {}]


@pytest.mark.parametrize("kind", KINDS)
def test_the_endpoint_is_part_of_the_cache_key(kind, tmp_path, monkeypatch):
    "Two servers named only by OPENAI_BASE_URL / ANTHROPIC_BASE_URL never answer from each other's cache entries."
    cache = RequestCache(tmp_path / "c.sqlite")
    with FakeLLMServer(respond=lambda body: "from A") as a, FakeLLMServer(respond=lambda body: "from B") as b:
        monkeypatch.setenv(f"{kind.upper()}_BASE_URL", url_of(kind, a))
        assert get_backend(f"{kind}:m", cache=cache).generate(["hi"])[0][0].text == "from A"
        monkeypatch.setenv(f"{kind.upper()}_BASE_URL", url_of(kind, b))
        assert get_backend(f"{kind}:m", cache=cache).generate(["hi"])[0][0].text == "from B"
        again = get_backend(f"{kind}:m", cache=cache, base_url=url_of(kind, b) + "/")  # a trailing / is the same server
        assert again.generate(["hi"])[0][0].text == "from B" and again.ledger.cache_hits == 1
        assert (a.requests, b.requests) == (1, 1)


@pytest.mark.parametrize("kind", KINDS)
def test_identical_requests_are_sent_once(kind, tmp_path):
    "1 vs 1.0, text vs the same one-message chat, stop strings in another order, repeats in one call: one request."
    cache = RequestCache(tmp_path / "c.sqlite")
    with FakeLLMServer() as server:
        backend = backend_for(kind, server, cache=cache)
        first = backend.generate(["hi", "hi"], SamplingParams(temperature=1, stop=["#", "@"]))
        assert server.requests == 1 and texts(first)[0] == texts(first)[1]
        chat = backend.generate([[{"role": "user", "content": "hi"}]], SamplingParams(temperature=1.0, stop=["@", "#"]))
        assert texts(chat) == texts(first)[:1] and server.requests == 1


@pytest.mark.parametrize("kind", KINDS)
def test_a_key_echoed_by_the_server_is_masked(kind, caplog):
    "A 401 stops the batch at once (every request would meet it), and the key it echoes is masked."
    with FakeLLMServer(script=["401"]) as server, caplog.at_level("DEBUG"):
        with pytest.raises(APIRequestError) as error:
            backend_for(kind, server, cache=False, concurrency=1).generate([f"q{i}" for i in range(5)])
        assert server.requests < 5  # one at a time: the 401 stops the batch before the rest are sent
    assert "HTTP 401: invalid key" in str(error.value) and "***" in str(error.value)
    assert KEY not in str(error.value) and KEY not in caplog.text


@pytest.mark.parametrize("kind", KINDS)
def test_a_request_failing_fewer_times_than_its_attempts_is_answered(kind):
    faults = {"q3": 2}  # q3 fails twice: its third and last attempt is answered

    def fault(body):
        prompt = last_user_text(body["messages"])
        if faults.get(prompt, 0) > 0:
            faults[prompt] -= 1
            return "500"

    params = SamplingParams(seed=1)
    with FakeLLMServer(fault=fault) as server:
        out = backend_for(kind, server, cache=False, max_attempts=3).generate([f"q{i}" for i in range(10)], params)
        assert server.requests == 10 + 2
    assert texts(out) == [[expected_text(kind, f"q{i}", params, 0)] for i in range(10)]


@pytest.mark.parametrize("kind", KINDS)
def test_stop_strings_are_sent_in_the_callers_order(kind):
    "The caller's first stop strings are not traded for the alphabetically first; more than OpenAI takes is an error."
    sent = []
    with FakeLLMServer(fault=lambda body: sent.append(body.get("stop") or body.get("stop_sequences"))) as server:
        backend = backend_for(kind, server, cache=False)
        backend.generate(["hi"], SamplingParams(stop=["zz", "\n", "Question:", "zz", "#"]))
        assert sent == [["zz", "\n", "Question:", "#"]]
        five = SamplingParams(stop=["zz", "yy", "xx", "ww", "aa"])
        if kind == "openai":
            with pytest.raises(ValueError, match="openai:judge-model: 5 stop strings given; the OpenAI API takes at most 4"):
                backend.generate(["hi"], five)
            assert server.requests == 1
        else:
            backend.generate(["hi"], five)
            assert sent[-1] == five.stop


@pytest.mark.parametrize("kind", KINDS)
def test_secrets_in_the_endpoint_url_are_never_recorded(kind, tmp_path, caplog, monkeypatch):
    """A token in the URL's user info or query reaches no stage manifest, cache file, log or error: the endpoint is
    recorded as scheme, host, port and path. (The SDKs join a query-carrying base URL badly: the server answers 404
    and echoes the path with the query, which must be masked.)"""
    from lcal.llm_roles import LLMAnswerExtractor
    from lcal.stages import run_stage
    monkeypatch.setattr(get_logger(), "propagate", True)  # lcal's records reach caplog too
    with FakeLLMServer() as server, caplog.at_level("DEBUG"):
        host = url_of(kind, server).removeprefix("http://")
        for url, answered in ((f"http://me:tok-USERINFO-1@{host}", True), (f"http://{host}/?api-key=q-QUERY-12", False)):
            cache = RequestCache(tmp_path / "cache" / "requests.sqlite")
            judge = LLMAnswerExtractor(get_backend(f"{kind}:judge-model", cache=cache, base_url=url), max_reasks=0)
            assert judge.spec()["backend_scope"]["base_url"] == f"http://{host}"

            def build(out):
                if answered: judge.extract(["Where was Ada born?"], ["In Qorvath."])
                else:
                    with pytest.raises(APIRequestError) as error: judge.extract(["Where?"], ["Here."])
                    (out / "error.txt").write_text(str(error.value))
                    assert "HTTP 404" in str(error.value) and "***" in str(error.value)
            run_stage(tmp_path / f"stage_{answered}", "judge", {"judge": judge.spec()}, build)
            cache.close()
    assert server.requests == 2
    for file in tmp_path.rglob("*"):
        if file.is_file():
            assert b"tok-USERINFO-1" not in file.read_bytes() and b"q-QUERY-12" not in file.read_bytes(), file
    ours = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("lcal"))
    assert "stage judge: done" in ours and "tok-USERINFO-1" not in ours and "q-QUERY-12" not in ours


@pytest.mark.parametrize("kind", KINDS)
def test_failed_requests_are_reported_after_the_others_are_saved(kind, tmp_path):
    broken = {"q5"}
    prompts = [f"q{i}" for i in range(8)] + ["BAD REQUEST q8"]
    params = SamplingParams(n=2, seed=0)
    cache = RequestCache(tmp_path / "c.sqlite")
    with FakeLLMServer(fault=lambda body: "500" if last_user_text(body["messages"]) in broken else None) as server:
        with pytest.raises(GenerationError) as error:
            backend_for(kind, server, cache=cache, max_attempts=2).generate(prompts, params)
        failed = error.value.failed
        assert set(failed) == {(5, 0), (5, 1), (8, 0), (8, 1)}
        assert "last error HTTP 500" in failed[5, 0] and failed[8, 0] == "HTTP 400: this prompt is not allowed"
        assert "4 of 18 requests failed (prompts 5, 8;" in str(error.value)
        for i, completions in enumerate(error.value.completions):
            expected = [None] * 2 if i in (5, 8) else [expected_text(kind, prompts[i], params, s) for s in range(2)]
            assert [c and c.text for c in completions] == expected
        broken.clear()  # the outage is over: a rerun sends only what failed
        server.requests = 0
        with pytest.raises(GenerationError, match="2 of 18 requests failed"):
            backend_for(kind, server, cache=cache).generate(prompts, params)
        assert server.requests == 4


def test_retry_after_zero_still_waits_the_backoff():
    with FakeLLMServer(script=["429", "429"], retry_after="0") as server:
        backend = backend_for("openai", server, cache=False, backoff_base=0.2)
        start = time.perf_counter()
        backend.generate(["hi"])
        assert time.perf_counter() - start >= 0.3  # at least ½ × 0.2 s, then ½ × 0.4 s
        assert server.requests == 3


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("mode", MALFORMED_MODES)
def test_malformed_replies_are_retried(kind, mode):
    with FakeLLMServer(script=[mode]) as server:
        backend = backend_for(kind, server, cache=False)
        [[c]] = backend.generate(["hi"], SamplingParams(seed=0))
        assert c.text == expected_text(kind, "hi", SamplingParams(seed=0), 0)
        assert server.requests == 2 and backend.ledger.retries == 1


@pytest.mark.parametrize("kind", KINDS)
def test_a_reply_without_usage_is_kept_and_counted(kind):
    with FakeLLMServer(script=["nousage"]) as server:
        backend = backend_for(kind, server, cache=False)
        [[c]] = backend.generate(["hi"], SamplingParams(seed=0))
        assert c.text == expected_text(kind, "hi", SamplingParams(seed=0), 0) and c.completion_tokens == 0
        assert server.requests == 1 and backend.ledger.usage_missing == 1 and backend.ledger.cost() is None


@pytest.mark.parametrize("kind", KINDS)
def test_fault_injection_1000_requests(kind, tmp_path):
    "20% of 1,000 requests meet a 429, 500, dropped connection or malformed reply: every completion comes out right."
    prompts, params = [f"question {i}" for i in range(500)], SamplingParams(n=2, temperature=0.7, seed=11)
    with FakeLLMServer(fail_rate=0.2, failures=FAILURE_MODES + MALFORMED_MODES, seed=7) as server:
        # at 20% failures a request fails 6 attempts in a row with p = 6.4e-5 (6% of runs lose one of 1,000); 10: 1e-4 of runs
        backend = backend_for(kind, server, cache=RequestCache(tmp_path / "c.sqlite"), concurrency=32,
                              backoff_base=0.001, backoff_max=0.01, max_attempts=10)
        out = backend.generate(prompts, params)
        assert all(server.injected[m] > 0 for m in FAILURE_MODES + MALFORMED_MODES)
        assert 150 <= server.failed <= 350 and server.requests == 1000 + server.failed
    assert texts(out) == [[expected_text(kind, p, params, s) for s in range(2)] for p in prompts]
    assert backend.ledger.requests == 1000


def test_lcal_cache_finds_and_removes_a_bad_cached_reply(tmp_path, capsys):
    "A reply that breaks its reader stays cached; `lcal cache` shows it by stage and removes it, and a rerun re-asks."
    reply = {"text": '{"answers": ' + "[" * 50}
    home_cache = tmp_path / "requests.sqlite"
    with FakeLLMServer(respond=lambda body: reply["text"]) as server:
        backend = backend_for("openai", server, cache=RequestCache(home_cache))
        with request_stage("extract"): backend.generate(["paragraph 1", "paragraph 2"])
        with request_stage("judge"): backend.generate(["verdict"])
        assert main(["cache", "count", "--path", str(home_cache)]) == 0
        assert capsys.readouterr().out.splitlines() == ["        2  openai:judge-model  extract",
                                                        "        1  openai:judge-model  judge",
                                                        "        3  total"]
        assert main(["cache", "list", "--path", str(home_cache), "--stage", "extract"]) == 0
        assert capsys.readouterr().out.count('{\\"answers\\": [[[[') == 2
        assert main(["cache", "remove", "--path", str(home_cache), "--stage", "extract"]) == 0
        assert capsys.readouterr().out.startswith("removed 2 entries")
        reply["text"] = '{"answers": ["Paris"]}'
        with request_stage("extract"): again = backend.generate(["paragraph 1", "paragraph 2", "verdict"])
        assert [cs[0].text for cs in again][:2] == ['{"answers": ["Paris"]}'] * 2 and server.requests == 5
