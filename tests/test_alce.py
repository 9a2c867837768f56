"""ALCE evaluation (lcal.alce): the spec's worked example E.1 and every ALCE quirk of spec §G, checked through
`alce_scores` on hand-made items with a deterministic toy entailment judge; batching and memoisation of the judge;
claim recall; mixed datasets; reading and writing ALCE files with one-line errors naming file, item and field."""
import json
import re

import pytest

from lcal.alce import alce_scores, read_alce, sent_tokenize, write_alce
from lcal.roles import Entailer


def entail(premise: str, hypothesis: str) -> bool:
    "Toy NLI: entailed when every word of four or more characters of the hypothesis occurs in the premise."
    return all(w in premise.lower() for w in re.findall(r"\w{4,}", hypothesis.lower()))


class RecordingJudge:
    "A batched judge (`entail_batch`) that records every batch it is asked."

    def __init__(self): self.batches = []

    def __call__(self, pairs):
        self.batches.append(list(pairs))
        return [entail(p, h) for p, h in pairs]


ACME = {"title": "Acme", "text": "Acme was founded by Rosa Lind in 1990."}
RIVER = {"title": "Elva", "text": "The Elva is a river that floods in spring."}
OSLO = {"title": "Acme office", "text": "Acme is based in Oslo."}
NOISE = [{"title": f"Noise {k}", "text": f"Nothing relevant number {k}."} for k in range(3)]
PAIRS = [{"question": "Who founded Acme?", "short_answers": ["Rosa Lind"]},
         {"question": "When was Acme founded?", "short_answers": ["1990"]}]


def asqa(output, docs=(ACME, RIVER), qa_pairs=PAIRS, **extra):
    return {"question": "Who founded Acme, and when?", "docs": list(docs), "qa_pairs": qa_pairs, "output": output, **extra}


def one(item, **kw):
    return alce_scores([item], entail, **kw)["examples"][0]


# --- E.1 -------------------------------------------------------------------------------------------------------

def test_worked_example_e1():
    res = alce_scores([asqa("Acme was founded by Rosa Lind [1]. It is based in Oslo [2].")], entail)
    ex = res["examples"][0]
    assert (ex["citation_rec"], ex["citation_prec"], ex["str_em"], ex["str_hit"]) == (0.5, 0.5, 0.5, 0.0)
    avg = res["averages"]
    assert (avg["citation_rec"], avg["citation_prec"], avg["str_em"], avg["str_hit"]) == (50.0, 50.0, 50.0, 0.0)
    assert avg["citation_rec_eq_w"] == avg["citation_prec_eq_w"] == avg["str_em_eq_w"] == 50.0


def test_e1_precision_edge_case_leave_one_out():
    # joint support; doc 1 alone entails -> precise; doc 2 alone fails and {1} still entails -> irrelevant
    ex = one(asqa("Acme was founded by Rosa Lind [1][2]."))
    assert (ex["citation_rec"], ex["citation_prec"], ex["citations"]) == (1.0, 0.5, 2)
    # had {1} alone failed (each passage holds half of the sentence), doc 2 would count as precise
    ex = one(asqa("Acme was founded by Rosa Lind and is based in Oslo [1][2].", docs=(ACME, OSLO)))
    assert (ex["citation_rec"], ex["citation_prec"]) == (1.0, 1.0)
    # an unsupported sentence makes every cited passage imprecise
    ex = one(asqa("Acme is based in Oslo [1][2].", docs=(ACME, RIVER)))
    assert (ex["citation_rec"], ex["citation_prec"], ex["citations"]) == (0.0, 0.0, 2)


# --- §G quirks ----------------------------------------------------------------------------------------------------

def test_only_the_first_line_is_scored_and_correctness_reads_citation_free_text():
    ex = one(asqa("  Acme was founded by Rosa Lind [1].\nIt dates from 1990 [1].<|im_end|>"))
    assert (ex["str_em"], ex["sentences"], ex["length"]) == (0.5, 1, 6)
    # the cited id "1" would be found in the raw text, but correctness reads the citation-free text
    ex = one(asqa("Acme was founded by Rosa Lind [1].", qa_pairs=[{"short_answers": ["1"]}]))
    assert ex["str_em"] == 0.0
    assert one(asqa("Acme was founded by Rosa Lind [1].<|im_end|>"))["length"] == 6


