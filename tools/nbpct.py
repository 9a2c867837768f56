"""Round-trip notebooks through a plain 'percent' text form for easier editing.

    python tools/nbpct.py to-py nbs/00_core.ipynb /tmp/core.py   # notebook -> text
    python tools/nbpct.py to-nb /tmp/core.py nbs/00_core.ipynb   # text -> notebook (outputs dropped)

In the text form a line `# %%` starts a code cell and `# %% [markdown]` a markdown cell whose
lines are prefixed with `# `. The notebook stays the source of truth; the text is a scratch copy.
"""
import sys
from pathlib import Path

import nbformat

CODE, MD = "# %%", "# %% [markdown]"


def to_py(nb_path, py_path):
    nb = nbformat.read(nb_path, as_version=4)
    parts = []
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            body = "\n".join(("# " + l) if l else "#" for l in cell.source.splitlines())
            parts.append(f"{MD}\n{body}")
        else:
            parts.append(f"{CODE}\n{cell.source}")
    Path(py_path).write_text("\n\n".join(parts) + "\n")


def to_nb(py_path, nb_path):
    cells, kind, lines = [], None, []

    def flush():
        if kind is None: return
        text = "\n".join(lines).strip("\n")
        if kind == "md":
            text = "\n".join(l[2:] if l.startswith("# ") else l.lstrip("#") for l in text.splitlines())
            cells.append(nbformat.v4.new_markdown_cell(text))
        else:
            cells.append(nbformat.v4.new_code_cell(text))

    for line in Path(py_path).read_text().splitlines():
        if line.strip() == MD or line.strip() == CODE:
            flush()
            kind, lines = ("md" if line.strip() == MD else "code"), []
        else:
            lines.append(line)
    flush()
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata = {"kernelspec": {"display_name": "python3", "language": "python", "name": "python3"}}
    nbformat.write(nb, nb_path)


if __name__ == "__main__":
    cmd, src, dst = sys.argv[1:4]
    {"to-py": to_py, "to-nb": to_nb}[cmd](src, dst)
