"""The local Hugging Face backend on tiny offline models: seeding, n samples, stop strings, logprobs, LoRA, cache."""
import pytest
import torch

from lcal.backends import HFBackend, SamplingParams, backend_scope, get_backend, weights_fingerprint
from lcal.request_cache import RequestCache
from lcal.tiny import load_tiny

PROMPTS = ["Ada Vell was born in", "The quick brown fox", "Question : where was Ada Vell born ? Answer :"]


@pytest.fixture(scope="module")
def backend(tiny_lm_dir):
    return get_backend(f"hf:{tiny_lm_dir}", batch_size=4)


def texts(out): return [[c.text for c in cs] for cs in out]


def test_same_seed_same_text_and_n_samples(backend):
    params = SamplingParams(n=4, temperature=1.0, max_new_tokens=10, seed=7)
    first = backend.generate(PROMPTS, params)
    assert [len(cs) for cs in first] == [4, 4, 4]
    assert texts(backend.generate(PROMPTS, params)) == texts(first)
    assert texts(backend.generate(PROMPTS, SamplingParams(n=4, max_new_tokens=10, seed=8))) != texts(first)
    assert all(len(set(t)) > 1 for t in texts(first))  # the n samples of a prompt differ
    assert all(c.prompt_tokens > 0 and 0 < c.completion_tokens <= 10 for cs in first for c in cs)


def test_batching_does_not_change_greedy_text(backend, tiny_lm_dir):
    params = SamplingParams(n=2, temperature=0, max_new_tokens=8)
    one_by_one = [backend.generate([p], params)[0] for p in PROMPTS]
    assert texts(get_backend(f"hf:{tiny_lm_dir}", batch_size=64).generate(PROMPTS, params)) == texts(one_by_one)


def test_stop_strings_cut_text_and_end_rows_early(backend):
    free = backend.generate(PROMPTS, SamplingParams(temperature=0, max_new_tokens=16))
    for prompt, [full] in zip(PROMPTS, free):
        stop = full.text[3:5]
        [cut] = backend.generate([prompt], SamplingParams(temperature=0, max_new_tokens=16, stop=[stop, "zzzz"]))[0]
        assert full.text.startswith(cut.text) and stop not in cut.text
        assert cut.finish_reason == "stop" and cut.completion_tokens < full.completion_tokens


def test_logprobs_match_a_forward_pass(backend):
    prompt = PROMPTS[0]
    # n=2 takes the shared-prompt path (one prompt pass, its KV cache copied to both rows)
    c, twin = backend.generate([prompt], SamplingParams(n=2, temperature=0, max_new_tokens=6, logprobs=True))[0]
    assert c.text == twin.text
    prompt_ids = backend.tokenizer(prompt)["input_ids"]
    completion_ids = backend.tokenizer(c.text, add_special_tokens=False)["input_ids"]
    ids = torch.tensor([prompt_ids + completion_ids])
    with torch.no_grad(): logits = backend.model(ids).logits[0, len(prompt_ids) - 1:-1]
    expected = torch.log_softmax(logits, -1).gather(-1, ids[0, len(prompt_ids):, None]).squeeze(-1)
    n = min(len(expected), len(c.logprobs))
    assert n >= 3 and torch.allclose(torch.tensor(c.logprobs[:n]), expected[:n], atol=1e-4)


def test_chat_prompts_use_the_chat_template(backend):
    chat = [{"role": "user", "content": "Where was Ada Vell born ?"}]
    [[c]] = backend.generate([chat], SamplingParams(temperature=0, max_new_tokens=5))
    formatted = backend.tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
    [[d]] = backend.generate([formatted], SamplingParams(temperature=0, max_new_tokens=5))
    assert c.text == d.text and c.prompt_tokens == d.prompt_tokens


def test_lora_adapter_is_applied(tiny_lm_dir, tmp_path):
    from peft import LoraConfig, get_peft_model
    model, _ = load_tiny(tiny_lm_dir)
    torch.manual_seed(0)
    peft_model = get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    peft_model.save_pretrained(tmp_path / "adapter")
    params = SamplingParams(temperature=0, max_new_tokens=8)
    base = get_backend(f"hf:{tiny_lm_dir}").generate(PROMPTS, params)
    tuned = get_backend(f"hf:{tiny_lm_dir}", adapter=str(tmp_path / "adapter")).generate(PROMPTS, params)
    assert texts(tuned) != texts(base)


