"""The bad-input matrix, inside longer commands: ``run`` meeting a broken image while it reads and caches the
training cases, an external evaluation with labels the model does not know, run directories that cannot be
written, and a few cases through the real ``tl-radiology`` console script (exit status, one line, no traceback,
none of TensorFlow's start-up noise).

The ``run`` cases use the chest_xray recipe (gray images) shrunk to a tiny backbone, on real PneumoniaMNIST
images with the official split, one training image replaced by a broken file. ``split`` accepts the manifest
and lists the images it could not decode; ``run`` then stops with exit status 2 naming the manifest row, the
column and the file, and the run directory holds nothing half-written: only ``recipe.json`` and the complete
cache entries of the cases read before (no search project, model, history or temporary file).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from test_reliability_support import (
    audit_events,
    cli,
    copy_run,
    error_line,
    leftovers,
    make_bad_images,
    phi_run,
    snapshot,
    tiny_backbones_fixture,
)
from test_run_support import CONSOLE, TF_NOISE, medmnist_subset, subprocess_environment, tiny_overrides

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", autouse=True)
def tiny_backbones():
    yield from tiny_backbones_fixture()


@pytest.fixture(scope="module")
def pneumonia(tmp_path_factory, shared_data) -> Path:
    return medmnist_subset(shared_data, tmp_path_factory.mktemp("pneumonia") / "data", "pneumoniamnist")


@pytest.fixture(scope="module")
def bad_images(tmp_path_factory, shared_data) -> dict:
    return make_bad_images(tmp_path_factory.mktemp("bad_images"), shared_data)


# (broken input, what `run` must say about it, whether `split`'s pixel check reports it as undecodable)
RUN_CASES = [
    ("truncated.dcm", r"is truncated or corrupt: its last element \(7FE0,0010\) holds \d+ of its \d+ bytes", True),
    ("text.dcm", r"is not a DICOM file \(no 'DICM' marker", True),
    ("no_pixels.dcm", r"has image attributes \(Rows, Columns\) but no Pixel Data element", True),
    ("mpeg2.dcm", r"uses transfer syntax 'MPEG2 Main Profile / Main Level' .*which no installed decoder reads", True),
    ("rgb.dcm", r"is a colour image \(PhotometricInterpretation YBR_RCT, 3 sample\(s\) per pixel\) but a grayscale "
                r"image was expected", False),
    ("multiframe.dcm", r"holds 10 frames or slices \(10x64x64, frames first\).* which is not one H x W x C image\. "
                       r"Read one frame with read_options=\{'frame': k\}", False),
    ("mixed_series", r"mixes SeriesInstanceUIDs", True),
    ("nan.npy", r"contains 1 NaN and 0 infinite values; expected finite numbers", True),
]


@pytest.mark.parametrize("broken, message, reported_by_split", RUN_CASES, ids=[c[0] for c in RUN_CASES])
def test_run_stops_at_a_broken_training_image_naming_row_and_file(pneumonia, bad_images, tmp_path, broken, message,
                                                                  reported_by_split):
    folder = pneumonia.parent
    source = bad_images[broken]
    name = f"broken_{source.name}"
    target = folder / name
    (shutil.copytree if source.is_dir() else shutil.copy)(source, target)
    frame = pd.read_csv(pneumonia, dtype=str)
    row = frame.index[frame["split"] == "train"][2]
    frame.loc[row, "image"] = name
    manifest = folder / f"manifest_{source.stem}.csv"
    frame.to_csv(manifest, index=False)
    out = tmp_path / "run"
    try:
        code, printed, err = cli(["split", manifest, "--out", out])
        assert code == 0, err
        if reported_by_split:
            assert re.search(r"Images whose pixels could not be decoded \(pixel check skipped\): 1\s+"
                             + re.escape(name), printed), printed
        before = snapshot(out)
        code, _, err = cli(["run", "chest_xray", "--out", out, *tiny_overrides()])
    finally:
        (shutil.rmtree if target.is_dir() else Path.unlink)(target)
        manifest.unlink()
    line = error_line(err)
    assert code == 2, err
    csv_line = row + 2
    assert line.startswith(f"error: row {csv_line} (column 'image'): ") and re.search(rf"/{re.escape(name)}\b", line), line
    assert re.search(message, line), (message, line)
    after = snapshot(out)
    added = {k for k in after if k not in before}
    assert {k for k in before if after.get(k) != before[k]} <= {".lock"}
    assert added <= {"recipe.json", "cache"} | {k for k in added if k.startswith("cache/")}, added
    assert not any(k.startswith(("search", "model", "history", "val_")) for k in after)
    assert not leftovers(out) and audit_events(out) == ["sealed"]


def test_an_image_smaller_than_the_backbone_minimum_is_refused_before_the_search(pneumonia, tmp_path):
    out = tmp_path / "run"
    code, _, err = cli(["run", "chest_xray", "--manifest", pneumonia, "--out", out,
                        *tiny_overrides(backbone="vgg16", input_size="none")])
    line = error_line(err)
    assert code == 2, line
    assert re.search(r"vgg16 needs inputs of at least 32×32 pixels; received 28×28", line), line
    assert not (out / "search").exists() and not (out / "search_summary.json").exists()


# ------------------------------------------------------------------------------------------------ external site

@pytest.fixture(scope="module")
def phi(tmp_path_factory):
    return phi_run(tmp_path_factory)


@pytest.mark.parametrize("label, message", [
    ("lymphoma", r"has class\(es\) lymphoma the model was not trained on \(its classes: cyst, solid\), at line\(s\) 3\."),
    ("", r"line 3, column 'label': empty label"),
])
def test_an_external_site_with_labels_the_model_does_not_know_is_refused(phi, tmp_path, label, message):
    run = copy_run(phi["sealed"], tmp_path / "run")
    frame = pd.read_csv(phi["manifest"], dtype=str, keep_default_na=False)
    frame.loc[1, "label"] = label
    manifest = phi["manifest"].parent / "site_b.csv"
    frame.to_csv(manifest, index=False)
    before = snapshot(run)
    try:
        code, _, err = cli(["evaluate", run, "--external", manifest, "--name", "site_b", "--n-bootstrap", "20"])
    finally:
        manifest.unlink()
    line = error_line(err)
    assert code == 2 and re.search(message, line), line
    assert "site_b.csv" in line and "MRN-" not in line
    assert not (run / "external" / "site_b").exists()
    after = snapshot(run)
    assert {k for k in after if after[k] != before.get(k)} <= {".lock"} and audit_events(run) == ["sealed"]


# ------------------------------------------------------------------------------------------------ unwritable

def _chattr(flag: str, path: Path) -> bool:
    if shutil.which("chattr") is None:
        return False
    return subprocess.run(["chattr", flag, str(path)], capture_output=True).returncode == 0


def test_run_and_evaluate_in_a_run_directory_that_cannot_be_written_are_refused(phi, tmp_path):
    """Root ignores permission bits; the immutable attribute (chattr +i) refuses new files even to root."""
    run = copy_run(phi["sealed"], tmp_path / "run")
    before = snapshot(run)
    if not _chattr("+i", run):
        pytest.skip("chattr +i is not available here (needs CAP_LINUX_IMMUTABLE on ext2/3/4, XFS, Btrfs)")
    try:
        for command in (["run", "liver_lesion_triphasic_ct", "--out", run, *tiny_overrides()],
                        ["evaluate", run, "--n-bootstrap", "20"]):
            code, _, err = cli(command)
            line = error_line(err)
            assert code == 2 and re.search(rf"Cannot write to --out {re.escape(str(run))}: Operation not permitted",
                                           line), (command[0], line)
    finally:
        _chattr("-i", run)
    assert snapshot(run) == before and audit_events(run) == ["sealed"]


# ------------------------------------------------------------------------------------------------ real processes

def test_bad_input_through_the_console_script_is_one_line_without_traceback_or_tensorflow_noise(pneumonia, tmp_path):
    frame = pd.read_csv(pneumonia, dtype=str)
    frame.loc[3, "image"] = "missing.png"
    broken = pneumonia.parent / "manifest_missing.csv"
    frame.to_csv(broken, index=False)
    commands = {
        "missing file": (["split", broken, "--out", tmp_path / "a"],
                         r"line 5, column 'image': file 'missing\.png' not found"),
        "wrong --set type": (["run", "chest_xray", "--manifest", pneumonia, "--out", tmp_path / "b", "--set",
                              "head_epochs=two"], r"Recipe field 'head_epochs' expects an integer; received 'two'"),
        "misspelt option": (["run", "chest_xray", "--manifest", pneumonia, "--out", tmp_path / "c", "--sett",
                             "dropout=0.1"], r"unrecognized arguments: --sett dropout=0\.1; did you mean --set\?"),
    }
    try:
        processes = {name: subprocess.Popen([CONSOLE, *map(str, args)], env=subprocess_environment(),
                                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                            stdin=subprocess.DEVNULL)
                     for name, (args, _) in commands.items()}
        results = {name: process.communicate(timeout=300) for name, process in processes.items()}
    finally:
        broken.unlink()
    for name, (stdout, stderr) in results.items():
        assert processes[name].returncode == 2, (name, stderr[-2000:])
        assert stderr.count("\n") == 1 and stderr.startswith("error: "), (name, stderr[-2000:])
        assert re.search(commands[name][1], stderr), (name, stderr)
        assert "Traceback" not in stderr and not any(noise in stderr for noise in TF_NOISE) and stdout == ""
    assert not any((tmp_path / d).exists() for d in ("a", "b", "c"))
