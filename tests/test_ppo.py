"""lcal.ppo end to end on a tiny model: scalar rewards rise, LoRA trains adapters only, bad rewards fail clearly."""
from statistics import mean

import pytest
import torch

from lcal.ppo import PPOConfig, PPOTrainer, ValueModel, main
from lcal.core import read_jsonl
from lcal.tiny import load_tiny
from rl_tasks import PROMPTS, target_token_reward, write_prompts

ROWS = [{"prompt": p, "question_id": i} for i, p in enumerate(PROMPTS * 3)]


def small_config(tmp_path, **overrides) -> PPOConfig:
    base = dict(output_dir=str(tmp_path / "ppo"), total_steps=10, rollout_batch_size=12, mini_batch_size=6,
                micro_batch_size=3, ppo_epochs=2, learning_rate=3e-3, warmup_steps=0, max_new_tokens=8,
                temperature=1.0, kl_coef=0.0)
    return PPOConfig(**{**base, **overrides})


def test_scalar_reward_rises_and_value_learns(tiny_word_lm_dir, tmp_path):
    model, tokenizer = load_tiny(tiny_word_lm_dir)
    trainer = PPOTrainer(small_config(tmp_path), model, tokenizer, target_token_reward(tiny_word_lm_dir), ROWS)
    stats = trainer.train()
    rewards = [row["reward/mean"] for row in stats]
    assert mean(rewards[-3:]) > mean(rewards[:3]) + 0.1, rewards
    assert stats[0]["value/mean"] == 0.0 and stats[-1]["value/mean"] != 0.0  # zero-init head, then it learns
    assert trainer.model.value.head.weight.abs().sum() > 0


def test_lora_trains_adapters_only_and_reference_is_the_base(tiny_word_lm_dir, tmp_path):
    from peft import LoraConfig
    model, tokenizer = load_tiny(tiny_word_lm_dir)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
    trainer = PPOTrainer(small_config(tmp_path, total_steps=2, kl_coef=0.1, kl_estimator="k1"), model, tokenizer,
                         target_token_reward(tiny_word_lm_dir, per_token=True), ROWS, peft_config=lora)
    assert trainer.ref_policy is None
    stats = trainer.train()
    assert abs(stats[0]["kl/sum"]) < 1e-4  # first rollout: policy == base with adapters disabled
    base = trainer.model.policy.get_base_model().state_dict()
    assert all(base[k].equal(v) for k, v in before.items() if "proj" not in k or "lora" in k)
    lora_b = [p for n, p in trainer.model.policy.named_parameters() if "lora_B" in n]
    assert lora_b and any(p.abs().sum() > 0 for p in lora_b)
    trainer.save(tmp_path / "final")
    assert (tmp_path / "final" / "policy" / "adapter_config.json").exists()


def test_value_model_from_reward_model_and_reward_length_check(tiny_word_lm_dir, tmp_path):
    reward_model, tokenizer = load_tiny(tiny_word_lm_dir, head="sequence_classification")
    reward_model.save_pretrained(tmp_path / "rm")
    value = ValueModel.from_pretrained(tmp_path / "rm")
    assert value.backbone.norm.weight.equal(reward_model.model.norm.weight)

    def wrong_length(prompts, completions, completion_ids, **columns):
        assert sorted(columns["question_id"]) == list(range(6))  # dataset columns reach the reward
        return [[1.0] * (len(ids) + 1) for ids in completion_ids]
    model, _ = load_tiny(tiny_word_lm_dir)
    trainer = PPOTrainer(small_config(tmp_path, rollout_batch_size=6, mini_batch_size=6), model, tokenizer,
                         wrong_length, ROWS[:6], value_model=value)
    with pytest.raises(ValueError, match="completion 0 has"):
        trainer.train()


def test_long_prompts_are_dropped_and_cli_flags_map_to_config(tiny_word_lm_dir, tmp_path):
    model, tokenizer = load_tiny(tiny_word_lm_dir)
    rows = [{"prompt": "Ada " * 50}, {"prompt": "Ada Vell"}]
    trainer = PPOTrainer(small_config(tmp_path, max_prompt_length=10, rollout_batch_size=3, mini_batch_size=3),
                         model, tokenizer, target_token_reward(tiny_word_lm_dir), rows)
    assert trainer.dataset == [{"prompt": "Ada Vell"}]
    with pytest.raises(ValueError, match="no prompt fits"):
        PPOTrainer(small_config(tmp_path, max_prompt_length=1), model, tokenizer, target_token_reward(tiny_word_lm_dir), rows)
    prompts = write_prompts(tmp_path / "prompts.jsonl", repeat=1)
    assert main(["--policy", str(tiny_word_lm_dir), "--dataset", str(prompts), "--reward", "rl_tasks:target_token_reward",
                 "--reward-kwargs", f'{{"model_dir": "{tiny_word_lm_dir}"}}', "--output-dir", str(tmp_path / "cli"),
                 "--total-steps", "1", "--rollout-batch-size", "4", "--mini-batch-size", "2", "--micro-batch-size", "1",
                 "--max-new-tokens", "4", "--no-whiten-rewards", "--lora-r", "2"]) == 0
    assert len(read_jsonl(tmp_path / "cli" / "stats.jsonl")) == 1


def test_models_given_as_paths_get_the_attention_of_the_accelerators_precision(tiny_word_lm_dir, tmp_path):
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState
    if torch.cuda.is_available(): pytest.skip("the kernel choice under test is the CPU's")
    _, tokenizer = load_tiny(tiny_word_lm_dir)
    kernels = {}
    for precision in ("bf16", "no"):  # the accelerator's precision decides, not the config's flag
        AcceleratorState._reset_state(True)
        trainer = PPOTrainer(small_config(tmp_path, bf16=precision == "no"), str(tiny_word_lm_dir), tokenizer,
                             target_token_reward(tiny_word_lm_dir), ROWS, value_model=str(tiny_word_lm_dir),
                             accelerator=Accelerator(cpu=True, mixed_precision=precision))
        kernels[precision] = (trainer.model.policy.config._attn_implementation,
                              trainer.model.value.backbone.config._attn_implementation)
    AcceleratorState._reset_state(True)
    assert kernels == {"bf16": ("eager", "eager"), "no": ("sdpa", "sdpa")}  # sdpa: transformers' default
