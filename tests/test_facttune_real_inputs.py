"""FactTune on real-path inputs, offline: a tiny Hugging Face model as the policy, a prompts file of topics, a fixture
passage file indexed with SQLite FTS5 BM25, and LLM judges (decomposer, verifier, question writer) on the OpenAI
backend answered by the local fake server with our own prompts. Also: resuming asks no judge again, the rewards file
is the reference's format, and the tiny world runs end to end through `lcal facttune`."""
import json
import re
from pathlib import Path

import pytest

from fake_llm_server import last_user_text, scripted_judge_server
from lcal.core import read_json
from lcal.dpo import pair_counts, preference_pairs, read_rewards
from lcal.facttune import METHODS, facttune_command

PEOPLE = {"Ada Lind": "Ada Lind was born in Akron. Ada Lind worked as a potter.",
          "Bo Kern": "Bo Kern was born in Oslo. Bo Kern worked as a pilot.",
          "Cy Moss": "Cy Moss was born in Lima. Cy Moss worked as a baker.",
          "Di Vega": "Di Vega was born in Rome. Di Vega worked as a nurse.",
          "Ed Roe": "Ed Roe was born in Bern. Ed Roe worked as a judge.",
          "Flo Tam": "Flo Tam was born in Kyiv. Flo Tam worked as a chemist.",
          "Gus Ivy": "Gus Ivy was born in Cork. Gus Ivy worked as a miner.",
          "Hal Orr": "Hal Orr was born in Riga. Hal Orr worked as a tailor."}
METHOD_KEYS = {"facts_per_response", "correct_per_response", "incorrect_per_response", "error_rate", "error_rate_ci", "n"}


class FactJudge:
    """Answers our decompose, verify and fact-to-question prompts from their text: claims are the sentences of the
    text, a claim is supported when every word of it is in the evidence (or, so that a random model's claims
    get both verdicts, when its length is even), and a
    question names the claim's first two words. Records the evidence it was shown."""
    def __init__(self):
        self.kinds = {"decompose": 0, "verify": 0, "question": 0}
        self.evidence, self.unexpected = [], []

    def respond(self, body: dict) -> str:
        text = last_user_text(body["messages"])
        if text.startswith("Split the text below into atomic factual claims"):
            self.kinds["decompose"] += 1
            body_text = text.split("Text:\n", 1)[1].split("\n\nRules:", 1)[0]
            claims = [s.strip() for s in re.split(r"[.!?]", body_text) if len(s.split()) >= 2][:4]
            return json.dumps({"claims": [{"claim": c, "hedge": "", "group": None} for c in claims]})
        if text.startswith("Decide whether the evidence supports the claim"):
            self.kinds["verify"] += 1
            evidence = text.split("Evidence:\n", 1)[1].split("\n\nClaim: ", 1)[0]
            claim = text.split("\n\nClaim: ", 1)[1].split("\n\n", 1)[0]
            self.evidence.append(evidence)
            words = lambda s: set(re.findall(r"\w+", s.lower()))
            supported = words(claim) <= words(evidence) or len(claim) % 2 == 0  # the tiny model's text varies verdicts
            return json.dumps({"verdict": "supported" if supported else "not supported"})
        if text.startswith("Turn the statement into one specific question"):
            self.kinds["question"] += 1
            claim = text.rsplit("Statement: ", 1)[1].split("\n", 1)[0]
            return f"What about {' '.join(claim.split()[:2])}?"
        self.unexpected.append(text[:80])
        return "?"


