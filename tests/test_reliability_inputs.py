"""The bad-input matrix, fast part: every case through the command line (``tl_radiology.cli.main``, in this process)
and through the Python API, on real files (PNG written with Pillow, DICOM from ../shared/data or phantoms written
with pydicom, NumPy arrays).

Each command-line case must end with exit status 2 and exactly one line ``error: ...`` that names the culprit
(file, manifest line, option) and what was expected, and must leave nothing behind: the ``--out`` folder is not
created (or keeps what it had), and no temporary file is left. The same input through the Python API raises an
``InputError`` (a ``ValueError``) with the same message.

Failures that only show inside a longer command (``run`` reading a broken DICOM while caching, an external
evaluation with an unknown label) are in ``test_reliability_run.py``.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from test_reliability_support import cli, error_line, leftovers, make_bad_images, snapshot

from tl_radiology import InputError, RunDirBusyError, RunDirError
from tl_radiology.data import Manifest, RunDir

N = 20


# ------------------------------------------------------------------------------------------------ data

@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Path:
    """20 distinct 32 px gray PNGs of 20 patients, labels a/b, and a manifest with a split column."""
    folder = tmp_path_factory.mktemp("study")
    rng = np.random.default_rng(0)
    rows = []
    for i in range(N):
        Image.fromarray((rng.random((32, 32)) * 255).astype(np.uint8)).save(folder / f"img{i:02d}.png")
        split = "train" if i < 12 else ("val" if i < 16 else "test")
        rows.append({"patient_id": f"MRN{i:04d}", "label": "ab"[i % 2], "image": f"img{i:02d}.png", "split": split})
    pd.DataFrame(rows).to_csv(folder / "good.csv", index=False)
    (folder.parent / "outside.png").write_bytes((folder / "img00.png").read_bytes())
    return folder


def _good(study: Path) -> pd.DataFrame:
    return pd.read_csv(study / "good.csv", dtype=str, keep_default_na=False)


def _write(study: Path, name: str, frame: pd.DataFrame | None = None, text: str | bytes | None = None) -> Path:
    path = study / f"{name}.csv"
    if frame is not None:
        frame.to_csv(path, index=False)
    elif isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


def _edit(**changes):
    """A manifest builder: the good manifest with ``column=(row index, value)`` changes (row 0 = CSV line 2)."""
    def build(study, name):
        frame = _good(study)
        for column, (row, value) in changes.items():
            frame.loc[row, column] = value
        return _write(study, name, frame)
    return build


def _empty(study, name):
    return _write(study, name, text="")


def _header_only(study, name):
    return _write(study, name, text="patient_id,label,image\n")


def _not_csv(study, name):
    return _write(study, name, text=(study / "img00.png").read_bytes())


def _drop(column):
    return lambda study, name: _write(study, name, _good(study).drop(columns=[column]))


def _rename(old, new):
    return lambda study, name: _write(study, name, _good(study).rename(columns={old: new}))


def _one_class(study, name):
    frame = _good(study)
    frame["label"] = "a"
    return _write(study, name, frame)


def _class_absent_from_val(study, name):
    frame = _good(study)
    frame.loc[frame["split"] == "val", "label"] = "a"
    return _write(study, name, frame)


def _patient_in_two_splits(study, name):
    frame = _good(study)
    frame.loc[14, "patient_id"] = frame.loc[1, "patient_id"]  # line 16 (val) has the patient of line 3 (train)
    return _write(study, name, frame)


def _copy_in_test(study, name):
    shutil.copy(study / "img03.png", study / "copy_of_img03.png")
    frame = _good(study)
    frame.loc[18, "image"] = "copy_of_img03.png"  # a test case whose image is a train image
    return _write(study, name, frame)


def _duplicated_row(study, name):
    frame = _good(study)
    return _write(study, name, pd.concat([frame, frame.iloc[[4]]], ignore_index=True))


# (id, manifest builder, extra split options, regexes the error line must match)
SPLIT_CASES = [
    ("empty-csv", _empty, [], [r"Manifest \S*empty-csv\.csv is empty", r"Expected a header line"]),
    ("header-only", _header_only, [], [r"header-only\.csv has a header but no rows", r"Expected one row per case"]),
    ("not-a-csv", _not_csv, [], [r"not-a-csv\.csv is not UTF-8 text", r"Save it as UTF-8 CSV"]),
    ("missing-label-column", _drop("label"), [],
     [r"column 'label': missing column", r"columns found: patient_id, image, split", r"label_column"]),
    ("misspelt-label-column", _rename("label", "lable"), [],
     [r"column 'label': missing column \(did you mean 'lable'\?\)"]),
    ("missing-patient-column", _drop("patient_id"), [], [r"column 'patient_id': missing column"]),
    ("missing-image-file", _edit(image=(3, "img/nope.png")), [],
     [r"line 5, column 'image': file 'img/nope\.png' not found \(looked for \S+/img/nope\.png\)"]),
    ("path-leaves-folder", _edit(image=(3, "../outside.png")), [],
     [r"line 5, column 'image': path '\.\./outside\.png' leaves the manifest's folder", r"--allow-outside-root"]),
    ("absolute-path-elsewhere", _edit(image=(3, "/etc/hostname")), [],
     [r"line 5, column 'image': path '/etc/hostname' leaves the manifest's folder"]),
    ("empty-label", _edit(label=(4, "")), [], [r"line 6, column 'label': empty label"]),
    ("empty-patient-id", _edit(patient_id=(4, "")), [], [r"line 6, column 'patient_id': empty patient id"]),
    ("unknown-split-value", _edit(split=(2, "vaild")), [],
     [r"line 4, column 'split': unknown split 'vaild' \(did you mean 'val'\?\); expected train, val or test"]),
    ("duplicated-row", _duplicated_row, [],
     [r"line 22, column 'image': duplicated case: the same image file\(s\) as line 6 \(img04\.png\)"]),
    ("only-one-class", _one_class, [], [r"Only one class \('a'\) in column 'label'", r"at least two"]),
    ("class-absent-from-a-split", _class_absent_from_val, [],
     [r"Class 'b' of column 'label' has no case in the val split"]),
    ("patient-in-two-splits", _patient_in_two_splits, [],
     [r"1 patient\(s\) in more than one split: patient P-[0-9A-F]{12} is in train and val \(lines 3, 16\)",
      r"Put all cases of a patient in one split"]),
    ("identical-images-as-error", _copy_in_test, ["--duplicates", "error"],
     [r"identical images are in more than one split", r"img03\.png \(train, C-[0-9A-F]{12}\) = "
      r"copy_of_img03\.png \(test, C-[0-9A-F]{12}\)", r"duplicates='warn'"]),
    ("val-not-a-number", lambda s, n: s / "good.csv", ["--val", "lots"], [r"--val must be a fraction such as 0\.15",
                                                                        r"Received: 'lots'"]),
    ("test-out-of-range", lambda s, n: s / "good.csv", ["--test", "1.5", "--resplit"],
     [r"--test must satisfy 0 < test < 1", r"test='1\.5'"]),
    ("unknown-duplicates-value", lambda s, n: s / "good.csv", ["--duplicates", "sometimes"],
     [r"duplicates 'sometimes'", r"Available: error, warn"]),
    ("misspelt-image-column-option", lambda s, n: s / "good.csv", ["--image-columns", "imag"],
     [r"column 'imag': missing column \(did you mean 'image'\?\)"]),
]


@pytest.mark.parametrize("name, build, options, patterns", SPLIT_CASES, ids=[c[0] for c in SPLIT_CASES])
def test_split_refuses_bad_input_with_one_named_line_and_writes_nothing(study, tmp_path, name, build, options,
                                                                         patterns):
    manifest = build(study, name)
    out = tmp_path / "run"
    before = snapshot(study)
    code, stdout, err = cli(["split", manifest, "--out", out, *options])
    line = error_line(err)
    assert code == 2, err
    for pattern in patterns:
        assert re.search(pattern, line), (pattern, line)
    # No raw patient id in the message (the manifest's MRNs), nothing written, the data left as it was.
    assert "MRN" not in line
    assert not out.exists(), snapshot(out)
    assert snapshot(study) == before and not leftovers(tmp_path)


def _api_split(manifest, out, **options):
    table = Manifest.from_csv(manifest)
    return RunDir(out).create_split(table, **options)


@pytest.mark.parametrize("name, build, options, patterns",
                         [c for c in SPLIT_CASES if not c[2] or c[0] == "identical-images-as-error"],
                         ids=[c[0] for c in SPLIT_CASES if not c[2] or c[0] == "identical-images-as-error"])
def test_the_python_api_raises_the_same_input_errors(study, tmp_path, name, build, options, patterns):
    manifest = build(study, name)
    kwargs = {"duplicates": "error"} if "--duplicates" in options else {}
    with pytest.raises(InputError) as raised:
        _api_split(manifest, tmp_path / "run", **kwargs)
    assert isinstance(raised.value, ValueError)
    message = " ".join(str(raised.value).split())
    for pattern in patterns:
        if "--allow-outside-root" in pattern or "label_column" in pattern:
            continue  # the command line's option names; the API names its keyword (allow_outside_root=True)
        assert re.search(pattern, message), (pattern, message)
    assert not (tmp_path / "run").exists()


def test_identical_images_across_splits_are_a_warning_naming_both_files(study, tmp_path):
    """Decision: identical images across splits are reported by name and split (exit 0); ``--duplicates error``
    makes them an error (the matrix above). A patient in two splits is always an error."""
    manifest = _copy_in_test(study, "identical")
    code, out, err = cli(["split", manifest, "--out", tmp_path / "run"])
    assert code == 0, err
    assert re.search(r"Byte-identical images in different splits: 1 group\(s\) \(warning: the same image is in more "
                     r"than one split\)", out), out
    assert re.search(r"img03\.png \(train, C-[0-9A-F]{12}\) = copy_of_img03\.png \(test, C-[0-9A-F]{12}\)", out), out
    assert "Sealed the test set" in out
    report = pd.read_json(tmp_path / "run" / "split.json", typ="series")["leakage"]
    assert len(report["byte_identical"]) == 1
    from tl_radiology.data import check_leakage

    table = Manifest.from_csv(manifest).cases
    leak = check_leakage(table)
    assert len(leak.duplicate_groups) == 1 and "copy_of_img03.png" in leak.format(study)


# ------------------------------------------------------------------------------------------------ options

RECIPE_CASES = [
    ("unknown-recipe", ["run", "liver_lesion_triphasic_cx"],
     [r"Unknown recipe 'liver_lesion_triphasic_cx'\. Did you mean 'liver_lesion_triphasic_ct'\?", r"Available: "]),
    ("unknown-backbone", ["run", "chest_xray", "--set", "backbone=resnet5O"],
     [r"field backbone: Unknown backbone 'resnet5O'\. Did you mean 'resnet50'"]),
    ("unknown-recipe-field", ["run", "chest_xray", "--set", "dropuot=0.3"],
     [r"Unknown recipe field 'dropuot'\. Did you mean 'dropout'\?"]),
    ("set-wrong-type-number", ["run", "chest_xray", "--set", "dropout=lots"],
     [r"Recipe field 'dropout' expects a number; received 'lots'", r"--set dropout="]),
    ("set-wrong-type-integer", ["run", "chest_xray", "--set", "head_epochs=2.5"],
     [r"Recipe field 'head_epochs' expects an integer; received '2\.5'"]),
    ("set-wrong-type-bool", ["run", "chest_xray", "--set", "train_batchnorm=maybe"],
     [r"Recipe field 'train_batchnorm' expects true/false; received 'maybe'"]),
    ("set-not-json", ["run", "chest_xray", "--set", "search_space={dropout: [0.1]}"],
     [r"Recipe field 'search_space' expects a JSON object", r"not valid JSON"]),
    ("set-without-value", ["run", "chest_xray", "--set", "dropout"], [r"--set 'dropout': expected KEY=VALUE"]),
    ("unknown-window-preset", ["run", "liver_lesion_triphasic_ct", "--set", "windows=livr"],
     [r"Unknown window preset 'livr'\. Did you mean 'liver'\?"]),
    ("unknown-search-key", ["run", "chest_xray", "--set", 'search_space={"dropuot": [0.1]}'],
     [r"Unknown search space key .* 'dropuot'\. Did you mean 'dropout'\?"]),
    ("unknown-tuner", ["search", "chest_xray", "--tuner", "hyperbnd"], [r"Unknown tuner 'hyperbnd'\. Did you mean "
                                                                        r"'hyperband'\?"]),
    ("test-metric-as-objective", ["run", "chest_xray", "--set", "objective=test_auc"],
     [r"Unknown objective 'test_auc'", r"validation metrics only"]),
    ("input-below-backbone-minimum", ["run", "chest_xray", "--set", "backbone=inception_v3", "--set",
                                      "input_size=32", "--set", "weights=none"],
     [r"input_size: expected an integer >= 75", r"received 32"]),
]


@pytest.mark.parametrize("name, args, patterns", RECIPE_CASES, ids=[c[0] for c in RECIPE_CASES])
def test_recipe_and_option_errors_exit_2_before_anything_is_written(study, tmp_path, name, args, patterns):
    out = tmp_path / "run"
    code, _, err = cli([*args, "--manifest", study / "good.csv", "--out", out])
    line = error_line(err)
    assert code == 2, err
    for pattern in patterns:
        assert re.search(pattern, line), (pattern, line)
    assert not out.exists() and not leftovers(tmp_path)


def test_the_python_api_names_the_same_recipe_and_backbone_problems(tmp_path):
    from tl_radiology import load_recipe
    from tl_radiology import OptionError
    from tl_radiology.backbones import get_backbone
    from tl_radiology.models import build_model

    with pytest.raises(OptionError, match=r"Did you mean 'liver_lesion_triphasic_ct'\?"):
        load_recipe("liver_lesion_triphasic_cx")
    with pytest.raises(OptionError, match=r"Unknown backbone 'resnet5O'\. Did you mean 'resnet50'"):
        get_backbone("resnet5O")
    recipe = load_recipe("chest_xray")
    with pytest.raises(OptionError, match=r"Did you mean 'dropout'\?"):
        recipe.replace(dropuot=0.3)
    with pytest.raises(InputError, match=r"'dropout' expects a number; received 'lots'"):
        recipe.replace_from_strings({"dropout": "lots"})
    # An image smaller than the backbone's minimum, named with both sizes.
    with pytest.raises(InputError, match=r"inception_v3 needs inputs of at least 75×75 pixels; received 32×32"):
        build_model("inception_v3", input_shape=(32, 32, 3), weights=None)


def test_an_unknown_command_line_option_is_one_line_with_a_suggestion(study, tmp_path):
    code, out, err = cli(["split", study / "good.csv", "--out", tmp_path / "run", "--vall", "0.1"])
    assert code == 2
    line = error_line(err)
    assert re.search(r"unrecognized arguments: --vall 0\.1", line) and "did you mean --val?" in line, line
    assert "usage:" not in err and not (tmp_path / "run").exists()
    code, _, err = cli(["split", study / "good.csv"])
    assert code == 2 and re.search(r"the following arguments are required: --out", error_line(err))


# ------------------------------------------------------------------------------------------------ output folder

def test_an_output_folder_under_a_regular_file_is_refused(study, tmp_path):
    """Root ignores permission bits, so the unwritable folder is one that cannot exist: a path under a file."""
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    code, _, err = cli(["split", study / "good.csv", "--out", blocker / "run"])
    line = error_line(err)
    assert code == 2 and re.search(r"Cannot write to --out \S+/a_file/run: Not a directory\. Expected a folder you can "
                                   r"write to", line), line
    assert blocker.read_text() == "not a folder"
    with pytest.raises(RunDirError, match="Not a directory"):
        _api_split(study / "good.csv", blocker / "run")


def _chattr(flag: str, path: Path) -> bool:
    if shutil.which("chattr") is None:
        return False
    return subprocess.run(["chattr", flag, str(path)], capture_output=True).returncode == 0


def test_an_immutable_output_folder_is_refused(study, tmp_path):
    """A folder with the immutable attribute (chattr +i) refuses new entries even to root."""
    parent = tmp_path / "locked"
    parent.mkdir()
    if not _chattr("+i", parent):
        pytest.skip("chattr +i is not available here (needs CAP_LINUX_IMMUTABLE on ext2/3/4, XFS, Btrfs)")
    try:
        code, _, err = cli(["split", study / "good.csv", "--out", parent / "run"])
        line = error_line(err)
        assert code == 2 and re.search(r"Cannot write to --out \S+/locked/run: Operation not permitted", line), line
        assert list(parent.iterdir()) == []
    finally:
        _chattr("-i", parent)


def test_the_id_map_is_refused_inside_the_run_directory(study, tmp_path):
    out = tmp_path / "run"
    code, _, err = cli(["split", study / "good.csv", "--out", out, "--write-id-map", out / "ids.csv"])
    line = error_line(err)
    assert code == 2 and re.search(r"--write-id-map \S+ids\.csv is inside the run directory", line), line
    assert "raw patient ids" in line and not out.exists()


HOLDER = """
import sys, time
from tl_radiology._atomic import RunLock
with RunLock(sys.argv[1], "search"):
    print("held", flush=True)
    sys.stdin.read()  # until the test closes our standard input
