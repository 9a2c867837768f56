"""GRPO / RLOO through lcal.grpo on a tiny model: the reward rises, the script writes its curve and model."""
from statistics import mean

import pytest
import torch
from datasets import Dataset

from lcal.core import read_jsonl
from lcal.grpo import main, rl_config, train_rl
from lcal.tiny import load_tiny
from rl_tasks import PROMPTS, target_token_reward, write_prompts


def test_grpo_raises_the_mean_reward(tiny_word_lm_dir, tmp_path):
    model, tokenizer = load_tiny(tiny_word_lm_dir)
    config = rl_config(tmp_path, max_steps=20, num_generations=8, per_device_train_batch_size=16,
                       max_completion_length=8, learning_rate=1e-2, temperature=1.0)
    trainer = train_rl(model, tokenizer, Dataset.from_dict({"prompt": PROMPTS * 8}),
                       target_token_reward(tiny_word_lm_dir), config=config, freeze_embeddings=False,
                       curve_path=tmp_path / "curve.jsonl")
    rewards = [row["reward"] for row in read_jsonl(tmp_path / "curve.jsonl")]
    assert len(rewards) == 20 and trainer.reward_curve.rows[-1]["step"] == 20
    assert mean(rewards[-5:]) > mean(rewards[:5]) + 0.2, rewards


def test_rloo_script_writes_curve_and_model(tiny_word_lm_dir, tmp_path):
    prompts = write_prompts(tmp_path / "prompts.jsonl", repeat=2)
    code = main(["--model", str(tiny_word_lm_dir), "--dataset", str(prompts), "--reward", "rl_tasks:target_token_reward",
                 "--reward-kwargs", f'{{"model_dir": "{tiny_word_lm_dir}"}}', "--algorithm", "rloo",
                 "--max-steps", "2", "--num-generations", "2", "--batch-size", "4", "--max-completion-length", "4",
                 "--out", str(tmp_path / "run")])
    assert code == 0
    rows = read_jsonl(tmp_path / "run" / "reward_curve.jsonl")
    assert [r["step"] for r in rows] == [1, 2] and all("rewards/fraction_of_Qorvath/mean" in r for r in rows)
    assert (tmp_path / "run" / "model" / "config.json").exists()
    frozen, _ = load_tiny(tmp_path / "run" / "model")
    original, _ = load_tiny(tiny_word_lm_dir)
    assert frozen.get_input_embeddings().weight.equal(original.get_input_embeddings().weight)  # frozen by default


def test_a_policy_loaded_from_a_path_gets_the_training_attention(tiny_word_lm_dir, tmp_path):
    config = rl_config(tmp_path, max_steps=1, num_generations=2, per_device_train_batch_size=4, max_completion_length=4)
    if torch.cuda.is_available() or not config.bf16: pytest.skip("eager attention is the choice for CPU bf16 only")
    _, tokenizer = load_tiny(tiny_word_lm_dir)
    trainer = train_rl(str(tiny_word_lm_dir), tokenizer, Dataset.from_dict({"prompt": PROMPTS}),
                       target_token_reward(tiny_word_lm_dir), config=config)
    assert trainer.model.config._attn_implementation == "eager"  # transformers' default would be sdpa
