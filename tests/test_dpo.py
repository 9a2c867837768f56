"""DPO's reference model: under LoRA with `train_tokens`, the embedding rows train in place beside the adapter, and the
reference must still be the starting model."""
import pytest

from lcal.dpo import DPOSettings, rewards_pairs, train_dpo
from lcal.sft import TrainingLog


def test_lora_with_train_tokens_keeps_the_reference_log_probs_of_the_starting_model(tiny_lm_dir, tmp_path, monkeypatch):
    from transformers import AutoTokenizer
    pairs = rewards_pairs({f"Bio {i}.": {"responses": ["good fact", "bad fact here"], "r": [1.0, 0.0]} for i in range(4)}, "r")
    words = " ".join(dict.fromkeys(AutoTokenizer.from_pretrained(tiny_lm_dir).tokenize(" good fact bad fact here")))
    logged = []
    record = TrainingLog.on_log
    monkeypatch.setattr(TrainingLog, "on_log", lambda self, args, state, control, logs=None, **kw:
                        logged.append(dict(logs or {})) or record(self, args, state, control, logs=logs, **kw))
    beta = 0.1  # every step sees all 4 pairs, so its reference log-prob of the chosen responses is the same number
    settings = DPOSettings(beta=beta, max_steps=4, per_device_train_batch_size=4, logging_steps=1, learning_rate=0.05,
                           warmup_steps=0, lora_r=4, train_tokens=words)
    train_dpo(tiny_lm_dir, pairs, tmp_path / "dpo", settings)
    steps = [row for row in logged if "logps/chosen" in row]
    assert len(steps) == 4
    policy = [row["logps/chosen"] for row in steps]
    reference = [row["logps/chosen"] - row["rewards/chosen"] / beta for row in steps]
    assert abs(policy[-1] - policy[0]) > 1  # the policy (adapter and token rows) moved ...
    assert reference == pytest.approx([policy[0]] * 4, abs=1e-3)  # ... its reference did not