def test_citation_parsing_and_removal_quirks():
    # "[1, 2]" cites only document 1, and its hypothesis keeps ", 2"
    judge = RecordingJudge()
    ex = alce_scores([asqa("Acme was founded by Rosa Lind [1, 2].")], entail_batch=judge)["examples"][0]
    assert ex["citations"] == 1 and ex["citation_prec"] == 1.0
    assert judge.batches[0] == [("Title: Acme\nAcme was founded by Rosa Lind in 1990.", "Acme was founded by Rosa Lind, 2.")]
    # "[1][2]" cites both; duplicates are kept and each counts
    assert one(asqa("Acme was founded by Rosa Lind [1][2]."))["citations"] == 2
    ex = one(asqa("Acme was founded by Rosa Lind [1][1]."))
    assert (ex["citations"], ex["citation_prec"]) == (2, 1.0)
    # leave-one-out removes the *first* occurrence of a repeated id, so the twin stays and the passage is irrelevant
    judge = RecordingJudge()
    ex = alce_scores([asqa("Acme was founded by Rosa Lind and is based in Oslo [1][2][1].", docs=(ACME, OSLO))],
                     entail_batch=judge)["examples"][0]
    assert (ex["citation_rec"], ex["citations"], ex["citation_prec"]) == (1.0, 3, pytest.approx(1 / 3))
    left_out = [p for p, _ in judge.batches[2]]
    assert left_out == [f"Title: Acme office\n{OSLO['text']}\nTitle: Acme\n{ACME['text']}",
                        f"Title: Acme\n{ACME['text']}\nTitle: Acme\n{ACME['text']}"]
    # a stray bracket is half removed
    judge = RecordingJudge()
    alce_scores([asqa("Acme was founded by Rosa Lind [x] [1].")], entail_batch=judge)
    assert judge.batches[0][0][1] == "Acme was founded by Rosa Lind [x."


def test_out_of_range_id_is_checked_before_the_cut_to_three():
    docs = [ACME, RIVER, *NOISE]  # 5 documents
    ex = one(asqa("Acme was founded by Rosa Lind [1][2][3][9].", docs=docs))
    assert (ex["citation_rec"], ex["citation_prec"], ex["citations"]) == (0.0, 0.0, 0)
    # only the first 3 ids count: the support in document 4 is never seen
    docs = [RIVER, *NOISE[:2], ACME]
    ex = one(asqa("Acme was founded by Rosa Lind [1][2][3][4].", docs=docs))
    assert (ex["citation_rec"], ex["citations"]) == (0.0, 3)
    ex = one(asqa("Acme was founded by Rosa Lind [1][2][3][4].", docs=docs), at_most_citations=None)
    assert (ex["citation_rec"], ex["citations"], ex["citation_prec"]) == (1.0, 4, 0.25)


def test_precision_zero_without_valid_citations_and_empty_outputs_drop_out():
    items = [asqa("Acme was founded by Rosa Lind."),        # no citation: recall 0, precision 0, still counted
             asqa(""),                                     # no sentences: out of both citation means
             asqa("Acme was founded by Rosa Lind [1].")]
    res = alce_scores(items, entail)
    ex = res["examples"]
    assert (ex[0]["citation_rec"], ex[0]["citation_prec"]) == (0.0, 0.0)
    assert (ex[1]["citation_rec"], ex[1]["citation_prec"], ex[1]["sentences"]) == (None, None, 0)
    avg = res["averages"]
    assert (avg["citation_rec"], avg["citation_prec"]) == (50.0, 50.0)
    assert avg["length"] == pytest.approx(12 / 3)  # length counts every example, the empty one as 0 words
    assert avg["str_em"] == pytest.approx(100 * (0.5 + 0 + 0.5) / 3)


def test_str_em_is_a_substring_test_without_word_boundaries():
    ex = one(asqa("Acme dates from 1990 [1].", qa_pairs=[{"short_answers": ["99"]}, {"short_answers": ["Acme Corp"]}]))
    assert ex["str_em"] == 0.5
    assert one(asqa("The Rosa-Lind firm [1].", qa_pairs=[{"short_answers": ["Rosa Lind"]}]))["str_em"] == 0.0


