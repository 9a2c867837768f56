"""LLM roles built by `build_roles` on an API backend, through the real SDK clients, against the local fake server;
and the README's account of which LLM roles exist and where."""
import json
import re
from collections import Counter
from pathlib import Path

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
        if prompt.startswith("Rewrite the paragraph"):                       # the restater, asked for plain claims
            paragraph = re.search(r"Paragraph: (.*)", prompt).group(1)
            return "Rewritten paragraph:\n\n" + re.sub(r" \(about \d+% likely\)", "", paragraph)
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
                             "entailer", "restater"}
        assert {s["backend"] for s in spec.values()} == {"openai:judge-model"}
        assert spec["summarizer"]["prompt"] == "summarize_samples/v1"
        assert spec["summarizer"]["params"]["max_new_tokens"] == spec["judge"]["params"]["max_new_tokens"] == 300
        assert roles.summarizer.backend is roles.extractor.backend
        assert roles.extractor.extract(["Where was Ada born?"], ["Ada was born in Qorvath or born in Vell."]) \
            == [["Qorvath", "Vell"]]
        assert roles.restater.restate([PARAGRAPH], "plain") \
            == ["Ada Brisk was born in Qorvath, though one account places her birth in Lindmere."]
        with pytest.raises(ValueError, match="missing role.*verifier"): roles.need("verifier")
        assert build_roles("openai:judge-model", base_url=server.url + "/v1", cache=False,
                           knowledge=lambda topic, claim: []).verifier is not None


DEEP = '{"answers": ' + "[" * 100_000 + "]" * 100_000 + "}"      # nested far deeper than Python's recursion limit


@pytest.mark.parametrize("kind", KINDS)
def test_a_deeply_nested_reply_is_unreadable_and_a_rerun_on_its_cache_recovers(kind, tmp_path):
    "Issue 15.2: the nested reply raised RecursionError, and, cached, crashed every rerun."
    asked = Counter()

    def respond(body):
        prompt = last_user_text(body["messages"])
        asked[prompt] += 1
        return DEEP if asked[prompt] == 1 else json.dumps({"answers": ["Qorvath"]})

    with FakeLLMServer(respond=respond) as server:
        first = roles_on(kind, server, tmp_path, max_reasks=0).extractor       # caches the nested reply, no re-ask
        assert first.extract(["Where was Ada born?"], [PARAGRAPH]) == [None]
        assert (first.failures, server.requests) == (1, 1)
        rerun = roles_on(kind, server, tmp_path, max_reasks=2).extractor       # same cache: reads it, then re-asks
        assert rerun.extract(["Where was Ada born?"], [PARAGRAPH]) == [["Qorvath"]]
        assert (rerun.failures, rerun.reasks, server.requests) == (0, 1, 2)


@pytest.mark.parametrize("kind", KINDS)
def test_a_reply_copying_the_templates_example_is_unreadable(kind, tmp_path):
    "Issue 15.14: a small model answering with the format's own example answers is re-asked, then a failure."
    example = json.dumps({"answers": ["first answer", "second answer"]})
    with FakeLLMServer(respond=lambda body: example) as server:
        extractor = roles_on(kind, server, tmp_path).extractor
        assert extractor.extract(["Where was Ada born?"], [PARAGRAPH]) == [None]
        assert (extractor.failures, extractor.reasks, server.requests) == (1, 2, 3)


def test_forecasts_and_verdicts_are_read_or_refused_never_guessed(tmp_path):
    "Issue 15.7: a negative number, a fraction, a JSON true and 'no idea' were read as 0.3, 1.0, 1.0 and False."
    replies = {"Ada": "Probability: -0.3", "Bram": "Probability: 1/3", "Cleo": '{"probability": true}'}

    def respond(body):
        prompt = last_user_text(body["messages"])
        if prompt.startswith("Decide whether"): return "I have no idea, sorry"
        return next(reply for name, reply in replies.items() if name in prompt)

    with FakeLLMServer(respond=respond) as server:
        roles = roles_on("openai", server, tmp_path, max_reasks=0, knowledge=lambda topic, claim: ["Ada was born."])
        forecasts = roles.forecaster.forecast(["Where?"] * 3, [f"{name} was born in Qorvath." for name in replies],
                                              ["Qorvath"] * 3)
        assert forecasts[0] is None and forecasts[1] == pytest.approx(1 / 3) and forecasts[2] is None
        assert roles.verifier.verify(["Ada"], ["Ada was born in Qorvath."]) == [None]
        assert (roles.forecaster.failures, roles.verifier.failures) == (2, 1)


def llm_role_modules() -> dict[str, set[str]]:
    "The modules of lcal defining LLM-prompted roles, with the role interfaces their classes implement (from source)."
    import lcal.roles
    interfaces = {name for name in lcal.roles.__all__ if name not in ("Role", "Claim")}
    found = {}
    for path in Path(lcal.roles.__file__).parent.glob("*.py"):
        for bases in re.findall(r"^class \w+\(LLMJudge, (\w+)\):", path.read_text(), re.M):
            assert bases in interfaces
            found.setdefault(path.stem, set()).add(bases)
    return found


def test_the_readme_and_the_roles_notebook_name_the_llm_roles_that_exist():
    "Issue 15.16: the README said lcal.llm_roles had the rating and ranking judges; they live in lcal.feedback_judges."
    import lcal.roles
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    modules = llm_role_modules()
    assert modules["feedback_judges"] == {"RatingJudge", "RankingJudge"}
    assert modules["confidence_scoring"] == {"QuestionWriter"}
    assert "RatingJudge" not in modules["llm_roles"] and "Summarizer" in modules["llm_roles"]
    assert modules["entailment"] == {"Entailer"}
    implemented = set().union(*modules.values())
    interfaces = {n for n in lcal.roles.__all__ if n != "Role" and isinstance(getattr(lcal.roles, n), type)
                  and issubclass(getattr(lcal.roles, n), lcal.roles.Role)}
    assert implemented == interfaces  # every role interface
    sentence = readme[readme.index("The LLM-prompted roles run"):].split("\n\n")[0]
    for module in modules: assert f"`lcal.{module}`" in sentence, module
    named = re.findall(r"`lcal\.(\w+)`", readme)
    assert all((Path(lcal.roles.__file__).parent / f"{m}.py").exists() for m in named)