def test_cache_makes_a_rerun_generate_nothing(tiny_lm_dir, tmp_path, monkeypatch):
    backend = get_backend(f"hf:{tiny_lm_dir}", cache=RequestCache(tmp_path / "c.sqlite"))
    params = SamplingParams(n=3, max_new_tokens=6, seed=1)
    first = backend.generate(PROMPTS, params)
    monkeypatch.setattr(backend.model, "generate", lambda *a, **k: pytest.fail("generate called on a cached rerun"))
    assert backend.generate(PROMPTS, params) == first
    assert backend.ledger.cache_hits == 9 and backend.ledger.requests == 9


def test_in_memory_model_keeps_its_mode_and_rng(tiny_lm_dir):
    model, tokenizer = load_tiny(tiny_lm_dir)
    model.train()
    torch.manual_seed(123)
    expected_next = torch.rand(1)
    torch.manual_seed(123)
    HFBackend(model=model, tokenizer=tokenizer).generate(PROMPTS, SamplingParams(n=2, max_new_tokens=4, seed=0))
    assert model.training and torch.equal(torch.rand(1), expected_next)


def test_a_cached_local_model_retrained_in_place_is_not_answered_from_the_cache(tiny_lm_dir, tmp_path):
    "The cache key holds a fingerprint of the model directory's files: new weights at the same path, new keys."
    import shutil
    model_dir = shutil.copytree(tiny_lm_dir, tmp_path / "model")
    cache, params = RequestCache(tmp_path / "c.sqlite"), SamplingParams(n=3, max_new_tokens=6, seed=1)
    get_backend(f"hf:{model_dir}", cache=cache).generate(PROMPTS, params)
    same = get_backend(f"hf:{model_dir}", cache=cache)
    same.generate(PROMPTS, params)
    assert same.ledger.cache_hits == 9
    model, tokenizer = load_tiny(model_dir)
    with torch.no_grad():
        for p in model.parameters(): p.add_(0.01)
    model.save_pretrained(model_dir)                      # "retrained in place"
    retrained = get_backend(f"hf:{model_dir}", cache=cache)
    retrained.generate(PROMPTS, params)
    assert retrained.ledger.cache_hits == 0 and retrained.ledger.requests == 9


def test_an_in_memory_model_refuses_a_cache(tiny_lm_dir):
    model, tokenizer = load_tiny(tiny_lm_dir)
    with pytest.raises(ValueError, match="in-memory model changes as it trains"):
        HFBackend(model=model, tokenizer=tokenizer, cache=True)


def test_generation_raises_no_deprecation_warning_from_lcal(backend):
    "Shared-prompt prefill (n > 1) and plain batches both pass the KV cache under the argument transformers expects."
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        warnings.simplefilter("error", DeprecationWarning)
        backend.generate(PROMPTS, SamplingParams(n=2, max_new_tokens=4, seed=0, logprobs=True))
        backend.generate(PROMPTS, SamplingParams(n=1, max_new_tokens=4, seed=0))


