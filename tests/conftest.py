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
