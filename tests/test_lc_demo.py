"""End to end: the LC pipeline and `lcal demo` on the tiny world, with minimal training budgets.

Checks the results schema, the figures, the stage manifests, that a rerun resumes (no stage runs twice), and that
no pipeline or evaluation module imports the world."""
import ast
import json
from pathlib import Path

import pytest

from lcal.demo import demo_command, run_demo
from lcal.lc import METHODS, LCConfig, LCPipeline
from lcal.lc_reader import DEGENERATIONS, ReaderSettings
from lcal.lc_results import RESULT_KEYS
from lcal.lc_samples import SampleSettings
from lcal.lc_sft import PolicySFTSettings
from lcal.lc_eval import EvalSettings
from lcal.rl import RLSettings
from lcal.sft import SFTSettings
from lcal.stages import finished_key, list_stages
from lcal.world_source import WorldSource


def quick_config(algorithm: str = "grpo") -> LCConfig:
    "The demo recipe shrunk to seconds: few samples, a couple of optimizer steps per training run."
    return LCConfig(sampling=SampleSettings(m_samples=4, max_new_tokens=24),
                    policy_sft=PolicySFTSettings(SFTSettings(max_steps=3, per_device_train_batch_size=16), replay_docs=20),
                    reader=ReaderSettings(paragraphs=1, max_new_tokens=24, rm_epochs=0.2,
                                          extractor_sft=SFTSettings(max_steps=3, per_device_train_batch_size=16,
                                                                    freeze_embeddings=False)),
                    rl=RLSettings(algorithm=algorithm, max_steps=2, prompts_per_step=2, generations=4, seconds=60,
                                  max_new_tokens=24),
                    evaluation=EvalSettings(samples=1, max_new_tokens=24))


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("lc_demo")
    results = run_demo(root / "figures", quick_config(), root / "run", world="tiny", n_resamples=200)
    return root, results


def test_demo_writes_results_schema_and_figures(demo_run):
    root, results = demo_run
    on_disk = json.loads((root / "figures" / "results.json").read_text())
    assert set(on_disk) == {"methods", "seconds", "wrong_person_claims", "reader_audit", "hedge_audit"}
    assert on_disk["seconds"] > 0
    assert set(on_disk["reader_audit"]) == {"lc_sft", *DEGENERATIONS}  # the LC reward is log p - λ·excess + 5
    assert all(-20 < reward <= 5 for reward in on_disk["reader_audit"].values())
    hedges = on_disk["hedge_audit"]  # LC SFT's held-out paragraphs that hedge, as written and restated plainly
    assert set(hedges) == {"paragraphs", "surrogate", "evaluation"} and 0 <= hedges["paragraphs"] <= 300
    if hedges["paragraphs"]:
        assert all(-20 < hedges[r][form] <= 5 for r in ("surrogate", "evaluation") for form in ("written", "plain"))
    assert set(on_disk["wrong_person_claims"]) == set(METHODS)
    assert all(0 <= share <= 1 for share in on_disk["wrong_person_claims"].values())
    assert list(on_disk["methods"]) == list(LCConfig().methods) and set(on_disk["methods"]) == set(METHODS)
    n_questions = sum(len(q.questions) for q in WorldSource("tiny").queries("eval"))
    for name, row in on_disk["methods"].items():
        assert tuple(row) == RESULT_KEYS, name
        assert row["n"] == n_questions
        assert 0 <= row["accuracy"] <= 1 and 0 <= row["ece"] <= 1 and 0 <= row["brier"] <= 1
        assert row["accuracy_ci"][0] <= row["accuracy"] <= row["accuracy_ci"][1]
        assert len(row["ece_ci"]) == 2
    for figure in ("lc_world_reliability.png", "lc_world_frontier.png", "lc_world_rl_rewards.png"):
        assert (root / "figures" / figure).stat().st_size > 10_000


