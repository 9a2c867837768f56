"""The whole LC chain on real-path inputs, offline: a tiny Hugging Face model as the base model, LC-dataset tables
(tatsu-lab schema, `data/lc_fixtures/`) as queries, and LLM roles on the OpenAI backend answered by the local fake
server with a scripted judge. Also the paper's released data in place of sampling, summarizing and labelling."""
import json
from pathlib import Path

import pandas as pd
import pytest

from fake_llm_server import FakeLLMServer
from lcal.core import read_jsonl
from lcal.lc import METHODS, LCConfig, LCPipeline
from lcal.lc_cli import lc_command
from lcal.lc_data import LC_CONFIGS, parse_list, policy_prompt
from lcal.lc_eval import EvalSettings
from lcal.lc_reader import ReaderSettings
from lcal.lc_results import RESULT_KEYS, write_report
from lcal.lc_samples import GIVEN_COLUMNS, SampleSettings
from lcal.lc_sft import PolicySFTSettings
from lcal.request_cache import RequestCache
from lcal.rl import RLSettings
from lcal.rolesets import build_roles
from lcal.sft import SFTSettings
from lcal.sources import FileSource
from lcal.stages import STAGE_FILE, list_stages
from scripted_judge import ScriptedJudge

FIXTURES = Path(__file__).resolve().parents[1] / "data" / "lc_fixtures"
SFT, READER = FIXTURES / "sft_training.csv", FIXTURES / "reward_model_training.csv"
EVAL, QUESTIONS = FIXTURES / "trivia_qa_paragraph_generation.jsonl", FIXTURES / "questions.csv"
# what the scripted judge "knows": a phrase of each request -> (likely answer, alternative)
FACTS = {"Velmar reef": ("Orrin Castell", "Mira Dunstan"), "Glass Orchard": ("Teodor Vasque", "Lena Arkwright"),
         "Kessridge": ("Amberlin", "Tolle"), "Corrow": ("Bertil Sand", "Ilse Varn"),
         "Harbour at Dusk": ("Anouk Reyes", "Teodor Vasque")}
NAMES = sorted({name for pair in FACTS.values() for name in pair})
SAMPLES = 2  # eval paragraphs per query


def quick_config() -> LCConfig:
    "The LC recipe shrunk to seconds: two samples, two optimizer steps per training run, two PPO batches."
    sft = SFTSettings(max_steps=2, per_device_train_batch_size=4)
    return LCConfig(sampling=SampleSettings(m_samples=2, max_new_tokens=16),
                    policy_sft=PolicySFTSettings(sft, replay_docs=0),
                    reader=ReaderSettings(paragraphs=2, max_new_tokens=16, rm_epochs=1.0,
                                          extractor_sft=SFTSettings(max_steps=2, per_device_train_batch_size=4,
                                                                    freeze_embeddings=False)),
                    rl=RLSettings(algorithm="ppo", max_steps=2, prompts_per_step=2, generations=2, max_new_tokens=16),
                    evaluation=EvalSettings(samples=SAMPLES, max_new_tokens=16, n_resamples=100))


@pytest.fixture
def judge_server(monkeypatch):
    "The fake OpenAI server on 127.0.0.1 answering with the scripted judge (`server.judge`)."
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-dummy")
    judge = ScriptedJudge(NAMES, FACTS)
    with FakeLLMServer(respond=judge.respond) as server:
        server.judge = judge
        yield server
    assert judge.unexpected == []


def file_source(tiny_lm_dir, **given) -> FileSource:
    return FileSource(base_model=f"hf:{tiny_lm_dir}", sft=SFT, eval=EVAL, questions=QUESTIONS, **given)


def llm_roles(source, server, tmp_path):
    return build_roles("openai:judge-model", source, base_url=server.url + "/v1", backoff_base=0.01,
                       cache=RequestCache(tmp_path / "requests.sqlite"))


def sft_table() -> pd.DataFrame:
    return pd.read_csv(SFT).set_index("question_id")