@pytest.fixture
def judge_server(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-dummy")
    with scripted_judge_server(FactJudge()) as server: yield server


@pytest.fixture
def inputs(tmp_path):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("\n".join(json.dumps({"topic": t}) for t in PEOPLE))  # rows 3 and 7 are held out
    passages = tmp_path / "passages.jsonl"
    passages.write_text("\n".join(json.dumps({"title": t, "text": x}) for t, x in PEOPLE.items()))
    config = tmp_path / "quick.json"
    # a random tiny model's answers agree with no fact (every sampled_conf ties at 0): the reference's MC reward
    config.write_text(json.dumps({"responses": 3, "eval_samples": 2, "max_new_tokens": 16, "answers": 4,
                                  "mc_reward": "aq_max_conf_avg",
                                  "sft": {"max_steps": 2, "per_device_train_batch_size": 4},
                                  "dpo": {"max_steps": 2, "per_device_train_batch_size": 4, "lora_r": 4, "lora_alpha": 8,
                                          "trained_parameters": "", "learning_rate": 5e-5}}))
    return prompts, passages, config


def test_facttune_on_real_inputs_end_to_end(tmp_path, tiny_lm_dir, inputs, judge_server, capsys):
    prompts, passages, config = inputs
    argv = ["--base-model", f"hf:{tiny_lm_dir}", "--prompts", str(prompts), "--passages", str(passages),
            "--judge", "openai:fake-judge", "--judge-base-url", judge_server.url + "/v1", "--config", str(config),
            "--run-dir", str(tmp_path / "run"), "--out", str(tmp_path / "out")]
    assert facttune_command(argv) == 0
    printed = capsys.readouterr().out
    assert "| facttune_mc |" in printed and "FactTune-FS lowers" in printed

    results = read_json(tmp_path / "out" / "results.json")
    assert set(results) == {"methods", "seconds"} and list(results["methods"]) == list(METHODS)
    for m in results["methods"].values():
        assert set(m) == METHOD_KEYS and m["n"] == 2 * 2  # 2 held-out topics x 2 samples
        assert m["facts_per_response"] == pytest.approx(m["correct_per_response"] + m["incorrect_per_response"])
        if m["facts_per_response"] > 0:
            low, high = m["error_rate_ci"]
            assert 0 <= low <= m["error_rate"] <= high <= 1
    assert (tmp_path / "out" / "facttune.png").stat().st_size > 1000

    # every judge was asked; the verifier read BM25 passages of the topic's page from the fixture file
    judge = judge_server.judge
    assert all(n > 0 for n in judge.kinds.values())
    assert judge.evidence and all(e.startswith("Title: ") for e in judge.evidence if e != "(none)")
    assert any(x in judge.evidence[0] for x in PEOPLE.values())

    # the reference's rewards file and pair counts, and pairs that follow the pairing rule
    rewards_dir = tmp_path / "run" / "rewards"
    groups = read_rewards(rewards_dir / "rewards_train_6.json")
    assert len(groups) == 6 and all(len(g["responses"]) == 3 for g in groups.values())
    assert {"factscore_avg", "factscore_lp_avg", "aq_max_conf_avg", "aq_neg_ent_avg", "aq_exp_conf_avg",
            "aq_sampled_conf_avg"} <= set(
        next(iter(groups.values())))
    counts = (rewards_dir / "pairs_count_train_6.txt").read_text().splitlines()
    assert dict(line.split() for line in counts)["factscore_avg"] == str(pair_counts(groups)["factscore_avg"])
    for g in groups.values():
        for w, l in preference_pairs(g["aq_max_conf_avg"]): assert g["aq_max_conf_avg"][w] > g["aq_max_conf_avg"][l]
    dpo_run = read_json(tmp_path / "run" / "facttune_mc" / "lcal_run.json")
    assert dpo_run["kind"] == "dpo" and dpo_run["settings"]["lora_r"] == 4 and dpo_run["settings"]["beta"] == 0.1
    confidence_inputs = read_json(tmp_path / "run" / "confidence" / "_stage.json")["inputs"]
    assert confidence_inputs["answer_prompt"]["kind"] == "few_shot"  # the default "auto": a real model's own prompt

    # killed after scoring: the rerun rebuilds the lost stages without asking any judge again
    import shutil
    for name in ("facttune_mc", "eval_facttune_mc"): shutil.rmtree(tmp_path / "run" / name)
    asked = judge_server.requests
    assert facttune_command(argv) == 0
    assert judge_server.requests == asked
    assert read_json(tmp_path / "out" / "results.json")["methods"] == results["methods"]


def test_local_true_false_verifier_and_missing_passages(tmp_path, tiny_lm_dir, inputs, judge_server, capsys):
    from lcal.facttune import FactTunePipeline, PromptSource, facttune_parser, facttune_roles
    prompts, passages, config = inputs
    base = ["--base-model", f"hf:{tiny_lm_dir}", "--prompts", str(prompts), "--judge", "openai:fake-judge",
            "--judge-base-url", judge_server.url + "/v1", "--config", str(config), "--out", str(tmp_path / "out")]
    with pytest.raises(SystemExit):
        facttune_command(base)
    assert "FactScore needs a knowledge source: give --passages" in capsys.readouterr().err
    args = facttune_parser().parse_args(base + ["--passages", str(passages), "--verifier-model", str(tiny_lm_dir)])
    source = PromptSource(args.base_model, args.prompts, args.passages)
    pipeline = FactTunePipeline(source, facttune_roles(args, source), run_dir=tmp_path / "run")
    pipeline.config = pipeline.config.updated({"responses": 2, "max_new_tokens": 16})
    scores = read_json(pipeline.factscore() / "scores.json")
    verdicts = [v for row in scores for s in row["scores"] for v in s["supported"]]
    assert verdicts and all(isinstance(v, bool) for v in verdicts)
    assert judge_server.judge.kinds["verify"] == 0 and judge_server.judge.kinds["decompose"] > 0  # local verifier
    with_local = read_json(tmp_path / "run" / "factscore" / "_stage.json")["inputs"]["judges"]
    plain = facttune_parser().parse_args(base + ["--passages", str(passages)])
    api_only = FactTunePipeline(source, facttune_roles(plain, source), run_dir=tmp_path / "run")
    assert with_local == pipeline.judges_key("decomposer", "verifier")
    assert with_local != api_only.judges_key("decomposer", "verifier")  # the verifier model is part of the stage key


def test_tiny_world_end_to_end(tmp_path, tiny_world, monkeypatch, capsys):
    config = tmp_path / "quick.json"
    config.write_text(json.dumps({"train_prompts": 12, "responses": 4, "eval_prompts": 8, "eval_samples": 2,
                                  "answers": 5, "entity_scores": True, "sft": {"max_steps": 2}, "dpo": {"max_steps": 2}}))
    argv = ["--world", "tiny", "--config", str(config), "--run-dir", str(tmp_path / "run"), "--out", str(tmp_path / "out")]
    assert facttune_command(argv) == 0
    results = read_json(tmp_path / "out" / "results.json")
    assert list(results["methods"]) == list(METHODS) and all(m["n"] == 16 for m in results["methods"].values())
    start = results["methods"]["start"]
    assert start["facts_per_response"] > 1 and 0 < start["error_rate"] < 1  # the world model knows some, not all
    confidence = read_json(tmp_path / "run" / "confidence" / "confidence.json")
    questions = [q for row in confidence for x in row["confidence"] for q in x["aq"]["questions"]]
    assert questions and all(q.endswith("?") for q in questions)  # the world's question writer
    confidence_inputs = read_json(tmp_path / "run" / "confidence" / "_stage.json")["inputs"]
    assert confidence_inputs["answer_prompt"]["kind"] == "world"  # the default "auto": the world's own answer prompt
    details = read_json(tmp_path / "out" / "details.json")
    assert 0 < details["train"]["factscore_avg"] < 1 and 0 < details["train"]["aq_max_conf_avg"] <= 1
    assert set(details["calibration"]) == set(METHODS) and details["pair_counts"]["factscore_avg"] > 0
    assert 0 < details["train"]["ne_max_conf_avg"] <= 1  # the entity variant, resampling the responses' chunks

