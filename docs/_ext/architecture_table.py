"""Rewrite the module table of docs/ARCHITECTURE.md from each module's own docstring.

Run from the repository root after adding, splitting or renaming a module:

    python docs/_ext/architecture_table.py

Each row is the module's path and the first paragraph of its docstring, the parts in the order of the data path;
``tests/test_architecture_doc.py`` checks that the table names every module of the package.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PARTS = ["io", "transforms", "data", "backbones", "models", "training", "search", "evaluation", "config", "recipe",
         "run", "cli"]


def first_paragraph(path: Path) -> str:
    docstring = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or "(no docstring)"
    return " ".join(docstring.split("\n\n")[0].split()).replace("|", "\\|")


def table() -> list[str]:
    package = ROOT / "tl_radiology"
    modules = sorted(p for p in package.glob("*.py") if p.name not in ("__init__.py", "__main__.py"))
    for part in PARTS:
        modules += sorted((package / part).glob("*.py"))
    return ["| module | owns |", "|---|---|"] + [
        f"| `{p.relative_to(ROOT).as_posix()}` | {first_paragraph(p)} |" for p in modules
    ]


def main() -> None:
    doc = ROOT / "docs" / "ARCHITECTURE.md"
    text = doc.read_text(encoding="utf-8")
    start = text.index("| module | owns |")
    end = text.index("\n\n", start)
    rows = table()
    doc.write_text(text[:start] + "\n".join(rows) + text[end:], encoding="utf-8")
    undocumented = [row for row in rows if "(no docstring)" in row]
    print(f"{len(rows) - 2} modules" + (f"; without a docstring: {undocumented}" if undocumented else ""))


if __name__ == "__main__":
    main()
