"""A scripted LLM (test-only code) that answers our role prompts (`lcal.prompts`) the way a good model would.

Use it as a backend (`ScriptedJudge()` is an `lcal.backends.Backend`) or behind the fake API server
(`FakeLLMServer(respond=judge.respond)`); it counts what it answers, by prompt kind, in `judge.asked`."""
import json
import re
from collections import Counter

from lcal.backends import Backend, Completion

NAMES = ("Qorvath", "Lindmere", "Ostwick", "Vexium")


class ScriptedJudge(Backend):
    """A fake LLM judge that reads our prompts the way a good model would, and counts its requests.
    It answers in varied formats (JSON, line formats, percentages) and, for prompts mentioning 'Cleo', replies
    with prose the parsers must reject. `names` are the answers it can recognise in a paragraph; `facts` maps a
    phrase of a summarisation request to `(likely answer, alternative)`, which its hedged summary states."""
    kind = "scripted"

    def __init__(self, names=NAMES, facts=None):
        super().__init__("judge")
        self.names, self.facts = tuple(names), dict(facts or {})
        self.calls = 0
        self.asked = Counter()
        self.unexpected = []  # prompts it could not read (behind the server: answered with prose, not raised)

    def _complete(self, requests, params, record):
        for j, request in enumerate(requests):
            self.calls += 1
            record(j, Completion(self.reply(request.prompt[-1]["content"]), 10, 10))

    def respond(self, body):
        "The reply to an OpenAI/Anthropic request body (for `FakeLLMServer(respond=...)`)."
        from fake_llm_server import last_user_text
        prompt = last_user_text(body["messages"])
        try: return self.reply(prompt)
        except AssertionError:
            self.unexpected.append(prompt)
            return "I am not sure what you are asking."

    def summary(self, request: str) -> str:
        "The hedged paragraph this judge writes for a summarisation request."
        for phrase, (likely, other) in self.facts.items():
            if phrase in request:
                return f"It is probably {likely} (70%), though some accounts name {other} (30%)."
        return "Accounts of this disagree, and nothing about it can be said with confidence."

    def reply(self, prompt):
        if "Cleo" in prompt: return "Let me think about this carefully."
        if prompt.startswith("Several writers"):
            self.asked["summarize"] += 1
            request = prompt.split("\n\nDraft 1:")[0]
            return f"Here is the combined paragraph:\n\n{self.summary(request)}"
        if prompt.startswith("You read a paragraph"):
            self.asked["extract"] += 1
            question = re.search(r"Question: (.*)", prompt).group(1)
            paragraph = prompt.split("Paragraph:\n")[1].split("\n\nList every")[0]
            names = "|".join(re.escape(n) for n in self.names)
            kind = r"\b\d{4}\b" if question.startswith("When") else rf"\b(?:{names})\b"
            found = re.findall(kind, paragraph)
            return json.dumps({"answers": found}) if found else "Answers: none"
        if prompt.startswith("You are a reader"):
            self.asked["forecast"] += 1
            paragraph = prompt.split("Paragraph:\n")[1].split("\n\nQuestion:")[0]
            answer = re.search(r"Candidate answer: (.*)", prompt).group(1)
            stated = re.search(rf"{re.escape(answer)} \((\d+)%\)", paragraph)
            if stated: return f"Probability: {stated.group(1)}%"
            return '{"probability": 1.0}' if answer in paragraph else '{"probability": 0}'
        if prompt.startswith("For each numbered item"):
            self.asked["equivalence"] += 1
            items = re.findall(r"Item (\d+)\nQuestion: .*\nReference answers: (.*)\nProvided answer: (.*)", prompt)
            return json.dumps({i: "yes" if a in refs.split(" | ") else "no" for i, refs, a in items})
        if prompt.startswith("Split the text"):
            self.asked["decompose"] += 1
            text = prompt.split("Text:\n")[1].split("\n\nRules:")[0]
            claims = []
            for group, sentence in enumerate(s.strip() for s in text.split(".") if s.strip()):
                options = re.findall(r"(\w+) \((\d+)%\)", sentence)
                subject = sentence.split(" was ")[0]
                for value, pct in options:
                    claims.append({"claim": f"{subject} was born in {value}", "hedge": f"{pct}%", "group": group})
                if not options: claims.append({"claim": sentence, "hedge": "", "group": None})
            return json.dumps({"claims": claims})
        if prompt.startswith("Decide whether"):
            self.asked["verify"] += 1
            evidence, claim = prompt.split("Evidence:\n")[1].split("\n\nClaim: ")
            value = claim.splitlines()[0].split()[-1]
            return '{"verdict": "supported"}' if value in evidence else '{"verdict": "not supported"}'
        if prompt.startswith("Rewrite the paragraph"):
            self.asked["restate"] += 1
            paragraph = re.search(r"Paragraph: (.*)", prompt).group(1)
            if "State every claim as certain" in prompt:
                return re.sub(r" \(\d+%\)", "", paragraph).replace("probably ", "")
            return paragraph if "%" in paragraph else paragraph.replace(" was ", " was probably ")
        raise AssertionError(f"unexpected prompt: {prompt[:60]}")
