"""Scalar reward models beyond the notebook: LoRA training, 0/1 labels through the correctness template, HF loading."""
import math

from transformers import AutoModelForSequenceClassification

from lcal.core import read_json
from lcal.reward_models import (CORRECTNESS_TEMPLATE, RewardModelSettings, ScalarRewardModel, TrainedForecaster,
                                reader_input, train_reward_model)
from lcal.sft import RUN_FILE


def correctness_rows():
    "Factuality-RM rows: the paragraph is correct (label 1) when it names Qorvath, wrong (0) when it names Brell."
    rows = []
    for name in ("Ada", "Bo", "Cy", "Di"):
        for city, label in (("Qorvath", 1), ("Brell", 0)):
            text = reader_input(CORRECTNESS_TEMPLATE, f"Where was {name} born ?", f"{name} was born in {city} .",
                                "Qorvath")
            rows.append({"text": text, "label": label})
    return rows * 4


def test_lora_reward_model_saves_a_merged_checkpoint(tiny_lm_dir, tmp_path):
    rows = correctness_rows()
    settings = RewardModelSettings(lora_r=4, learning_rate=5e-3, max_steps=3, per_device_train_batch_size=8)
    out = train_reward_model(tiny_lm_dir, rows, tmp_path / "rm", settings)
    info = read_json(out / RUN_FILE)
    assert info["steps"] == 3 and info["settings"]["lora_r"] == 4
    model = AutoModelForSequenceClassification.from_pretrained(out)
    assert model.config.num_labels == 1 and not any("lora" in n for n, _ in model.named_parameters())
    probs = ScalarRewardModel(out, batch_size=5).score([r["text"] for r in rows[:7]])
    assert len(probs) == 7 and all(0.0 < p < 1.0 and not math.isnan(p) for p in probs)


def test_factuality_rm_separates_correct_from_wrong(tiny_lm_dir, tmp_path):
    rows = correctness_rows()
    settings = RewardModelSettings(learning_rate=3e-3, num_train_epochs=10, per_device_train_batch_size=8,
                                   freeze_embeddings=False)
    out = train_reward_model(tiny_lm_dir, rows, tmp_path / "factuality_rm", settings, eval_rows=rows[:8])
    info = read_json(out / RUN_FILE)
    assert info["eval_mse_after"] < info["eval_mse_before"]
    judge = TrainedForecaster(out, template=CORRECTNESS_TEMPLATE)
    probs = judge.forecast(["Where was Bo born ?"] * 2, ["Bo was born in Qorvath .", "Bo was born in Brell ."],
                           ["Qorvath"] * 2)
    assert probs[0] > 0.5 > probs[1], probs
