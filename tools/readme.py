"""Generate README.md from nbs/index.ipynb (markdown cells verbatim, visible code cells as python blocks).

    python tools/readme.py          # write README.md
    python tools/readme.py --check  # exit 1 if README.md is out of date
"""
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent


def render() -> str:
    nb = nbformat.read(ROOT / "nbs" / "index.ipynb", as_version=4)
    parts = []
    for cell in nb.cells:
        src = cell.source.strip()
        if not src or src.startswith("#| hide"): continue
        parts.append(src if cell.cell_type == "markdown" else f"```python\n{src}\n```")
    return "<!-- generated from nbs/index.ipynb by tools/readme.py: edit the notebook, not this file -->\n\n" + \
        "\n\n".join(parts) + "\n"


if __name__ == "__main__":
    text, target = render(), ROOT / "README.md"
    if "--check" in sys.argv:
        if not target.exists() or target.read_text() != text:
            sys.exit("README.md is out of date with nbs/index.ipynb: run `python tools/readme.py`")
    else:
        target.write_text(text)
