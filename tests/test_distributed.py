"""RL training scripts under `accelerate launch` with 2 CPU processes (config `cpu_2proc`) on a tiny model."""
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from lcal.core import read_json, read_jsonl
from lcal.launch import launch_command
from rl_tasks import write_prompts

TESTS_DIR = Path(__file__).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_launched(module: str, argv: list[str], timeout: int = 240) -> subprocess.CompletedProcess:
    "Run `module` under `accelerate launch` (2 CPU processes); the toy rewards are importable via PYTHONPATH."
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS_DIR), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1", "LCAL_PROGRESS": "0"}
    result = subprocess.run(launch_command(module, argv, "cpu_2proc", main_process_port=free_port()), env=env,
                            capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def reward_args(model_dir, **extra) -> list[str]:
    kwargs = ", ".join([f'"model_dir": "{model_dir}"', *(f'"{k}": {v}' for k, v in extra.items())])
    return ["--reward", "rl_tasks:target_token_reward", "--reward-kwargs", "{" + kwargs + "}"]


def test_ppo_under_accelerate_launch_two_processes(tiny_word_lm_dir, tmp_path):
    prompts = write_prompts(tmp_path / "prompts.jsonl", repeat=2)
    out = tmp_path / "ppo"
    common = ["--policy", str(tiny_word_lm_dir), "--dataset", str(prompts), *reward_args(tiny_word_lm_dir, per_token="true"),
              "--output-dir", str(out), "--rollout-batch-size", "4", "--mini-batch-size", "4",
              "--micro-batch-size", "2", "--max-new-tokens", "6", "--save-steps", "2", "--resume"]
    run_launched("lcal.ppo", [*common, "--total-steps", "2"])
    checkpoint = out / "checkpoints" / "step-2"
    assert {"random_states_0.pkl", "random_states_1.pkl"} <= {p.name for p in checkpoint.iterdir()}  # 2 ranks
    run_launched("lcal.ppo", [*common, "--total-steps", "3"])  # resumes from step 2
    stats = read_jsonl(out / "stats.jsonl")
    assert [row["step"] for row in stats] == [1, 2, 3]
    assert read_json(checkpoint / "ppo_state.json")["step"] == 2
    assert all(0 < row["response/length"] <= 6 for row in stats)
    assert (out / "policy" / "config.json").exists() and (out / "value" / "value_head.pt").exists()


@pytest.mark.parametrize("algorithm", ["grpo", "rloo"])
def test_trl_rl_under_accelerate_launch_two_processes(algorithm, tiny_word_lm_dir, tmp_path):
    # Before `end_process_group`, about one run in three hung at exit (the DDP wrapper freed the group while holding
    # the GIL its worker thread waited for); the timeout turns a hang into a failure.
    prompts = write_prompts(tmp_path / "prompts.jsonl", repeat=2)
    out = tmp_path / algorithm
    result = run_launched("lcal.grpo", ["--model", str(tiny_word_lm_dir), "--dataset", str(prompts),
                                        "--algorithm", algorithm, *reward_args(tiny_word_lm_dir), "--out", str(out),
                                        "--max-steps", "2", "--num-generations", "4", "--batch-size", "4",
                                        "--max-completion-length", "6"], timeout=120)
    assert "find_unused_parameters" not in result.stderr and "Loading weights" not in result.stderr, result.stderr
    rows = read_jsonl(out / "reward_curve.jsonl")
    assert [row["step"] for row in rows] == [1, 2]
    assert (out / "model" / "config.json").exists()


def test_sft_under_accelerate_launch_two_processes(tiny_lm_dir, tmp_path):
    from lcal.core import write_jsonl
    data = write_jsonl(tmp_path / "rows.jsonl", [{"prompt": f"Write about item {i} .", "completion": f"Item {i} is red ."}
                                                  for i in range(16)])
    out = tmp_path / "sft"
    result = run_launched("lcal.sft", ["--model", str(tiny_lm_dir), "--data", str(data), "--out", str(out),
                                       "--max-steps", "3", "--per-device-train-batch-size", "2", "--logging-steps", "1"])
    assert result.stdout.split() == [str(out)]  # the output path once, from the first process
    assert result.stderr.count("lcal.sft] sft: 16 rows") == 1, result.stderr  # lcal's lines once, not per rank
    assert "find_unused_parameters" not in result.stderr and "Loading weights" not in result.stderr, result.stderr
    info = read_json(out / "lcal_run.json")
    assert (info["processes"], info["steps"], info["rows"]) == (2, 3, 16)
    assert [row["step"] for row in read_jsonl(out / "loss.jsonl")] == [1, 2, 3]
    assert (out / "model.safetensors").exists() and not (tmp_path / ".sft.partial").exists()
    assert read_json(out / "_stage.json")["stage"] == "sft"
    stamp = (out / "_stage.json").stat().st_mtime_ns
    run_launched("lcal.sft", ["--model", str(tiny_lm_dir), "--data", str(data), "--out", str(out), "--max-steps", "3",
                              "--per-device-train-batch-size", "2", "--logging-steps", "1"])
    assert (out / "_stage.json").stat().st_mtime_ns == stamp  # finished: every process skips it


def test_train_sft_with_launch_runs_its_stage_in_two_processes_once(tiny_lm_dir, tmp_path, monkeypatch):
    "`train_sft(..., launch=...)`: the stage is trained by a 2-process job; called again, it is found finished and not relaunched."
    import lcal.launch
    from lcal.sft import SFTSettings, train_sft
    rows = [{"prompt": f"Write about item {i} .", "completion": f"Item {i} is red ."} for i in range(8)]
    settings = SFTSettings(max_steps=2, per_device_train_batch_size=2, logging_steps=1)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("LCAL_PROGRESS", "0")
    out = train_sft(tiny_lm_dir, rows, tmp_path / "sft", settings, launch="cpu_2proc")
    info = read_json(out / "lcal_run.json")
    assert (info["processes"], info["steps"], info["rows"]) == (2, 2, 8)
    assert not list(tmp_path.glob(".*"))  # no partial directory or lock left
    monkeypatch.setattr(lcal.launch, "launch_call", lambda *a, **kw: pytest.fail("a finished stage was relaunched"))
    key = read_json(out / "_stage.json")["key"]
    assert train_sft(tiny_lm_dir, rows, out, settings, launch="cpu_2proc") == out
    assert train_sft(tiny_lm_dir, rows, out, settings) == out  # one process trains another model: a stage of its own
    assert read_json(out / "_stage.json")["key"] != key and read_json(out / "lcal_run.json")["processes"] == 1


def test_train_dpo_with_launch_runs_its_stage_in_two_processes_once(tiny_lm_dir, tmp_path, monkeypatch):
    "`train_dpo(..., launch=...)`: the stage is trained by a 2-process job; called again, it is found finished and not relaunched."
    import lcal.launch
    from lcal.dpo import DPOSettings, rewards_pairs, train_dpo
    pairs = rewards_pairs({f"Bio {i}.": {"responses": ["good fact", "bad fact here"], "r": [1.0, 0.0]} for i in range(8)}, "r")
    settings = DPOSettings(beta=0.1, max_steps=2, per_device_train_batch_size=2, logging_steps=1)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("LCAL_PROGRESS", "0")
    out = train_dpo(tiny_lm_dir, pairs, tmp_path / "dpo", settings, launch="cpu_2proc")
    info = read_json(out / "lcal_run.json")
    assert (info["kind"], info["processes"], info["steps"], info["rows"]) == ("dpo", 2, 2, 8)
    assert info["settings"]["beta"] == 0.1
    assert [row["step"] for row in read_jsonl(out / "loss.jsonl")] == [1, 2]
    assert (out / "model.safetensors").exists() and not list(tmp_path.glob(".*"))  # no partial directory or lock left
    monkeypatch.setattr(lcal.launch, "launch_call", lambda *a, **kw: pytest.fail("a finished stage was relaunched"))
    key = read_json(out / "_stage.json")["key"]
    assert train_dpo(tiny_lm_dir, pairs, out, settings, launch="cpu_2proc") == out
    assert train_dpo(tiny_lm_dir, pairs, out, settings) == out  # one process trains another model: a stage of its own
    assert read_json(out / "_stage.json")["key"] != key and read_json(out / "lcal_run.json")["processes"] == 1