def test_zero_cites_the_last_document():
    ex = one(asqa("Acme was founded by Rosa Lind [0].", docs=(RIVER, ACME)))
    assert (ex["citation_rec"], ex["citations"]) == (1.0, 1)


def test_a_citation_after_the_period_belongs_to_the_next_sentence():
    # Punkt splits "1990.[1] Acme ..." after the period: the first sentence has no citation, the second is checked
    # against document 1 (the first one's citation) and fails, and the bare "[2]" is a sentence of its own
    judge = RecordingJudge()
    ex = alce_scores([asqa("Acme was founded by Rosa Lind in 1990.[1] Acme is based in Oslo.[2]", docs=(ACME, OSLO))],
                     entail_batch=judge)["examples"][0]
    assert ex["sentences"] == 3 and ex["citation_rec"] == pytest.approx(1 / 3)
    assert [h for _, h in judge.batches[0]] == ["Acme is based in Oslo.", ""]


def test_sentence_splitting_matches_nltk_punkt():
    # what nltk.sent_tokenize gives for these (checked against NLTK's Punkt with the same English model)
    assert sent_tokenize("Mr. Lind (b. 1950) was a potter [1]. He lived in St. Louis with his wife [2].") == \
        ["Mr. Lind (b.", "1950) was a potter [1].", "He lived in St. Louis with his wife [2]."]
    assert sent_tokenize("The U.S. Army was founded in 1775 [1][2]. It is large [3].") == \
        ["The U.S. Army was founded in 1775 [1][2].", "It is large [3]."]
    assert sent_tokenize("It costs $5.50 [1]! Is it cheap? Yes [2].") == ["It costs $5.50 [1]!", "Is it cheap?", "Yes [2]."]
    # a caller can bring its own splitter (e.g. nltk.sent_tokenize)
    ex = alce_scores([asqa("Acme was founded by Rosa Lind [1]; it is based in Oslo [2].")], entail,
                     split_sentences=lambda text: text.split("; "))["examples"][0]
    assert ex["sentences"] == 2


QAMPARI_DOCS = [{"title": "Ada Lind", "text": "Ada Lind is a potter from Akron."},
                {"title": "Bo Kern", "text": "Bo Kern is a potter from Oslo."},
                {"title": "Cy Moss", "text": "Cy Moss is a baker."}]


def qampari(output, answers=(("Ada Lind",), ("Bo Kern", "Bo"), ("Dee Roe",)), **extra):
    return {"question": "Any potter?", "docs": QAMPARI_DOCS, "answers": [list(a) for a in answers],
            "output": output, **extra}


def test_qampari_correctness_items_duplicates_and_exact_matches():
    ex = one(qampari("Ada Lind [1], Bo [2], , Ada Lind [1], Dee [3]., "))
    # items: ada lind, bo, ada lind, dee (empty item dropped); 'dee' is not 'dee roe'
    assert (ex["num_preds"], ex["qampari_prec"]) == (4, 0.75)
    assert ex["qampari_rec"] == pytest.approx(2 / 3) and ex["qampari_rec_top5"] == pytest.approx(2 / 3)
    assert ex["qampari_f1_top5"] == pytest.approx(2 * 0.75 * (2 / 3) / (0.75 + 2 / 3))
    # a substring of an alias is no hit, and a longer item containing an alias is no hit either
    ex = one(qampari("Ada [1], Bo Kern Jr [2]"))
    assert (ex["qampari_rec"], ex["qampari_prec"]) == (0.0, 0.0)
    many = [[f"Potter {k}"] for k in range(8)]
    ex = one(qampari(", ".join(f"Potter {k}" for k in range(6)), answers=many))
    assert (ex["qampari_rec_top5"], ex["qampari_rec"]) == (1.0, 0.75)
    assert "str_em" not in ex and "claims_nli" not in ex