def test_lc_chain_on_real_inputs_with_llm_roles_and_resume(tiny_lm_dir, judge_server, tmp_path):
    server, judge = judge_server, judge_server.judge
    source, run_dir = file_source(tiny_lm_dir), tmp_path / "run"
    pipeline = LCPipeline(source, llm_roles(source, server, tmp_path), quick_config(), run_dir)
    records = pipeline.run_methods()
    results = write_report(pipeline, records, 1.0, tmp_path / "report", n_resamples=100)

    stages = {row["name"]: row for row in list_stages(run_dir)}  # also the nested ones (sft, extract, ...)
    expected = {"samples", "summaries", "teacher", "lc_sft", "factuality_sft", "distill", "reader_data", "extractor",
                "forecaster", "factuality_rm", "lc_rl_ppo", "factuality_rl_ppo", "eval_base", "eval_lc_sft",
                "eval_factuality_sft", "eval_distill", "eval_lc_rl_ppo", "eval_factuality_rl_ppo"}
    assert set(pipeline.finished) == expected <= set(stages)
    assert {d.name for d in run_dir.iterdir() if not d.name.startswith(".")} == expected
    assert all((run_dir / name / STAGE_FILE).exists() for name in expected)
    assert all(row["status"] == "finished" for row in stages.values())
    assert not pipeline.skipped                                      # a fresh run: nothing was found finished

    # stage 2: the summaries are the scripted judge's, asked through the OpenAI SDK of the fake server
    sft_queries = source.queries("sft")
    samples = read_jsonl(run_dir / "samples" / "paragraphs.jsonl")
    assert [r["query_id"] for r in samples] == [q.query_id for q in sft_queries] == ["tq_fx_001", "tq_fx_003"]
    assert all(len(r["paragraphs"]) == 2 for r in samples)
    summaries = read_jsonl(run_dir / "summaries" / "paragraphs.jsonl")
    assert judge.asked["summarize"] == len(summaries) >= 1 and server.requests >= judge.asked["summarize"]
    assert all(r["paragraphs"] == [judge.summary(r["prompt"])] for r in summaries)
    sampled = [r["query_id"] for r in samples if any(p.strip() for p in r["paragraphs"])]
    assert [r["query_id"] for r in summaries] == sampled             # a query with only empty samples is not asked
    assert summaries[0]["paragraphs"][0] == ("It is probably Orrin Castell (70%), though some accounts name "
                                             "Mira Dunstan (30%).")

    # stage 4: reader data in the `reward_model_training` schema, one row per RL question and paragraph
    every_row = read_jsonl(run_dir / "reader_data" / "reward_model_training.jsonl")
    rows = [r for r in every_row if not r.get("degenerate") and not r.get("restated")]  # plus degenerate and restated
    restated = [r for r in every_row if r.get("restated")]                # paragraphs, labelled alike
    rl_questions = [x.question_id for q in source.queries("rl") for x in q.questions]
    assert rl_questions == ["tq_fx_002"] and [r["question_id"] for r in rows] == rl_questions * 2
    assert len(every_row) > len(rows) and all(r["question_id"] == "tq_fx_002" for r in every_row)
    for row in rows:
        assert set(LC_CONFIGS["reward_model_training"]) <= set(row) and row["question"].startswith("Who composed")
        assert row["lc_sft_ground_truth_and_extracted_answers"][0] == "Teodor Vasque"
        assert len(row["lc_sft_ground_truth_and_extracted_answers"]) == len(row["lc_sft_forecasted_probs"])
        assert row["factuality_sft_binary_correctness"] in (0, 1)
    assert judge.asked["extract"] > 0 and judge.asked["forecast"] > 0
    # the restater, asked through the server, gave each picked paragraph plainly and hedged, labelled like the rest
    assert judge.asked["restate"] > 0 and {r["restated"] for r in restated} == {"plain", "hedged"}
    plain = [r["lc_sft_generated_paragraph"] for r in restated if r["restated"] == "plain"]
    assert plain and not any("%" in z or "probably" in z for z in plain)

    # stage 6: both RL runs wrote a policy and a two-step reward curve
    for name in ("lc_rl_ppo", "factuality_rl_ppo"):
        assert (run_dir / name / "model" / "config.json").exists()
        curve = read_jsonl(run_dir / name / "reward_curve.jsonl")
        assert [r["step"] for r in curve] == [1, 2] and all(r["reward"] is not None for r in curve)

    # stage 7 and the report: every method graded on every eval question and sample
    n_items = sum(len(q.questions) for q in source.queries("eval")) * SAMPLES
    assert n_items == 4
    on_disk = json.loads((tmp_path / "report" / "results.json").read_text())
    assert on_disk == json.loads(json.dumps(results)) and set(on_disk["methods"]) == set(METHODS)
    for name, row in on_disk["methods"].items():
        assert tuple(row) == RESULT_KEYS and row["n"] == n_items, name
        assert {r["question_id"] for r in records[name]} == {"tq_fx_201", "tq_fx_202"}
    assert (tmp_path / "report" / "lc_rl_rewards.png").exists()

    # a rerun: every stage is found finished, nothing reaches the server
    sent = server.requests
    again = LCPipeline(file_source(tiny_lm_dir), llm_roles(source, server, tmp_path), quick_config(), run_dir)
    assert again.run_methods() == records
    assert set(again.skipped) == set(again.finished) == expected and server.requests == sent


