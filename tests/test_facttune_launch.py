"""FactTune on the tiny world with `--launch cpu_2proc`: the SFT baseline and both DPO stages are `accelerate launch`
jobs of two CPU processes that write what in-process training writes; two processes train on more rows per step, so
their stages have keys of their own."""
import json
import shutil
import subprocess

import pytest

from lcal.core import read_json, read_jsonl
from lcal.facttune import METHODS, facttune_command
from lcal.stages import finished_key

TRAINED = ("sft", "facttune_fs", "facttune_mc")


def files(directory) -> list[str]: return sorted(str(p.relative_to(directory)) for p in directory.rglob("*"))


def test_tiny_world_facttune_trains_under_accelerate_launch(tmp_path, tiny_world, monkeypatch, capsys):
    import lcal.dpo
    import lcal.launch
    import lcal.sft
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("LCAL_PROGRESS", "0")
    config = tmp_path / "quick.json"
    config.write_text(json.dumps({"train_prompts": 6, "responses": 3, "eval_prompts": 4, "eval_samples": 2, "answers": 4,
                                  "sft": {"max_steps": 2, "per_device_train_batch_size": 4, "logging_steps": 1},
                                  "dpo": {"max_steps": 2, "per_device_train_batch_size": 2, "logging_steps": 1}}))
    argv = lambda run, out: ["--world", "tiny", "--config", str(config), "--run-dir", str(run), "--out", str(out)]
    assert facttune_command(argv(tmp_path / "run", tmp_path / "in_process")) == 0
    launched_run = shutil.copytree(tmp_path / "run", tmp_path / "launched")
    for name in TRAINED: shutil.rmtree(launched_run / name)

    commands, real_run = [], subprocess.run
    monkeypatch.setattr(lcal.launch.subprocess, "run", lambda command, **kw: commands.append(command) or real_run(command, **kw))
    for module in (lcal.sft, lcal.dpo):  # this process only launches; the jobs train
        monkeypatch.setattr(module, "run_trainer_stage", lambda *a, **kw: pytest.fail("trained in process"))
    assert facttune_command(argv(launched_run, tmp_path / "out") + ["--launch", "cpu_2proc"]) == 0
    assert len(commands) == 3 and all(c[-3:-1] == ["-m", "lcal.launch"] for c in commands)
    assert all(str(c[c.index("--config_file") + 1]).endswith("cpu_2proc.yaml") for c in commands)
    for name in TRAINED:
        launched, in_process = launched_run / name, tmp_path / "run" / name
        assert files(launched) == files(in_process), name
        assert finished_key(launched) != finished_key(in_process), name  # the process count is part of the key
        runs = read_json(launched / "lcal_run.json"), read_json(in_process / "lcal_run.json")
        assert [(r["processes"], r["steps"]) for r in runs] == [(2, 2), (1, 2)], name
        assert [row["step"] for row in read_jsonl(launched / "loss.jsonl")] == [1, 2]
    assert read_json(launched_run / "facttune_mc" / "lcal_run.json")["kind"] == "dpo"
    results = read_json(tmp_path / "out" / "results.json")
    assert list(results["methods"]) == list(METHODS)
    in_process = read_json(tmp_path / "in_process" / "results.json")["methods"]
    assert results["methods"]["start"] == in_process["start"]  # the untrained model's evaluation is reused
    assert read_json(tmp_path / "out" / "details.json")["config"]["launch"] == "cpu_2proc"

    assert facttune_command(argv(launched_run, tmp_path / "out") + ["--launch", "cpu_2proc"]) == 0
    assert len(commands) == 3  # finished stages are not relaunched: the launching process computes the jobs' keys
