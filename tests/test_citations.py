"""The citation pipeline end to end on the tiny world with the quick config: every method evaluated with ALCE's metrics
and bootstrap intervals in results.json, a rerun that reuses every finished stage, and the command line."""
import json

import pytest

from lcal.citations import METHODS, REPORTED, CitationsConfig, CitationsPipeline, citations_command
from lcal.sources import make_source
from lcal.stages import finished_key


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("citations")
    pipeline = CitationsPipeline(make_source("world", world="tiny"), config=CitationsConfig.quick(), run_dir=root / "run")
    return pipeline, pipeline.run(root / "out"), root


def test_results_have_every_method_and_metric_in_range(run):
    pipeline, results, root = run
    assert json.loads((root / "out" / "results.json").read_text()) == results
    assert set(results["methods"]) == set(METHODS) and results["seconds"] > 0
    for name, metrics in results["methods"].items():
        assert set(REPORTED) <= set(metrics), name   # the tiny task has all three kinds
        for metric in REPORTED:
            low, high = metrics[metric + "_ci"]
            assert low <= metrics[metric] + 1e-9 and metrics[metric] <= high + 1e-9, (name, metric)
            assert 0 <= low and (metric == "length" or high <= 100), (name, metric)
        assert metrics["examples"] == 9   # 3 held-out questions of each kind
    assert (root / "out" / "reward_curves.png").stat().st_size > 0


def test_rejection_sampling_and_rl_stages_leave_their_data(run):
    pipeline, _, _ = run
    train = pipeline.items("train")
    for stage in ("h_rs_data", "fg_rs_data"):
        picked = json.loads((pipeline.run_dir / stage / "picked.json").read_text())
        assert [p["id"] for p in picked] == [i["id"] for i in train]
    for name in ("h_rl", "fg_rl", "rs_rl"):
        curve = [json.loads(line) for line in (pipeline.run_dir / name / "reward_curve.jsonl").read_text().splitlines()]
        assert [row["step"] for row in curve] == [1, 2], name
        assert (pipeline.run_dir / name / "model" / "config.json").exists()


def test_a_rerun_reuses_every_finished_stage(run):
    pipeline, results, root = run
    stages = sorted(p.parent for p in pipeline.run_dir.glob("*/_stage.json"))
    keys = {p.name: (finished_key(p), (p / "_stage.json").stat().st_mtime_ns) for p in stages}
    assert {"task", "distill", "h_rs_data", "fg_rs_data", "h_rs", "fg_rs", "h_rl", "fg_rl", "rs_rl"} <= set(keys)
    again = CitationsPipeline(make_source("world", world="tiny"), config=CitationsConfig.quick(), run_dir=pipeline.run_dir)
    rerun = again.run(root / "out2")
    assert rerun["methods"] == results["methods"]
    assert {p.name: (finished_key(p), (p / "_stage.json").stat().st_mtime_ns) for p in stages} == keys
    assert again.skipped_seconds > 0


def test_a_retrained_model_is_evaluated_again(run, tmp_path):
    "Downstream stages key a `<stage>/model` directory by its stage's key: new RL settings re-run the RL evaluation."
    import shutil
    pipeline, results, root = run
    run_dir = shutil.copytree(pipeline.run_dir, tmp_path / "run")
    CitationsPipeline(make_source("world", world="tiny"), config=CitationsConfig.quick(), run_dir=run_dir).evaluate("h_rl")
    before = {name: finished_key(run_dir / name) for name in ("eval_h_rl", "eval_distill")}
    config = CitationsConfig.quick().updated({"rl": {"max_steps": 3}})
    CitationsPipeline(make_source("world", world="tiny"), config=config, run_dir=run_dir).evaluate("h_rl")
    assert finished_key(run_dir / "eval_h_rl") != before["eval_h_rl"]  # before the fix: "up to date", stale
    assert finished_key(run_dir / "eval_distill") == before["eval_distill"]


def test_command_line_runs_a_subset_on_the_same_stages(run, capsys):
    pipeline, results, root = run
    out = root / "cli"
    assert citations_command(["--world", "tiny", "--quick", "--methods", "distill,h_rs", "--out", str(out),
                              "--run-dir", str(pipeline.run_dir)]) == 0
    written = json.loads((out / "results.json").read_text())
    assert written["methods"] == {m: results["methods"][m] for m in ("distill", "h_rs")}
    assert "| distill |" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        citations_command(["--world", "tiny", "--quick", "--methods", "distill,best", "--out", str(out)])


def test_teacher_answers_earn_every_reward_on_the_world_tokenizers_tokens(run):
    from transformers import AutoTokenizer
    from lcal.citation_rewards import CitationReward
    pipeline, _, _ = run
    tokenizer = AutoTokenizer.from_pretrained(pipeline.distill())
    items = [i for i in pipeline.items("train") if i["dataset"] != "qampari"][:3]
    ids = [tokenizer(i["output"], add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id] for i in items]
    texts = tokenizer.batch_decode(ids, skip_special_tokens=True)
    assert all("[ 1 ]" in t for t in texts)   # the world's tokenizer writes a citation as three tokens
    fine = CitationReward(pipeline.entailer, tokenizer)([""] * 3, texts, completion_ids=ids, item=[json.dumps(i) for i in items])
    holistic = CitationReward(pipeline.entailer, tokenizer, holistic=True)([""] * 3, texts, completion_ids=ids, item=items)
    for item, rewards, total, row in zip(items, fine, holistic, ids):
        tokens = tokenizer.convert_ids_to_tokens(row)
        placed = {(tokens[t], round(v, 6)) for t, v in enumerate(rewards[:-1]) if v}
        assert placed == {("]", 0.2), (".", 0.2)}, item["output"]   # every citation precise, every sentence supported
        n_citations, n_gold = item["output"].count("["), len(item.get("qa_pairs") or item["claims"])
        assert rewards[-1] == pytest.approx(0.2 * n_gold)             # every gold answer found
        assert sum(rewards) == pytest.approx(0.4 * n_citations + 0.2 * n_gold) == pytest.approx(total[-1])
        assert total[:-1] == [0.0] * (len(row) - 1)
