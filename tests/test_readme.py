"""The README is the user's entry point: its two quick-start commands, CI's use of the second, its links."""

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


def test_every_command_the_readme_lists_exists(capsys):
    assert main(["--help"]) == 0
    help_text = capsys.readouterr().out
    for command in ("demo", "recipes", "backbones", "split", "run", "search", "evaluate", "predict", "explain",
                    "report", "import-medmnist", "weights"):
        assert f"tl-radiology {command}" in README, command
        assert re.search(rf"^\s+{re.escape(command)}\b", help_text, re.M), command


def _slug(title: str) -> str:
    return re.sub(r"[^\w\- ]", "", title.strip().lower()).replace(" ", "-")


def test_internal_links_point_at_headings_and_local_files_exist():
    text = re.sub(r"```.*?```", "", README, flags=re.S)
    anchors = {_slug(h) for h in re.findall(r"^#+ (.*)$", text, re.M)}
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if target.startswith("#"):
            assert target[1:] in anchors, f"README link {target} names no heading"
        elif not re.match(r"[a-z]+://", target):
            assert (ROOT / target).exists(), f"README links to {target}, which is not in the project"
