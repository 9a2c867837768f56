"""The README's code runs as written: every Python snippet (```python blocks and `python -c` one-liners) executes, and
every command it shows (`lcal …`, `-m lcal.…`) answers `--help`, so a renamed command, stage or flag fails here."""
import importlib
import re
from pathlib import Path

import pytest

from lcal.cli import main as lcal_main

README = (Path(__file__).parents[1] / "README.md").read_text()
FENCED = re.compile(r"```(\w*)\n(.*?)```", re.S)


def code_texts() -> list[str]:
    "Every fenced block and inline code span, with shell line continuations joined."
    spans = re.findall(r"`([^`]+)`", FENCED.sub("", README))
    return [text.replace("\\\n", " ") for text in [body for _, body in FENCED.findall(README)] + spans]


def python_snippets() -> list[str]:
    blocks = [body for lang, body in FENCED.findall(README) if lang == "python"]
    one_liners = [m.group(2) for text in code_texts() for m in re.finditer(r"python -c ([\"'])(.*?)\1", text, re.S)]
    return blocks + one_liners


def lcal_commands() -> list[tuple[str, ...]]:
    "`lcal` and the subcommand words after it (up to the first option, placeholder or path) of every shown command."
    found = set()
    for text in code_texts():
        tokens = text.split()
        for i, token in enumerate(tokens):
            if token != "lcal": continue
            words = []
            for word in tokens[i + 1:]:
                if not re.fullmatch(r"[a-z][a-z_]*", word): break
                words.append(word)
            found.add(tuple(words))
    return sorted(found)


def script_modules() -> list[str]:
    return sorted({m for text in code_texts() for m in re.findall(r"-m (lcal\.[a-z_]+)", text)})


def test_the_readme_shows_what_this_test_checks():
    "The extraction itself: a README change that hides its commands from this test fails here instead."
    commands = lcal_commands()
    assert {("demo",), ("eval",), ("lc", "all"), ("world", "report"), ("runs",), ("info",)} <= set(commands)
    assert {"lcal.sft", "lcal.ppo", "lcal.grpo"} <= set(script_modules())
    assert len(python_snippets()) >= 4 and any("get_backend" in s for s in python_snippets())


@pytest.mark.parametrize("snippet", python_snippets(), ids=lambda s: s.strip().splitlines()[0][:60])
def test_python_snippet_runs(snippet, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)                       # snippets may write files (a tiny model) in the working dir
    exec(compile(snippet, "README.md", "exec"), {"__name__": "readme"})


def exit_code(function, argv) -> int:
    try: return function(argv) or 0
    except SystemExit as e: return e.code or 0


@pytest.mark.parametrize("words", lcal_commands(), ids=lambda w: " ".join(("lcal",) + w))
def test_lcal_command_answers_help(words, capsys):
    assert exit_code(lcal_main, [*words, "--help"]) == 0
    out = capsys.readouterr().out
    assert "usage" in out and all(word in out for word in words[1:])   # e.g. the stage of `lcal lc summaries`


@pytest.mark.parametrize("module", script_modules())
def test_training_script_answers_help(module, capsys):
    assert exit_code(importlib.import_module(module).main, ["--help"]) == 0
    assert "usage" in capsys.readouterr().out
