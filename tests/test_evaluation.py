"""End-to-end tests of lcal.evaluation: LLM-prompted judges on a scripted fake backend, the `lcal eval` command on a
tiny local model, resumability (zero calls on rerun), bad input and unparseable judge replies."""
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lcal.backends import HFBackend
from lcal.rolesets import RoleSet
from lcal.evaluation import (MetricSettings, eval_command, evaluate_biographies, evaluate_model,
                             evaluate_paragraphs, read_questions, spread_sample, write_report)
from lcal.llm_roles import (BM25, LLMAnswerExtractor, LLMClaimDecomposer, LLMClaimVerifier, LLMEquivalenceJudge,
                            LLMForecaster)
from scripted_judge import ScriptedJudge

FACTS = {"Ada Brisk": ("Qorvath", "1931"), "Bram Holt": ("Lindmere", "1950"), "Cleo Varn": ("Ostwick", "1922")}


def question_rows():
    rows = []
    for i, (name, (city, year)) in enumerate(FACTS.items()):
        prompt = f"Write a biography of {name} ."
        rows += [{"query_id": f"q{i}", "prompt": prompt, "question_id": f"{i}-city",
                  "question": f"Where was {name} born?", "answer": city},
                 {"query_id": f"q{i}", "prompt": prompt, "question_id": f"{i}-year",
                  "question": f"When was {name} born?", "answer": year, "aliases": [year, f"in {year}"]}]
    return rows


@pytest.fixture
def judge():
    backend = ScriptedJudge()
    return backend, RoleSet(extractor=LLMAnswerExtractor(backend), forecaster=LLMForecaster(backend),
                            judge=LLMEquivalenceJudge(backend, batch_size=4))


PARAGRAPHS = [
    {"query_id": "q0", "paragraph": "Ada Brisk was born in Qorvath (70%) or Lindmere (30%), in 1931."},
    {"query_id": "q1", "paragraph": "Bram Holt was born in Ostwick (60%). Little is known about his early life."},
    {"query_id": "q2", "paragraph": "Cleo Varn was born in Ostwick in 1922."},
]


def test_llm_judged_qa_evaluation_follows_the_conventions_and_resumes(judge, tmp_path):
    backend, roles = judge
    ev = evaluate_paragraphs(question_rows(), PARAGRAPHS, roles, tmp_path, "lc", "toy",
                             metrics=MetricSettings(n_resamples=500))
    items = ev.items.set_index("question_id")
    assert items.loc["0-city", "graded_answer"] == "Qorvath" and items.loc["0-city", "confidence"] == pytest.approx(0.7)
    assert items.loc["0-city", "correct"] and items.loc["0-year", "correct"]
    assert items.loc["1-city", "confidence"] == pytest.approx(0.6) and not items.loc["1-city", "correct"]
    # no answer to the year question: confidence 1 and incorrect
    assert pd.isna(items.loc["1-year", "graded_answer"]) and items.loc["1-year", "confidence"] == 1.0
    # Cleo's replies are unparseable: counted as failures (after 2 re-asks each), graded at confidence 1, incorrect
    assert ev.report["extract_failures"] == 2 and items.loc["2-city", "extract_failed"]
    assert not items.loc["2-city", "correct"] and items.loc["2-city", "confidence"] == 1.0
    assert ev.report["accuracy"] == pytest.approx(2 / 6)
    calls = backend.calls
    again = evaluate_paragraphs(question_rows(), PARAGRAPHS, roles, tmp_path, "lc", "toy",
                                metrics=MetricSettings(n_resamples=500))
    assert backend.calls == calls and again.report == ev.report
    # a different judge setting re-runs only the judge stage
    roles.judge.batch_size = 2
    evaluate_paragraphs(question_rows(), PARAGRAPHS, roles, tmp_path, "lc", "toy", metrics=MetricSettings(n_resamples=500))
    assert backend.calls - calls == 2                  # 3 graded answers in batches of 2, no extraction/forecast calls


