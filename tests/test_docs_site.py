"""The documentation site builds strictly: a broken link, a missing anchor or an API reference that mkdocstrings
cannot render fails the test suite, not a reader."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _missing(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is None
    except ModuleNotFoundError:  # a dotted name whose parent package is absent
        return True


_MISSING = [name for name in ("mkdocs", "material", "mkdocstrings", "mkdocstrings_handlers.python") if _missing(name)]


@pytest.mark.skipif(bool(_MISSING), reason=f"the docs extra is not installed (missing {', '.join(_MISSING)}): "
                                           "pip install -e \".[docs]\"")
def test_mkdocs_build_strict_passes_without_warnings(tmp_path):
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(tmp_path / "site")],
                            cwd=ROOT, capture_output=True, text=True, timeout=600,
                            env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})  # Material's banner, not a warning
    log = result.stdout + result.stderr
    warnings = [line for line in log.splitlines() if line.startswith(("WARNING", "ERROR"))]
    assert result.returncode == 0 and not warnings, "mkdocs build --strict failed:\n" + "\n".join(warnings or [log])
    site = tmp_path / "site"
    # Every page of the nav was written, and the API reference holds the documented public names.
    for page in ("index.html", "guides/walkthrough/index.html", "ARCHITECTURE/index.html",
                 "reference/evaluation/index.html"):
        assert (site / page).is_file(), page
    for page, name in (("evaluation", "evaluate_run"), ("training", "fine_tune"), ("search", "run_search"),
                       ("io", "read_image"), ("run", "run_recipe")):
        assert name in (site / "reference" / page / "index.html").read_text(encoding="utf-8"), (page, name)


def test_every_guide_and_reference_page_is_in_the_nav():
    yaml = pytest.importorskip("yaml", reason="PyYAML (installed with the docs extra) reads mkdocs.yml")

    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))

    def pages(node):
        if isinstance(node, str):
            yield node
        elif isinstance(node, list):
            for item in node:
                yield from pages(item)
        elif isinstance(node, dict):
            for value in node.values():
                yield from pages(value)

    in_nav = set(pages(config["nav"]))
    on_disk = {str(p.relative_to(ROOT / "docs")) for p in (ROOT / "docs").rglob("*.md") if "_ext" not in p.parts}
    assert on_disk - in_nav == set(), f"pages missing from mkdocs.yml's nav: {sorted(on_disk - in_nav)}"
    subpackages = {"io", "transforms", "data", "backbones", "models", "training", "search", "evaluation", "config",
                   "recipe", "run"}
    assert {f"reference/{name}.md" for name in subpackages} <= in_nav
