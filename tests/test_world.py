"""The simulated world end to end: the tiny world's base model, determinism, the oracle roles on real samples, and
the `lcal world` command."""
import json

import pytest
import torch

from lcal.cli import main
from lcal.world import ATTRIBUTES, PretrainConfig, build_world, world_config
from lcal.world_model import (knowledge_report, model_info, pretrain_world_model, sample_biographies,
                              torch_threads, world_dir)
from lcal.world_roles import WorldEquivalenceJudge, WorldReader, WorldSummarizer


def test_tiny_world_model_loads_like_a_hub_model(tiny_world):
    from transformers import AutoModelForCausalLM, AutoTokenizer
    model = AutoModelForCausalLM.from_pretrained(tiny_world.model_dir)
    tokenizer = AutoTokenizer.from_pretrained(tiny_world.model_dir)
    assert model.config.vocab_size == len(tokenizer)
    assert tokenizer.padding_side == "left"
    assert tokenizer.unk_token_id not in tokenizer("It is unclear where X was probably born ( 70 % ) .").input_ids[1:3]
    assert model_info(tiny_world.model_dir)["key"] == tiny_world.world.config.key()


def test_tiny_world_model_knows_popular_entities_not_unseen_ones(tiny_world):
    world = tiny_world.world
    popular = [e for e in world.entities if e.mentions >= 10]
    unseen = [e for e in world.entities if e.mentions == 0]
    bios = sample_biographies(world, tiny_world.model_dir, popular + unseen, n=1, temperature=0)
    correct = [sum(world.stated_values(e, b[0]).get(a) == e.attributes[a] for a in ATTRIBUTES) / 4
               for e, b in zip(popular + unseen, bios)]
    popular_acc = sum(correct[:len(popular)]) / len(popular)
    unseen_acc = sum(correct[len(popular):]) / len(unseen)
    assert popular_acc >= 0.8 and unseen_acc <= 0.2, (popular_acc, unseen_acc)


def _micro_config(seed=0):
    return world_config("tiny", n_entities=20, seed=seed,
                        pretrain=PretrainConfig(hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64,
                                                batch_size=4, steps=8, warmup_steps=2))


def test_same_seed_gives_identical_world_weights_and_samples(tmp_path, monkeypatch):
    outputs = []
    for home in ("a", "b"):
        monkeypatch.setenv("LCAL_HOME", str(tmp_path / home))
        world = build_world(_micro_config())
        model_dir = pretrain_world_model(world)
        assert str(model_dir).startswith(str(tmp_path / home))
        from safetensors.torch import load_file
        weights = load_file(model_dir / "model.safetensors")
        outputs.append((world.corpus, weights, sample_biographies(world, model_dir, n=2, temperature=1.0, seed=3)))
    (corpus_a, w_a, s_a), (corpus_b, w_b, s_b) = outputs
    assert corpus_a == corpus_b and s_a == s_b
    assert w_a.keys() == w_b.keys() and all(torch.equal(w_a[k], w_b[k]) for k in w_a)
    assert build_world(_micro_config(seed=1)).corpus != corpus_a


def test_pretraining_is_cached_and_atomic(tmp_path, monkeypatch):
    monkeypatch.setenv("LCAL_HOME", str(tmp_path))
    world = build_world(_micro_config())
    model_dir = pretrain_world_model(world)
    stamp = (model_dir / "model.safetensors").stat().st_mtime_ns
    assert pretrain_world_model(world) == model_dir
    assert (model_dir / "model.safetensors").stat().st_mtime_ns == stamp
    assert [p.name for p in world_dir(world).iterdir()] == ["base_model"]  # no temporary leftovers


def test_torch_threads_restores_the_previous_count():
    before = torch.get_num_threads()
    with torch_threads(1) as n:
        assert n == 1 and torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


def test_oracle_roles_on_sampled_biographies(tiny_world):
    """M samples -> summary -> reader per attribute -> correctness: the LC loop, with exact roles."""
    world = tiny_world.world
    entities = world.heldout_entities
    samples = sample_biographies(world, tiny_world.model_dir, entities, n=8, temperature=0.7)
    summaries = WorldSummarizer(world).summarize([world.prompt(e) for e in entities], samples)
    reader, judge = WorldReader(world), WorldEquivalenceJudge(world)
    questions = [q for e in entities for q in world.questions_for(e)]
    paragraphs = [s for s in summaries for _ in ATTRIBUTES]
    answers = reader.extract([q.text for q in questions], paragraphs)
    p_true = reader.forecast([q.text for q in questions], paragraphs, [q.answer for q in questions])
    top = [a[0] if a else "" for a in answers]
    correct = judge.equivalent([q.text for q in questions], top, [q.aliases for q in questions])
    assert reader.failures == 0 and judge.failures == 0
    assert all(0.0 <= p <= 1.0 for p in p_true)
    # a confident correct answer gets its stated probability; wrong answers get little mass on the truth
    assert max(p for p, c in zip(p_true, correct) if c) >= 0.8
    assert all(p < 0.5 for p, c, a in zip(p_true, correct, answers) if a and not c)


def test_world_command_report_writes_the_issue_keys(tiny_world, tmp_path):
    out, figure = tmp_path / "report.json", tmp_path / "fig.png"
    assert main(["world", "report", "--size", "tiny", "--json", str(out), "--figure", str(figure)]) == 0
    report = json.loads(out.read_text())
    assert set(report["accuracy_by_mentions"]) == set(report["fraction_by_mentions"]) == {"0", "1-2", "3-9", "10+"}
    assert len(report["accuracy_by_agreement_bucket"]) == 8
    assert report["build_seconds"] >= report["pretrain_seconds"] > 0  # world build + pretraining
    assert abs(sum(report["fraction_by_mentions"].values()) - 1) < 1e-6
    copy = report["name_copy_rate"]
    assert 0 <= copy["overall"] <= 1 and set(copy["by_mentions"]) == set(report["accuracy_by_mentions"])
    assert figure.stat().st_size > 1000


def test_world_command_rejects_an_unknown_size(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["world", "build", "--size", "huge"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'huge'" in capsys.readouterr().err


def test_rating_and_ranking_judges_really_disagree(tiny_world):
    """Ratings and two-order rankings of the same sampled responses agree only partly (sparse-feedback premise)."""
    import itertools
    from lcal.world_roles import WorldRankingJudge, WorldRatingJudge
    world = tiny_world.world
    samples = sample_biographies(world, tiny_world.model_dir, world.entities[:40], n=4, temperature=1.0)
    rater, ranker = WorldRatingJudge(world), WorldRankingJudge(world)
    agree = total = 0
    for e, texts in zip(world.entities, samples):
        instruction, ratings = world.prompt(e), rater.rate([world.prompt(e)] * 4, texts)
        for i, j in itertools.combinations(range(4), 2):
            forward, backward = ranker.prefer([instruction] * 2, [texts[i], texts[j]], [texts[j], texts[i]])
            ranked = forward if forward == 1 - backward else 0.5  # inconsistent across orders -> tie
            rated = 0.5 if ratings[i] == ratings[j] else float(ratings[j] > ratings[i])
            agree += ranked == rated
            total += 1
    assert 0.2 < agree / total < 0.9, agree / total
