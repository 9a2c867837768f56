"""The world's citation task through the pipeline's entry points: the oracle entailer chosen by its spec from a world
source, ALCE files written and read back, scores that move exactly as citations are removed, and larger worlds."""
import re

import pytest

from lcal.alce import alce_scores, read_alce
from lcal.entailment import build_entailer
from lcal.sources import make_source
from lcal.world import build_world
from lcal.world_citations import CitationTaskConfig, world_citation_task, write_world_citation_task
from lcal.world_roles import WorldEntailer


@pytest.fixture(scope="module")
def source():
    return make_source("world", world="tiny")


@pytest.fixture(scope="module")
def items(source, tmp_path_factory):
    paths = write_world_citation_task(source.world, tmp_path_factory.mktemp("task"))
    return read_alce(paths["train"]) + read_alce(paths["heldout"])


def test_teacher_scores_full_marks_with_the_oracle_chosen_by_spec(source, items):
    oracle = build_entailer("world", source)
    assert isinstance(oracle, WorldEntailer)
    scores = alce_scores(items, oracle)
    for kind, averages in scores["by_dataset"].items():
        assert (averages["citation_rec"], averages["citation_prec"]) == (100.0, 100.0), kind
    assert scores["averages"]["examples"] == len(items) >= 150


def test_one_missing_citation_per_answer_costs_exactly_its_sentence(source, items):
    long_form = [i for i in items if i["dataset"] != "qampari"]
    dropped = [{**i, "output": re.sub(r" \[\d+\]", "", i["output"], count=1)} for i in long_form]
    examples = alce_scores(dropped, build_entailer("world", source))["examples"]
    for item, example in zip(long_form, examples):
        n = item["output"].count("[")
        assert (example["citation_rec"], example["citation_prec"]) == ((n - 1) / n, 1.0 if n > 1 else 0.0)


def test_the_task_is_a_function_of_the_world_seed(tmp_path):
    config = CitationTaskConfig(per_kind=30)
    seed0 = world_citation_task(build_world("tiny"), config, tmp_path / "0")
    seed1 = world_citation_task(build_world("tiny", seed=1), config, tmp_path / "1")
    assert seed1 == world_citation_task(build_world("tiny", seed=1), config, tmp_path / "1b")
    assert seed0["train"][0]["question"] != seed1["train"][0]["question"]


def test_default_world_narrows_ambiguous_questions_and_caps_each_kind(tmp_path):
    task = world_citation_task(build_world("default"), cache_dir=tmp_path)
    items = task["train"] + task["heldout"]
    counts = {kind: sum(i["dataset"] == kind for i in items) for kind in ("asqa", "qampari", "eli5")}
    assert counts == {"asqa": 400, "qampari": 400, "eli5": 400}
    asqa = [i for i in items if i["dataset"] == "asqa"]
    assert all(" from " in i["question"] or " the " in i["question"] for i in asqa)  # every first name is crowded
    qampari = [i for i in items if i["dataset"] == "qampari"]
    assert 0.2 < sum(len(i["answers"]) < 5 for i in qampari) / len(qampari) < 0.8  # short lists leave distractors
