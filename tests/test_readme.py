"""The README is the user's entry point: a landing page with its two quick-start commands (CI runs the second),
the walk-through's commands as the docs site has them, and links that land."""

from __future__ import annotations

import re
from pathlib import Path

from tl_radiology.cli import main

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _quick_start_commands() -> list[str]:
    section = README[README.index("## Quick start"):]
    section = section[:section.index("\n## ", 1)]
    return re.findall(r"```bash\n(.*?)\n```", section, re.S)


def test_the_quick_start_installs_and_runs_the_demo_then_the_tests():
    main_job, tests = _quick_start_commands()[:2]
    assert "pip install -e ." in main_job and main_job.endswith("tl-radiology demo")
    assert 'pip install -e ".[dev]"' in tests and tests.endswith("python -m pytest")


def test_ci_runs_the_readmes_test_command_in_its_own_virtual_environment():
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "python3 -m venv .venv" in ci and "set -euo pipefail" in ci
    install_and_test = _quick_start_commands()[1].split(" && ", 2)[2]  # after creating and activating the venv
    pip, pytest_command = install_and_test.split(" && ")
    assert f"python -m {pip}" in ci.replace("--quiet ", "") and ci.rstrip().endswith(pytest_command)


def test_every_command_is_documented_and_every_command_the_readme_names_exists(capsys):
    assert main(["--help"]) == 0
    help_text = capsys.readouterr().out
    commands = set(re.findall(r"^\s{2,}([a-z][\w-]+)\s", help_text.split("{", 1)[-1], re.M))
    guide = (ROOT / "docs" / "guides" / "recipes-cli.md").read_text(encoding="utf-8")
    for command in ("demo", "recipes", "backbones", "split", "run", "search", "evaluate", "predict", "explain",
                    "report", "import-medmnist", "weights"):
        assert f"`tl-radiology {command}" in guide, f"docs/guides/recipes-cli.md's command table lacks {command}"
        assert re.search(rf"^\s+{re.escape(command)}\b", help_text, re.M), command
    for command in set(re.findall(r"tl-radiology ([a-z][\w-]+)", README)):
        assert command in commands or re.search(rf"^\s+{re.escape(command)}\b", help_text, re.M), command


def test_the_readme_is_a_landing_page():
    assert len(README.splitlines()) <= 300
    for way in ("### 1. A recipe from the command line", "### 2. Fine-tuning in a notebook",
                "### 3. A hyperparameter search"):
        assert way in README


def test_the_readmes_recipe_example_is_the_walkthroughs_commands():
    page = (ROOT / "docs" / "guides" / "walkthrough.md").read_text(encoding="utf-8")
    walkthrough = re.findall(r"```bash\n(.*?)\n```", page.split("\n## The commands", 1)[1], re.S)[0]
    assert f"```bash\n{walkthrough}\n```" in README


def _slug(title: str) -> str:
    """The anchor of a heading, as GitHub and MkDocs (Python-Markdown's toc) both write it for these titles."""
    title = re.sub(r"`", "", title.strip().lower())
    return re.sub(r"[-\s]+", "-", re.sub(r"[^\w\s-]", "", title)).strip("-")


def _anchors(text: str) -> set[str]:
    text = re.sub(r"```.*?```", "", text, flags=re.S)
    return {_slug(h) for h in re.findall(r"^#+ (.*)$", text, re.M)}


def test_links_point_at_files_of_the_project_and_at_their_headings():
    text = re.sub(r"```.*?```", "", README, flags=re.S)
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+://", target):
            continue
        path, _, anchor = target.partition("#")
        file = ROOT / path if path else ROOT / "README.md"
        assert file.exists(), f"README links to {path}, which is not in the project"
        if anchor:
            assert anchor in _anchors(file.read_text(encoding="utf-8")), f"README link {target} names no heading"