def test_judge_failures_are_counted_apart_and_can_be_left_out(judge, tmp_path):
    "Issue 15.8: Cleo's unreadable judge replies are failed items, not non-answers, and can be left out of the metrics."
    _, roles = judge
    kept = evaluate_paragraphs(question_rows(), PARAGRAPHS, roles, tmp_path, "lc", "toy",
                               metrics=MetricSettings(n_resamples=200))
    assert (kept.report["n"], kept.report["failed_items"], kept.report["failures_excluded"]) == (6, 2, False)
    assert kept.report["no_answer"] == pytest.approx(1 / 6)       # Bram's year only: the judge failures are apart
    assert kept.report["accuracy"] == pytest.approx(2 / 6) and len(kept.scored_items) == 6
    left_out = evaluate_paragraphs(question_rows(), PARAGRAPHS, roles, tmp_path, "lc", "toy",
                                   metrics=MetricSettings(n_resamples=200, exclude_failures=True))
    assert (left_out.report["n"], left_out.report["failed_items"]) == (4, 2)
    assert left_out.report["accuracy"] == pytest.approx(2 / 4)
    assert sorted(left_out.scored_items.question_id) == ["0-city", "0-year", "1-city", "1-year"]  # non-answer kept
    md = (tmp_path / "report" / "table.md")
    write_report([kept, left_out], tmp_path / "report")
    lines = md.read_text().splitlines()
    assert lines[0].split(" | ")[6] == "failed_items"
    assert "| toy | lc | 6 |" in lines[2] and "| 2 | 2 | 0 | 0 |" in lines[2]
    assert "| toy | lc | 4 |" in lines[3] and "| 2 (excluded) |" in lines[3]


def test_non_confidence_method_has_ece_one_minus_accuracy(judge, tmp_path):
    _, roles = judge
    ev = evaluate_paragraphs(question_rows(), PARAGRAPHS, roles, tmp_path, "plain", "toy", confidence=False,
                             metrics=MetricSettings(n_resamples=300))
    assert (ev.items.confidence == 1).all()
    assert ev.report["ece"] == pytest.approx(1 - ev.report["accuracy"])
    assert ev.report["ece_low"] == pytest.approx(1 - ev.report["accuracy_high"])


def test_bad_input_names_file_and_column_and_keeps_finished_stages(judge, tmp_path):
    backend, roles = judge
    evaluate_paragraphs(question_rows(), PARAGRAPHS, roles, tmp_path / "out", "lc", metrics=MetricSettings(n_resamples=100))
    stages = sorted(p.relative_to(tmp_path) for p in (tmp_path / "out").rglob("*.parquet"))
    bad = tmp_path / "paragraphs.jsonl"
    bad.write_text("\n".join(json.dumps({"query_id": r["query_id"], "text": r["paragraph"]}) for r in PARAGRAPHS))
    with pytest.raises(ValueError, match=r"paragraphs.jsonl: missing column 'paragraph'$"):
        evaluate_paragraphs(question_rows(), bad, roles, tmp_path / "out", "lc")
    bad_q = tmp_path / "questions.csv"
    pd.DataFrame(question_rows()).drop(columns="answer").to_csv(bad_q, index=False)
    assert eval_command(["--questions", str(bad_q), "--paragraphs", f"lc={bad}", "--judge", "hf:x",
                         "--out", str(tmp_path / "out")]) == 2
    assert sorted(p.relative_to(tmp_path) for p in (tmp_path / "out").rglob("*.parquet")) == stages


def aliased_rows():
    "The question rows with aliases the answer alone does not cover: Bram's birthplace is also known as Ostwick."
    rows = question_rows()
    rows[2].update(answer="Lindmere", aliases=["Lindmere", "Ostwick"])
    return rows


