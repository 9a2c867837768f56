"""LC data loaders on the fixture rows: every local format, the pipeline's own JSONL, and the surrogate-reader chain."""
from pathlib import Path

import pandas as pd
import pytest

from lcal.core import write_jsonl, write_parquet
from lcal.lc_data import (attach_questions, correctness_rows, extraction_rows, extractor_rows, forecast_rows,
                          load_lc_config, reward_model_rows, sft_rows)
from lcal.reward_models import RewardModelSettings, TrainedAnswerExtractor, TrainedForecaster, train_reward_model
from lcal.sft import SFTSettings, train_sft

FIXTURES = Path(__file__).resolve().parents[1] / "data" / "lc_fixtures"


def fixture_rm():
    return attach_questions(load_lc_config("reward_model_training", FIXTURES / "reward_model_training.csv"),
                            FIXTURES / "questions.csv")


@pytest.mark.parametrize("suffix", ["jsonl", "parquet"])
def test_local_copies_in_other_formats_give_the_same_rows(tmp_path, suffix):
    "A copy with real lists (as JSONL/Parquet store them) loads to the same rows as the CSV's stringified lists."
    csv = load_lc_config("reward_model_training", FIXTURES / "reward_model_training.csv")
    path = tmp_path / f"rm.{suffix}"
    if suffix == "jsonl": write_jsonl(path, csv.to_dict("records"))
    else: write_parquet(path, csv)
    copy = attach_questions(load_lc_config("reward_model_training", path), FIXTURES / "questions.csv")
    for build in (forecast_rows, correctness_rows, extraction_rows):
        assert build(copy) == build(fixture_rm()), build.__name__


def test_pipeline_rows_with_questions_need_no_join(tmp_path):
    "Rows written by the LC pipeline carry the question and real lists; the builders read them directly."
    rows = [{"question_id": "w1", "query_id": "e1", "question": "Where was Ada Vell born ?",
             "ground_truth_top_answer": "Qorvath", "lc_sft_generated_paragraph": "Ada Vell may have been born in Qorvath or Brell .",
             "lc_sft_ground_truth_and_extracted_answers": ["Qorvath", "Qorvath", "Brell"],
             "lc_sft_forecasted_probs": [0.4, 0.4, 0.4], "factuality_sft_generated_paragraph": "Ada Vell was born in Brell .",
             "factuality_sft_binary_correctness": 0}]
    df = load_lc_config("reward_model_training", write_jsonl(tmp_path / "reward_model_training.jsonl", rows))
    assert [r["label"] for r in forecast_rows(df)] == [0.4, 0.4, 0.4]
    assert correctness_rows(df)[0]["answer"] == "Qorvath"
    assert extraction_rows(df)[0]["target"] == "Qorvath; Brell"


def test_bad_cells_name_file_row_and_column(tmp_path):
    bad = pd.read_csv(FIXTURES / "reward_model_training.csv")
    bad.loc[2, "lc_sft_forecasted_probs"] = "[0.1, open('x')]"
    path = tmp_path / "bad.csv"
    bad.to_csv(path, index=False)
    with pytest.raises(ValueError, match=r"bad\.csv: row 2 column 'lc_sft_forecasted_probs': not a list literal"):
        load_lc_config("reward_model_training", path)
    (tmp_path / "copy.txt").write_text("question_id\n")
    with pytest.raises(ValueError, match=r"copy\.txt: unsupported table format"):
        load_lc_config("sft_training", tmp_path / "copy.txt")


def test_fixture_rows_train_the_surrogate_reader(tiny_lm_dir, tmp_path):
    "Fixture rows -> ExtractAnswers SFT and ForecastProbs RM (a few steps each) -> reader roles that answer."
    df = fixture_rm()
    extractor_dir = train_sft(tiny_lm_dir, extractor_rows(extraction_rows(df)), tmp_path / "extractor",
                              SFTSettings(max_steps=2, per_device_train_batch_size=4))
    forecaster_dir = train_reward_model(tiny_lm_dir, reward_model_rows(forecast_rows(df)), tmp_path / "forecaster",
                                        RewardModelSettings(max_steps=2, per_device_train_batch_size=4))
    policy = sft_rows(load_lc_config("sft_training", FIXTURES / "sft_training.csv"), "lc")
    assert len(policy) == 2
    questions, paragraphs = list(df.question[:2]), list(df.lc_sft_generated_paragraph[:2])
    extracted = TrainedAnswerExtractor(extractor_dir, max_new_tokens=8).extract(questions, paragraphs)
    assert len(extracted) == 2 and all(a is None or isinstance(a, list) for a in extracted)
    probs = TrainedForecaster(forecaster_dir).forecast(questions, paragraphs, ["Orrin Castell", "Teodor Vasque"])
    assert all(0.0 < p < 1.0 for p in probs)
