"""LLM roles built by `build_roles` on an API backend, through the real SDK clients, against the local fake server."""
import json
import re

import pytest

from fake_llm_server import FakeLLMServer, last_user_text
from lcal.llm_roles import LLMSummarizer
from lcal.request_cache import RequestCache
from lcal.rolesets import build_roles

KINDS = ["openai", "anthropic"]
PARAGRAPH = "Ada Brisk was born in Qorvath (about 75% likely), though one account places her birth in Lindmere."


@pytest.fixture(autouse=True)
def api_keys(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-key")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-test-key")


def roles_on(kind, server, tmp_path, **kw):
    base_url = server.url + "/v1" if kind == "openai" else server.url
    return build_roles(f"{kind}:judge-model", base_url=base_url, backoff_base=0.01,
                       cache=RequestCache(tmp_path / "requests.sqlite"), **kw)


class Model:
    "Replies like a model would, by request: wrapped summaries, a refusal, answer lists; records the prompts it saw."

    def __init__(self):
        self.prompts = []

    def __call__(self, body):
        prompt = last_user_text(body["messages"])
        self.prompts.append(prompt)
        if prompt.startswith("You read a paragraph"):                        # the answer extractor
            return json.dumps({"answers": re.findall(r"born in (\w+)", prompt.split("Paragraph:")[1])})
        request = re.search(r"Request: (.*)", prompt)
        if request is None: return None                                       # anything else: the default echo
        if "Cleo" in request.group(1): return "I'm sorry, but I can't help with that."
        if "Bram" in request.group(1):                                        # unreadable first, fine when re-asked
            return "```\n```" if body.get("seed") == 0 else "Summary: Bram Holt was a glassblower."
        return f"Here is the combined paragraph:\n\n\"{PARAGRAPH}\"\n\nLet me know if you need anything else."


@pytest.mark.parametrize("kind", KINDS)
def test_summarizer_parses_replies_and_counts_refusals(kind, tmp_path):
    model = Model()
    with FakeLLMServer(respond=model) as server:
        roles = roles_on(kind, server, tmp_path, max_reasks=1)
        summarizer = roles.need("summarizer").summarizer
        assert isinstance(summarizer, LLMSummarizer)
        samples = [["Ada Brisk was born in Qorvath.", "Ada Brisk was born in Lindmere."], ["Cleo was born in Vell."]]
        out = summarizer.summarize(["Write a paragraph about Ada Brisk.", "Write a paragraph about Cleo."], samples)
        assert out == [PARAGRAPH, None]                  # preamble, quotes and the closing remark are gone
        assert (summarizer.failures, summarizer.reasks, server.requests) == (1, 1, 3)
        assert any("Draft 2:\nAda Brisk was born in Lindmere." in p for p in model.prompts)
        # a rerun is answered from the request cache, re-asks included: nothing reaches the server
        again = summarizer.summarize(["Write a paragraph about Ada Brisk.", "Write a paragraph about Cleo."], samples)
        assert again == out and server.requests == 3 and summarizer.failures == 2


def test_unreadable_reply_is_reasked_with_a_new_seed(tmp_path):
    with FakeLLMServer(respond=Model()) as server:
        summarizer = roles_on("openai", server, tmp_path).summarizer
        assert summarizer.summarize(["Write a paragraph about Bram Holt."], [["Bram Holt was a glassblower."]]) \
            == ["Bram Holt was a glassblower."]
        assert (summarizer.failures, summarizer.reasks, server.requests) == (0, 1, 2)


def test_build_roles_on_an_api_backend(tmp_path):
    with FakeLLMServer(respond=Model()) as server:
        roles = roles_on("openai", server, tmp_path, max_new_tokens=300)
        spec = roles.spec()
        assert set(spec) == {"summarizer", "extractor", "forecaster", "judge", "decomposer", "rating", "ranking",
                             "entailer"}
        assert {s["backend"] for s in spec.values()} == {"openai:judge-model"}
        assert spec["summarizer"]["prompt"] == "summarize_samples/v1"
        assert spec["summarizer"]["params"]["max_new_tokens"] == spec["judge"]["params"]["max_new_tokens"] == 300
        assert roles.summarizer.backend is roles.extractor.backend
        assert roles.extractor.extract(["Where was Ada born?"], ["Ada was born in Qorvath or born in Vell."]) \
            == [["Qorvath", "Vell"]]
        with pytest.raises(ValueError, match="missing role.*verifier"): roles.need("verifier")
        assert build_roles("openai:judge-model", base_url=server.url + "/v1", cache=False,
                           knowledge=lambda topic, claim: []).verifier is not None