def test_csv_aliases_count_as_in_jsonl(judge, tmp_path):
    "Issue 15.9: CSV aliases (JSON lists or pandas' list literals) were replaced by [answer], changing the accuracy."
    _, roles = judge
    rows = aliased_rows()
    jsonl = tmp_path / "questions.jsonl"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in rows))
    pandas_csv, json_csv = tmp_path / "pandas.csv", tmp_path / "json.csv"
    pd.DataFrame(rows).to_csv(pandas_csv, index=False)                 # lists as Python literals: ['1931', 'in 1931']
    pd.DataFrame([{**r, "aliases": json.dumps(r["aliases"]) if "aliases" in r else ""} for r in rows]).to_csv(
        json_csv, index=False)                                         # the documented convention: ["1931", "in 1931"]
    reports = {path.name: evaluate_paragraphs(path, PARAGRAPHS, roles, tmp_path / path.stem, "lc", "toy",
                                              metrics=MetricSettings(n_resamples=100)).report
               for path in (jsonl, pandas_csv, json_csv)}
    assert reports["questions.jsonl"]["accuracy"] == pytest.approx(3 / 6)  # Bram's "Ostwick" is an accepted alias
    assert reports["pandas.csv"]["accuracy"] == reports["json.csv"]["accuracy"] == reports["questions.jsonl"]["accuracy"]


@pytest.mark.parametrize("table, row, column, got", [
    ("questions", 1, "answer", "got dict"), ("questions", 4, "question", "got int"),
    ("paragraphs", 2, "paragraph", "got list"), ("paragraphs", 1, "sample", "'first'"),
    ("aliases.csv", 3, "aliases", "not a list literal")])
def test_mistyped_inputs_are_one_line_errors_naming_file_row_and_column(judge, tmp_path, table, row, column, got):
    "Issue 15.9: a dict answer, an int question, a list paragraph used to pass through str()."
    _, roles = judge
    questions, paragraphs = aliased_rows(), [dict(p) for p in PARAGRAPHS]
    if table == "aliases.csv":
        questions[row]["aliases"] = "1950|in 1950"
        path = tmp_path / table
        pd.DataFrame(questions).to_csv(path, index=False)
    else:
        bad = {"answer": {"value": "1931"}, "question": 7, "paragraph": ["Bram Holt", "Ostwick"], "sample": "first"}[column]
        (questions if table == "questions" else paragraphs)[row][column] = bad
        path = tmp_path / f"{table}.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in (questions if table == "questions" else paragraphs)))
    given = {"questions": questions, "paragraphs": paragraphs, ("questions" if table != "paragraphs" else "paragraphs"): path}
    with pytest.raises(ValueError) as error:
        evaluate_paragraphs(given["questions"], given["paragraphs"], roles, tmp_path / "out", "lc")
    message = str(error.value)
    assert "\n" not in message and message.startswith(f"{path}: row {row} column {column!r}") and got in message


def test_the_readme_csv_convention_for_list_columns_is_what_lcal_eval_reads(tmp_path):
    "Issue 15.9: the README says how a CSV --questions file holds aliases; a file written as it says reads that way."
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    said = [p for p in readme.split("\n\n") if "`--questions` file" in p and "CSV" in p]
    assert len(said) == 1, "the README's evaluation recipe states the CSV convention for list columns once"
    cell = re.search(r"`(\[.*?\])`", said[0]).group(1)
    path = tmp_path / "questions.csv"
    pd.DataFrame([{**question_rows()[0], "aliases": cell}]).to_csv(path, index=False)
    assert read_questions(path).aliases[0] == json.loads(cell)