def test_qampari_citations_use_question_prefixed_items_and_keep_empty_items():
    judge = RecordingJudge()
    ex = alce_scores([qampari("Ada Lind [1], , Cy Moss [2].")], entail_batch=judge)["examples"][0]
    assert judge.batches[0] == [("Title: Ada Lind\nAda Lind is a potter from Akron.", "Any potter? Ada Lind"),
                                ("Title: Bo Kern\nBo Kern is a potter from Oslo.", "Any potter? Cy Moss")]
    assert (ex["sentences"], ex["citation_rec"], ex["citation_prec"]) == (3, pytest.approx(1 / 3), 0.5)
    # an empty QAMPARI answer is still one (unsupported) sentence, unlike an empty long-form answer
    ex = one(qampari(""))
    assert (ex["sentences"], ex["citation_rec"], ex["citation_prec"]) == (1, 0.0, 0.0)


# --- claims, judges, mixed data -----------------------------------------------------------------------------------

ELI5 = {"question": "Why do rivers flood?", "docs": [RIVER],
        "claims": ["Rivers flood in spring.", "Snow melts in spring.", "Rain falls in autumn."],
        "output": "Rivers flood in spring [1] when snow melts.\nIgnored second line about rain in autumn."}


def test_claims_nli_and_question_in_hypothesis():
    ex = one(ELI5)
    assert ex["claims_nli"] == pytest.approx(2 / 3) and ex["dataset"] == "eli5"
    judge = RecordingJudge()
    alce_scores([ELI5], entail_batch=judge, question_in_hypothesis=True)
    hypotheses = {h for batch in judge.batches for _, h in batch}
    assert "Why do rivers flood? Rivers flood in spring." in hypotheses                # claims
    assert "Why do rivers flood? Rivers flood in spring when snow melts." in hypotheses  # sentences
    premises = {p for batch in judge.batches for p, _ in batch}
    assert "Rivers flood in spring when snow melts." in premises  # claims are checked against the citation-free text


def test_judge_is_batched_in_at_most_three_rounds_and_never_asked_twice():
    items = [asqa("Acme was founded by Rosa Lind [1][2]. Acme was founded by Rosa Lind [1][2]."),
             asqa("Acme was founded by Rosa Lind and is based in Oslo [1][2].", docs=(ACME, OSLO)),
             asqa("Acme was founded by Rosa Lind [1][2][3].", docs=(ACME, RIVER, NOISE[0])),
             qampari("Ada Lind [1], Bo [2]"), ELI5]
    judge = RecordingJudge()
    batched = alce_scores(items, entail_batch=judge)
    asked = [pair for batch in judge.batches for pair in batch]
    # joint checks (and claims), then single passages, then leave-one-out sets that are not single passages
    assert len(judge.batches) == 3 and len(asked) == len(set(asked))
    # ({1, 3} for the passage 2 of item 3; its {1, 2} was item 1's joint check, already known)
    assert [p.count("Title: ") for p, _ in judge.batches[2]] == [2]
    assert batched == alce_scores(items, entail)
    # an lcal Entailer role works too; a verdict it cannot give counts as not entailed
    class Shy(Entailer):
        def entails(self, premises, hypotheses):
            return [None if "Oslo" in h else entail(p, h) for p, h in zip(premises, hypotheses)]
    ex = alce_scores([asqa("Acme was founded by Rosa Lind [1]. It is based in Oslo [2].", docs=(ACME, OSLO))],
                     Shy())["examples"][0]
    assert ex["citation_rec"] == 0.5
    with pytest.raises(ValueError, match="returned 0 verdicts for 1 pairs"):
        alce_scores([asqa("Acme was founded by Rosa Lind [1].")], entail_batch=lambda pairs: [])


def test_mixed_datasets_average_where_a_metric_applies():
    items = [asqa("Acme was founded by Rosa Lind [1]."), qampari("Ada Lind [1], Bo [2]"), ELI5,
             {**ELI5, "dataset": "expertqa"}]
    res = alce_scores(items, entail)
    assert list(res["by_dataset"]) == ["asqa", "qampari", "eli5", "expertqa"]
    assert res["averages"]["examples"] == 4 and res["averages"]["str_em"] == 50.0   # ASQA only
    assert res["averages"]["claims_nli"] == pytest.approx(200 / 3)                   # ELI5 and ExpertQA
    assert "str_em" not in res["by_dataset"]["qampari"] and "qampari_prec" in res["by_dataset"]["qampari"]
    assert res["by_dataset"]["qampari"]["citation_rec"] == 100.0
    # `dataset=` overrides the inferred dataset, and then needs that dataset's gold field
    with pytest.raises(ValueError, match=r"^items: item 0: field 'claims': expected a non-empty list of strings$"):
        alce_scores([asqa("x")], entail, dataset="eli5")


