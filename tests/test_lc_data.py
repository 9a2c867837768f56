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


# --- Inputs that used to be accepted silently or failed without naming the file (issue 15, item 9) -----------------

def one_line_error(call, *parts):
    "The ValueError `call` raises: one line, containing every part (file, row, column ...)."
    with pytest.raises(ValueError) as err:
        call()
    message = str(err.value)
    assert "\n" not in message and all(part in message for part in parts), message
    return message


QUESTION_ROWS = [{"question_id": "q1", "paragraph_generation_prompt": "Write about the Velmar reef.",
                  "question": "Who first mapped the Velmar reef?", "ground_truth_top_answer": "Orrin Castell",
                  "ground_truth_answer_list": ["Orrin Castell", "Castell"]},
                 {"question_id": "q2", "paragraph_generation_prompt": "Write about the year of the flood.",
                  "question": "In which year was the flood?", "ground_truth_top_answer": "1969",
                  "ground_truth_answer_list": ["1969"]},
                 {"question_id": "q3", "paragraph_generation_prompt": "Write about the lighthouse.",
                  "question": "Who kept the lighthouse?", "ground_truth_top_answer": "Ilse Varn",
                  "ground_truth_answer_list": None}]


def question_sets(queries):
    return [(x.question_id, x.answer, x.aliases) for q in queries for x in q.questions]


def test_csv_list_columns_are_json_lists_and_cells_stay_text(tmp_path):
    "A CSV copy of a table gives the same questions as its JSONL copy: aliases parsed, '1969' kept as text."
    from lcal.sources import load_queries
    jsonl = load_queries(write_jsonl(tmp_path / "t.jsonl", QUESTION_ROWS))
    frame = pd.DataFrame(QUESTION_ROWS).assign(ground_truth_answer_list=['["Orrin Castell", "Castell"]', '["1969"]', ""])
    frame.to_csv(tmp_path / "t.csv", index=False)
    assert question_sets(load_queries(tmp_path / "t.csv")) == question_sets(jsonl) == [
        ("q1", "Orrin Castell", ["Orrin Castell", "Castell"]), ("q2", "1969", ["1969"]), ("q3", "Ilse Varn", ["Ilse Varn"])]
    frame.loc[1, "ground_truth_answer_list"] = "1969|nineteen sixty-nine"          # not a list: an error, not [answer]
    frame.to_csv(tmp_path / "bad.csv", index=False)
    one_line_error(lambda: load_queries(tmp_path / "bad.csv"), "bad.csv", "row 1", "'ground_truth_answer_list'", "list")


@pytest.mark.parametrize("field, value, kind", [("ground_truth_top_answer", {"text": "Orrin Castell"}, "dict"),
                                                ("question", 17, "int"), ("paragraph_generation_prompt", ["a"], "list"),
                                                ("ground_truth_answer_list", ["Castell", 3], "int")])
def test_mistyped_cells_of_a_query_table_name_file_row_and_column(tmp_path, field, value, kind):
    from lcal.sources import load_queries
    rows = [dict(r) for r in QUESTION_ROWS]
    rows[2][field] = value
    path = write_jsonl(tmp_path / "typed.jsonl", rows)
    one_line_error(lambda: load_queries(path), "typed.jsonl", "row 2", repr(field), kind)


@pytest.mark.parametrize("field, value, kind", [("answer", {"text": "Tarn"}, "dict"), ("question", 7, "int"),
                                                ("aliases", "Tarn", "list of text"), ("prompt", ["a"], "list")])
def test_mistyped_fields_of_a_query_file_name_file_row_and_field(tmp_path, field, value, kind):
    from lcal.sources import load_queries
    question = {"question_id": "7/born", "question": "Where was Ada Vell born?", "answer": "Tarn", "aliases": ["Tarn"]}
    good = {"query_id": "7", "prompt": "Write a biography of Ada Vell .", "questions": [question]}
    bad = {**good, field: value} if field == "prompt" else {**good, "questions": [{**question, field: value}]}
    path = write_jsonl(tmp_path / "queries.jsonl", [good, bad])
    one_line_error(lambda: load_queries(path), "queries.jsonl", "row 1", field, kind)


def test_a_list_paragraph_in_reader_data_is_an_error_not_a_skipped_row(tmp_path):
    rows = pd.read_csv(FIXTURES / "reward_model_training.csv").to_dict("records")
    rows[1]["lc_sft_generated_paragraph"] = ["The Glass Orchard was composed by Teodor Vasque."]
    path = write_jsonl(tmp_path / "rm.jsonl", rows)
    one_line_error(lambda: load_lc_config("reward_model_training", path), "rm.jsonl", "row 1",
                   "'lc_sft_generated_paragraph'", "list")


def test_a_non_numeric_forecast_names_file_row_and_column(tmp_path):
    bad = pd.read_csv(FIXTURES / "reward_model_training.csv")
    bad.loc[1, "lc_sft_forecasted_probs"] = "[0.95, 'high']"
    bad.to_csv(tmp_path / "probs.csv", index=False)
    one_line_error(lambda: load_lc_config("reward_model_training", tmp_path / "probs.csv"), "probs.csv", "row 1",
                   "'lc_sft_forecasted_probs'", "'high'")


@pytest.mark.parametrize("name, content, parts", [
    ("empty.csv", b"", ["empty.csv", "empty"]),
    ("header.csv", b"question_id,paragraph_generation_prompt\n", ["header.csv", "no rows"]),
    ("latin1.csv", "question_id,paragraph_generation_prompt\nq1,Caf\xe9 Velmar\n".encode("latin-1"),
     ["latin1.csv", "line 2", "UTF-8"]),
    ("latin1.jsonl", '{"question_id": "q1", "paragraph_generation_prompt": "Caf\xe9"}\n'.encode("latin-1"),
     ["latin1.jsonl", "line 1", "UTF-8"]),
    ("cut.jsonl", b'{"question_id": "q1", "paragraph_generation_prompt": "a"}\n{"question_id": "q2", "paragraph_gen',
     ["cut.jsonl", ":2", "JSON"]),
    ("cut.json", b'[{"question_id": "q1", "paragraph_generation_prompt": "a"}, {"question_id": "q2"', ["cut.json"]),
])
def test_unreadable_files_are_one_line_errors_naming_the_file(tmp_path, name, content, parts):
    from lcal.sources import load_queries
    (tmp_path / name).write_bytes(content)
    one_line_error(lambda: load_lc_config("trivia_qa_paragraph_generation", tmp_path / name), *parts)
    one_line_error(lambda: load_queries(tmp_path / name, FIXTURES / "questions.csv"), *parts)
