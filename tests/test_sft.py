"""SFT end to end through its script entry (`python -m lcal.sft`), the way `accelerate launch` runs it."""
import os
import subprocess
import sys

import pytest

from lcal.core import read_json, read_jsonl, write_jsonl
from lcal.sft import LOSS_FILE, RUN_FILE, main
from lcal.stages import finished_key, list_stages


def run_sft(*args):
    return subprocess.run([sys.executable, "-m", "lcal.sft", *map(str, args)], capture_output=True, text=True)


def test_sft_script_trains_with_replay(tiny_lm_dir, tmp_path):
    data = write_jsonl(tmp_path / "rows.jsonl", [{"prompt": f"Write about item {i} .", "completion": f"Item {i} is red ."}
                                                  for i in range(6)])
    replay = write_jsonl(tmp_path / "replay.jsonl", [{"text": f"Pretraining document {i} ."} for i in range(10)])
    out = tmp_path / "model"
    args = ["--model", tiny_lm_dir, "--data", data, "--out", out, "--max-steps", 3,
            "--per-device-train-batch-size", 4, "--logging-steps", 1, "--replay", replay, "--replay-count", 4]
    first = run_sft(*args)
    assert first.returncode == 0, first.stderr
    info = read_json(out / RUN_FILE)
    assert (info["rows"], info["steps"]) == (10, 3)  # 6 rows + 4 replay texts
    curve = read_jsonl(out / LOSS_FILE)
    assert [row["step"] for row in curve] == [1, 2, 3] and all(row["loss"] > 0 for row in curve)
    assert (out / "model.safetensors").exists() and (out / "tokenizer.json").exists()
    assert not (tmp_path / ".model.partial").exists()
    key = finished_key(out)
    assert main(list(map(str, args))) == 0 and finished_key(out) == key  # same inputs: not retrained
    assert read_jsonl(out / LOSS_FILE) == curve
    assert main(list(map(str, args[:-1])) + ["5"]) == 0  # another replay count is another run: it replaces this one
    assert finished_key(out) != key and read_json(out / RUN_FILE)["rows"] == 11
    assert [row["name"] for row in list_stages(tmp_path)] == ["sft"]


def test_sft_script_bad_input_is_one_line(tiny_lm_dir, tmp_path, capsys):
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"prompt": "q", "completion": "a"}, {"prompt": "q", "answer": "a"}])
    for data, message in ((bad, "bad.jsonl: row 1 has no string field 'completion'"),
                          (tmp_path / "nope.jsonl", "no such file")):
        with pytest.raises(SystemExit) as exit:
            main(["--model", str(tiny_lm_dir), "--data", str(data), "--out", str(tmp_path / "m")])
        err = capsys.readouterr().err
        assert exit.value.code == 2 and message in err and err.strip().count("\n") == 0, err
    assert not (tmp_path / "m").exists()


def test_sft_trains_with_eager_attention_under_cpu_bf16(tiny_lm_dir, tmp_path, monkeypatch):
    import torch
    import lcal.sft as sft
    if torch.cuda.is_available(): pytest.skip("the kernel choice under test is the CPU's")
    kernels, prepare = [], sft.prepare_backbone
    def spy(model, *args, **kwargs):  # the model train_sft loaded, before it trains
        kernels.append(model.config._attn_implementation)
        return prepare(model, *args, **kwargs)
    monkeypatch.setattr(sft, "prepare_backbone", spy)
    rows = [{"prompt": f"Write about item {i} .", "completion": f"Item {i} is red ."} for i in range(4)]
    sft.train_sft(tiny_lm_dir, rows, tmp_path / "m", sft.SFTSettings(max_steps=1, per_device_train_batch_size=2, bf16=True))
    assert kernels == ["eager"]  # sdpa, transformers' default, is slower under CPU bf16 autocast


@pytest.mark.parametrize("module", ["lcal.sft", "lcal.dpo", "lcal.grpo", "lcal.ppo"])
def test_every_training_script_quiets_the_hugging_face_bars_first(module, monkeypatch, capsys):
    "Off a terminal (and on ranks but the first) each script entry switches the bars off, for its children too."
    import importlib
    monkeypatch.setenv("LCAL_PROGRESS", "0")
    monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "")
    monkeypatch.delenv("HF_HUB_DISABLE_PROGRESS_BARS")
    with pytest.raises(SystemExit): importlib.import_module(module).main(["--help"])
    assert "usage:" in capsys.readouterr().out and os.environ.get("HF_HUB_DISABLE_PROGRESS_BARS") == "1"
