"""Sparse feedback on real-path inputs, offline: a tiny Hugging Face model as the policy, instructions in the paper's
JSON format (the held-out ones AlpacaEval-style, with reference outputs), and LLM rating and ranking judges on the
OpenAI backend answered by the local fake server with our own prompts. Also: the feedback modules never import the
world, and bad feedback files fail with one-line errors."""
import ast
import json
import re
from pathlib import Path

import pytest

from fake_llm_server import last_user_text, scripted_judge_server
from lcal.core import read_json, read_jsonl
from lcal.feedback import POLICIES, feedback_command
from lcal.feedback_data import read_feedback_csv, read_instructions, write_instructions

FEEDBACK_MODULES = ("feedback_data", "feedback_judges", "feedback_consistency", "feedback_rms", "win_rates", "feedback")


class FeedbackJudge:
    """Answers the rating and ranking prompts from their text: ratings grow with the response's length (an unreadable
    reply for responses containing 'zz'); the ranker prefers the response with fewer distinct characters, and when
    they tie it says whatever position is shown first (so asking in both orders gives ties)."""
    def __init__(self):
        self.kinds = {"rate": 0, "rank": 0}
        self.unexpected = []

    def respond(self, body: dict) -> str:
        text = last_user_text(body["messages"]).split("Now ", 1)[-1]
        if text.rstrip().endswith("Rating:"):
            self.kinds["rate"] += 1
            response = text.split("\nResponse: ", 1)[1].rsplit("\nRating:", 1)[0]
            return "I would say six" if "zz" in response else str(min(7, 1 + len(response) // 8))
        if text.rstrip().endswith("Better:"):
            self.kinds["rank"] += 1
            a = re.search(r"\nOutput \(a\): (.*)\nOutput \(b\): ", text, re.S).group(1)
            b = re.search(r"\nOutput \(b\): (.*)\nBetter:", text, re.S).group(1)
            return "(b)" if len(set(b)) < len(set(a)) else "(a)"
        self.unexpected.append(text[:80])
        return "?"


@pytest.fixture
def judge_server(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-dummy")
    with scripted_judge_server(FeedbackJudge()) as server: yield server


@pytest.fixture
def instruction_files(tmp_path):
    train = [{"instruction": f"Describe the number {k} in a few words.", "input": "" if k % 2 else f"{k} apples"}
             for k in range(8)]
    held = [{"instruction": f"Name something {c}.", "input": "", "output": f"A {c} thing.", "generator": "reference"}
            for c in ("red", "blue", "green", "small")]
    return write_instructions(tmp_path / "instructions.json", train), write_instructions(tmp_path / "alpaca_eval.json", held)


def quick_config(path: Path) -> Path:
    path.write_text(json.dumps({"responses": 3, "best_of": 4, "max_new_tokens": 12, "validation_fraction": 0.25,
                                "rm": {"max_steps": 3, "per_device_train_batch_size": 4, "lora_r": 4, "lora_alpha": 8}}))
    return path


def test_feedback_on_real_inputs_end_to_end(tmp_path, tiny_lm_dir, instruction_files, judge_server, capsys):
    train, held = instruction_files
    argv = ["--base-model", f"hf:{tiny_lm_dir}", "--instructions", str(train), "--eval-instructions", str(held),
            "--judge", "openai:fake-judge", "--judge-base-url", judge_server.url + "/v1",
            "--config", str(quick_config(tmp_path / "quick.json")), "--run-dir", str(tmp_path / "run"),
            "--out", str(tmp_path / "out")]
    assert feedback_command(argv) == 0
    printed = capsys.readouterr().out
    assert "| rankings_rm |" in printed and "consistency" in printed
    results = read_json(tmp_path / "out" / "results.json")
    assert set(results) == {"consistency", "contingency", "win_rates", "seconds"}
    assert list(results["win_rates"]) == list(POLICIES)
    for scores in results["win_rates"].values():
        assert set(scores) == {"rating_eval", "rating_eval_ci", "ranking_eval", "ranking_eval_ci"}
        for protocol in ("rating_eval", "ranking_eval"):
            low, high = scores[f"{protocol}_ci"]
            assert 0 <= low <= scores[protocol] <= high <= 1
    assert 0 <= results["consistency"] <= 1 and (tmp_path / "out" / "win_rates.png").stat().st_size > 1000

    # the paper's formats: 8 instructions x 3 responses rated, x C(3, 2) pairs ranked in both orders
    run = tmp_path / "run"
    generations = read_instructions(run / "responses" / "generations.json")
    assert len(generations) == 8 and all(len(g["responses"]) == 3 for g in generations)
    assert len(read_feedback_csv(run / "feedback" / "ratings.csv", "ratings")) == 24
    rankings = read_feedback_csv(run / "feedback" / "rankings.csv", "rankings")
    assert len(rankings) == 24 and {r["feedback"] for r in rankings} <= {"(a)", "(b)", "equal", None}
    counts = read_json(tmp_path / "out" / "details.json")["counts"]
    assert counts["pairs"] == 24 and counts["(a)"] + counts["(b)"] + counts["equal"] + counts["dropped_pairs"] == 24
    assert judge_server.judge.kinds["rank"] >= 2 * 24  # every pair asked in both orders

    # the reference is the evaluation file's outputs; each policy's choices are written in AlpacaEval's format
    records = read_jsonl(run / "evaluation" / "records.jsonl")
    assert {r["reference"] for r in records} == {"A red thing.", "A blue thing.", "A green thing.", "A small thing."}
    assert len(read_instructions(run / "evaluation" / "rankings_rm.json")) == 4
    run_info = read_json(run / "rankings_rm" / "lcal_run.json")
    assert run_info["settings"]["lora_r"] == 4 and run_info["steps"] == 3

    # a second run resumes every stage
    assert feedback_command(argv) == 0
    assert read_json(tmp_path / "out" / "results.json")["win_rates"] == results["win_rates"]


def test_unreadable_judge_replies_are_counted_not_fatal(tmp_path, judge_server):
    from lcal.rolesets import build_roles
    roles = build_roles("openai:fake-judge", base_url=judge_server.url + "/v1", max_reasks=1)
    scores = roles.rating.rate(["Say hi.", "Say hi."], ["hello there", "zz zz"])
    assert scores[0] is not None and scores[1] is None
    assert roles.rating.failures == 1 and roles.rating.reasks == 1


@pytest.mark.parametrize("module", FEEDBACK_MODULES)
def test_feedback_modules_never_import_the_world(module):
    tree = ast.parse((Path(__file__).parents[1] / "lcal" / f"{module}.py").read_text())
    imported = [f"{n.module or ''}.{a.name}" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) for a in n.names]
    imported += [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    assert imported and not [m for m in imported if any(part.startswith("world") for part in m.split("."))]


def test_bad_feedback_files_fail_with_one_line_errors(tmp_path):
    bad = tmp_path / "feedback_rankings.csv"
    bad.write_text('instruction,input,response1,response2,feedback\n"Sum.",,"3","4",(a)\n"Sum.",,"3","5",maybe\n')
    with pytest.raises(ValueError) as e: read_feedback_csv(bad, "rankings")
    assert str(e.value).count("\n") == 0 and "feedback_rankings.csv: row 1: column 'feedback'" in str(e.value)
    short = tmp_path / "ratings.csv"
    short.write_text('"Sum.","3"\n')
    with pytest.raises(ValueError, match="ratings.csv: row 0: expected 3 or 4 columns"): read_feedback_csv(short, "ratings")
