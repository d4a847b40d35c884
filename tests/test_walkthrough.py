"""The PneumoniaMNIST walk-through (docs/guides/walkthrough.md) works as written, and every "next" hint names what
the walk-through runs next.

The slow test takes the page's shell commands as they are and runs them in a fresh folder, changing only what the
page says may be changed: the data folder (``../shared/data``, wherever it is here) and the sizes given with
``--set`` (input_size, max_trials, head_epochs, finetune_epochs), cut to a tiny run.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tl_radiology.cli import main

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "guides" / "walkthrough.md"
NPZ = "medmnist_pneumoniamnist/pneumoniamnist.npz"
TINY = {"input_size": "32", "max_trials": "1", "head_epochs": "1", "finetune_epochs": "1"}


def _section(title: str) -> str:
    text = PAGE.read_text(encoding="utf-8")
    start = text.index(f"\n## {title}")
    end = text.find("\n## ", start + 1)
    return text[start:end if end > 0 else len(text)]


def walkthrough_commands() -> list[list[str]]:
    """The shell commands of the page's "The commands" section, continuation lines joined, as argument lists."""
    blocks = re.findall(r"```bash\n(.*?)\n```", _section("The commands"), re.S)
    assert len(blocks) == 1, "the walk-through's commands are one ```bash block"
    lines = blocks[0].replace("\\\n", " ").splitlines()
    return [shlex.split(line, comments=True) for line in lines if line.strip() and not line.startswith("#")]


def _option(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


def test_the_walkthrough_is_import_run_evaluate_report_into_ignored_folders():
    commands = walkthrough_commands()
    assert [c[:2] for c in commands] == [["tl-radiology", "import-medmnist"], ["tl-radiology", "run"],
                                         ["tl-radiology", "evaluate"], ["tl-radiology", "report"]]
    imported, run, evaluate, report = commands
    data_dir, run_dir = _option(imported, "--out"), _option(run, "--out")
    assert _option(run, "--manifest") == f"{data_dir}/manifest.csv"
    assert evaluate[2] == report[2] == run_dir
    assert run[2] == "chest_xray" and not any(a.startswith("weights=") for a in run)  # the default weights
    # Where the data and runs go is ignored by git, so following the page leaves `git status` clean.
    ignored = (ROOT / ".gitignore").read_text(encoding="utf-8").split()
    for folder in (data_dir, run_dir):
        assert f"/{folder.split('/')[0]}/" in ignored, f"{folder} is not under a folder .gitignore names"
    # The sizes the page shrinks are real recipe fields, so the test can shrink them further.
    sets = dict(a.split("=", 1) for a in run[run.index("--set"):] if "=" in a)
    assert set(TINY) <= set(sets), f"the page's run command should --set {sorted(TINY)}"


def _tiny_medmnist(path: Path) -> Path:
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", 12), ("val", 6), ("test", 6)):
        arrays[f"{split}_images"] = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        arrays[f"{split}_labels"] = (np.arange(n) % 2).astype(np.uint8).reshape(n, 1)
    np.savez(path, **arrays)
    return path


def test_import_medmnist_suggests_the_walkthroughs_run_command(tmp_path, capsys, monkeypatch):
    imported, run = walkthrough_commands()[:2]
    npz = _tiny_medmnist(tmp_path / Path(imported[2]).name)
    monkeypatch.chdir(tmp_path)
    assert main(["import-medmnist", str(npz), "--out", _option(imported, "--out")]) == 0
    hint = re.search(r"^Next: (.*?)\s{2,}", capsys.readouterr().out, re.M).group(1)
    # The hint is the page's run command before its size options.
    assert hint.split() == run[:run.index("--set")]


def test_import_medmnist_names_a_recipe_placeholder_for_other_files(tmp_path, capsys):
    npz = _tiny_medmnist(tmp_path / "somethingmnist.npz")
    assert main(["import-medmnist", str(npz), "--out", str(tmp_path / "data" / "x")]) == 0
    assert f"Next: tl-radiology run RECIPE --manifest {tmp_path / 'data' / 'x' / 'manifest.csv'} --out runs/x" \
        in capsys.readouterr().out


def test_evaluate_where_no_run_was_made_names_the_run_command_and_split(tmp_path, capsys):
    # What a user meets when `run` stopped before its split (e.g. a missing weights file): the folder is empty.
    out = tmp_path / "runs" / "pneumonia"
    out.mkdir(parents=True)
    assert main(["evaluate", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"tl-radiology run RECIPE --manifest CSV --out {out}" in err
    assert f"tl-radiology split MANIFEST --out {out}" in err
    assert err.count("\n") == 1 and err.startswith("error: ")


def _tiny(args: list[str]) -> list[str]:
    out = list(args)
    for i, arg in enumerate(out):
        key = arg.split("=", 1)[0]
        if i and out[i - 1] == "--set" and key in TINY:
            out[i] = f"{key}={TINY[key]}"
    return out


@pytest.mark.slow
@pytest.mark.shared_data
def test_the_walkthrough_runs_as_written_at_a_tiny_size(shared_data, tmp_path):
    work = tmp_path / "project"
    work.mkdir()
    outputs = []
    for args in walkthrough_commands():
        args = [a.replace("../shared/data", str(shared_data)) for a in _tiny(args)]
        assert args[0] == "tl-radiology"
        done = subprocess.run([sys.executable, "-m", "tl_radiology", *args[1:]], cwd=work, capture_output=True,
                              text=True, timeout=1800)
        assert done.returncode == 0, f"{shlex.join(args)} failed:\n{done.stdout}\n{done.stderr[-3000:]}"
        outputs.append(done.stdout)
    imported, run, evaluate, report = walkthrough_commands()
    run_dir = _option(run, "--out")
    # Each command's "next" hint is the page's next command.
    assert f"Next: {shlex.join(run[:run.index('--set')])}" in outputs[0]
    assert f"tl-radiology evaluate {run_dir}" in outputs[1] and f"tl-radiology report {run_dir}" in outputs[1]
    # evaluate names its results (it gives no "next" line); report names the page it wrote.
    assert f"results: {run_dir}/final_test.json" in outputs[2]
    assert f"report: {run_dir}/report/report.html" in outputs[3]
    # The lines the page shows of each output start as the commands' lines do (up to the first number).
    printed = "\n".join(outputs).splitlines()
    shown = re.findall(r"^(?:Wrote|Next|Recipe|split|started from|Final test|results|report)\b.*$",
                       _section("What each command prints"), re.M)
    assert len(shown) >= 6, "the page shows the outputs of import-medmnist, run, evaluate and report"
    for line in shown:
        prefix = re.split(r"\d", line, maxsplit=1)[0]
        assert any(got.startswith(prefix) for got in printed), f"no printed line starts like the page's: {line}"
    # Everything went into the two ignored folders, and the report exists.
    assert sorted(p.name for p in work.iterdir()) == sorted({_option(imported, "--out").split("/")[0],
                                                            run_dir.split("/")[0]})
    assert (work / run_dir / "report" / "report.html").is_file()
