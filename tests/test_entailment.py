"""Entailers behind one role: the LLM judge through the real SDK clients against the local fake server, the batched
NLI model inside the ALCE evaluation against the reference's one-generate-per-check loop, and `lcal bench entailment`."""
import json
import re

import pytest

from fake_llm_server import FakeLLMServer, last_user_text
from lcal.alce import alce_scores
from lcal.bench import bench_command
from lcal.entailment import LLMEntailer, NLIEntailer, build_entailer, reference_entailment
from lcal.request_cache import RequestCache
from lcal.rolesets import build_roles
from lcal.tiny import make_tiny_nli
from lcal.world import build_world
from lcal.world_citations import world_citation_task

KINDS = ["openai", "anthropic"]
E1 = {"question": "Who founded Acme, and when?",
      "docs": [{"title": "Acme", "text": "Acme was founded by Rosa Lind in 1990."},
               {"title": "Elva", "text": "The Elva is a river that floods in spring."}],
      "qa_pairs": [{"question": "Who founded Acme?", "short_answers": ["Rosa Lind"]},
                   {"question": "When was Acme founded?", "short_answers": ["1990"]}],
      "output": "Acme was founded by Rosa Lind [1]. It is based in Oslo [2]."}


@pytest.fixture(autouse=True)
def api_keys(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-key")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-test-key")


def _words(text): return set(re.findall(r"\w+", text.lower()))


class Judge:
    """Answers our entailment prompt like a careful model: supported when every word of the statement is in the
    passage; about Cleo it first rambles (unreadable), then answers when asked again."""

    def __init__(self):
        self.prompts = []

    def __call__(self, body):
        prompt = last_user_text(body["messages"])
        self.prompts.append(prompt)
        pair = re.search(r"Passage:\n(.*?)\n\nStatement: (.*?)\n\n", prompt, re.DOTALL)
        if pair is None: return None
        passage, statement = pair.groups()
        if "Cleo" in statement and self.prompts.count(prompt) == 1: return "Cleo is a common name, so it is hard to say."
        supported = _words(statement) <= _words(passage)
        return '{"verdict": "supported"}' if supported else 'The passage says nothing of it.\n{"verdict": "not supported"}'


def entailer_on(kind, server, tmp_path, **kw):
    base_url = server.url + "/v1" if kind == "openai" else server.url
    return build_entailer(f"{kind}:judge-model", base_url=base_url, backoff_base=0.01,
                          cache=RequestCache(tmp_path / "requests.sqlite"), **kw)


@pytest.mark.parametrize("kind", KINDS)
def test_llm_judge_through_the_sdk(kind, tmp_path):
    judge = Judge()
    with FakeLLMServer(respond=judge) as server:
        entailer = entailer_on(kind, server, tmp_path, max_reasks=1)
        assert isinstance(entailer, LLMEntailer)
        premises = ["Ada Vell was born in Qorvath in 1931.", "Ada Vell was born in Qorvath.", "Cleo Dorn was born.", None]
        hypotheses = ["Ada Vell was born in 1931.", "Ada Vell was born in 1931.", "Cleo Dorn was born.", "x"]
        assert entailer.entails(premises, hypotheses) == [True, False, True, None]
        assert (entailer.failures, entailer.reasks, server.requests) == (1, 1, 4)
        assert any("Passage:\nAda Vell was born in Qorvath.\n\nStatement: Ada Vell was born in 1931.\n" in p for p in judge.prompts)
        # a rerun is answered from the request cache: nothing reaches the server
        assert entailer.entails(premises, hypotheses) == [True, False, True, None] and server.requests == 4


@pytest.mark.parametrize("kind", KINDS)
def test_alce_scores_with_the_llm_judge(kind, tmp_path):
    with FakeLLMServer(respond=Judge()) as server:
        base_url = server.url + "/v1" if kind == "openai" else server.url
        roles = build_roles({"entailer": f"{kind}:judge-model"}, base_url=base_url, cache=False)
        assert list(roles.roles()) == ["entailer"] and roles.spec()["entailer"]["role"] == "LLMEntailer"
        example = alce_scores([E1], roles.entailer)["examples"][0]
        assert (example["citation_rec"], example["citation_prec"], example["str_em"]) == (0.5, 0.5, 0.5)
        assert server.requests == 2  # one check per sentence; no precision round for single citations


@pytest.fixture(scope="module")
def world_items(tmp_path_factory):
    world = build_world("tiny")
    task = world_citation_task(world, cache_dir=tmp_path_factory.mktemp("pages"))
    return task["train"][:40], [d["text"] for i in task["train"] for d in i["docs"]]


def test_batched_nli_inside_alce_matches_the_reference_loop(world_items, tmp_path):
    items, texts = world_items
    path = make_tiny_nli(tmp_path / "true", "seq2seq", texts=texts + [i["question"] for i in items])
    entailer = NLIEntailer(str(path), batch_size=16)
    calls = []
    batched = entailer.entails
    entailer.entails = lambda p, h: calls.append(len(p)) or batched(p, h)
    ours = alce_scores(items, entailer)
    one_by_one = alce_scores(items, lambda p, h: reference_entailment(entailer.model, entailer.tokenizer, [p], [h])[0])
    assert ours == one_by_one
    assert 0 < ours["averages"]["citation_rec"] < 100       # the tiny model's verdicts are mixed, not constant
    assert len(calls) <= 4 and sum(calls) > 40              # a few rounds of many checks, not one call per check


def test_bench_entailment_quick(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert bench_command(["entailment", "--quick", "--threads", "1", "--json", str(out)]) == 0
    results = json.loads(out.read_text())
    assert results["entailment_agreement"] == 1 and results["entailment_checks"] == 64
    assert results["entailment_speedup_vs_reference"] > 0 and results["entailment_model"] == "tiny"
    assert "entailment_speedup_vs_reference" in capsys.readouterr().out
    make_tiny_nli(tmp_path / "mnli", "classifier")
    with pytest.raises(ValueError, match="is not a seq2seq NLI model"):
        bench_command(["entailment", "--quick", "--model", str(tmp_path / "mnli")])
