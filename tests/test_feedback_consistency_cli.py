"""`lcal feedback consistency` on feedback files a researcher already has: tiny ratings and rankings CSVs in the
paper's layouts (with a header row as lcal writes them, and headerless as the paper released them), run through the
`lcal` entry point; the printed agreement, the JSON report, the figure, and one-line errors with exit status 2."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from lcal.cli import main
from lcal.feedback_data import rankings_rows, ratings_rows, write_feedback_csv

GENERATIONS = [{"instruction": "Name a fruit.", "input": "apples, pears", "responses": ["A", "B", "Six\nfour"]},
               {"instruction": "Add 2 and 2.", "input": "", "responses": ["4", "5", "four"]}]
SCORES = [6, 4, 4, 7, 2, 5]
# pairs in rankings_rows order: (A,B) (A,Six) (B,Six) (4,5) (4,four) (5,four); implied: (a) (a) equal (a) (a) (b)
LABELS = ["(a)", "equal", "equal", "(b)", "(a)", "(b)"]  # agree, no, agree, no, agree, agree: 4 of 6


@pytest.fixture
def feedback_files(tmp_path) -> tuple[Path, Path]:
    ratings = [{**row, "score": s} for row, s in zip(ratings_rows(GENERATIONS), SCORES)]
    ratings.append({"instruction": "Add 2 and 2.", "input": "", "response": "22", "score": None})  # the judge failed
    rankings = [{**row, "feedback": label} for row, label in zip(rankings_rows(GENERATIONS), LABELS)]
    rankings.append({"instruction": "Add 2 and 2.", "input": "", "response1": "5", "response2": "4", "feedback": None})
    rankings.append({"instruction": "Add 2 and 2.", "input": "", "response1": "4", "response2": "22", "feedback": "(a)"})
    return (write_feedback_csv(tmp_path / "ratings.csv", ratings, "ratings"),
            write_feedback_csv(tmp_path / "rankings.csv", rankings, "rankings"))


def headerless(path: Path) -> Path:
    "The same rows without the header row, as the paper's released CSVs are."
    copy = path.with_name(f"released_{path.name}")
    copy.write_text(path.read_text().split("\n", 1)[1])
    return copy


def run(argv, capsys) -> tuple[int, str, str]:
    try: code = main(argv)
    except SystemExit as e: code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def test_agreement_table_json_and_figure(feedback_files, tmp_path, capsys):
    ratings, rankings = feedback_files
    out_json, figure = tmp_path / "out" / "agreement.json", tmp_path / "out" / "agreement.png"
    code, out, err = run(["feedback", "consistency", "--ratings", str(ratings), "--rankings", str(rankings),
                          "--json", str(out_json), "--figure", str(figure)], capsys)
    assert (code, err) == (0, "")
    assert "agreement (3-way, ties a class): 66.7% of 6 compared pairs" in out
    assert "7 rows, 1 without a score" in out
    assert "8 rows, 8 distinct pairs; not compared: 1 without a label, 1 with a response that has no rating" in out
    assert "| ranked \\ rating-implied | (a) | (b) | equal |" in out and "| (b) | 1 | 1 | 0 |" in out

    report = json.loads(out_json.read_text())
    assert report["consistency"] == pytest.approx(4 / 6)
    assert report["contingency"] == {"(a)": {"(a)": 2, "(b)": 0, "equal": 0},
                                     "(b)": {"(a)": 1, "(b)": 1, "equal": 0},
                                     "equal": {"(a)": 1, "(b)": 0, "equal": 1}}
    assert (report["compared"], report["unlabelled"], report["unrated"]) == (6, 1, 1)
    assert report["ratings"] == {"file": str(ratings), "rows": 7, "unscored": 1}
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and figure.stat().st_size > 1000

    # the paper's released layout (no header row) gives the same numbers
    code, out, _ = run(["feedback", "consistency", "--ratings", str(headerless(ratings)),
                        "--rankings", str(headerless(rankings))], capsys)
    assert code == 0 and "66.7% of 6 compared pairs" in out


@pytest.mark.parametrize("kind, line, expected", [
    ("ratings", "Add 2 and 2.,,4,seven", "row 7: column 'score': expected an integer from 1 to 7, got 'seven'"),
    ("rankings", "Add 2 and 2.,,4,5,(c)", "row 8: column 'feedback': expected one of (a), (b), equal, got '(c)'"),
])
def test_a_malformed_file_is_one_line_naming_file_row_and_column(feedback_files, kind, line, expected, capsys):
    files = dict(zip(("ratings", "rankings"), feedback_files))
    with open(files[kind], "a") as f: f.write(line + "\r\n")
    code, out, err = run(["feedback", "consistency", "--ratings", str(files["ratings"]),
                          "--rankings", str(files["rankings"])], capsys)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("lcal feedback consistency: error: ")
    assert f"{files[kind]}: {expected}" in err


def test_missing_files_and_arguments_exit_2(feedback_files, tmp_path, capsys):
    ratings, _ = feedback_files
    code, _, err = run(["feedback", "consistency", "--ratings", str(ratings), "--rankings", str(tmp_path / "nope.csv")], capsys)
    assert code == 2 and f"{tmp_path / 'nope.csv'}: no such file" in err and err.count("\n") == 1
    code, _, err = run(["feedback", "consistency", "--ratings", str(ratings)], capsys)
    assert code == 2 and "--rankings" in err and err.count("\n") == 1


def test_files_without_a_common_pair_exit_1(feedback_files, capsys):
    ratings, _ = feedback_files  # a ratings file given as --rankings reads as pairs without labels
    code, out, err = run(["feedback", "consistency", "--ratings", str(ratings), "--rankings", str(ratings)], capsys)
    assert code == 1 and "agreement (3-way, ties a class): – of 0 compared pairs" in out
    assert "no ranked pair has a label and a rating for both responses" in err and err.count("\n") == 1


def test_help_names_the_sub_action(capsys):
    code, out, _ = run(["feedback", "consistency", "--help"], capsys)
    assert code == 0 and "usage: lcal feedback consistency" in out and "--figure" in out
    code, out, _ = run(["feedback", "--help"], capsys)
    assert code == 0 and "lcal feedback consistency --ratings" in out


def test_the_command_does_not_import_torch(feedback_files, tmp_path):
    "It reads two CSV files and draws a figure; it paid about 4 s importing torch through the feedback pipeline."
    ratings, rankings = feedback_files
    argv = ["feedback", "consistency", "--ratings", str(ratings), "--rankings", str(rankings),
            "--json", str(tmp_path / "agreement.json"), "--figure", str(tmp_path / "agreement.png")]
    code = f"import sys\nfrom lcal.cli import main\ncode = main({argv!r})\nprint(code, 'torch' in sys.modules)"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert run.stdout.splitlines()[-1:] == ["0 False"], run.stdout[-2000:] + run.stderr[-2000:]
    assert (tmp_path / "agreement.png").stat().st_size > 1000