"""


@pytest.fixture
def held_run_dir(study, tmp_path):
    """A run directory with a split, locked by a real second process (the lock of a command in progress)."""
    out = tmp_path / "run"
    code, _, err = cli(["split", study / "good.csv", "--out", out])
    assert code == 0, err
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(out)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        yield out, holder.pid
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)
        holder.stdout.close()


@pytest.mark.parametrize("command", [
    ["split", "{manifest}", "--out", "{out}", "--force", "--seed", "5"],
    # weights=none: the recipe's ImageNet weights are not in the tests' empty Keras cache, and that check comes first.
    ["run", "chest_xray", "--out", "{out}", "--set", "weights=none"],
    ["search", "chest_xray", "--out", "{out}", "--set", "weights=none"],
])
def test_a_run_directory_in_use_by_another_process_is_refused(study, held_run_dir, command):
    out, pid = held_run_dir
    before = snapshot(out)
    args = [a.format(manifest=study / "good.csv", out=out) for a in command]
    code, _, err = cli(args)
    line = error_line(err)
    assert code == 2, err
    assert re.search(rf"Run directory {re.escape(str(out))} is in use by another process \(pid {pid} on \S+, command "
                     r"'search', since [0-9T:+-]+\)\. Wait for it to finish, or give this command another --out", line)
    assert snapshot(out) == before  # not even the seal was touched by `split --force`
    with pytest.raises(RunDirBusyError, match=rf"pid {pid}"):
        _api_split(study / "good.csv", out, force=True, seed=5)


# ------------------------------------------------------------------------------------------------ images (API)

@pytest.fixture(scope="module")
def bad_images(tmp_path_factory, shared_data) -> dict:
    return make_bad_images(tmp_path_factory.mktemp("bad_images"), shared_data)


IMAGE_CASES = [
    ("truncated.dcm", {}, [r"truncated\.dcm is truncated or corrupt", r"holds \d+ of its \d+ bytes",
                           r"Expected a complete DICOM file"]),
    ("text.dcm", {}, [r"text\.dcm is not a DICOM file", r"no 'DICM' marker", r"Expected a DICOM file"]),
    ("no_pixels.dcm", {}, [r"no_pixels\.dcm has image attributes .* but no Pixel Data element",
                           r"Expected a DICOM image with pixels"]),
    ("mpeg2.dcm", {}, [r"mpeg2\.dcm uses transfer syntax 'MPEG2 Main Profile / Main Level' "
                       r"\(1\.2\.840\.10008\.1\.2\.4\.100\), which no installed decoder reads"]),
    ("rgb.dcm", {"expect": "gray"}, [r"US1_J2KR\.dcm is a colour image \(PhotometricInterpretation YBR_RCT",
                                     r"a grayscale image was expected"]),
    ("rgb.png", {"expect": "gray"}, [r"rgb\.png is a colour image", r"a grayscale image was expected"]),
    ("multiframe.dcm", {"single_frame": True}, [r"emri_small\.dcm has 10 frames but a single 2-D image was expected",
                                                r"frame=i \(0\.\.9\)"]),
    ("mixed_series", {}, [r"mixed_series mixes SeriesInstanceUIDs", r"in 04\.dcm"]),
    ("mixed_shapes", {}, [r"mixed_shapes mixes image sizes \(Rows, Columns\): 2 files have \(512, 512\), but "
                          r"\(256, 256\) in 03\.dcm"]),
    ("mixed_orientation", {}, [r"mixed_orientation mixes ImageOrientationPatient values", r"in 03\.dcm"]),
    ("nan.npy", {}, [r"nan\.npy contains 1 NaN and 0 infinite values; expected finite numbers"]),
    ("inf.npy", {}, [r"inf\.npy contains 0 NaN and 1 infinite values; expected finite numbers"]),
]


@pytest.mark.parametrize("name, options, patterns", IMAGE_CASES, ids=[c[0] for c in IMAGE_CASES])
def test_read_image_names_the_file_and_what_was_expected(bad_images, name, options, patterns):
    from tl_radiology import ImageReadError
    from tl_radiology.io import read_image

    with pytest.raises(ImageReadError) as raised:
        read_image(bad_images[name], **options)
    message = str(raised.value)
    assert "\n" not in message and isinstance(raised.value, ValueError)
    for pattern in patterns:
        assert re.search(pattern, message), (pattern, message)


def test_a_test_image_that_cannot_be_decoded_is_refused_before_sealing(study, bad_images, tmp_path):
    """Sealed as it is, a broken test image would be found only by `evaluate`, after the opening is recorded, and
    replacing it would then break the seal. Broken training or validation images stay a warning of `split`
    (`run` stops on them: test_reliability_run.py)."""
    shutil.copy(bad_images["truncated.dcm"], study / "broken_test.dcm")
    frame = _good(study)
    frame.loc[18, "image"] = "broken_test.dcm"  # a test case, CSV line 20
    manifest = _write(study, "broken_test", frame)
    out = tmp_path / "run"
    code, _, err = cli(["split", manifest, "--out", out])
    line = error_line(err)
    assert code == 2, err
    assert re.search(r"1 test image\(s\) cannot be decoded: line 20, column 'image': \S+/broken_test\.dcm is "
                     r"truncated or corrupt", line), line
    assert "replace or remove" in line and not out.exists()
    with pytest.raises(InputError, match=r"line 20, column 'image': \S+broken_test\.dcm is truncated"):
        _api_split(manifest, tmp_path / "api")
    # With the file fixed the same split is made and sealed.
    shutil.copy(study / "img18.png", study / "fixed.png")
    frame.loc[18, "image"] = "fixed.png"
    code, _, err = cli(["split", _write(study, "fixed", frame), "--out", out])
    assert code == 0, err


@pytest.mark.parametrize("name, build, pattern", [
    ("missing-image-file", _edit(image=(3, "img/nope.png")), r"line 5, column 'image': file 'img/nope\.png' not found"),
    ("one-class", _one_class, r"Only one class \('a'\) in column 'label'"),
    ("patient-in-two-splits", _patient_in_two_splits, r"patient P-[0-9A-F]{12} is in train and val \(lines 3, 16\)"),
])
def test_run_with_a_bad_manifest_creates_no_run_directory(study, tmp_path, name, build, pattern):
    manifest = build(study, f"run-{name}")
    out = tmp_path / "run"
    code, _, err = cli(["run", "chest_xray", "--manifest", manifest, "--out", out, "--set", "weights=none"])
    line = error_line(err)
    assert code == 2 and re.search(pattern, line), line
    assert not out.exists() and not leftovers(tmp_path)