def test_stages_leave_reader_data_curves_and_manifests(demo_run):
    root, _ = demo_run
    rows = [json.loads(line) for line in (root / "run" / "reader_data" / "reward_model_training.jsonl").open()]
    assert rows and {"question_id", "lc_sft_generated_paragraph", "lc_sft_ground_truth_and_extracted_answers",
                     "lc_sft_forecasted_probs", "factuality_sft_generated_paragraph",
                     "factuality_sft_binary_correctness"} <= set(rows[0])
    assert {row.get("restated") for row in rows} == {None, "plain", "hedged"}  # restated by the world's restater
    for row in rows:
        assert len(row["lc_sft_ground_truth_and_extracted_answers"]) == len(row["lc_sft_forecasted_probs"])
        assert row["factuality_sft_binary_correctness"] in (0, 1)
    for method in ("lc_rl", "factuality_rl"):
        curve = [json.loads(line) for line in (root / "run" / method / "reward_curve.jsonl").open()]
        assert [row["step"] for row in curve] == [1, 2] and all(row["reward"] is not None for row in curve)
        assert (root / "run" / method / "model" / "config.json").exists()
    stages = {row["name"]: row for row in list_stages(root / "run")}
    assert {"samples", "summaries", "lc_sft", "reader_data", "forecaster", "lc_rl", "eval_lc_rl"} <= set(stages)
    assert all(row["status"] == "finished" and row["seconds"] >= 0 for row in stages.values())


def test_reader_models_record_their_heldout_fit(demo_run):
    root, _ = demo_run
    for name in ("forecaster", "factuality_rm"):
        info = json.loads((root / "run" / name / "model" / "lcal_run.json").read_text())
        assert info["eval_rows"] > 0 and info["eval_mse_after"] is not None and info["eval_log_error_after"] is not None


def test_ppo_runs_as_an_rl_stage_beside_grpo(demo_run):
    root, _ = demo_run
    pipeline = LCPipeline(WorldSource("tiny"), config=quick_config("ppo"), run_dir=root / "run")
    out = pipeline.run("lc_rl")
    assert out.name == "lc_rl_ppo" and (root / "run" / "lc_rl").exists()  # the GRPO run is kept
    curve = [json.loads(line) for line in (out / "reward_curve.jsonl").open()]
    assert [row["step"] for row in curve] == [1, 2] and all("reward" in row for row in curve)
    assert (out / "model" / "config.json").exists() and not (out / "trainer").exists()
    assert set(pipeline.skipped) >= {"lc_sft", "extractor", "forecaster"}  # only the PPO stage ran


def test_rerun_resumes_without_running_a_stage(demo_run):
    root, first = demo_run
    pipeline = LCPipeline(WorldSource("tiny"), config=quick_config(), run_dir=root / "run")
    keys = {d.name: finished_key(d) for d in (root / "run").iterdir() if not d.name.startswith(".")}
    pipeline.run_methods()
    assert set(pipeline.skipped) == set(pipeline.finished)  # every stage it needed was found finished
    assert {d.name: finished_key(d) for d in (root / "run").iterdir() if not d.name.startswith(".")} == keys
    again = run_demo(root / "again", quick_config(), root / "run", world="tiny", n_resamples=200)
    assert again["methods"] == first["methods"]
    assert abs(again["seconds"] - first["seconds"]) < 0.5 * first["seconds"]  # reports a fresh run's cost
    assert again["reused_seconds"] > first["reused_seconds"] and again["reused_seconds"] > 0.5 * again["seconds"]


def test_a_changed_setting_reruns_only_the_stages_downstream(demo_run):
    root, _ = demo_run
    config = quick_config()
    config.evaluation = EvalSettings(samples=1, max_new_tokens=24, temperature=0.5)
    pipeline = LCPipeline(WorldSource("tiny"), config=config, run_dir=root / "run")
    pipeline.evaluate("lc_sft")
    assert set(pipeline.finished) - set(pipeline.skipped) == {"eval_lc_sft"}


def test_demo_command_rejects_bad_input(capsys):
    with pytest.raises(SystemExit) as e: demo_command(["--world", "nowhere"])
    assert e.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


GENERAL_MODULES = ("stages", "sources", "rolesets", "rl", "evaluation", "lc", "lc_samples", "lc_sft", "lc_reader",
                   "lc_rl", "lc_eval", "lc_results", "factscore", "confidence_scoring", "dpo", "facttune")


@pytest.mark.parametrize("module", GENERAL_MODULES)
def test_pipelines_and_the_evaluation_never_import_the_world(module):
    "Pipelines read a source and a role set: no `lcal.world*` import, at any depth of the module's code."
    tree = ast.parse((Path(__file__).parents[1] / "lcal" / f"{module}.py").read_text())
    imported = [f"{n.module or ''}.{a.name}" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) for a in n.names]
    imported += [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    assert imported and not [m for m in imported if any(part.startswith("world") for part in m.split("."))]
