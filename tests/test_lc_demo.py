"""End to end: the LC pipeline and `lcal demo` on the tiny world, with minimal training budgets.

Checks the results schema, the figures, the stage manifests, and that a rerun resumes (no stage runs twice)."""
import json
from pathlib import Path

import pytest

from lcal.demo import RESULT_KEYS, demo_command, run_demo
from lcal.lc import METHODS, LCConfig, LCPipeline, stage_key
from lcal.sft import SFTSettings


def quick_config() -> LCConfig:
    "The demo recipe shrunk to seconds: tiny world, few samples, a couple of optimizer steps per training run."
    return LCConfig(world="tiny", m_samples=4, max_new_tokens=24, replay_docs=20, reader_paragraphs=1,
                    policy_sft=SFTSettings(max_steps=3, per_device_train_batch_size=16),
                    extractor_sft=SFTSettings(max_steps=3, per_device_train_batch_size=16, freeze_embeddings=False),
                    rm_epochs=0.2, rl_algorithm="grpo", rl_max_steps=2, rl_prompts_per_step=2, rl_generations=4,
                    rl_seconds=60, eval_samples=1)


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("lc_demo")
    results = run_demo(root / "figures", quick_config(), root / "run", n_resamples=200)
    return root, results


def test_demo_writes_results_schema_and_figures(demo_run):
    root, results = demo_run
    on_disk = json.loads((root / "figures" / "results.json").read_text())
    assert set(on_disk) == {"methods", "seconds"} and on_disk["seconds"] > 0
    assert list(on_disk["methods"]) == list(METHODS)
    n_questions = len(LCPipeline(quick_config(), root / "run").eval_queries()) * 4
    for name, row in on_disk["methods"].items():
        assert tuple(row) == RESULT_KEYS, name
        assert row["n"] == n_questions
        assert 0 <= row["accuracy"] <= 1 and 0 <= row["ece"] <= 1 and 0 <= row["brier"] <= 1
        assert row["accuracy_ci"][0] <= row["accuracy"] <= row["accuracy_ci"][1]
        assert len(row["ece_ci"]) == 2
    for figure in ("lc_world_reliability.png", "lc_world_frontier.png", "lc_world_rl_rewards.png"):
        assert (root / "figures" / figure).stat().st_size > 10_000


def test_stages_leave_reader_data_and_curves(demo_run):
    root, _ = demo_run
    rows = [json.loads(line) for line in (root / "run" / "reader_data" / "reward_model_training.jsonl").open()]
    assert rows and {"question_id", "lc_sft_generated_paragraph", "lc_sft_ground_truth_and_extracted_answers",
                     "lc_sft_forecasted_probs", "factuality_sft_generated_paragraph",
                     "factuality_sft_binary_correctness"} <= set(rows[0])
    for row in rows:
        assert len(row["lc_sft_ground_truth_and_extracted_answers"]) == len(row["lc_sft_forecasted_probs"])
        assert row["factuality_sft_binary_correctness"] in (0, 1)
    for method in ("lc_rl", "factuality_rl"):
        curve = [json.loads(line) for line in (root / "run" / method / "reward_curve.jsonl").open()]
        assert [row["step"] for row in curve] == [1, 3]  # 2 batches of rollouts, 2 optimizer steps on each
        assert (root / "run" / method / "model" / "config.json").exists()


def test_reader_models_record_their_heldout_fit(demo_run):
    root, _ = demo_run
    for name in ("forecaster", "factuality_rm"):
        info = json.loads((root / "run" / name / "model" / "lcal_run.json").read_text())
        assert info["eval_rows"] > 0 and info["eval_mse_after"] is not None and info["eval_log_error_after"] is not None


def test_ppo_runs_as_an_rl_stage_beside_grpo(demo_run):
    root, _ = demo_run
    config = quick_config()
    config.rl_algorithm = "ppo"
    pipeline = LCPipeline(config, root / "run")
    out = pipeline.rl("lc_rl")
    assert out.name == "lc_rl_ppo" and (root / "run" / "lc_rl").exists()  # the GRPO run is kept
    curve = [json.loads(line) for line in (out / "reward_curve.jsonl").open()]
    assert [row["step"] for row in curve] == [1, 2] and all("reward/mean" in row for row in curve)
    assert (out / "model" / "config.json").exists() and not (out / "trainer").exists()
    assert set(pipeline.skipped) >= {"lc_sft", "extractor", "forecaster"}  # only the PPO stage ran


def test_rerun_resumes_without_running_a_stage(demo_run):
    root, first = demo_run
    pipeline = LCPipeline(quick_config(), root / "run")
    keys = {d.name: stage_key(d) for d in (root / "run").iterdir() if not d.name.startswith(".")}
    pipeline.run()
    assert set(pipeline.skipped) == set(pipeline.finished)  # every stage it needed was found finished
    assert {d.name: stage_key(d) for d in (root / "run").iterdir() if not d.name.startswith(".")} == keys
    again = run_demo(root / "again", quick_config(), root / "run", n_resamples=200)
    assert again["methods"] == first["methods"]
    assert abs(again["seconds"] - first["seconds"]) < 0.5 * first["seconds"]  # reports a fresh run's cost


def test_demo_command_rejects_bad_input(capsys):
    with pytest.raises(SystemExit) as e: demo_command(["--world", "nowhere"])
    assert e.value.code == 2
    assert "invalid choice" in capsys.readouterr().err