def retrain_in_place(model_dir):
    "New weights at the same path: every file keeps its size and modification time, only the weights' content changes."
    import os
    stats = {f: f.stat() for f in model_dir.iterdir()}
    model, _ = load_tiny(model_dir)
    with torch.no_grad():
        for p in model.parameters(): p.add_(0.01)
    model.save_pretrained(model_dir)
    for f, stat in stats.items():
        assert f.stat().st_size == stat.st_size
        os.utime(f, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def test_the_identity_of_an_hf_model_follows_its_weights(tiny_lm_dir, tmp_path):
    "Without a cache too, and without loading the model (`backend_scope`): the key of a stage that generates with it."
    import shutil
    model_dir = shutil.copytree(tiny_lm_dir, tmp_path / "model")
    backend = get_backend(f"hf:{model_dir}")
    before = backend_scope(f"hf:{model_dir}")
    assert backend.cache_scope() == before and "weights" in before
    retrain_in_place(model_dir)
    after = backend_scope(f"hf:{model_dir}")
    assert after["weights"] != before["weights"]
    assert get_backend(f"hf:{model_dir}").cache_scope() == after


def test_a_retrained_hf_judge_is_not_answered_from_the_cache(tiny_lm_dir, tmp_path):
    "An hf: judge (cached, as LLM roles are) regenerates after new weights of the same size and time at its path."
    import shutil
    model_dir = shutil.copytree(tiny_lm_dir, tmp_path / "model")
    cache, params = RequestCache(tmp_path / "c.sqlite"), SamplingParams(max_new_tokens=6, seed=1)
    get_backend(f"hf:{model_dir}", cache=cache).generate(PROMPTS, params)
    retrain_in_place(model_dir)
    retrained = get_backend(f"hf:{model_dir}", cache=cache)
    retrained.generate(PROMPTS, params)
    assert retrained.ledger.cache_hits == 0 and retrained.ledger.requests == 3


def test_a_large_weights_file_is_fingerprinted_by_its_ends_size_and_time(tmp_path):
    import os
    model_dir = tmp_path / "big"
    model_dir.mkdir()
    shard = model_dir / "model-00001-of-00002.safetensors"
    data = bytearray(os.urandom(17 * 2**20))  # over the 16 MiB hashed whole
    shard.write_bytes(data)
    stat = shard.stat()
    before = weights_fingerprint(model_dir)
    data[-1] ^= 1  # the last tensor changed, same size and time
    shard.write_bytes(data)
    os.utime(shard, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    changed_end = weights_fingerprint(model_dir)
    assert changed_end != before
    data[8 * 2**20] ^= 1  # a middle byte changed: seen through the modification time
    shard.write_bytes(data)
    os.utime(shard, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert weights_fingerprint(model_dir) not in (before, changed_end)


def test_a_hub_model_has_one_identity_loaded_or_not(tiny_lm_dir, tmp_path, monkeypatch):
    """`backend_scope("hf:NAME")` and a backend loaded from the hub name hold the same commit: the one a load resolves
    (offline, the hub cache's refs/main). The hub cannot be reached here: the cache is made up, the load is the tiny model."""
    from huggingface_hub import constants
    import lcal.backends as backends
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(backends, "load_causal_lm", lambda name, **kwargs: load_tiny(tiny_lm_dir))
    main = tmp_path / "models--lcal-test--tiny" / "refs" / "main"
    main.parent.mkdir(parents=True)
    main.write_text("a" * 40)
    loaded = get_backend("hf:lcal-test/tiny")
    assert loaded.cache_scope() == backend_scope("hf:lcal-test/tiny")
    main.write_text("b" * 40)  # a new commit of the model
    assert backend_scope("hf:lcal-test/tiny") != loaded.cache_scope()
    assert get_backend("hf:lcal-test/tiny").cache_scope() == backend_scope("hf:lcal-test/tiny")


def test_weights_are_read_once_per_process_until_rewritten(tiny_lm_dir, tmp_path, monkeypatch):
    "A second load of the same weights hashes no file; weights rewritten in place (same size and time) are hashed again."
    import shutil
    import time
    import lcal.backends as backends
    model_dir = shutil.copytree(tiny_lm_dir, tmp_path / "model")
    time.sleep(backends.SETTLED_SECONDS)  # files written just now are hashed on every load
    hashed, digest = [], backends.file_digest
    monkeypatch.setattr(backends, "file_digest", lambda path, size: hashed.append(path) or digest(path, size))
    first = get_backend(f"hf:{model_dir}")
    files = len(hashed)
    assert files == sum(f.is_file() for f in model_dir.iterdir())
    assert get_backend(f"hf:{model_dir}").cache_scope() == first.cache_scope() and len(hashed) == files
    assert backend_scope(f"hf:{model_dir}") == first.cache_scope() and len(hashed) == files
    retrain_in_place(model_dir)
    assert backend_scope(f"hf:{model_dir}") != first.cache_scope() and len(hashed) == 2 * files