def test_biography_evaluation_pools_claims_with_bm25_evidence(tmp_path):
    backend = ScriptedJudge()
    pages = BM25([{"title": name, "text": f"{name} was born in {city} in {year} ."}
                  for name, (city, year) in FACTS.items()], k=1)
    texts = [{"topic": "Ada Brisk", "text": "Ada Brisk was born in Qorvath (70%) or Lindmere (30%). Ada Brisk was born in 1931."},
             {"topic": "Bram Holt", "text": "Bram Holt was born in Ostwick (60%)."},
             {"topic": "Cleo Varn", "text": "Cleo Varn was a glassblower."}]
    ev = evaluate_biographies(texts, LLMClaimDecomposer(backend), LLMClaimVerifier(backend, pages), tmp_path, "lc",
                              metrics=MetricSettings(n_resamples=200))
    assert ev.items[["claim", "confidence", "correct"]].values.tolist() == [
        ["Ada Brisk was born in Qorvath", 0.7, True], ["Ada Brisk was born in 1931", 1.0, True],
        ["Bram Holt was born in Ostwick", 0.6, False]]
    assert ev.report["decompose_failures"] == 1 and ev.report["no_claims"] == 1
    calls = backend.calls
    evaluate_biographies(texts, LLMClaimDecomposer(backend), LLMClaimVerifier(backend, pages), tmp_path, "lc",
                         metrics=MetricSettings(n_resamples=200))
    assert backend.calls == calls


def test_evaluate_model_and_report_with_a_tiny_local_model(judge, tiny_lm_dir, tmp_path, monkeypatch):
    _, roles = judge
    generated = []
    original = HFBackend._complete
    monkeypatch.setattr(HFBackend, "_complete", lambda self, requests, *a: (generated.append(len(requests)),
                                                                             original(self, requests, *a))[1])
    from lcal.backends import SamplingParams
    params = SamplingParams(temperature=0.3, max_new_tokens=6, seed=0)
    evs = [evaluate_model(f"hf:{tiny_lm_dir}", question_rows(), roles, tmp_path, name, "toy", confidence=conf,
                          params=params, samples=2, metrics=MetricSettings(n_resamples=100)) for name, conf in
           (("tiny", True), ("tiny-plain", False))]
    assert generated == [6]                              # 3 prompts × 2 samples, generated once for both methods
    assert len(evs[0].items) == 12 and set(evs[0].items["sample"]) == {0, 1}
    paths = write_report(evs, tmp_path)
    table = pd.read_csv(paths["table_csv"])
    assert table.method.tolist() == ["tiny", "tiny-plain"] and {"ece_low", "brier_high", "judge_failures"} <= set(table)
    assert paths["reliability_toy"].stat().st_size > 10_000 and paths["frontier"].exists()


def test_lcal_eval_command_end_to_end_with_an_unparseable_judge(tiny_lm_dir, tmp_path, capsys, monkeypatch):
    "The tiny untrained model is both the evaluated model and the judge: every judge reply is unreadable."
    questions = tmp_path / "questions.jsonl"
    questions.write_text("\n".join(json.dumps(r) for r in question_rows()))
    calls = []
    original = HFBackend._complete
    monkeypatch.setattr(HFBackend, "_complete", lambda self, requests, *a: (calls.append(len(requests)),
                                                                             original(self, requests, *a))[1])
    argv = ["--questions", str(questions), "--model", f"tiny=hf:{tiny_lm_dir}", "--judge", f"hf:{tiny_lm_dir}",
            "--out", str(tmp_path / "out"), "--max-new-tokens", "6", "--judge-max-new-tokens", "6",
            "--resamples", "200", "--lc-compat", "--n-bins", "2"]
    assert eval_command(argv) == 0
    first = capsys.readouterr().out
    assert "| questions | tiny | 6 |" in first and "(lc_compat)" in first
    table = pd.read_csv(tmp_path / "out" / "table.csv")
    assert table.extract_failures[0] == 6 and table.accuracy[0] == 0 and table.ece[0] == 1
    assert (tmp_path / "out" / "figures" / "reliability_questions.png").exists()
    assert sum(calls) > 0
    calls.clear()
    assert eval_command(argv) == 0                       # a rerun of a finished evaluation: no model calls at all
    assert calls == [] and "judge requests: 0" in capsys.readouterr().out
    assert eval_command(argv + ["--exclude-failures"]) == 0  # every item is a judge failure: none left to score
    assert calls == [] and "| questions | tiny | 0 | – | – | – | 6 (excluded) |" in capsys.readouterr().out
    assert pd.read_csv(tmp_path / "out" / "table.csv").failed_items[0] == 6


