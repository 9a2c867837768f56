"""The citation pipeline's training options on the tiny world: LoRA in every training stage (merged models that load as
plain Hugging Face models), and a PPO stage with the fine-grained reward run under `accelerate launch` (cpu_2proc)."""
import json
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from lcal.citations import METHODS, CitationsConfig, CitationsPipeline, citation_tokens
from lcal.core import read_json, read_jsonl
from lcal.sources import make_source
from lcal.stages import finished_key, stage_manifest

LORA = {"sft": {"lora_r": 4}, "rs_sft": {"lora_r": 4, "warmup_steps": 0}, "rl_lora": {"lora_r": 4}}  # RS: one step, so no warm-up


def tiny_pipeline(run_dir, overrides=None):
    config = CitationsConfig.quick().updated(overrides or {})
    return CitationsPipeline(make_source("world", world="tiny"), config=config, run_dir=run_dir)


def plain_state(directory) -> dict:
    "The weights of a model directory loaded by transformers alone (no peft), after checking it holds no adapter."
    from transformers import AutoModelForCausalLM
    assert not (directory / "adapter_config.json").exists() and (directory / "config.json").exists(), directory
    return AutoModelForCausalLM.from_pretrained(directory).state_dict()


def test_lora_in_every_training_stage_leaves_plain_models(tmp_path):
    pipeline = tiny_pipeline(tmp_path / "run", LORA)
    results = pipeline.run(tmp_path / "out")
    assert set(results["methods"]) == set(METHODS)
    base = plain_state(Path(pipeline.source.base_model()))
    models = {name: pipeline.model(name) for name in METHODS}
    states = {name: plain_state(path) for name, path in models.items()}
    for name, state in states.items():
        assert set(state) == set(base), name                             # the base architecture, no lora_* weights
    for name in ("distill", "h_rs", "fg_rs"):
        assert read_json(models[name] / "lcal_run.json")["settings"]["lora_r"] == 4
    for name in ("h_rl", "fg_rl", "rs_rl"):
        assert stage_manifest(pipeline.run_dir / name)["settings"]["lora"]["lora_r"] == 4
    init = {"distill": base, "h_rs": states["distill"], "fg_rs": states["distill"], "h_rl": states["distill"],
            "fg_rl": states["distill"], "rs_rl": states["fg_rs"]}
    for name, state in states.items():                                   # each stage's adapter moved its layers
        moved = {k for k, v in state.items() if not torch.equal(v, init[name][k])}
        assert any("proj" in k for k in moved), (name, sorted(moved))
    # distillation under LoRA still trains the citation markers' embedding rows, and only those
    from transformers import AutoTokenizer
    tokenizer = AutoTokenizer.from_pretrained(models["distill"])
    markers = tokenizer.convert_tokens_to_ids(citation_tokens(models["distill"]).split())
    key = "model.embed_tokens.weight"
    rows = (states["distill"][key] != base[key]).any(dim=1).nonzero().flatten().tolist()
    assert rows and set(rows) <= set(markers), (rows, markers)


def test_fine_grained_ppo_stage_under_accelerate_launch_writes_what_in_process_does(tmp_path, monkeypatch):
    import lcal.launch
    import lcal.rl
    in_process = tiny_pipeline(tmp_path / "run")
    reference = in_process.rl_model("fg_rl").parent
    launched_dir = shutil.copytree(in_process.run_dir, tmp_path / "launched")
    shutil.rmtree(launched_dir / "fg_rl")
    commands, trained_here = [], []
    real_run = subprocess.run
    monkeypatch.setattr(lcal.launch.subprocess, "run", lambda command, **kw: commands.append(command) or real_run(command, **kw))
    monkeypatch.setattr(lcal.rl, "_train_ppo", lambda *a, **kw: trained_here.append(a))
    pipeline = tiny_pipeline(launched_dir, {"launch": "cpu_2proc"})
    stage = pipeline.rl_model("fg_rl").parent
    assert len(commands) == 2 and trained_here == []  # distill and fg_rl: two processes train another model than one
    for command in commands:
        assert "accelerate.commands.launch" in command and str(command[command.index("--config_file") + 1]).endswith("cpu_2proc.yaml")
        assert command[-3:-1] == ["-m", "lcal.launch"]
    files = lambda d: sorted(str(p.relative_to(d)) for p in d.rglob("*"))
    assert files(stage) == files(reference)
    assert finished_key(stage) != finished_key(reference)                # the process count is part of the key
    assert tiny_pipeline(launched_dir, {"launch": "cpu_2proc"}).rl_model("fg_rl").parent == stage and len(commands) == 2
    for name in ("reward_curve.jsonl", "trainer_stats.jsonl"):
        launched_rows, reference_rows = read_jsonl(stage / name), read_jsonl(reference / name)
        assert [list(r) for r in launched_rows] == [list(r) for r in reference_rows], name
        assert [r["step"] for r in launched_rows] == [1, 2]
    assert all(isinstance(r["reward"], float) for r in read_jsonl(stage / "reward_curve.jsonl"))
    assert set(plain_state(stage / "model")) == set(plain_state(reference / "model"))
    evaluated = pipeline.evaluate("fg_rl")                               # the next stage reads the launched model
    assert evaluated["examples"] == 9


def test_launch_needs_an_entailer_the_processes_can_rebuild(tmp_path):
    source = make_source("world", world="tiny")
    with pytest.raises(ValueError, match="cannot be rebuilt in launched processes"):
        CitationsPipeline(source, entailer=lambda premises, hypotheses: [True] * len(premises),
                          config=CitationsConfig.quick().updated({"launch": "cpu_2proc"}), run_dir=tmp_path / "run")
