"""The walkthroughs: each runs under papermill on the tiny world (through `lcal batch`), their committed executed
copies are of the current source, and their Colab badges point at the repository configured in pyproject.toml."""
import re
import tomllib
from pathlib import Path

import nbformat
import pytest

from lcal.batch import batch_command, read_batch

ROOT = Path(__file__).parents[1]
WALKTHROUGHS = sorted((ROOT / "walkthroughs").glob("*.ipynb"))


def code_cells(path: Path) -> list[str]:
    "A notebook's code cells as its author wrote them (without the cell papermill injects with the parameters)."
    cells = nbformat.read(str(path), as_version=4).cells
    return [c.source for c in cells if c.cell_type == "code" and "injected-parameters" not in c.metadata.get("tags", [])]


def test_every_walkthrough_is_in_both_batch_files():
    for batch in ("tiny.yaml", "world.yaml"):
        assert sorted(r.notebook.name for r in read_batch(ROOT / "walkthroughs" / batch)) == [p.name for p in WALKTHROUGHS]


def test_walkthroughs_run_on_the_tiny_world(tmp_path, tiny_world, capsys):
    assert batch_command([str(ROOT / "walkthroughs" / "tiny.yaml"), "--out", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    order = [r.name for r in read_batch(ROOT / "walkthroughs" / "tiny.yaml")]  # the batch file's order
    assert [line.split()[:2] for line in lines] == [[name, "finished"] for name in order]
    assert sorted(order) == [p.stem for p in WALKTHROUGHS]
    assert "lc_sft_ece=" in lines[0] and "claims_held=" in lines[0]  # the headline numbers each notebook records
    citations = next(line for line in lines if line.split()[0] == "citations")
    assert "fg_rl_citation_rec=" in citations and "rs_rl_citation_prec=" in citations
    for name in ("lc", "citations"):
        executed = tmp_path / name / f"{name}.ipynb"
        outputs = [o for c in nbformat.read(str(executed), as_version=4).cells for o in c.get("outputs", [])]
        assert any("image/png" in o.get("data", {}) for o in outputs), name  # the figures are in the executed notebook
    assert batch_command([str(ROOT / "walkthroughs" / "tiny.yaml"), "--out", str(tmp_path)]) == 0
    assert all(line.split()[1] == "reused" for line in capsys.readouterr().out.splitlines())


@pytest.mark.parametrize("source", WALKTHROUGHS, ids=lambda p: p.stem)
def test_executed_copy_is_of_the_current_source(source):
    executed = ROOT / "walkthroughs" / "executed" / source.name
    assert executed.exists(), f"no executed copy of {source.name}: run `make walkthroughs`"
    assert code_cells(executed) == code_cells(source), f"{executed} is older than {source}: run `make walkthroughs`"
    outputs = [o for c in nbformat.read(str(executed), as_version=4).cells for o in c.get("outputs", [])]
    assert any("image/png" in o.get("data", {}) for o in outputs) and not any(o.get("output_type") == "error" for o in outputs)


@pytest.mark.parametrize("source", WALKTHROUGHS, ids=lambda p: p.stem)
def test_colab_badge_points_at_the_repository(source):
    repository = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["urls"]["Repository"]
    owner_name = repository.removeprefix("https://github.com/")
    first = nbformat.read(str(source), as_version=4).cells[0].source
    badge = re.search(r"https://colab\.research\.google\.com/github/(\S+?)\)", first)
    assert badge and badge.group(1) == f"{owner_name}/blob/main/walkthroughs/{source.name}"
    install = code_cells(source)[0]
    assert f"git+{repository}" in install  # the install cell installs from the same repository
