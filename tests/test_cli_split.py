"""``tl-radiology split`` end to end: through cli.main and as a real process (exit statuses, one error line)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from tl_radiology.cli import main


def _study(folder, *, with_split=False, duplicate=False):
    (folder / "img").mkdir(parents=True)
    rows = ["patient_id,label,image" + (",split" if with_split else "")]
    k = 0
    for p in range(30):
        for _ in range(1 + p % 2):
            Image.fromarray(np.full((5, 5), k, np.uint8)).save(folder / "img" / f"{k:03d}.png")
            split = ["train", "train", "val", "test"][p % 4]
            rows.append(f"MRN{p:04d},{'ab'[p % 3 == 0]},img/{k:03d}.png" + (f",{split}" if with_split else ""))
            k += 1
    if duplicate:  # a copy of the first image under another patient
        (folder / "img" / "copy.png").write_bytes((folder / "img" / "000.png").read_bytes())
        rows.append("MRN9999,a,img/copy.png" + (",test" if with_split else ""))
    (folder / "manifest.csv").write_text("\n".join(rows) + "\n")
    return folder / "manifest.csv"


def _run(*args):
    return subprocess.run([sys.executable, "-m", "tl_radiology", *map(str, args)], capture_output=True, text=True)


def test_split_command_writes_the_run_directory_and_prints_the_table(tmp_path, capsys):
    manifest = _study(tmp_path / "study")
    out = tmp_path / "run"
    assert main(["split", str(manifest), "--out", str(out), "--val", "0.2", "--test", "0.2", "--seed", "3",
                 "--quiet"]) == 0
    printed = capsys.readouterr().out
    table = pd.read_csv(out / "splits.csv", dtype=str)
    for split in ("train", "val", "test"):
        part = table[table["split"] == split]
        counts = part["label"].value_counts()
        expected = rf"{split}\s+{len(part)}\s+{part['patient'].nunique()}\s+{counts.get('a', 0)}\s+" \
                   rf"{counts.get('b', 0)}"
        assert pd.Series([printed]).str.contains(expected, regex=True).iloc[0], (expected, printed)
    assert "StratifiedGroupKFold" in printed and "random_state=3" in printed
    assert "no patient is in two splits" in printed
    assert f"Sealed the test set ({(table['split'] == 'test').sum()} cases)" in printed
    assert {p.name for p in out.iterdir()} >= {"splits.csv", "split.json", "test.lock", "audit.log"}
    assert "MRN" not in (out / "splits.csv").read_text() + (out / "audit.log").read_text()
    # The same command again: nothing changes.
    assert main(["split", str(manifest), "--out", str(out), "--val", "0.2", "--test", "0.2", "--seed", "3",
                 "--quiet"]) == 0
    assert "already holds this exact split and seal; nothing was written" in capsys.readouterr().out


def test_manifest_split_column_is_honoured_and_duplicates_reported(tmp_path, capsys):
    manifest = _study(tmp_path / "study", with_split=True, duplicate=True)
    assert main(["split", str(manifest), "--out", str(tmp_path / "run"), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "the manifest's own split column" in printed
    assert "Byte-identical images in different splits: 1 group(s)" in printed
    assert "img/000.png (train, C-" in printed and "img/copy.png (test, C-" in printed
    original = pd.read_csv(manifest, dtype=str)
    table = pd.read_csv(tmp_path / "run" / "splits.csv", dtype=str)
    assert table["split"].tolist() == original["split"].tolist()
    leak = json.loads((tmp_path / "run" / "split.json").read_text())["leakage"]
    assert len(leak["byte_identical"]) == 1
    # With --duplicates error the same input is refused: exit 2, one line naming the files.
    assert main(["split", str(manifest), "--out", str(tmp_path / "run2"), "--duplicates", "error", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: 1 group(s) of identical images are in more than one split")
    assert not (tmp_path / "run2" / "test.lock").exists()


def test_bad_manifest_exits_2_with_one_line_naming_rows(tmp_path):
    folder = tmp_path / "study"
    folder.mkdir()
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(folder / "a.png")
    (folder / "manifest.csv").write_text("patient_id,label,image\np1,x,a.png\np2,,missing.png\n")
    proc = _run("split", folder / "manifest.csv", "--out", tmp_path / "run")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"error: Manifest {folder / 'manifest.csv'} has 2 problems: line 3, column 'image': "
                               "file 'missing.png' not found")
    assert "line 3, column 'label': empty label" in lines[0]
    assert not (tmp_path / "run" / "splits.csv").exists()


@pytest.mark.parametrize("args, message", [
    (["--val", "1.5"], "error: --val must satisfy 0 <= val < 1. Received: val='1.5'."),
    (["--seed", "x"], "error: --seed must be an integer. Received: 'x'."),
    (["--image-columns", "img"], "error: Manifest"),
    (["--duplicates", "eror"], "error: Unknown value for duplicates 'eror'. Did you mean 'error'?"),
])
def test_bad_options_exit_2_with_one_line(tmp_path, capsys, args, message):
    manifest = _study(tmp_path / "study")
    assert main(["split", str(manifest), "--out", str(tmp_path / "run"), "--quiet", *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(message), err


def test_the_positive_class_is_chosen_by_name_and_recorded(tmp_path, capsys):
    manifest = _study(tmp_path / "study")  # labels a and b: by default b (sorted second) is the positive class
    assert main(["split", str(manifest), "--out", str(tmp_path / "default"), "--quiet"]) == 0
    assert "(binary, positive class b, " in capsys.readouterr().out
    assert json.loads((tmp_path / "default" / "split.json").read_text())["classes"] == ["a", "b"]
    # A recipe that wants the other positive class is refused on that split, before anything is trained.
    assert main(["run", "chest_xray", "--manifest", str(manifest), "--out", str(tmp_path / "default"), "--set",
                 "positive_class=a", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "was split with positive class 'b'" in err and "tl-radiology split --positive-class NAME" in err
    assert main(["split", str(manifest), "--out", str(tmp_path / "run"), "--positive-class", "a", "--quiet"]) == 0
    assert "(binary, positive class a, " in capsys.readouterr().out
    assert json.loads((tmp_path / "run" / "split.json").read_text())["classes"] == ["b", "a"]
    assert main(["split", str(manifest), "--out", str(tmp_path / "bad"), "--positive-class", "c", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "'c'" in err[0] and "positive" in err[0], err
    assert not (tmp_path / "bad").exists()


def test_a_different_split_needs_force_and_is_recorded(tmp_path, capsys):
    manifest = _study(tmp_path / "study")
    out = tmp_path / "run"
    assert _run("split", manifest, "--out", out, "--quiet").returncode == 0
    refused = _run("split", manifest, "--out", out, "--seed", "1", "--quiet")
    assert refused.returncode == 2
    assert refused.stderr.startswith(f"error: Run directory {out} already has a sealed split")
    assert "--force" in refused.stderr and len(refused.stderr.strip().splitlines()) == 1
    assert main(["split", str(manifest), "--out", str(out), "--seed", "1", "--force"]) == 0
    captured = capsys.readouterr()
    assert "warning: Replacing the sealed split" in captured.err
    assert "Re-sealed the test set" in captured.out
    events = [json.loads(line)["event"] for line in (out / "audit.log").read_text().splitlines()]
    assert events == ["sealed", "resealed"]


def test_id_map_is_written_only_where_asked_and_outside_the_run(tmp_path, capsys):
    manifest = _study(tmp_path / "study")
    out = tmp_path / "run"
    assert main(["split", str(manifest), "--out", str(out), "--write-id-map", str(out / "ids.csv"), "--quiet"]) == 2
    assert "is inside the run directory" in capsys.readouterr().err
    assert main(["split", str(manifest), "--out", str(out), "--write-id-map", str(tmp_path / "ids.csv"),
                 "--quiet"]) == 0
    ids = pd.read_csv(tmp_path / "ids.csv", dtype=str)
    assert ids["patient_id"].str.startswith("MRN").all() and len(ids) == 30
    assert "keep it private" in capsys.readouterr().out


def test_help_lists_split_and_import_medmnist():
    proc = _run("--help")
    assert proc.returncode == 0
    assert "split" in proc.stdout and "import-medmnist" in proc.stdout