# --- files and errors ---------------------------------------------------------------------------------------------

def test_write_and_read_round_trip(tmp_path):
    items = [asqa("Acme — founded by Rosa Lind [1]."), qampari("Ada Lind [1]"), ELI5]
    write_alce(tmp_path / "a.json", items)
    assert json.loads((tmp_path / "a.json").read_text(encoding="utf-8")) == items
    assert read_alce(tmp_path / "a.json") == items
    write_alce(tmp_path / "r.json", items, args={"shot": 0})
    assert json.loads((tmp_path / "r.json").read_text(encoding="utf-8"))["args"] == {"shot": 0}
    assert read_alce(tmp_path / "r.json") == items
    generated = [{k: v for k, v in item.items() if k != "output"} for item in items]  # data files have no output
    write_alce(tmp_path / "d.json", generated)
    assert read_alce(tmp_path / "d.json") == generated


GOOD = asqa("Acme was founded by Rosa Lind [1].")


@pytest.mark.parametrize("bad, message", [
    ({k: v for k, v in GOOD.items() if k != "question"}, "item 1: field 'question': missing or not a non-empty string"),
    ({**GOOD, "question": "  "}, "item 1: field 'question': missing or not a non-empty string"),
    ({**GOOD, "docs": "Acme"}, "item 1: field 'docs': expected a list, got str"),
    ({k: v for k, v in GOOD.items() if k != "docs"}, "item 1: field 'docs': expected a list, got NoneType"),
    ({**GOOD, "docs": [ACME, {"title": "Elva"}]}, "item 1: field 'docs[1].text': missing or not a string"),
    ({**GOOD, "docs": [{"text": "x"}]}, "item 1: field 'docs[0].title': missing or not a string"),
    ({**GOOD, "docs": ["Acme"]}, "item 1: field 'docs[0]': expected an object with title and text"),
    ({**GOOD, "output": ["x"]}, "item 1: field 'output': missing or not a string"),
    ({**GOOD, "qa_pairs": [{"short_answers": "Rosa"}]}, "item 1: field 'qa_pairs': expected a non-empty list of"),
    ({**GOOD, "qa_pairs": []}, "item 1: field 'qa_pairs': expected a non-empty list of"),
    ({**qampari("x"), "answers": ["Ada", "Bo"]}, "item 1: field 'answers': expected a non-empty list of alias lists"),
    ({**ELI5, "claims": []}, "item 1: field 'claims': expected a non-empty list of strings"),
    ({**ELI5, "dataset": "nq"}, "item 1: field 'dataset': 'nq' is not one of asqa, qampari, eli5, expertqa"),
    ({k: v for k, v in GOOD.items() if k != "qa_pairs"}, "item 1: field 'dataset': missing, and no qa_pairs"),
    ("just text", "item 1: expected an object, got str"),
])
def test_read_alce_names_file_item_and_field(tmp_path, bad, message):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"args": {}, "data": [GOOD, bad]}))
    with pytest.raises(ValueError) as err:
        read_alce(path)
    text = str(err.value)
    assert text.startswith(f"{path}: ") and message in text and "\n" not in text


def test_file_level_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.json: no such file"):
        read_alce(tmp_path / "missing.json")
    (tmp_path / "x.json").write_text("[{")
    with pytest.raises(ValueError, match=r"x.json: not JSON \(.* at line 1\)$"):
        read_alce(tmp_path / "x.json")
    (tmp_path / "y.json").write_text('{"items": []}')
    with pytest.raises(ValueError, match="y.json: expected a JSON list of items or an object with a 'data' list"):
        read_alce(tmp_path / "y.json")
    with pytest.raises(ValueError, match=r"^items: item 0: field 'output': missing or not a string$"):
        alce_scores([{k: v for k, v in GOOD.items() if k != "output"}], entail)
    with pytest.raises(ValueError, match="no items"):
        alce_scores([], entail)
    with pytest.raises(ValueError, match=r"z.json: item 0: field 'question'"):
        write_alce(tmp_path / "z.json", [{**GOOD, "question": None}])
    assert not (tmp_path / "z.json").exists()