def test_lcal_eval_refuses_impossible_binning_before_any_model_or_judge_call(tiny_lm_dir, tmp_path, capsys,
                                                                             monkeypatch):
    "--lc-compat with 20 bins on 6 questions: an error line, exit 2, and no generation or judging at all."
    questions = tmp_path / "questions.jsonl"
    questions.write_text("\n".join(json.dumps(r) for r in question_rows()))
    monkeypatch.setattr(HFBackend, "_complete", lambda *a: pytest.fail("a model or judge was called"))
    for source in (["--model", f"tiny=hf:{tiny_lm_dir}"], ["--paragraphs", f"lc={write_paragraphs(tmp_path)}"]):
        argv = ["--questions", str(questions), *source, "--judge", f"hf:{tiny_lm_dir}", "--lc-compat", "--n-bins", "20",
                "--out", str(tmp_path / "out")]
        assert eval_command(argv) == 2
        last = capsys.readouterr().err.strip().splitlines()[-1]   # after the judge's weights-loading bar
        assert last.startswith("lcal eval: error: ") and "n_bins=20 bins, but there are only 6 items" in last
    assert not (tmp_path / "out" / "stages").exists()


def test_lcal_eval_with_an_api_judge_and_no_key_is_one_line(tmp_path, capsys, monkeypatch):
    "The console script's path (lcal.cli.main): no traceback, the variable to set, and no key material anywhere."
    from lcal.cli import main
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    questions = tmp_path / "questions.jsonl"
    questions.write_text("\n".join(json.dumps(r) for r in question_rows()))
    code = main(["eval", "--questions", str(questions), "--paragraphs", f"lc={write_paragraphs(tmp_path)}",
                 "--judge", "openai:gpt-4o-mini", "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "Traceback" not in err
    assert err.startswith("lcal eval: error: openai:gpt-4o-mini: set the environment variable OPENAI_API_KEY")


def write_paragraphs(tmp_path):
    path = tmp_path / "paragraphs.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in PARAGRAPHS))
    return path


def test_lcal_eval_on_world_questions_with_biographies_and_given_paragraphs(tiny_lm_dir, tmp_path, capsys):
    "World questions + already written paragraphs + the per-claim path; the gibberish judge fails every item."
    from lcal.world_source import WorldSource
    source = WorldSource("tiny")
    world = source.world
    entities = [world.entity(int(q.query_id)) for q in spread_sample(source.queries("eval"), 2, seed=0)]  # --limit 2
    paragraphs = tmp_path / "paragraphs.jsonl"
    paragraphs.write_text("\n".join(json.dumps({"query_id": str(e.id), "paragraph": world.statement(
        e, "birth_city", [e.attributes["birth_city"]], "likely")}) for e in entities))
    argv = ["--world", "tiny", "--limit", "2", "--paragraphs", f"lc={paragraphs}", "--judge", f"hf:{tiny_lm_dir}",
            "--judge-max-new-tokens", "4", "--biographies", "--out", str(tmp_path / "out"), "--resamples", "100"]
    assert eval_command(argv) == 0
    out = capsys.readouterr().out
    assert "| world-eval | lc | 8 |" in out and "| biographies | lc | 0 |" in out
    table = pd.read_csv(tmp_path / "out" / "table.csv")
    assert table.decompose_failures[1] == 2 and table.extract_failures[0] == 8


def test_lcal_eval_of_written_paragraphs_does_not_import_torch(tmp_path):
    "Paragraphs already written, judged by the world: no model runs, and no torch import (it came through lcal.lc_data)."
    import subprocess
    import sys
    from lcal.world_source import WorldSource
    source = WorldSource("tiny")
    entities = [source.world.entity(int(q.query_id)) for q in spread_sample(source.queries("eval"), 2, seed=0)]
    paragraphs = tmp_path / "paragraphs.jsonl"
    paragraphs.write_text("\n".join(json.dumps({"query_id": str(e.id), "paragraph": source.world.statement(
        e, "birth_city", [e.attributes["birth_city"]], "likely")}) for e in entities))
    argv = ["eval", "--world", "tiny", "--limit", "2", "--paragraphs", f"lc={paragraphs}", "--out", str(tmp_path / "out"),
            "--resamples", "100", "--n-bins", "2"]
    code = f"import sys\nfrom lcal.cli import main\ncode = main({argv!r})\nprint(code, 'torch' in sys.modules)"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert run.stdout.splitlines()[-1:] == ["0 False"], run.stdout[-2000:] + run.stderr[-2000:]
    assert "| world-eval | lc | 8 |" in run.stdout


def test_api_judges_through_the_openai_sdk_are_cached_per_request(tmp_path, monkeypatch):
    "LLM judges on the OpenAI backend (real SDK, local fake server): a rerun sends no request, even without stages."
    import shutil
    import fake_llm_server
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    scripted = ScriptedJudge()
    monkeypatch.setattr(fake_llm_server, "reply_text",
                        lambda body: scripted.reply(fake_llm_server.last_user_text(body["messages"])))
    from lcal.backends import get_backend
    with fake_llm_server.FakeLLMServer() as server:
        def run():
            backend = get_backend("openai:judge-model", base_url=server.url + "/v1", cache=True)
            roles = RoleSet(extractor=LLMAnswerExtractor(backend), forecaster=LLMForecaster(backend),
                            judge=LLMEquivalenceJudge(backend))
            return evaluate_paragraphs(question_rows(), PARAGRAPHS, roles, tmp_path / "out", "lc",
                                       metrics=MetricSettings(n_resamples=100))
        first = run()
        sent = server.requests
        assert first.report["accuracy"] == pytest.approx(2 / 6) and first.report["extract_failures"] == 2
        assert sent == 6 + 2 * 2 + 4 + 1            # 6 extractions + 2 re-asks for each of Cleo's, 4 forecasts, 1 batch
        shutil.rmtree(tmp_path / "out")                # lose every stage: the request cache still answers
        assert run().report["accuracy"] == first.report["accuracy"] and server.requests == sent


def test_questions_can_be_lc_query_objects(judge, tmp_path):
    from lcal.sources import Query, Question
    by_query = {}
    for row in question_rows():
        by_query.setdefault(row["query_id"], Query(row["query_id"], row["prompt"], [])).questions.append(
            Question(row["question_id"], row["question"], row["answer"], row.get("aliases", [])))
    backend, roles = judge
    from_objects = evaluate_paragraphs(list(by_query.values()), PARAGRAPHS, roles, tmp_path, "lc",
                                       metrics=MetricSettings(n_resamples=100))
    calls = backend.calls
    from_rows = evaluate_paragraphs(question_rows(), PARAGRAPHS, roles, tmp_path, "lc",
                                    metrics=MetricSettings(n_resamples=100))
    assert backend.calls == calls                        # the same items: every stage is reused
    assert from_objects.report == from_rows.report and from_objects.report["accuracy"] == pytest.approx(2 / 6)


def test_world_oracle_judges_and_their_settings_key_the_stages(tmp_path):
    from lcal.world import ConfidenceLexicon
    from lcal.world_roles import WorldEquivalenceJudge, WorldReader
    from lcal.world_source import WorldSource
    source = WorldSource("tiny")
    world, questions = source.world, source.queries("eval")[:3]
    entities = [world.entity(int(q.query_id)) for q in questions]
    rows = [{"query_id": str(e.id), "paragraph": " ".join([
        world.statement(e, "birth_city", [e.attributes["birth_city"]], "likely"),
        world.statement(e, "birth_year", ["1901" if e.attributes["birth_year"] != "1901" else "1902"], "certain")])}
        for e in entities]

    def run(lexicon):
        reader = WorldReader(world, lexicon=lexicon)
        return evaluate_paragraphs(questions, rows, RoleSet(extractor=reader, forecaster=reader, judge=WorldEquivalenceJudge(world)), tmp_path,
                                   "base", "world", metrics=MetricSettings(n_resamples=200))

    ev = run(ConfidenceLexicon())
    items = ev.items.set_index("question_id")
    city, year = f"{entities[0].id}-birth_city", f"{entities[0].id}-birth_year"
    assert items.loc[city, "correct"] and items.loc[city, "confidence"] == pytest.approx(ConfidenceLexicon().likely)
    assert not items.loc[year, "correct"] and items.loc[year, "confidence"] == pytest.approx(ConfidenceLexicon().certain)
    assert ev.report["no_answer"] == pytest.approx(0.5)          # occupation and employer are omitted
    forecasts = len(list((tmp_path / "stages" / "forecast").glob("*/")))
    changed = run(ConfidenceLexicon(likely=0.6))                 # a new lexicon re-runs the forecast stage
    assert len(list((tmp_path / "stages" / "forecast").glob("*/"))) == forecasts + 1
    assert changed.items.set_index("question_id").loc[city, "confidence"] == pytest.approx(0.6)


def test_evaluate_model_regenerates_after_new_weights_at_the_same_path(judge, tiny_lm_dir, tmp_path, monkeypatch):
    "The generate stage is keyed by the weights fingerprint, not the spec string: retraining in place regenerates."
    import os
    import shutil
    import torch
    from lcal.backends import SamplingParams
    from lcal.tiny import load_tiny
    _, roles = judge
    model_dir = shutil.copytree(tiny_lm_dir, tmp_path / "model")
    generated = []
    original = HFBackend._complete
    monkeypatch.setattr(HFBackend, "_complete", lambda self, requests, *a: (generated.append(len(requests)),
                                                                             original(self, requests, *a))[1])
    def run(): evaluate_model(f"hf:{model_dir}", question_rows(), roles, tmp_path / "out", "tiny", "toy",
                              params=SamplingParams(max_new_tokens=4, seed=0), metrics=MetricSettings(n_resamples=50))
    run(); run()
    assert generated == [3]
    judge_spec = LLMAnswerExtractor(f"hf:{model_dir}").spec()
    stats = {f: f.stat() for f in model_dir.iterdir()}
    model, _ = load_tiny(model_dir)
    with torch.no_grad():
        for p in model.parameters(): p.add_(0.01)
    model.save_pretrained(model_dir)  # retrained in place; every file keeps its size and modification time
    for f, stat in stats.items(): os.utime(f, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    run()
    assert generated == [3, 3]
    assert LLMAnswerExtractor(f"hf:{model_dir}").spec() != judge_spec  # an hf: judge's stages are re-run too


def test_lcal_eval_sends_api_models_and_judges_to_their_base_urls(tmp_path, capsys, monkeypatch):
    "--base-url for the openai:/anthropic: --model, --judge-base-url for the judge; each endpoint keys its stages."
    from fake_llm_server import FakeLLMServer
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-test")
    questions = tmp_path / "questions.jsonl"
    questions.write_text("\n".join(json.dumps(r) for r in question_rows()))
    scripted = ScriptedJudge()
    with FakeLLMServer(respond=lambda body: "Ada Brisk was born in Qorvath (70%) in 1931.") as model_server, \
            FakeLLMServer(respond=scripted.respond) as judge_server:
        argv = ["--questions", str(questions), "--model", "m=openai:gen-model", "--base-url", model_server.url + "/v1",
                "--judge", "anthropic:judge-model", "--judge-base-url", judge_server.url,
                "--out", str(tmp_path / "out"), "--resamples", "100", "--n-bins", "2"]
        assert eval_command(argv) == 0
        assert model_server.requests == 3 and judge_server.requests > 0
        assert eval_command(["--questions", str(questions), "--paragraphs", "x=p.jsonl", "--base-url", "http://h"]) == 2
        assert "--base-url is the endpoint of an openai:/anthropic: --model" in capsys.readouterr().err
