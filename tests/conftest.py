"""Shared pytest fixtures: an isolated lcal home and tiny offline models, built once per session."""
import os

import pytest


@pytest.fixture(scope="session", autouse=True)
def lcal_home(tmp_path_factory):
    "Every test session gets its own lcal home, so no test reads or writes the user's caches."
    home = tmp_path_factory.mktemp("lcal_home")
    old = os.environ.get("LCAL_HOME")
    os.environ["LCAL_HOME"] = str(home)
    yield home
    if old is None: os.environ.pop("LCAL_HOME", None)
    else: os.environ["LCAL_HOME"] = old


@pytest.fixture(scope="session")
def tiny_lm_dir(tmp_path_factory):
    "A byte-level BPE tokenizer + tiny Llama saved in HF format (encodes any text)."
    from lcal.tiny import make_tiny_lm
    return make_tiny_lm(tmp_path_factory.mktemp("tiny_bpe"), kind="bpe")


@pytest.fixture(scope="session")
def tiny_word_lm_dir(tmp_path_factory):
    "A word-level tokenizer + tiny Llama saved in HF format (the world's tokenizer kind)."
    from lcal.tiny import make_tiny_lm
    return make_tiny_lm(tmp_path_factory.mktemp("tiny_word"), kind="word")


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory):
    """The `tiny` simulated world and its pretrained base model: `tiny_world.world` (an `lcal.world.World`) and
    `tiny_world.model_dir` (HF format). The model is deterministic in the world config and the world code, so it is
    kept across sessions in `$LCAL_TEST_CACHE` (default `~/.cache/lcal-test`) under a key hashing both."""
    import hashlib
    import shutil
    from pathlib import Path
    from types import SimpleNamespace

    import lcal.world
    import lcal.world_model
    from lcal.world import build_world
    from lcal.world_model import MODEL_INFO, pretrain_world_model, world_dir

    world = build_world("tiny")
    code = b"".join(Path(m.__file__).read_bytes() for m in (lcal.world, lcal.world_model))
    key = f"{world.config.key()}-{hashlib.sha256(code).hexdigest()[:12]}"
    cached = Path(os.environ.get("LCAL_TEST_CACHE", Path.home() / ".cache" / "lcal-test")) / "worlds" / key
    target = world_dir(world) / "base_model"
    if (cached / MODEL_INFO).exists() and not target.exists(): shutil.copytree(cached, target)
    model_dir = pretrain_world_model(world)
    if not (cached / MODEL_INFO).exists():
        tmp = cached.with_name(f".{key}.{os.getpid()}.tmp")
        shutil.copytree(model_dir, tmp, dirs_exist_ok=True)
        try: os.replace(tmp, cached)
        except OSError: shutil.rmtree(tmp, ignore_errors=True)
    return SimpleNamespace(world=world, model_dir=model_dir)