def test_lc_command_runs_one_stage_on_real_inputs(tiny_lm_dir, judge_server, tmp_path, monkeypatch, capsys):
    "`lcal lc summaries` with --base-model/--queries/--judge: samples the tiny model, summarizes on the server."
    server, judge = judge_server, judge_server.judge
    monkeypatch.setenv("OPENAI_BASE_URL", server.url + "/v1")  # the CLI has no flag for the judge's base URL
    argv = ["summaries", "--base-model", f"hf:{tiny_lm_dir}", "--queries", str(SFT), "--eval-queries", str(EVAL),
            "--questions", str(QUESTIONS), "--judge", "openai:judge-model", "--run-dir", str(tmp_path / "run")]
    assert lc_command(argv) == 0
    out = Path(capsys.readouterr().out.strip().splitlines()[-1])
    assert out == tmp_path / "run" / "summaries" and (out / STAGE_FILE).exists()
    assert (tmp_path / "run" / "samples" / STAGE_FILE).exists()
    rows = read_jsonl(out / "paragraphs.jsonl")
    assert rows and all(r["paragraphs"] == [judge.summary(r["prompt"])] for r in rows)
    assert judge.asked["summarize"] == len(rows) and server.requests == len(rows)
    assert lc_command(argv) == 0 and server.requests == len(rows)   # resumed: no request


def test_released_lc_data_replaces_sampling_summaries_and_labels(tiny_lm_dir, judge_server, tmp_path):
    "With the paper's sft_training and reward_model_training rows nothing is sampled, summarized or labelled."
    server = judge_server
    source = file_source(tiny_lm_dir, sft_data=SFT, reader_data=READER)
    pipeline = LCPipeline(source, llm_roles(source, server, tmp_path), quick_config(), tmp_path / "run")
    table = sft_table()
    for stage, column in GIVEN_COLUMNS.items():
        rows = read_jsonl(pipeline.run(stage) / "paragraphs.jsonl")
        given = {qid: value for qid, value in table[column].items() if isinstance(value, str)}
        assert {r["query_id"] for r in rows} == set(given), stage        # rows without that text are dropped
        for r in rows:
            expected = parse_list(given[r["query_id"]]) if column == "icl_generated_paragraphs" else [given[r["query_id"]]]
            assert r["paragraphs"] == expected, stage
            assert r["prompt"] == policy_prompt(table.loc[r["query_id"], "paragraph_generation_prompt"])
    summaries = read_jsonl(pipeline.run("summaries") / "paragraphs.jsonl")
    assert [r["query_id"] for r in summaries] == ["tq_fx_001", "tq_fx_002"]   # tq_fx_003 has no claude_summary
    assert summaries[0]["paragraphs"][0].startswith("I believe the Velmar reef was first mapped by")

    reader = read_jsonl(pipeline.run("reader_data") / "reward_model_training.jsonl")
    given = pd.read_csv(READER)
    assert [r["question_id"] for r in reader] == list(given.question_id)
    questions = pd.read_csv(QUESTIONS).set_index("question_id")
    for r, (_, g) in zip(reader, given.iterrows()):
        assert r["lc_sft_generated_paragraph"] == g.lc_sft_generated_paragraph
        assert r["lc_sft_ground_truth_and_extracted_answers"] == parse_list(g.lc_sft_ground_truth_and_extracted_answers)
        assert r["question"] == questions.loc[r["question_id"], "question"]
    assert reader[1]["lc_sft_forecasted_probs"] == [0.95, 0.95]
    assert server.requests == 0 and sum(server.judge.asked.values()) == 0    # no summarizer or reader request
    # the given rows train the reader models
    for name in ("forecaster", "factuality_rm"):
        assert (pipeline.run(name) / "model" / "config.json").exists()
    assert server.requests == 0
