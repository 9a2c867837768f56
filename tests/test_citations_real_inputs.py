"""The citation pipeline on real-path inputs, offline: ALCE files of our own toy questions (all three kinds, teacher
answers with citations), a tiny byte-level BPE causal LM as the base model and a tiny TRUE-style seq2seq NLI model
as the entailer, through `lcal citations`; and one-line errors for bad inputs."""
import json

import pytest

from lcal.alce import write_alce
from lcal.citations import METHODS, citations_command
from lcal.tiny import SAMPLE_TEXT, make_tiny_lm, make_tiny_nli

DOCS = [{"title": "Acme", "text": "Acme was founded by Rosa Lind in 1990."},
        {"title": "Lune", "text": "The Lune is a river in the north."},
        {"title": "Bo Kern", "text": "Bo Kern was born in Oslo and works as a pilot."},
        {"title": "Ada Lind", "text": "Ada Lind was born in Oslo and works as a potter."},
        {"title": "Oslo", "text": "Oslo is a city by a fjord."}]


def items(n: int) -> list[dict]:
    out = []
    for k in range(n):
        out.append({"id": f"asqa-{k}", "dataset": "asqa", "question": f"Who founded Acme {k} ?", "docs": DOCS,
                    "qa_pairs": [{"question": "Who founded Acme ?", "short_answers": ["Rosa Lind"]},
                                 {"question": "When was Acme founded ?", "short_answers": ["1990"]}],
                    "output": "Acme was founded by Rosa Lind [1]. It was founded in 1990 [1]."})
        out.append({"id": f"qampari-{k}", "dataset": "qampari", "question": f"Who was born in Oslo {k} ?", "docs": DOCS,
                    "answers": [["Bo Kern", "Kern"], ["Ada Lind"]], "output": "Bo Kern [3], Ada Lind [4]."})
        out.append({"id": f"eli5-{k}", "dataset": "eli5", "question": f"Tell me about Bo Kern {k} .", "docs": DOCS,
                    "claims": ["Bo Kern was born in Oslo.", "Bo Kern works as a pilot."],
                    "output": "Bo Kern was born in Oslo [3]. He works as a pilot [3]."})
    return out


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("citations_real")
    texts = list(SAMPLE_TEXT) + [d["text"] for d in DOCS] + [i["output"] for i in items(1)]
    paths = {"train": write_alce(root / "train.json", items(4)),
             "heldout": write_alce(root / "heldout.json", [{k: v for k, v in i.items() if k != "output"} for i in items(2)]),
             "lm": make_tiny_lm(root / "lm", texts=texts), "nli": make_tiny_nli(root / "nli", texts=texts)}
    return root, paths


def test_real_inputs_run_every_method_through_the_command(inputs, capsys):
    root, p = inputs
    assert citations_command(["--base-model", str(p["lm"]), "--train", str(p["train"]), "--heldout", str(p["heldout"]),
                              "--judge", f"nli:{p['nli']}", "--quick", "--out", str(root / "out"),
                              "--run-dir", str(root / "run")]) == 0
    results = json.loads((root / "out" / "results.json").read_text())
    assert set(results["methods"]) == set(METHODS)
    for name, metrics in results["methods"].items():
        assert metrics["examples"] == 6, name
        for metric in ("citation_rec", "citation_prec", "str_em"):
            low, high = metrics[f"{metric}_ci"]
            assert 0 <= low <= metrics[metric] <= high <= 100, (name, metric)
        answered = json.loads((root / "run" / f"eval_{name}" / "outputs.json").read_text())
        assert len(answered) == 6 and all(isinstance(i["output"], str) for i in answered), name  # the model's answers
    assert "| rs_rl |" in capsys.readouterr().out


def test_bad_inputs_are_one_line_errors_naming_the_file_and_field(inputs, capsys):
    root, p = inputs
    bare = write_alce(root / "bare.json", [{**i, "output": ""} for i in items(1)])
    for argv, message in ((["--base-model", str(p["lm"]), "--train", str(p["train"])], "needs --train and --heldout"),
                          (["--base-model", str(p["lm"]), "--train", str(bare), "--heldout", str(p["heldout"])],
                           "bare.json: item 0: field 'output'")):
        with pytest.raises(SystemExit):
            citations_command(argv + ["--quick", "--out", str(root / "x")])
        assert message in capsys.readouterr().err
    broken = root / "broken.json"
    broken.write_text(json.dumps([{"question": "Q ?", "docs": [{"title": "T"}], "claims": ["c"], "output": "x"}]))
    with pytest.raises(SystemExit):
        citations_command(["--base-model", str(p["lm"]), "--train", str(broken), "--heldout", str(p["heldout"]), "--quick"])
    assert "broken.json: item 0: field 'docs[0].text'" in capsys.readouterr().err
